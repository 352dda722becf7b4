import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";

import { SkuProfile } from "../config/skus";
import { AirgapConfig, NodeConfig } from "../config/stack";
import { remoteCommand, ScriptParams } from "../scripts/render";

export const AIRGAP_DIR = "/var/lib/forge-edge/airgap";
/** Bounded SSH dialing: an unreachable node fails in about a minute instead of hanging the update. */
export const DIAL = { dialErrorLimit: 4, perDialTimeout: 15 } as const;

export interface EdgeNodeArgs {
  node: NodeConfig;
  sku: SkuProfile;
  /** The SSH private key, a Pulumi secret. */
  sshPrivateKey: pulumi.Input<string>;
  k3sVersion: string;
  toolkitVersion: string;
  /** The cluster token, a Pulumi secret; sent to the node on stdin only. */
  token: pulumi.Input<string>;
  /** `https://<first server>:6443`; empty for the first server. */
  serverUrl: string;
  /** First server of an HA cluster: starts embedded etcd. */
  clusterInit: boolean;
  airgap?: AirgapConfig;
  /** Steps of earlier rollout waves: nothing of this node starts before they succeed. */
  after?: pulumi.Resource[];
}

/**
 * One edge box: NVIDIA runtime first, then K3s (which detects runtimes only at start). Each step's `delete` is
 * its uninstall, so removing the node from the stack, or `pulumi destroy`, leaves the box as it was.
 */
export class EdgeNode extends pulumi.ComponentResource {
  public readonly runtime: command.remote.Command;
  public readonly k3s: command.remote.Command;
  /** What the runtime step found on the node, e.g. `gpus=1 tegra=false runtime=/usr/bin/nvidia-container-runtime`. */
  public readonly gpuReport: pulumi.Output<string>;

  constructor(name: string, args: EdgeNodeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:node:EdgeNode", name, {}, opts);
    const { node, sku } = args;
    const connection = nodeConnection(node, args.sshPrivateKey);
    const timeouts = { create: "20m", update: "20m", delete: "10m" };
    const after = args.after ?? [];

    const copies = args.airgap
      ? airgapFiles(args.airgap, sku).map(
          (f) =>
            new command.remote.CopyToRemote(
              `${name}-airgap-${f.id}`,
              { connection, source: new pulumi.asset.FileAsset(f.source), remotePath: f.remotePath },
              { parent: this, customTimeouts: timeouts, dependsOn: after },
            ),
        )
      : [];

    this.runtime = new command.remote.Command(
      `${name}-nvidia-runtime`,
      {
        connection,
        create: remoteCommand("nvidia-runtime", runtimeParams(args), node.user),
        delete: remoteCommand("nvidia-runtime-revert", {}, node.user),
        addPreviousOutputInEnv: false,
      },
      { parent: this, customTimeouts: timeouts, deleteBeforeReplace: true, dependsOn: after },
    );

    this.k3s = new command.remote.Command(
      `${name}-k3s`,
      {
        connection,
        create: remoteCommand("k3s-install", k3sParams(args), node.user),
        delete: remoteCommand("k3s-uninstall", { ROLE: node.role }, node.user),
        // Secret whatever the caller passed: the token must never be stored or shown in plaintext.
        stdin: pulumi.secret(args.token),
        addPreviousOutputInEnv: false,
      },
      {
        parent: this,
        dependsOn: [this.runtime, ...copies],
        customTimeouts: timeouts,
        deleteBeforeReplace: true,
      },
    );

    this.gpuReport = this.runtime.stdout;
    this.registerOutputs({ gpuReport: this.gpuReport, k3s: this.k3s.stdout });
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

export function runtimeParams(args: Pick<EdgeNodeArgs, "node" | "sku" | "toolkitVersion">): ScriptParams {
  const { sku } = args;
  return {
    SKU: sku.name,
    PRODUCT_MATCH: sku.gpu.productMatch,
    DISCOVERY: sku.deviceDiscovery,
    EXPECT_GPUS: args.node.gpus,
    DRIVER_MIN_BRANCH: sku.driver.minBranch,
    DRIVER_MAX_BRANCH: sku.driver.maxBranch,
    TOOLKIT_VERSION: args.toolkitVersion,
    TOOLKIT_SOURCE: sku.toolkitSource,
  };
}

/** Labels K3s applies at registration: the device plugin's affinity and our scheduling keys, no NFD needed. */
export function nodeLabels(node: NodeConfig, sku: SkuProfile): string[] {
  return [
    "nvidia.com/gpu.present=true",
    `forge-edge.io/sku=${sku.name}`,
    `forge-edge.io/gpu-count=${node.gpus}`,
    `forge-edge.io/device-discovery=${sku.deviceDiscovery}`,
  ];
}

export function k3sParams(
  args: Pick<EdgeNodeArgs, "node" | "sku" | "k3sVersion" | "serverUrl" | "clusterInit" | "airgap">,
): ScriptParams {
  const { node } = args;
  return {
    ROLE: node.role,
    K3S_VERSION: args.k3sVersion,
    NODE_NAME: node.name,
    TLS_SAN: node.host,
    SERVER_URL: args.serverUrl,
    CLUSTER_INIT: args.clusterInit,
    NODE_LABELS: nodeLabels(node, args.sku).join(","),
    // Traffic enters through the inference NodePort; the bundled ingress would only hold memory and ports.
    DISABLE: "traefik",
    AIRGAP: args.airgap !== undefined,
    INSTALL_URL: "https://get.k3s.io",
  };
}

export interface AirgapFile {
  id: string;
  source: string;
  remotePath: string;
}

/** Where each air-gap artifact lands; the images tarball keeps its compression suffix, which K3s reads. */
export function airgapFiles(airgap: AirgapConfig, sku: SkuProfile): AirgapFile[] {
  const ext = /\.tar(\.gz|\.zst)?$/.exec(path.basename(airgap.imagesTarball))?.[0] ?? ".tar";
  return [
    { id: "k3s", source: airgap.k3sBinary, remotePath: `${AIRGAP_DIR}/k3s` },
    { id: "installer", source: airgap.installScript, remotePath: `${AIRGAP_DIR}/install.sh` },
    {
      id: "images",
      source: airgap.imagesTarball,
      remotePath: `${AIRGAP_DIR}/k3s-airgap-images-${sku.arch}${ext}`,
    },
  ];
}
