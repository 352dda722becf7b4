import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";

import { SkuProfile } from "../config/skus";
import {
  ANNOTATIONS,
  configHash,
  DCGM_EXPORTER,
  DEVICE_PLUGIN,
  GPU_RESOURCE,
  gpuNodeSelector,
  NODE_LABELS,
  PRIORITY_CLASSES,
  PULUMI_ANNOTATIONS,
  RUNTIME_CLASS,
} from "./names";

/** A DaemonSet pod's share of a rollout: the old pod's default grace period plus a first image pull. */
export const DAEMONSET_POD_ROLLOUT_SECONDS = 30 + 600;

/**
 * How long Pulumi waits for a GPU DaemonSet: the default rolling update replaces one node's pod at a time, and
 * every GPU node may have to pull the image first. Never below the provider's own 10 minutes.
 */
export function daemonSetAwaitSeconds(gpuNodes: number): number {
  return Math.max(600, Math.max(1, gpuNodes) * DAEMONSET_POD_ROLLOUT_SECONDS);
}

/**
 * Options for the `nvidia` RuntimeClass, which K3s ships itself (manifests/runtimes.yaml). It is declared as a
 * RuntimeClassPatch: Patch resources are server-side applied on create by every pulumi-kubernetes version
 * (4.29+ refuse to create an existing plain resource unless the provider sets `upsertExistingObjects`), and
 * `retainOnDelete` keeps `pulumi destroy` from touching K3s's object (a Patch's delete would relinquish our
 * fields, which fails when no other manager holds `handler`). The alias adopts state from the earlier plain
 * RuntimeClass instead of deleting the object.
 */
export function runtimeClassOptions(parent: pulumi.Resource): pulumi.CustomResourceOptions {
  return {
    parent,
    retainOnDelete: true,
    aliases: [{ type: "kubernetes:node.k8s.io/v1:RuntimeClass" }],
  };
}

export interface GpuSharingArgs {
  sku: SkuProfile;
  timeSlicingReplicas: number;
  /** GPU nodes the DaemonSets roll over, one at a time. */
  gpuNodes: number;
  devicePluginVersion: string;
  dcgmExporter: boolean;
  dcgmExporterImage: string;
  /**
   * What the plugin pods need before their DaemonSets are applied: the GPU node labels they select, the priority
   * class they run at, the images an air gap stages. The namespace, RuntimeClass and ConfigMaps need none of it.
   */
  podsAfter?: pulumi.Resource[];
}

/**
 * Shares each GPU by time-slicing: the `nvidia` RuntimeClass, the NVIDIA device plugin with its time-slicing
 * config, and DCGM metrics where the SKU has DCGM.
 */
export class GpuSharing extends pulumi.ComponentResource {
  public readonly runtimeClass: k8s.node.v1.RuntimeClassPatch;
  public readonly config: k8s.core.v1.ConfigMap;
  public readonly devicePlugin: k8s.apps.v1.DaemonSet;
  public readonly dcgmExporter?: k8s.apps.v1.DaemonSet;

