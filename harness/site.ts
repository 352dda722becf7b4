/**
 * A simulated edge site: a real control plane with kwok nodes, one real OpenSSH host per node (with the
 * driver/K3s doubles), the device-plugin and local-path stand-ins, and the stack configuration that points the
 * forge-edge program at it. Used by the end-to-end tests and by `npm run demo`.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { SkuName } from "../config/skus";
import { ControlPlane, startControlPlane } from "./controlPlane";
import { KubeClient } from "./kubeClient";
import { DevicePluginSim, startDevicePluginSim } from "./devicePluginSim";
import { LocalPathSim, localPathStorageClass, startLocalPathSim } from "./localPathSim";
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
  devicePlugin: DevicePluginSim;
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
  hostOptions?: (node: SiteNode) => Pick<SshHostOptions, "initComm" | "etcFiles">;
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
      const started = Date.now();
      const host = await startSshHost({
        name: node.name,
        ip: ipOf(i),
        dir: path.join(opts.dir, "hosts", node.name),
        authorizedKey: key.publicKeyLine,
        gpu: { ...SKU_GPUS[opts.sku], count: node.gpus ?? 1 },
        controlPlane: { kubeconfigPath: controlPlane.kubeconfigPath, apiPort: controlPlane.apiPort },
        ...opts.hostOptions?.(node),
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

    const devicePlugin = startDevicePluginSim({
      kubeconfigPath: controlPlane.kubeconfigPath,
      gpuCountByNode: gpuCount,
    });
    stops.push(() => devicePlugin.stop());
    const localPath = startLocalPathSim(controlPlane.kubeconfigPath);
    stops.push(() => localPath.stop());

    const airgapDir = makeAirgapBundle(path.join(opts.dir, "airgap"));
    const images = path.join(airgapDir, "k3s-airgap-images.tar");
    execFileSync("tar", ["-cf", images, "-T", "/dev/null"]);

    const site: Site = {
      sku: opts.sku,
      dir: opts.dir,
      controlPlane,
      kube,
      hosts,
      key,
      devicePlugin,
      localPath,
      config: {},
      addHost,
      timings,
      stop,
    };
    site.config = siteConfig(opts.sku, nodes, hosts, key, {
      k3sBinary: path.join(airgapDir, "k3s"),
      installScript: path.join(airgapDir, "install.sh"),
      imagesTarball: images,
    });
    return site;
  } catch (e) {
    await stop();
    throw e;
  }
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
