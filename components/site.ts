import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

import { SiteBatch } from "../config/sections/rollout";
import { SiteConfig, StackConfig } from "../config/stack";
import { remoteCommand } from "../scripts/render";
import { nodeConnection } from "./edgeNode";
import { GpuSharing } from "./gpuSharing";
import { deploymentAwaitSeconds, InferenceStack } from "./inferenceStack";
import { K3sCluster, NodeSummary } from "./k3sCluster";
import { INFERENCE, NAMESPACE } from "./names";
import { Platform } from "./platform";

/** What a site needs from the stack: the SKU-wide settings, the same for every site. */
export type FleetSettings = Pick<
  StackConfig,
  | "stack"
  | "sku"
  | "bootstrap"
  | "rollout"
  | "inference"
  | "timeSlicingReplicas"
  | "devicePluginVersion"
  | "dcgmExporter"
  | "dcgmExporterImage"
>;

export interface SiteArgs {
  /** The site: its nodes and the keys it may override (config/sections/sites.ts). */
  site: SiteConfig;
  fleet: FleetSettings;
  /** The SSH private key, a Pulumi secret. */
  sshPrivateKey: pulumi.Input<string>;
  /** The previous site wave's health gates: nothing of this site touches a box before every one succeeded. */
  after?: pulumi.Resource[];
}

/** What one site serves and is made of: the stack's outputs for a one-site stack, `sites.<name>` for a fleet. */
export interface SiteOutputs {
  endpoint: string;
  healthUrl: string;
  /** The admin kubeconfig of the site's cluster, a Pulumi secret. */
  kubeconfig: pulumi.Output<string>;
  nodes: NodeSummary[];
  /** `nvidia.com/gpu` each node advertises: physical GPUs × time-slicing replicas. */
  gpuSlicesPerNode: Record<string, number>;
  gpuReports: pulumi.Output<Record<string, string>>;
  /** Node names per rollout wave: the order in which a bootstrap or a K3s upgrade walks the site. */
  rolloutWaves: string[][];
}

/**
 * One site of the fleet: its own K3s cluster (token, kubeconfig, Kubernetes provider), platform, GPU sharing and
 * inference stack. Its resources are named after it (`<site>-edge`, `<site>-<node>`, ...): two sites may have nodes
 * of the same name, and `--target` can pick a site by name.
 */
export class Site extends pulumi.ComponentResource {
  public readonly outputs: SiteOutputs;
  public readonly cluster: K3sCluster;
  public readonly inference: InferenceStack;
  /**
   * The site's health gate, which the next site wave waits for: a check on the first server that the inference
   * Deployment is fully available, after the site's nodes and its Deployment (DeployedSite.healthy).
   */
  public readonly health: command.remote.Command;

  constructor(name: string, args: SiteArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:site:Site", name, {}, opts);
    const built = deploySite(
      {
        prefix: `${name}-`,
        clusterIdentifier: siteClusterIdentifier(args.fleet.stack, args.site),
        parent: this,
      },
      args,
    );
    this.cluster = built.cluster;
    this.inference = built.inference;
    this.outputs = built.outputs;
    this.health = healthGate(name, args, built, this);
    const { kubeconfig, ...plain } = this.outputs;
    this.registerOutputs({ ...plain, kubeconfig });
  }
}

/**
 * The Deployment's own await proves it available when it changes; this check proves it again whenever a node step
 * of the site changes (its triggers), since a K3s upgrade or a runtime change restarts the pods without changing
 * the Deployment. It runs on the first server (`k3s kubectl`), so no client tool is needed where pulumi runs.
 */
function healthGate(
  name: string,
  args: SiteArgs,
  built: DeployedSite,
  parent: pulumi.Resource,
): command.remote.Command {
  const [first] = args.site.nodes;
  return new command.remote.Command(
    `${name}-health`,
    {
      connection: nodeConnection(first, args.sshPrivateKey),
      create: remoteCommand(
        "site-health",
        {
          NAMESPACE,
          DEPLOYMENT: INFERENCE.name,
          TIMEOUT: deploymentAwaitSeconds(args.fleet.inference, args.site.nodes.length),
        },
        first.user,
      ),
      triggers: built.cluster.nodes.flatMap((n) => [n.runtime.create, n.k3s.create]),
      addPreviousOutputInEnv: false,
    },
    { parent, dependsOn: built.healthy },
  );
}

/** How a site's resources are named and where they hang. */
export interface SiteLayout {
  /** Put before every resource name of the site: `<site>-`, or empty for the stack-root layout. */
  prefix: string;
  clusterIdentifier: string;
  /** The Site component; none for the stack-root layout (a top-level `nodes` stack), as before sites existed. */
  parent?: pulumi.Resource;
}

/**
 * The layout of a stack configured with top-level `nodes`: its resources at the stack's root with the names they
 * had before sites existed (`edge`, `platform`, `gpu`, `inference`, nodes by their own names), and the same provider
 * identity, so that upgrading such a stack renames and replaces nothing (tests/unit/sites.test.ts holds the URNs).
 */
export function stackRootLayout(stack: string, site: SiteConfig): SiteLayout {
  return { prefix: "", clusterIdentifier: `forge-edge/${stack}/${site.nodes[0].name}` };
}

/**
 * A site's provider identity: the stack, the site and its first server. The kubeconfig may change (the read step
 * reruns, the certificate rotates) without replacing any object; a new first server is a new cluster.
 */
