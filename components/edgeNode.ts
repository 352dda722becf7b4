import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";

import { FileStat } from "../config/checker";
import { importTimeoutSeconds, k3sWatchesImages } from "../config/images";
import { kubeletMemoryArgs, SkuProfile } from "../config/skus";
import { AirgapConfig, NodeBootstrap, NodeConfig, RegistriesConfig } from "../config/stack";
import { remoteCommand, ScriptParams } from "../scripts/render";
import { NODE_LABELS } from "./names";
import { sshProbeCommand } from "./sshProbe";

/** Air-gap staging directory: owned by the SSH user (CopyToRemote writes over SFTP as that user). */
export const AIRGAP_DIR = "/var/lib/forge-edge/airgap";
/** Bounded SSH dialing: an unreachable node fails in about a minute instead of hanging the update. */
export const DIAL = { dialErrorLimit: 4, perDialTimeout: 15 } as const;

/** How a node joins its cluster: decided by the cluster, one per node. */
export interface ClusterJoin {
  /** `https://<first server>:6443`; empty for the first server. */
  serverUrl: string;
  /** First server of an HA cluster: starts embedded etcd. */
  clusterInit: boolean;
}

export interface EdgeNodeArgs {
  node: NodeConfig;
  /** The stack's bootstrap settings, as config/stack.ts made them (private registries go to stdin, secret). */
  bootstrap: NodeBootstrap;
  join: ClusterJoin;
  /** The SSH private key, a Pulumi secret. */
  sshPrivateKey: pulumi.Input<string>;
  /** The cluster token, a Pulumi secret; sent to the node on stdin only. */
  token: pulumi.Input<string>;
  /** Steps of earlier rollout waves: nothing of this node starts before they succeed. */
  after?: pulumi.Resource[];
}

/** Where online installs download K3s from (get.k3s.io's installer uses the same release assets). */
export const K3S_RELEASES = {
  releaseUrl: "https://github.com/k3s-io/k3s/releases/download",
  installUrl: "https://get.k3s.io",
} as const;

/**
 * One edge box: NVIDIA runtime first, then K3s (which detects runtimes only at start). Each step's `delete` is
 * its uninstall, so removing the node from the stack, or `pulumi destroy`, leaves the box as it was.
 */
export class EdgeNode extends pulumi.ComponentResource {
  public readonly runtime: command.remote.Command;
  public readonly k3s: command.remote.Command;
  /** Online installs: the K3s download, in parallel with the toolkit install. */
  public readonly fetch?: command.remote.Command;
  /** Online installs with `bootstrap.prePullImages`: K3s's background pull of them, right after K3s runs. */
  public readonly prePull?: command.remote.Command;
  /**
   * Air gap with stack image tarballs, on a K3s with the image watcher: the step that places them once K3s runs
   * and waits until containerd has every image the stack runs. What the stack's pods wait for.
   */
  public readonly imagesImported?: command.remote.Command;
  /** What the runtime step found on the node, e.g. `gpus=1 tegra=false runtime=/usr/bin/nvidia-container-runtime`. */
  public readonly gpuReport: pulumi.Output<string>;

