/**
 * A simulated edge site: a real control plane with kwok nodes, one real OpenSSH host per node (with the
 * driver/K3s doubles), the device-plugin and local-path stand-ins, and the stack configuration that points the
 * forge-edge program at it. Used by the end-to-end tests and by `npm run demo`.
 *
 * `node: "kubelet"` (or FORGE_EDGE_NODE=kubelet): the K3s double starts a real node (kubelet, containerd, runc, CNI,
 * kube-proxy) on the host instead of registering a kwok Node; the stack's own device-plugin DaemonSet advertises the
 * GPUs, and the air gap carries real image tarballs. Single-node sites only, in a private network namespace.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { devicePluginImage } from "../config/images";
import { SkuName } from "../config/skus";
import { parseStackConfig, type StackConfig } from "../config/stack";
import { ControlPlane, PodReadyDelay, startControlPlane } from "./controlPlane";
import { KubeClient } from "./kubeClient";
import { DevicePluginSim, startDevicePluginSim } from "./devicePluginSim";
import { LocalPathSim, localPathStorageClass, startLocalPathSim } from "./localPathSim";
import { k3sAirgapImages, stackImages } from "./nodeImages";
import { nodeToolchain, SIMULATED_NODE_NET, type NodeToolchain } from "./realNode";
import {
  GpuSpec,
  KeyPair,
  makeAirgapBundle,
  makeKeyPair,
  SshHost,
  SshHostOptions,
  startSshHost,
} from "./sshHost";

const ROOT = path.resolve(__dirname, "..");

/** What `nvidia-smi` reports on a box of each SKU (the driver double prints this). */
export const SKU_GPUS: Record<SkuName, Omit<GpuSpec, "count">> = {
  thor: { name: "NVIDIA Thor", memoryMiB: 125772, driver: "580.00", computeCap: "11.0" },
  rtx4000: {
    name: "NVIDIA RTX PRO 4000 Blackwell",
    memoryMiB: 24467,
    driver: "580.95.05",
    computeCap: "12.0",
  },
  p40: { name: "Tesla P40", memoryMiB: 24576, driver: "580.95.05", computeCap: "6.1" },
};

export interface SiteNode {
  name: string;
  role: "server" | "agent";
  gpus?: number;
}

export interface ConfigEntry {
  value: string;
  secret?: boolean;
}

export interface Site {
  sku: SkuName;
  dir: string;
  controlPlane: ControlPlane;
  kube: KubeClient;
  hosts: SshHost[];
  key: KeyPair;
  /** What is below the API: kwok Nodes, or a real node per host. */
  node: NodeKind;
  /** The kwok device-plugin stand-in; none with a real node (the stack's DaemonSet advertises the GPUs). */
  devicePlugin?: DevicePluginSim;
  localPath: LocalPathSim;
  /** Stack configuration (keys without the `forge-edge:` prefix) for this site. */
  config: Record<string, ConfigEntry>;
  /** Starts one more SSH host (for adding a node); it is stopped with the site. */
  addHost(node: SiteNode): Promise<SshHost>;
  /** Milliseconds each part took to start. */
  timings: Record<string, number>;
  stop(): Promise<void>;
}

export interface SiteOptions {
  sku: SkuName;
  dir: string;
  nodes?: SiteNode[];
  /** Hosts get addresses 127.0.1.<base + i>; distinct bases keep concurrent sites apart. */
  ipBase?: number;
  /** Extra IP SANs for hosts added later. */
  spareIps?: number;
  /** The SSH key pair the hosts authorize; default: a new one. Sites of one fleet stack share the stack's key. */
  key?: KeyPair;
  /** Extra options of every host (e.g. `initComm`, `etcFiles` for the k3s-ansible peer run). Default: none. */
  hostOptions?: (node: SiteNode) => Pick<SshHostOptions, "initComm" | "etcFiles" | "durations">;
  /** kwok delays these pods' readiness (a model load; harness/ttsSim.ts). Default: none. */
  podReadyDelay?: PodReadyDelay;
  /** What runs below the API. Default: FORGE_EDGE_NODE, else "kwok". */
  node?: NodeKind;
}

/** kwok: Nodes without a kubelet (fleets, benches, multi-node); kubelet: a real node per host (single-node). */
export type NodeKind = "kwok" | "kubelet";

/** FORGE_EDGE_NODE: "kubelet" or "kwok" (default). */
export function nodeKindFromEnv(env: NodeJS.ProcessEnv = process.env): NodeKind {
  const v = env.FORGE_EDGE_NODE ?? "kwok";
  if (v !== "kwok" && v !== "kubelet") throw new Error(`FORGE_EDGE_NODE must be kwok or kubelet, not ${v}`);
  return v;
}

/**
 * Why a kubelet site has one node: hosts share the run's network namespace, so a second node would collide on cni0,
 * the iptables chains and the ports containerd and kube-proxy bind on 127.0.0.1 (10010, 10249, 10256).
 */