  constructor(name: string, args: GpuSharingArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:gpu:GpuSharing", name, {}, opts);

    // K3s ships this object: adopt it on every provider version, never delete it (see runtimeClassOptions).
    this.runtimeClass = new k8s.node.v1.RuntimeClassPatch(
      `${name}-runtime-class`,
      { metadata: { name: RUNTIME_CLASS }, handler: RUNTIME_CLASS },
      runtimeClassOptions(this),
    );
    const ns = new k8s.core.v1.Namespace(
      `${name}-namespace`,
      {
        metadata: {
          name: DEVICE_PLUGIN.namespace,
          // The plugin mounts host paths (the kubelet's device-plugin socket directory).
          labels: { "pod-security.kubernetes.io/enforce": "privileged" },
        },
      },
      { parent: this },
    );
    const inNs = { parent: this, dependsOn: [ns, this.runtimeClass] };
    const configText = timeSlicingConfig(args.sku, args.timeSlicingReplicas);
    this.config = new k8s.core.v1.ConfigMap(
      `${name}-time-slicing`,
      {
        metadata: { name: DEVICE_PLUGIN.configMap, namespace: DEVICE_PLUGIN.namespace },
        data: { "config.yaml": configText },
      },
      inNs,
    );
    this.devicePlugin = new k8s.apps.v1.DaemonSet(
      `${name}-device-plugin`,
      devicePluginSpec(args, configHash(configText)),
      { ...inNs, dependsOn: [ns, this.runtimeClass, this.config, ...(args.podsAfter ?? [])] },
    );

    if (args.dcgmExporter) {
      const counters = new k8s.core.v1.ConfigMap(
        `${name}-dcgm-metrics`,
        {
          metadata: { name: DCGM_EXPORTER.configMap, namespace: DEVICE_PLUGIN.namespace },
          data: { "metrics.csv": dcgmCounters(args.sku) },
        },
        inNs,
      );
      this.dcgmExporter = new k8s.apps.v1.DaemonSet(
        `${name}-dcgm-exporter`,
        dcgmExporterSpec(args.dcgmExporterImage, configHash(dcgmCounters(args.sku)), args.gpuNodes),
        { ...inNs, dependsOn: [ns, this.runtimeClass, counters, ...(args.podsAfter ?? [])] },
      );
    }

    this.registerOutputs({
      runtimeClass: this.runtimeClass.metadata.name,
      devicePlugin: this.devicePlugin.metadata.name,
      dcgmExporter: this.dcgmExporter?.metadata.name,
    });
  }
}

/** The device plugin's config file: every GPU on a node is advertised `replicas` times. */
export function timeSlicingConfig(sku: SkuProfile, replicas: number): string {
  return yaml.dump(
    {
      version: "v1",
      flags: {
        migStrategy: "none",
        failOnInitError: true,
        deviceDiscoveryStrategy: sku.deviceDiscovery,
        plugin: { passDeviceSpecs: false, deviceListStrategy: "envvar", deviceIDStrategy: "uuid" },
      },
      sharing: {
        timeSlicing: {
          // Keep the plain resource name so workloads and the seed's quota ask for `nvidia.com/gpu`.
          renameByDefault: false,
          // A request for two slices would get no more compute than one: refuse it instead.
          failRequestsGreaterThanOne: true,
          resources: [{ name: GPU_RESOURCE, replicas }],
        },
      },
    },
    { lineWidth: -1 },
  );
}

export function devicePluginSpec(
  args: GpuSharingArgs,
  configSha256: string,
): k8s.types.input.apps.v1.DaemonSet {
  return {
    metadata: {
      name: DEVICE_PLUGIN.daemonSet,
      namespace: DEVICE_PLUGIN.namespace,
      labels: DEVICE_PLUGIN.labels,
      annotations: { [PULUMI_ANNOTATIONS.timeoutSeconds]: String(daemonSetAwaitSeconds(args.gpuNodes)) },
    },
    spec: {
      selector: { matchLabels: DEVICE_PLUGIN.labels },
      updateStrategy: { type: "RollingUpdate" },
      template: {
        metadata: {
          labels: DEVICE_PLUGIN.labels,
          // The plugin reads its config at start: a new config rolls the pods.
          annotations: { [ANNOTATIONS.configHash]: configSha256 },
        },
        spec: {
          // Without the nvidia runtime the plugin sees no NVML/Tegra libraries and crash-loops.
          runtimeClassName: RUNTIME_CLASS,
          priorityClassName: "system-node-critical",
          tolerations: [
            { key: "CriticalAddonsOnly", operator: "Exists" },
            { key: GPU_RESOURCE, operator: "Exists", effect: "NoSchedule" },
          ],
          // Works without Node Feature Discovery: K3s labels our GPU nodes at registration.
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  { matchExpressions: [{ key: NODE_LABELS.gpuPresent, operator: "In", values: ["true"] }] },
                ],
              },
            },
          },
          containers: [
            {
              name: "nvidia-device-plugin-ctr",
              image: `nvcr.io/nvidia/k8s-device-plugin:${args.devicePluginVersion}`,
              env: [
                { name: "CONFIG_FILE", value: "/config/config.yaml" },
                { name: "DEVICE_DISCOVERY_STRATEGY", value: args.sku.deviceDiscovery },
                { name: "FAIL_ON_INIT_ERROR", value: "true" },
                { name: "NVIDIA_VISIBLE_DEVICES", value: "all" },
                { name: "NVIDIA_DRIVER_CAPABILITIES", value: "compute,utility" },
              ],
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
              resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
              volumeMounts: [
                { name: "device-plugin", mountPath: "/var/lib/kubelet/device-plugins" },
                { name: "config", mountPath: "/config", readOnly: true },
                { name: "cdi-root", mountPath: "/var/run/cdi" },
              ],
            },
          ],
          volumes: [
            { name: "device-plugin", hostPath: { path: "/var/lib/kubelet/device-plugins" } },
            {
              name: "config",
              configMap: {
                name: DEVICE_PLUGIN.configMap,
                items: [{ key: "config.yaml", path: "config.yaml" }],
              },
            },
            { name: "cdi-root", hostPath: { path: "/var/run/cdi", type: "DirectoryOrCreate" } },
          ],
        },
      },
    },
  };
}

