/**
 * The forge-edge program: stack config → SKU profile → nodes over SSH → cluster provider → GPU sharing →
 * inference stack. index.ts only calls it, so tests and the Automation API run exactly this code.
 */
import * as pulumi from "@pulumi/pulumi";

import { GpuSharing } from "./components/gpuSharing";
import { InferenceStack } from "./components/inferenceStack";
import { K3sCluster, NodeSummary } from "./components/k3sCluster";
import { Platform } from "./components/platform";
import { loadConfig } from "./config/pulumi";
import { StackConfig } from "./config/stack";

export interface ForgeEdgeOutputs {
  sku: string;
  endpoint: string;
  healthUrl: string;
  kubeconfig: pulumi.Output<string>;
  nodes: NodeSummary[];
  gpuSlicesPerNode: Record<string, number>;
  gpuReports: pulumi.Output<Record<string, string>>;
  autoscaling: { metric: string; reason: string };
  /** Node names per rollout wave: the order in which a bootstrap or a K3s upgrade walks the fleet. */
  rolloutWaves: string[][];
}

export function forgeEdge(config: StackConfig, sshPrivateKey: pulumi.Input<string>): ForgeEdgeOutputs {
  const cluster = new K3sCluster("edge", {
    stack: config.stack,
    sku: config.sku,
    nodes: config.nodes,
    sshPrivateKey,
    k3sVersion: config.k3sVersion,
    toolkitVersion: config.toolkitVersion,
    timeSlicingReplicas: config.timeSlicingReplicas,
    rollout: config.rollout,
    airgap: config.airgap,
    registries: config.registries,
  });
  const k8sOpts = { providers: { kubernetes: cluster.provider }, dependsOn: cluster.ready };

  const platform = new Platform("platform", { quota: config.quota }, k8sOpts);
  const gpu = new GpuSharing(
    "gpu",
    {
      sku: config.sku,
      timeSlicingReplicas: config.timeSlicingReplicas,
      gpuNodes: config.nodes.length,
      devicePluginVersion: config.devicePluginVersion,
      dcgmExporter: config.dcgmExporter,
      dcgmExporterImage: config.dcgmExporterImage,
    },
    { ...k8sOpts, dependsOn: [...cluster.ready, platform] },
  );
  new InferenceStack(
    "inference",
    {
      sku: config.sku,
      inference: config.inference,
      storage: config.storage,
      gpuNodes: config.nodes.length,
      entryNode: config.nodes[0].name,
      nodePort: config.nodePort,
      allowedCidrs: config.allowedCidrs,
    },
    { ...k8sOpts, dependsOn: [...cluster.ready, platform, gpu] },
  );

  const entry = config.nodes[0].host.includes(":") ? `[${config.nodes[0].host}]` : config.nodes[0].host;
  const endpoint = `http://${entry}:${config.nodePort}`;
  return {
    sku: config.sku.name,
    endpoint,
    healthUrl: `${endpoint}/health`,
    kubeconfig: cluster.kubeconfig,
    nodes: cluster.summary,
    gpuSlicesPerNode: cluster.gpuSlicesPerNode,
    gpuReports: pulumi.output(
      Object.fromEntries(cluster.nodes.map((n, i) => [config.nodes[i].name, n.gpuReport])),
    ),
    autoscaling: { metric: config.sku.hpa.metric, reason: config.sku.hpa.reason },
    rolloutWaves: cluster.waves,
  };
}

/** Entry point for the CLI and for Automation API inline programs. */
export function run(): ForgeEdgeOutputs {
  const { config, sshPrivateKey } = loadConfig();
  return forgeEdge(config, sshPrivateKey);
}