export const KUBELET_SINGLE_NODE =
  "a kubelet site (FORGE_EDGE_NODE=kubelet) has one node: hosts share one network namespace and a second node " +
  "would collide on cni0, iptables and 127.0.0.1:10010/10249/10256; use kwok for multi-node sites";

/** Refuses what a kubelet site cannot be: more than one node, or outside a private network namespace. */
export function checkKubeletSite(nodes: number, env: NodeJS.ProcessEnv = process.env): void {
  if (nodes > 1) throw new Error(`${KUBELET_SINGLE_NODE} (asked for ${nodes})`);
  if (env.FORGE_EDGE_NETNS !== "1")
    throw new Error(
      "a kubelet site changes its network namespace (cni0, iptables): run it under bash harness/netns-run.sh",
    );
}

/** The `config:` block of a committed stack file, keys without the project prefix. */
export function stackFileValues(sku: SkuName): Record<string, unknown> {
  const doc = yaml.load(fs.readFileSync(path.join(ROOT, `Pulumi.${sku}.yaml`), "utf8")) as {
    config: Record<string, unknown>;
  };
  return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k.replace(/^forge-edge:/, ""), v]));
}

export async function startSite(opts: SiteOptions): Promise<Site> {
  const nodes = opts.nodes ?? [{ name: `${opts.sku}-01`, role: "server" }];
  const nodeKind = opts.node ?? nodeKindFromEnv();
  // Before anything starts: the node group must be built, the site single-node and in its own network namespace.
  if (nodeKind === "kubelet") checkKubeletSite(nodes.length);
  const nodeTc = nodeKind === "kubelet" ? nodeToolchain() : undefined;
  const base = opts.ipBase ?? 10;
  const spare = opts.spareIps ?? 2;
  const ipOf = (i: number) => `127.0.1.${base + i}`;
  fs.mkdirSync(opts.dir, { recursive: true });
  const timings: Record<string, number> = {};
  const stops: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    stops.length = 0;
  };

  try {
    let t = Date.now();
    const controlPlane = await startControlPlane({
      dir: path.join(opts.dir, "control-plane"),
      hostIps: Array.from({ length: nodes.length + spare }, (_, i) => ipOf(i)),
      ...(opts.podReadyDelay ? { podReadyDelay: opts.podReadyDelay } : {}),
    });
    stops.push(() => controlPlane.stop());
    timings.controlPlane = Date.now() - t;
    const kube = KubeClient.fromKubeconfig(controlPlane.kubeconfigPath);
    // What K3s's packaged manifests create on a real server.
    await kube.send("POST", "/apis/storage.k8s.io/v1/storageclasses", localPathStorageClass());

    const key = opts.key ?? makeKeyPair("forge-edge-e2e");
    const gpuCount: Record<string, number> = {};
    const hosts: SshHost[] = [];
    const addHost = async (node: SiteNode): Promise<SshHost> => {
      const i = hosts.length;
      if (nodeKind === "kubelet" && i > 0) throw new Error(KUBELET_SINGLE_NODE);
      const started = Date.now();
      const host = await startSshHost({
        name: node.name,
        ip: ipOf(i),
        dir: path.join(opts.dir, "hosts", node.name),
        authorizedKey: key.publicKeyLine,
        gpu: { ...SKU_GPUS[opts.sku], count: node.gpus ?? 1 },
        controlPlane: { kubeconfigPath: controlPlane.kubeconfigPath, apiPort: controlPlane.apiPort },
        ...opts.hostOptions?.(node),
        ...(nodeTc
          ? {
              kubelet: {
                ip: `${SIMULATED_NODE_NET}${base + i}`,
                toolchainDir: nodeTc.dir,
                controlPlane: controlPlaneCa(controlPlane),
              },
            }
          : {}),
      });
      stops.push(() => host.stop());
      hosts.push(host);
      gpuCount[node.name] = node.gpus ?? 1;
      timings[`host:${node.name}`] = Date.now() - started;
      return host;
    };
    t = Date.now();
    for (const n of nodes) await addHost(n);
    timings.hosts = Date.now() - t;

    let devicePlugin: DevicePluginSim | undefined;
    if (nodeKind === "kwok") {
      const sim = startDevicePluginSim({
        kubeconfigPath: controlPlane.kubeconfigPath,
        gpuCountByNode: gpuCount,
      });
      stops.push(() => sim.stop());
      devicePlugin = sim;
    }
    // Until K3s's local-path-provisioner image is built here, hostPath volumes under K3s's storage dir, which the
    // real kubelet mounts as it would the provisioner's.
    const localPath = startLocalPathSim(controlPlane.kubeconfigPath);
    stops.push(() => localPath.stop());

    const airgapDir = makeAirgapBundle(path.join(opts.dir, "airgap"));
    const images = path.join(airgapDir, "k3s-airgap-images.tar");
    // K3s's air-gap images (pause, local-path-provisioner, busybox) for a real node; an empty tarball for kwok
    // Nodes, which run nothing.
    if (nodeTc) fs.copyFileSync(k3sAirgapImages(nodeTc), images);
    else execFileSync("tar", ["-cf", images, "-T", "/dev/null"]);

    const site: Site = {
      sku: opts.sku,
      dir: opts.dir,
      controlPlane,
      kube,
      hosts,
      key,
      node: nodeKind,
      ...(devicePlugin ? { devicePlugin } : {}),
      localPath,
      config: {},
      addHost,
      timings,
      stop,
    };
    const airgap = {
      k3sBinary: path.join(airgapDir, "k3s"),
      installScript: path.join(airgapDir, "install.sh"),
      imagesTarball: images,
    };
    site.config = siteConfig(opts.sku, nodes, hosts, key, airgap);
    if (nodeTc) {
      t = Date.now();
      site.config = kubeletSiteConfig(opts.sku, site.config, nodeTc);
      timings.stackImages = Date.now() - t;
    }
    return site;
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The control plane's CA and server, for a node's certificates. */
function controlPlaneCa(cp: ControlPlane): { server: string; caFile: string; caKeyFile: string } {
  return { server: cp.server, ...cp.pki };
}

/**
 * The inference settings a kubelet site runs with: the stack file's sizes are a GPU box's (thor: 2 replicas of 2
 * CPUs and 8 GiB each), the real kubelet reports this machine's (2 CPUs).
 */
export const KUBELET_INFERENCE = {
  replicas: 1,
  maxReplicas: 1,
  cpuRequest: "100m",
  cpuLimit: "1",
  memoryRequest: "64Mi",
  memoryLimit: "256Mi",
  // The config's floor; the fake server's own delay is MODEL_LOAD_SECONDS.
  modelLoadSeconds: 10,
  shmSize: "64Mi",
} as const;
/** The fake inference server's model-load delay on a kubelet site, seconds. */
export const KUBELET_MODEL_LOAD_SECONDS = 2;

/**
 * A kubelet site's stack config: inference sized for this machine (KUBELET_INFERENCE) and the air gap carrying the
 * images the stack runs, under the names the program gives them (parsed from this config, not hard-coded), so they
 * travel the program's air-gap path (SFTP copy, K3s's images dir, containerd's import).
 */
export function kubeletSiteConfig(
  sku: SkuName,
  config: Record<string, ConfigEntry>,
  tc: NodeToolchain,
): Record<string, ConfigEntry> {
  const inference: Record<string, unknown> = {
    ...(JSON.parse(config.inference.value) as Record<string, unknown>),
    ...KUBELET_INFERENCE,
  };
  const settings = { ...((inference.settings as Record<string, string> | undefined) ?? {}) };
  settings.MODEL_LOAD_SECONDS = String(KUBELET_MODEL_LOAD_SECONDS);
  const out: Record<string, ConfigEntry> = {
    ...config,
    inference: { value: JSON.stringify({ ...inference, settings }) },
  };
  const airgap = JSON.parse(out.airgap.value) as Record<string, unknown>;
  const cfg = parseStackConfig(sku, {
    get: (k) => (k === "airgap" ? undefined : out[k]?.value),
    isSecret: (k) => out[k]?.secret === true,
  });
  out.airgap = {
    value: JSON.stringify({
      ...airgap,
      stackImageTarballs: stackImages(Object.values(stackImageNames(cfg)), tc).map((i) => i.tarball),
    }),
  };
  return out;
}

/**
 * The image names the stack's workloads run, as the stack sets them (config/images.ts, which the program's air-gap
 * import waits for, in their normalised form).
 */
export function stackImageNames(cfg: StackConfig): {
  inference: string;
  devicePlugin: string;
  dcgm?: string;
} {
  return {
    inference: cfg.inference.image,
    devicePlugin: devicePluginImage(cfg.devicePluginVersion),
    ...(cfg.dcgmExporter ? { dcgm: cfg.dcgmExporterImage } : {}),
  };
}

/** The stack file's values with the nodes pointed at the site's hosts (host keys pinned) and air-gap on. */
export function siteConfig(
  sku: SkuName,
  nodes: SiteNode[],
  hosts: SshHost[],
  key: KeyPair,
  airgap: { k3sBinary: string; installScript: string; imagesTarball: string },
): Record<string, ConfigEntry> {
  const values: Record<string, unknown> = {
    ...stackFileValues(sku),
    nodes: nodes.map((n, i) => nodeEntry(n, hosts[i])),
    airgap,
  };
  const config: Record<string, ConfigEntry> = {};
  for (const [k, v] of Object.entries(values))
    config[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
  config.sshPrivateKey = { value: key.privateKeyPem, secret: true };
  return config;
}

export function nodeEntry(n: SiteNode, host: SshHost): Record<string, unknown> {
  return {
    name: n.name,
    host: host.host,
    port: host.port,
    user: "root",
    role: n.role,
    gpus: n.gpus ?? 1,
    hostKey: host.hostKeyLine,
  };
}