/** DCGM fields the SKU supports; profiling (DCP) fields only where the GPU has them. */
export function dcgmCounters(sku: SkuProfile): string {
  const fields = [
    ["DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."],
    ["DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."],
    ["DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."],
    ["DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."],
    ["DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."],
    ["DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."],
    ["DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."],
    ["DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."],
  ];
  if (sku.metrics.dcgmProfiling) {
    fields.push(["DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."]);
  }
  return `# ${sku.displayName}: ${sku.metrics.note}\n` + fields.map((f) => f.join(", ")).join("\n") + "\n";
}

export function dcgmExporterSpec(
  image: string,
  countersHash: string,
  gpuNodes: number,
): k8s.types.input.apps.v1.DaemonSet {
  return {
    metadata: {
      name: DCGM_EXPORTER.name,
      namespace: DEVICE_PLUGIN.namespace,
      labels: DCGM_EXPORTER.labels,
      annotations: { [PULUMI_ANNOTATIONS.timeoutSeconds]: String(daemonSetAwaitSeconds(gpuNodes)) },
    },
    spec: {
      selector: { matchLabels: DCGM_EXPORTER.labels },
      template: {
        metadata: { labels: DCGM_EXPORTER.labels, annotations: { [ANNOTATIONS.configHash]: countersHash } },
        spec: {
          runtimeClassName: RUNTIME_CLASS,
          priorityClassName: PRIORITY_CLASSES.normal.name,
          tolerations: [{ key: GPU_RESOURCE, operator: "Exists", effect: "NoSchedule" }],
          nodeSelector: gpuNodeSelector(),
          containers: [
            {
              name: DCGM_EXPORTER.name,
              image,
              args: ["-f", "/etc/dcgm-exporter/metrics.csv"],
              env: [
                { name: "NVIDIA_VISIBLE_DEVICES", value: "all" },
                { name: "DCGM_EXPORTER_KUBERNETES", value: "true" },
              ],
              ports: [{ name: "metrics", containerPort: 9400 }],
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
              resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "512Mi" } },
              volumeMounts: [
                { name: "metrics", mountPath: "/etc/dcgm-exporter", readOnly: true },
                { name: "pod-resources", mountPath: "/var/lib/kubelet/pod-resources", readOnly: true },
              ],
            },
          ],
          volumes: [
            { name: "metrics", configMap: { name: DCGM_EXPORTER.configMap } },
            { name: "pod-resources", hostPath: { path: "/var/lib/kubelet/pod-resources" } },
          ],
        },
      },
    },
  };
}
