/**
 * Stands in for the NVIDIA device plugin's kubelet registration. There is no kubelet on the test
 * nodes (kwok fakes them), so nothing would ever advertise `nvidia.com/gpu`. This simulator polls the
 * API: while a DaemonSet pod in namespace `nvidia-device-plugin` is Running on a node, it reads the
 * plugin config that pod mounts from a ConfigMap (time-slicing / MPS sharing) and patches the node's
 * status capacity + allocatable with `replicas × gpuCount` of the advertised resource; when the pod
 * goes away, it removes the resource again — what the real plugin + kubelet do.
 */
import * as yaml from "js-yaml";
import { KubeClient } from "./kubeClient";
import { sleep } from "./proc";

export const DEVICE_PLUGIN_NAMESPACE = "nvidia-device-plugin";
/** Node label the real plugin (with config-manager) uses to pick a named config out of the ConfigMap. */
export const CONFIG_LABEL = "nvidia.com/device-plugin.config";

export interface DevicePluginSimOptions {
  /** Admin kubeconfig of the control plane. */
  kubeconfigPath: string;
  /** Physical GPUs per node name. Nodes not listed are never given GPUs. */
  gpuCountByNode: Record<string, number>;
  /** Namespace watched. Default nvidia-device-plugin. */
  namespace?: string;
  /** Poll interval. Default 500 ms. */
  intervalMs?: number;
}

export interface Advertised {
  /** e.g. "nvidia.com/gpu" or "nvidia.com/gpu.shared" (renameByDefault). */
  resource: string;
  count: number;
  /** Replicas per GPU found in the config (1 without sharing). */
  replicas: number;
  /** "<configmap>/<key>" the config came from, or "" when the pod mounts none. */
  source: string;
  pod: string;
}

export interface DevicePluginSim {
  /** What is currently advertised, by node name. */
  advertised(): Record<string, Advertised>;
  /** Errors seen while polling (bad config, API errors), newest last. */
  errors(): string[];
  /** Runs one reconcile pass now (the poll loop also does). */
  reconcile(): Promise<void>;
  /** Stops polling; with removeAdvertised, also removes what it advertised. Idempotent. */
  stop(opts?: { removeAdvertised?: boolean }): Promise<void>;
}

// --- minimal typed views of the API objects used -------------------------------------------------

interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  deletionTimestamp?: string;
  ownerReferences?: { kind: string; name: string }[];
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[] };
}
interface Container {
  name: string;
  env?: { name: string; value?: string }[];
  volumeMounts?: { name: string; mountPath: string }[];
}
interface Pod {
  metadata: ObjectMeta;
  spec: { nodeName?: string; volumes?: Volume[]; containers: Container[]; initContainers?: Container[] };
  status?: { phase?: string };
}
interface ConfigMap {
  metadata: ObjectMeta;
  data?: Record<string, string>;
}
interface Node {
  metadata: ObjectMeta;
  status?: { capacity?: Record<string, string>; allocatable?: Record<string, string> };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// --- pure parts (exported for unit tests) ---------------------------------------------------------

export interface SharingConfig {
  resource: string;
  replicas: number;
}

/**
 * Reads the device plugin config file (YAML or JSON, `version: v1`). Returns the advertised resource
 * and replicas per GPU for `nvidia.com/gpu`: sharing.timeSlicing (or sharing.mps) resources entry,
 * honouring `rename` and `renameByDefault` (→ `<name>.shared`). No sharing → replicas 1.
 */
export function parseSharingConfig(text: string): SharingConfig {
  const doc: unknown = yaml.load(text);
  if (!isObj(doc)) throw new Error("device plugin config is not a YAML mapping");
  if (doc.version !== undefined && doc.version !== "v1")
    throw new Error(`unsupported config version ${String(doc.version)}`);
  const sharing = doc.sharing;
  const base = "nvidia.com/gpu";
  if (!isObj(sharing)) return { resource: base, replicas: 1 };
  const strategy = isObj(sharing.timeSlicing)
    ? sharing.timeSlicing
    : isObj(sharing.mps)
      ? sharing.mps
      : undefined;
  if (strategy === undefined) return { resource: base, replicas: 1 };
  const resources = strategy.resources;
  if (!Array.isArray(resources)) return { resource: base, replicas: 1 };
  for (const r of resources) {
    if (!isObj(r) || r.name !== base) continue;
    const replicas = typeof r.replicas === "number" ? r.replicas : Number(r.replicas);
    if (!Number.isInteger(replicas) || replicas < 1)
      throw new Error(`nvidia.com/gpu replicas must be a positive integer, got ${String(r.replicas)}`);
    let resource = base;
    if (typeof r.rename === "string" && r.rename !== "")
      resource = r.rename.includes("/") ? r.rename : `nvidia.com/${r.rename}`;
    else if (strategy.renameByDefault === true) resource = `${base}.shared`;
    return { resource, replicas };
  }
  return { resource: base, replicas: 1 };
}

/**
 * Which ConfigMap key holds the config for this pod on this node: the node's
 * `nvidia.com/device-plugin.config` label, then a container's DEFAULT_CONFIG env, then the volume's
 * first `items` key, then `config.yaml`, then the first key in sorted order.
 */
export function pickConfigKey(
  data: Record<string, string>,
  volume: Volume,
  pod: Pod,
  nodeLabels: Record<string, string>,
): string | undefined {
  const keys = Object.keys(data).sort();
  const has = (k: string | undefined): k is string => k !== undefined && k !== "" && keys.includes(k);
  const labelKey = nodeLabels[CONFIG_LABEL];
  if (has(labelKey)) return labelKey;
  for (const c of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) {
    const v = c.env?.find((e) => e.name === "DEFAULT_CONFIG")?.value;
    if (has(v)) return v;
  }
  const item = volume.configMap?.items?.[0]?.key;
  if (has(item)) return item;
  if (has("config.yaml")) return "config.yaml";
  return keys[0];
}

// --- the simulator --------------------------------------------------------------------------------

function isPluginPod(p: Pod): boolean {
  return (
    p.metadata.deletionTimestamp === undefined &&
    p.status?.phase === "Running" &&
    p.spec.nodeName !== undefined &&
    (p.metadata.ownerReferences ?? []).some((o) => o.kind === "DaemonSet")
  );
}

export function startDevicePluginSim(opts: DevicePluginSimOptions): DevicePluginSim {
  const kube = KubeClient.fromKubeconfig(opts.kubeconfigPath);
  const ns = opts.namespace ?? DEVICE_PLUGIN_NAMESPACE;
  const interval = opts.intervalMs ?? 500;
  const current: Record<string, Advertised> = {};
  const errs: string[] = [];
  const err = (m: string): void => {
    if (errs[errs.length - 1] !== m) errs.push(m);
    if (errs.length > 100) errs.shift();
  };

  const patchNode = async (node: string, resources: Record<string, string | null>): Promise<void> => {
    await kube.send(
      "PATCH",
      `/api/v1/nodes/${encodeURIComponent(node)}/status`,
      { status: { capacity: resources, allocatable: resources } },
      "application/merge-patch+json",
      true,
    );
  };

  const desiredFor = async (pod: Pod, node: Node | undefined): Promise<Advertised | undefined> => {
    const nodeName = pod.spec.nodeName ?? "";
    const gpus = opts.gpuCountByNode[nodeName] ?? 0;
    if (gpus <= 0 || node === undefined) return undefined;
    let sharing: SharingConfig = { resource: "nvidia.com/gpu", replicas: 1 };
    let source = "";
    const mounted = new Set(
      [...(pod.spec.initContainers ?? []), ...pod.spec.containers].flatMap((c) =>
        (c.volumeMounts ?? []).map((m) => m.name),
      ),
    );
    const volumes = (pod.spec.volumes ?? []).filter((v) => v.configMap !== undefined && mounted.has(v.name));
    for (const v of volumes) {
      const cmName = v.configMap?.name ?? "";
      const cm = (await kube.get(`/api/v1/namespaces/${ns}/configmaps/${encodeURIComponent(cmName)}`)) as
        | ConfigMap
        | undefined;
      if (cm === undefined) {
        // The real plugin pod would not start without its ConfigMap.
        err(`pod ${pod.metadata.name}: ConfigMap ${ns}/${cmName} not found`);
        return undefined;
      }
      const data = cm.data ?? {};
      const key = pickConfigKey(data, v, pod, node.metadata.labels ?? {});
      if (key === undefined) continue;
      try {
        sharing = parseSharingConfig(data[key]);
      } catch (e) {
        err(`pod ${pod.metadata.name}: ConfigMap ${cmName} key ${key}: ${(e as Error).message}`);
        return undefined;
      }
      source = `${cmName}/${key}`;
      break;
    }
    return {
      resource: sharing.resource,
      replicas: sharing.replicas,
      count: sharing.replicas * gpus,
      source,
      pod: pod.metadata.name,
    };
  };

  const reconcile = async (): Promise<void> => {
    const list = (await kube.get(`/api/v1/namespaces/${ns}/pods`)) as { items: Pod[] } | undefined;
    const pods = (list?.items ?? []).filter(isPluginPod);
    const nodeList = (await kube.get("/api/v1/nodes")) as { items: Node[] } | undefined;
    const nodes = new Map((nodeList?.items ?? []).map((n) => [n.metadata.name, n]));
    const desired: Record<string, Advertised> = {};
    for (const p of pods) {
      const nodeName = p.spec.nodeName ?? "";
      if (desired[nodeName] !== undefined) continue;
      const d = await desiredFor(p, nodes.get(nodeName));
      if (d !== undefined) desired[nodeName] = d;
    }
    for (const [nodeName, d] of Object.entries(desired)) {
      const prev = current[nodeName];
      const node = nodes.get(nodeName);
      const live = node?.status?.allocatable?.[d.resource];
      if (
        prev !== undefined &&
        prev.resource === d.resource &&
        prev.count === d.count &&
        live === String(d.count)
      ) {
        current[nodeName] = d;
        continue;
      }
      const patch: Record<string, string | null> = { [d.resource]: String(d.count) };
      if (prev !== undefined && prev.resource !== d.resource) patch[prev.resource] = null;
      await patchNode(nodeName, patch);
      current[nodeName] = d;
    }
    for (const [nodeName, prev] of Object.entries(current)) {
      if (desired[nodeName] !== undefined) continue;
      if (nodes.has(nodeName)) await patchNode(nodeName, { [prev.resource]: null });
      delete current[nodeName];
    }
  };

  let running = true;
  let inFlight: Promise<void> = Promise.resolve();
  const runOnce = (): Promise<void> => {
    inFlight = inFlight.then(() => reconcile().catch((e: Error) => err(e.message)));
    return inFlight;
  };
  const loop = (async () => {
    while (running) {
      await runOnce();
      await sleep(interval);
    }
  })();

  let stopping: Promise<void> | undefined;
  return {
    advertised: () => ({ ...current }),
    errors: () => [...errs],
    reconcile: runOnce,
    stop: (o) => {
      stopping ??= (async () => {
        running = false;
        await loop;
        if (o?.removeAdvertised === true) {
          for (const [nodeName, prev] of Object.entries(current)) {
            await patchNode(nodeName, { [prev.resource]: null }).catch((e: Error) => err(e.message));
            delete current[nodeName];
          }
        }
      })();
      return stopping;
    },
  };
}
