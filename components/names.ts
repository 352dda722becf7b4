/**
 * Every Kubernetes name forge-edge promises. Operators type them (the design document's and the README's `kubectl`
 * commands), the policy pack finds objects by them, and objects find each other by them (selectors, a ConfigMap
 * mounted or read as environment, the HPA's target). Components, node labels and the policy pack import them from
 * here, so renaming an object renames it for all of them; tests/unit/names.test.ts holds them to the design.
 *
 * Names of upstream conventions (`kubernetes.io/hostname`, the Pod Security labels, `system-node-critical`) are
 * Kubernetes's, not ours, and stay where they are used.
 */
import { sha256 } from "../scripts/render";

/** The namespace every Forge workload runs in. */
export const NAMESPACE = "forge-cognition";

/** The seed's priority ladder: inference preempts everything else when GPU slices run out. */
export const PRIORITY_CLASSES = {
  llmCritical: { name: "forge-llm-critical", value: 1_000_000, description: "LLM inference" },
  high: { name: "forge-high", value: 100_000, description: "Milvus, embeddings" },
  normal: { name: "forge-normal", value: 10_000, description: "Monitoring, logging" },
  low: { name: "forge-low", value: 1_000, description: "Batch jobs" },
} as const;

/** The quota and container defaults of NAMESPACE. */
export const PLATFORM = {
  quota: "forge-cognition-quota",
  limitRange: "forge-cognition-limits",
} as const;

/** The inference server: its Deployment, Service, PDB, HPA, NetworkPolicy and container share `name`. */
export const INFERENCE = {
  name: "inference-server",
  labels: { app: "inference-server" },
  configMap: "inference-config",
  /** The NetworkPolicy that denies whatever the inference server's own policy does not allow. */
  defaultDenyPolicy: "default-deny",
} as const;

/** The extended resource the device plugin advertises (one per time slice), also the taint key of GPU nodes. */
export const GPU_RESOURCE = "nvidia.com/gpu";

/** K3s's RuntimeClass for GPU containers; its handler is K3s's containerd runtime of the same name. */
export const RUNTIME_CLASS = "nvidia";

/** The NVIDIA device plugin; the DCGM exporter runs in its namespace too. */
export const DEVICE_PLUGIN = {
  namespace: "nvidia-device-plugin",
  configMap: "nvidia-device-plugin-config",
  daemonSet: "nvidia-device-plugin-daemonset",
  labels: { "app.kubernetes.io/name": "nvidia-device-plugin" },
} as const;

/** The DCGM exporter (SKUs with DCGM): its DaemonSet and container share `name`. */
export const DCGM_EXPORTER = {
  name: "dcgm-exporter",
  configMap: "dcgm-exporter-metrics",
  labels: { "app.kubernetes.io/name": "dcgm-exporter" },
} as const;

/** The labels every node carries: set by K3s at registration and re-applied on every `up`. */
export const NODE_LABELS = {
  /** What GPU workloads select their nodes by: K3s sets it for our nodes, no Node Feature Discovery needed. */
  gpuPresent: "nvidia.com/gpu.present",
  sku: "forge-edge.io/sku",
  gpuCount: "forge-edge.io/gpu-count",
  deviceDiscovery: "forge-edge.io/device-discovery",
} as const;

/** Our annotations. */
export const ANNOTATIONS = {
  /** On a pod template: the hash of the config its pods read at start (see configHash). */
  configHash: "forge-edge.io/config-sha256",
  /** On the HPA: why it scales on the metric it does. */
  metricReason: "forge-edge.io/metric-reason",
} as const;

/** Annotations pulumi-kubernetes reads. */
export const PULUMI_ANNOTATIONS = {
  /** The await timeout on create, update and delete. */
  timeoutSeconds: "pulumi.com/timeoutSeconds",
  /** A server-side apply patch that takes fields over from their current manager. */
  patchForce: "pulumi.com/patchForce",
  /** Create and update return once the API server accepted the object, without the provider's readiness wait. */
  skipAwait: "pulumi.com/skipAwait",
} as const;

/** The `nodeSelector` of a pod that must run on a GPU node. */
export function gpuNodeSelector(): Record<string, string> {
  return { [NODE_LABELS.gpuPresent]: "true" };
}

/**
 * The value of the `configHash` annotation for a config that pods read only at start: the text of a config file,
 * or a ConfigMap's `data` (hashed as JSON). A changed config changes the pod template, so its pods roll by
 * themselves, with no manual `rollout restart`.
 */
export function configHash(config: string | Readonly<Record<string, string>>): string {
  return sha256(typeof config === "string" ? config : JSON.stringify(config));
}