export function siteClusterIdentifier(stack: string, site: SiteConfig): string {
  return `forge-edge/${stack}/${site.name}/${site.nodes[0].name}`;
}

export interface DeployedSite {
  cluster: K3sCluster;
  inference: InferenceStack;
  /**
   * The site's health gate: every node bootstrapped (its K3s step and labels) and the inference Deployment fully
   * available (the provider's await: every replica updated and passing its readiness probe on `/health/ready`).
   */
  healthy: pulumi.Resource[];
  outputs: SiteOutputs;
}

/**
 * The resources of one site, flow order: nodes over SSH → cluster provider → platform → GPU sharing → inference.
 * The Site component calls it with itself as parent; a top-level `nodes` stack calls it at the stack's root.
 */
export function deploySite(layout: SiteLayout, args: SiteArgs): DeployedSite {
  const { site, fleet } = args;
  const name = (n: string) => `${layout.prefix}${n}`;
  const parent = layout.parent ? { parent: layout.parent } : {};
  const cluster = new K3sCluster(
    name("edge"),
    {
      nodes: site.nodes,
      bootstrap: fleet.bootstrap,
      sshPrivateKey: args.sshPrivateKey,
      rollout: fleet.rollout,
      clusterIdentifier: layout.clusterIdentifier,
      nodeResourcePrefix: layout.prefix,
      after: args.after,
    },
    parent,
  );
  const k8sOpts = { ...parent, providers: { kubernetes: cluster.provider } };

  // Objects wait for what they use, not for everything before them: every node's K3s step holds back the whole
  // flow, but the node labels, the priority classes, staged images and advertised GPU slices hold back only the
  // pods that need them (the DaemonSets and the Deployment), so the objects around them are applied meanwhile.
  const labels = new Set<pulumi.Resource>(cluster.labels);
  const nodesUp = cluster.ready.filter((r) => !labels.has(r));
  const platform = new Platform(name("platform"), { quota: site.quota }, { ...k8sOpts, dependsOn: nodesUp });
  const gpu = new GpuSharing(
    name("gpu"),
    {
      sku: fleet.sku,
      timeSlicingReplicas: fleet.timeSlicingReplicas,
      gpuNodes: site.nodes.length,
      devicePluginVersion: fleet.devicePluginVersion,
      dcgmExporter: fleet.dcgmExporter,
      dcgmExporterImage: fleet.dcgmExporterImage,
      // The DCGM exporter runs at a platform priority class; nothing else of the platform concerns the GPU objects.
      podsAfter: [...cluster.labels, ...platform.priorityClasses, ...cluster.imagesReady],
    },
    { ...k8sOpts, dependsOn: nodesUp },
  );
  const inference = new InferenceStack(
    name("inference"),
    {
      sku: fleet.sku,
      inference: fleet.inference,
      storage: site.storage,
      gpuNodes: site.nodes.length,
      entryNode: site.nodes[0].name,
      nodePort: site.nodePort,
      allowedCidrs: site.allowedCidrs,
      podsAfter: [gpu.devicePlugin, ...cluster.labels, ...cluster.imagesReady],
    },
    { ...k8sOpts, dependsOn: [...nodesUp, platform] },
  );
  return {
    cluster,
    inference,
    healthy: [...cluster.ready, inference.deployment],
    outputs: siteOutputs(site, fleet.timeSlicingReplicas, cluster),
  };
}

/**
 * Site waves, by site name in config order: the canary wave (`canarySites` sites; none when 0), then batches of
 * `batch` sites (a count, 0 for all the rest at once, or a share of the fleet rounded up). Each wave's sites start
 * only when every site of the previous wave is healthy, so a failing site stops the later waves while the sites
 * already done keep serving.
 */
export function siteWaves(sites: readonly string[], canarySites: number, batch: SiteBatch): string[][] {
  const canary = sites.slice(0, canarySites);
  const rest = sites.slice(canary.length);
  const waves = canary.length > 0 ? [canary] : [];
  const size =
    "percent" in batch
      ? Math.max(1, Math.ceil((sites.length * batch.percent) / 100))
      : batch.count > 0
        ? batch.count
        : rest.length;
  for (let i = 0; i < rest.length; i += size) waves.push(rest.slice(i, i + size));
  return waves;
}

function siteOutputs(site: SiteConfig, timeSlicingReplicas: number, cluster: K3sCluster): SiteOutputs {
  const [entryNode] = site.nodes;
  const entry = entryNode.host.includes(":") ? `[${entryNode.host}]` : entryNode.host;
  const endpoint = `http://${entry}:${site.nodePort}`;
  return {
    endpoint,
    healthUrl: `${endpoint}/health`,
    kubeconfig: cluster.kubeconfig,
    nodes: cluster.summary,
    gpuSlicesPerNode: gpuSlicesPerNode(site.nodes, timeSlicingReplicas),
    gpuReports: pulumi.output(
      Object.fromEntries(cluster.nodes.map((n, i) => [site.nodes[i].name, n.gpuReport])),
    ),
    rolloutWaves: cluster.waves,
  };
}

/** `nvidia.com/gpu` each node advertises: physical GPUs × time-slicing replicas. */
export function gpuSlicesPerNode(
  nodes: SiteConfig["nodes"],
  timeSlicingReplicas: number,
): Record<string, number> {
  return Object.fromEntries(nodes.map((n) => [n.name, n.gpus * timeSlicingReplicas]));
}