  constructor(name: string, args: EdgeNodeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:node:EdgeNode", name, {}, opts);
    const { node, bootstrap } = args;
    const { sku, airgap } = bootstrap;
    const connection = nodeConnection(node, args.sshPrivateKey);
    const timeouts = { create: "20m", update: "20m", delete: "10m" };
    const runtimeCreate = remoteCommand("nvidia-runtime", runtimeParams(node, bootstrap), node.user);
    const k3sCreate = remoteCommand("k3s-install", k3sParams(node, bootstrap, args.join), node.user);
    const fetchCreate = airgap ? undefined : remoteCommand("k3s-fetch", fetchParams(bootstrap), node.user);
    const images = airgap ? [] : bootstrap.prePullImages;
    const prePullCreate = images.length
      ? remoteCommand("image-prepull", prePullParams(images, bootstrap), node.user)
      : undefined;
    const files = airgap ? airgapFiles(airgap, sku) : [];
    const late = importsLate(bootstrap) ? files.filter((f) => f.stack) : [];
    // The tarballs' local sizes bound the import's wait; size and mtime also re-run it when a tarball changes.
    const importCreate = late.length
      ? remoteCommand(
          "airgap-import",
          airgapImportParams(
            late,
            late.map((f) => f.stat?.bytes ?? 0),
            bootstrap.airgapImages ?? [],
          ),
          node.user,
        )
      : undefined;

    // The provider bounds only the TCP connect of its dial: a host that accepts TCP but never speaks SSH would hang
    // a step forever. The probe proves, within SSH_PROBE_SECONDS, that the node speaks SSH, and runs again whenever
    // a step's command changes, i.e. right before every `up` that will run something on the node.
    const probe = new command.local.Command(
      `${name}-ssh-probe`,
      {
        create: sshProbeCommand(node),
        triggers: [
          runtimeCreate,
          k3sCreate,
          ...[fetchCreate, prePullCreate, importCreate].filter((c) => c !== undefined),
        ],
        addPreviousOutputInEnv: false,
      },
      { parent: this, dependsOn: args.after ?? [] },
    );
    const after = [...(args.after ?? []), probe];

    // A node step: its delete is its uninstall, and a replacement uninstalls before it installs again.
    const step = (
      id: string,
      create: string,
      uninstall: string,
      dependsOn: pulumi.Resource[],
      stdin?: pulumi.Input<string>,
    ): command.remote.Command =>
      new command.remote.Command(
        `${name}-${id}`,
        { connection, create, delete: uninstall, ...(stdin ? { stdin } : {}), addPreviousOutputInEnv: false },
        { parent: this, customTimeouts: timeouts, deleteBeforeReplace: true, dependsOn },
      );

    // Air gap: a staging directory the SSH user owns, the copies into it (SFTP, as that user), and the K3s step
    // installs from it as root. The staging step's delete removes what was staged.
    const stage = airgap
      ? step(
          "airgap-stage",
          remoteCommand("airgap-stage", { OWNER: node.user }, node.user),
          remoteCommand("airgap-unstage", {}, node.user),
          after,
        )
      : undefined;
    const copies = files.map((f) => ({
      late: late.includes(f),
      copy: new command.remote.CopyToRemote(
        `${name}-airgap-${f.id}`,
        { connection, source: new pulumi.asset.FileAsset(f.source), remotePath: f.remotePath },
        { parent: this, customTimeouts: timeouts, dependsOn: [...after, stage!] },
      ),
    }));
    // K3s waits for its own artefacts only; the stack's tarballs copy meanwhile when the import step places them.
    const k3sCopies = copies.filter((c) => !c.late).map((c) => c.copy);
    const lateCopies = copies.filter((c) => c.late).map((c) => c.copy);

    // Private registries: K3s reads registries.yaml at start, so this precedes the K3s step.
    const registries = bootstrap.registries
      ? [
          step(
            "registries",
            remoteCommand("registries", {}, node.user),
            remoteCommand("registries-remove", {}, node.user),
            after,
            pulumi.secret(registriesYaml(bootstrap.registries)),
          ),
        ]
      : [];

    // Online: the K3s installer and binary download while the runtime step installs the toolkit, instead of
    // inside the K3s step after it.
    this.fetch = fetchCreate
      ? step("k3s-fetch", fetchCreate, remoteCommand("k3s-fetch-remove", {}, node.user), after)
      : undefined;

    this.runtime = step(
      "nvidia-runtime",
      runtimeCreate,
      remoteCommand("nvidia-runtime-revert", {}, node.user),
      after,
    );

    this.k3s = step(
      "k3s",
      k3sCreate,
      remoteCommand("k3s-uninstall", { ROLE: node.role }, node.user),
      [this.runtime, ...k3sCopies, ...registries, ...(this.fetch ? [this.fetch] : [])],
      // Secret whatever the caller passed: the token must never be stored or shown in plaintext.
      pulumi.secret(args.token),
    );

    // The pull starts once containerd runs: K3s's image watcher reads the list while K3s runs, in the background.
    // Air-gapped nodes have no registry to pull from; their images are staged tarballs.
    this.prePull = prePullCreate
      ? step("image-prepull", prePullCreate, remoteCommand("image-prepull-remove", {}, node.user), [this.k3s])
      : undefined;

    // A changed tarball is placed again even when the command (whose wait scales with the sizes) did not change.
    this.imagesImported = importCreate
      ? new command.remote.Command(
          `${name}-airgap-import`,
          {
            connection,
            create: importCreate,
            delete: remoteCommand("airgap-import-remove", {}, node.user),
            triggers: late.map((f) => `${f.id}:${f.stat?.bytes ?? ""}:${f.stat?.mtimeMs ?? ""}`),
            addPreviousOutputInEnv: false,
          },
          {
            parent: this,
            customTimeouts: timeouts,
            deleteBeforeReplace: true,
            dependsOn: [this.k3s, ...lateCopies],
          },
        )
      : undefined;

    this.gpuReport = this.runtime.stdout;
    this.registerOutputs({
      gpuReport: this.gpuReport,
      k3s: this.k3s.stdout,
      ...(this.imagesImported ? { imagesImported: this.imagesImported.stdout } : {}),
    });
  }
}

/** The SSH connection for a node; the whole object is secret because it carries the private key. */
export function nodeConnection(
  node: NodeConfig,
  privateKey: pulumi.Input<string>,
): pulumi.Output<command.types.input.remote.ConnectionArgs> {
  return pulumi.secret(
    pulumi.output(privateKey).apply((key) => ({
      host: node.host,
      port: node.port,
      user: node.user,
      privateKey: key,
      ...DIAL,
      ...(node.hostKey ? { hostKey: node.hostKey } : {}),
    })),
  );
}

/** The runtime step's script parameters: the node's GPUs against the SKU, and the toolkit to install. */
export function runtimeParams(
  node: Pick<NodeConfig, "gpus">,
  bootstrap: Pick<NodeBootstrap, "sku" | "toolkitVersion" | "k3sVersion">,
): ScriptParams {
  const { sku } = bootstrap;
  return {
    SKU: sku.name,
    PRODUCT_MATCH: sku.gpu.productMatch,
    DISCOVERY: sku.deviceDiscovery,
    EXPECT_GPUS: node.gpus,
    DRIVER_MIN_BRANCH: sku.driver.minBranch,
    DRIVER_MAX_BRANCH: sku.driver.maxBranch,
    TOOLKIT_VERSION: bootstrap.toolkitVersion,
    TOOLKIT_SOURCE: sku.toolkitSource,
    // Picks K3s's containerd template file and schema (config-v3.toml.tmpl on K3s with containerd 2).
    K3S_VERSION: bootstrap.k3sVersion,
  };
}

/** Labels K3s applies at registration: the device plugin's affinity and our scheduling keys, no NFD needed. */
export function nodeLabels(node: NodeConfig, sku: SkuProfile): string[] {
  return [
    `${NODE_LABELS.gpuPresent}=true`,
    `${NODE_LABELS.sku}=${sku.name}`,
    `${NODE_LABELS.gpuCount}=${node.gpus}`,
    `${NODE_LABELS.deviceDiscovery}=${sku.deviceDiscovery}`,
  ];
}

/** The K3s step's script parameters: the node's role and labels, the release, how it joins, the air gap. */
export function k3sParams(
  node: NodeConfig,
  bootstrap: Pick<NodeBootstrap, "sku" | "k3sVersion" | "airgap">,
  join: ClusterJoin,
): ScriptParams {
  const { sku, airgap } = bootstrap;
  return {
    ROLE: node.role,
    K3S_VERSION: bootstrap.k3sVersion,
    NODE_NAME: node.name,
    TLS_SAN: node.host,
    SERVER_URL: join.serverUrl,
    CLUSTER_INIT: join.clusterInit,
    NODE_LABELS: nodeLabels(node, sku).join(","),
    // The host's share of memory, out of the pods' reach (Thor: the same RAM as the GPU's).
    KUBELET_ARGS: kubeletMemoryArgs(sku).join("\n"),
    // Traffic enters through the inference NodePort; the bundled ingress would only hold memory and ports.
    DISABLE: "traefik",
    AIRGAP: airgap !== undefined,
    // K3s imports these before its kubelet starts: its own images, and the stack's unless the import step places
    // them once K3s runs.
    AIRGAP_IMAGES: airgap
      ? airgapFiles(airgap, sku)
          .filter((f) => f.image && !(f.stack && importsLate(bootstrap)))
          .map((f) => path.posix.basename(f.remotePath))
          .join(" ")
      : "",
  };
}

/**
 * Whether the stack's image tarballs are placed after K3s starts (the airgap-import step): an air gap that has
 * them, on a K3s release whose image watcher imports files added while it runs. Otherwise K3s imports them at start.
 */
export function importsLate(bootstrap: Pick<NodeBootstrap, "k3sVersion" | "airgap">): boolean {
  return (bootstrap.airgap?.stackImageTarballs.length ?? 0) > 0 && k3sWatchesImages(bootstrap.k3sVersion);
}

/**
 * The airgap-import step's script parameters: the staged tarballs it places, the images it waits for, and how long
 * it waits (from the tarballs' sizes on the machine running pulumi, in the order of `tarballs`).
 */
export function airgapImportParams(
  tarballs: readonly AirgapFile[],
  bytes: readonly number[],
  images: readonly string[],
): ScriptParams {
  return {
    TARBALLS: tarballs.map((f) => path.posix.basename(f.remotePath)).join(" "),
    IMAGES: images.join("\n"),
    TIMEOUT_SECONDS: importTimeoutSeconds(bytes),
  };
}

/** The k3s-fetch step's script parameters: the pinned release and the node's architecture. */
export function fetchParams(bootstrap: Pick<NodeBootstrap, "sku" | "k3sVersion">): ScriptParams {
  return {
    K3S_VERSION: bootstrap.k3sVersion,
    ARCH: bootstrap.sku.arch,
    RELEASE_URL: K3S_RELEASES.releaseUrl,
    INSTALL_URL: K3S_RELEASES.installUrl,
  };
}

/** The image-prepull step's script parameters. */
export function prePullParams(
  images: readonly string[],
  bootstrap: Pick<NodeBootstrap, "k3sVersion">,
): ScriptParams {
  return { IMAGES: images.join("\n"), K3S_VERSION: bootstrap.k3sVersion };
}

export interface AirgapFile {
  id: string;
  source: string;
  remotePath: string;
  /** An image tarball, for K3s's images directory. */
  image: boolean;
  /** One of the stack's image tarballs (not K3s's own). */
  stack: boolean;
  /** A stack tarball's local size and mtime, as the config read them. */
  stat?: FileStat;
}

/**
 * Where each air-gap artifact is staged: the binary and installer, K3s's own images tarball (keeping its
 * compression suffix, which K3s reads) and the tarball of every image the stack runs, under `images/`.
 */
export function airgapFiles(airgap: AirgapConfig, sku: SkuProfile): AirgapFile[] {
  const ext = /\.tar(\.gz|\.zst)?$/.exec(path.basename(airgap.imagesTarball))?.[0] ?? ".tar";
  return [
    { id: "k3s", source: airgap.k3sBinary, remotePath: `${AIRGAP_DIR}/k3s`, image: false, stack: false },
    {
      id: "installer",
      source: airgap.installScript,
      remotePath: `${AIRGAP_DIR}/install.sh`,
      image: false,
      stack: false,
    },
    {
      id: "images",
      source: airgap.imagesTarball,
      remotePath: `${AIRGAP_DIR}/images/k3s-airgap-images-${sku.arch}${ext}`,
      image: true,
      stack: false,
    },
    ...(airgap.stackImageTarballs ?? []).map((source, i) => {
      const stat = airgap.stackImageStats?.[i];
      return {
        id: `image-${path.basename(source).replace(/\.tar(\.gz|\.zst)?$/, "")}`,
        source,
        remotePath: `${AIRGAP_DIR}/images/${path.basename(source)}`,
        image: true,
        stack: true,
        ...(stat ? { stat } : {}),
      };
    }),
  ];
}

/**
 * K3s's registries.yaml body (JSON, which YAML reads as is). Holds credentials: callers keep it a Pulumi secret and
 * send it on stdin only.
 */
export function registriesYaml(registries: RegistriesConfig): string {
  return `${JSON.stringify({ mirrors: registries.mirrors, configs: registries.configs }, null, 2)}\n`;
}
