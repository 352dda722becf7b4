/**
 * A real node below the API (issue 11): containerd 2 + runc + CNI + a kubelet from the `node` toolchain group,
 * started by harness/doubles/k3s-node.sh in a mount + UTS namespace of its own, against a control plane from
 * controlPlane.ts. This is the stand-alone form (drills and the M3 check); the K3s double starts the same script
 * on an SSH test host behind FORGE_EDGE_NODE=kubelet.
 *
 * Needs root, a private network namespace for the whole run (the node's bridge, iptables and ports are the
 * namespace's), and `bash harness/build-toolchain.sh node`.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { renderKubeconfig } from "./kubeClient";
import { killGroup, spawnLogged, waitFor, WaitAbort, type Managed } from "./proc";

const HARNESS_DIR = __dirname;
const NODE_SCRIPT = path.join(HARNESS_DIR, "doubles", "k3s-node.sh");

/** harness/versions.env as a map (plain KEY=VALUE lines, optional double quotes). */
export function readVersions(file = path.join(HARNESS_DIR, "versions.env")): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return out;
}

export interface NodeToolchain {
  dir: string;
  pauseImage: string;
  inferenceImage: string;
  /** OCI tarballs in dir/images. */
  images: { pause: string; inference: string };
}

/** The `node` group's cache dir; throws with the build command when it is not built. */
export function nodeToolchain(
  cache = process.env.FORGE_EDGE_CACHE ?? path.join(os.homedir(), ".cache/forge-edge"),
): NodeToolchain {
  const v = readVersions();
  const dir = path.join(cache, "bin", `node-${v.KUBE_VERSION}-${v.NODE_IMAGES_VERSION}`);
  for (const f of [
    "kubelet",
    "kube-proxy",
    "gpu-device-plugin",
    "containerd",
    "ctr",
    "runc",
    "containerd-shim-runc-v2",
    "images/pause.tar",
  ]) {
    if (!fs.existsSync(path.join(dir, f)))
      throw new Error(
        `${path.join(dir, f)} is missing: build it with \`bash harness/build-toolchain.sh node\``,
      );
  }
  return {
    dir,
    pauseImage: v.NODE_PAUSE_IMAGE,
    inferenceImage: v.NODE_INFERENCE_IMAGE,
    images: { pause: path.join(dir, "images/pause.tar"), inference: path.join(dir, "images/inference.tar") },
  };
}

/** The paths K3s keeps a node's state in, each a private mount in the node's namespace. */
export const NODE_PRIVATE_DIRS = [
  "/etc/rancher",
  "/var/lib/rancher",
  "/var/lib/kubelet",
  "/var/log/pods",
  "/var/log/containers",
  "/var/log/forge-edge",
  "/run/k3s",
  // runc's state and the shims' sockets: containerd's defaults, also on K3s.
  "/run/containerd",
  "/usr/local/bin",
] as const;

export interface RealNodeOptions {
  name: string;
  /**
   * The node's address (kubelet --node-ip, serving and healthz address), not loopback (the kubelet refuses it),
   * e.g. 198.18.0.10 (SIMULATED_NODE_NET); put on a veth in the current network namespace unless an interface has it
   * already.
   */
  ip: string;
  /** Working dir: backing dirs of the private mounts, logs, kubeconfig, certificates. */
  dir: string;
  /** The control plane's CA (file and key) and server URL: the node's client certificate is signed here. */
  controlPlane: NodeControlPlane;
  /**
   * forge-edge's containerd template (config-v3.toml.tmpl); config.toml is rendered from it inside the node, at
   * K3s's path, by forge-edge-checker render-containerd (K3s's rendering), as the K3s double does.
   */
  containerdTemplate: string;
  /** forge-edge-checker binary. */
  checker: string;
  /** K3s release whose rendering is reproduced. Default v1.36.4+k3s1. */
  k3sVersion?: string;
  podCidr?: string;
  labels?: string[];
  /** GPUs and time-slicing replicas the device-plugin stand-in advertises (nvidia.com/gpu = gpus x replicas). */
  gpus?: number;
  gpuReplicas?: number;
  /** Host GPU file the nvidia-container-runtime double exposes to GPU containers (its header: the contract). */
  gpuFile?: string;
  /** Image tarballs for K3s's images directory. Default: the pause image. */
  imageTarballs?: string[];
  /** SRC=DST tags to add after the import (the stack's image names for the fake inference image). */
  retag?: Array<[string, string]>;
  toolchain?: NodeToolchain;
  /** Bound of each wait in the node script, seconds. Default 90. */
  waitSec?: number;
  /**
   * kube-router's network policy controller as K3s's agent runs it (k3s-netpol of the `netpol` toolchain group),
   * with the agent's system:k3s-controller identity; the ClusterRole and binding K3s grants it (manifests/
   * rolebindings.yaml) are the caller's to apply. Off by default, as on a K3s node started with
   * --disable-network-policy.
   */
  netpol?: { bin: string };
}

export interface RealNode {
  name: string;
  ip: string;
  /** Log files: the namespace script's, containerd's, the kubelet's. */
  logs: { setup: string; containerd: string; kubelet: string };
  /** The backing dir of a private path inside the node, e.g. hostPath("/var/log/forge-edge"). */
  hostPath(inNode: (typeof NODE_PRIVATE_DIRS)[number]): string;
  /** Milliseconds from the call until the kubelet answered /healthz. */
  startMs: number;
  /** Stops the kubelet, every container of the node and containerd, then the namespace. Idempotent. */
  stop(): Promise<void>;
}

function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Simulated node addresses: 198.18.0.0/24 (RFC 2544 benchmark range), never dialled outside the run's private
 * network namespace; 192.0.2.0/24 stays for the stack files' example addresses.
 */
export const SIMULATED_NODE_NET = "198.18.0.";

/** The control plane a node's client certificates are signed for. */
export interface NodeControlPlane {
  server: string;
  caFile: string;
  caKeyFile: string;
}

/** A kubeconfig with a client certificate for subject (e.g. /O=system:nodes/CN=system:node:x), signed by the CA. */
function clientKubeconfig(dir: string, id: string, subject: string, cp: NodeControlPlane): string {
  const pki = path.join(dir, "pki");
  fs.mkdirSync(pki, { recursive: true });
  const run = (args: string[]): void => {
    execFileSync("openssl", args, { cwd: pki, stdio: ["ignore", "ignore", "pipe"] });
  };
  run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${id}.key`]);
  run(["req", "-new", "-key", `${id}.key`, "-subj", subject, "-out", `${id}.csr`]);
  const ext = path.join(pki, "client.ext");
  fs.writeFileSync(
    ext,
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
  );
  run([
    "x509",
    "-req",
    "-in",
    `${id}.csr`,
    "-CA",
    cp.caFile,
    "-CAkey",
    cp.caKeyFile,
    "-CAcreateserial",
    "-days",
    "30",
    "-sha256",
    "-extfile",
    ext,
    "-out",
    `${id}.crt`,
  ]);
  const file = path.join(dir, `${id}.kubeconfig`);
  fs.writeFileSync(
    file,
    renderKubeconfig(
      {
        server: cp.server,
        caPem: fs.readFileSync(cp.caFile, "utf8"),
        certPem: fs.readFileSync(path.join(pki, `${id}.crt`), "utf8"),
        keyPem: fs.readFileSync(path.join(pki, `${id}.key`), "utf8"),
      },
      id,
    ),
    { mode: 0o600 },
  );
  return file;
}

/**
 * The identities K3s gives its agent, as kubeconfigs in dir (kubelet.kubeconfig, kube-proxy.kubeconfig):
 * system:node:<name> in system:nodes (Node authorizer) and system:kube-proxy (node-proxier).
 */
export function nodeKubeconfigs(
  dir: string,
  name: string,
  cp: NodeControlPlane,
): { kubelet: string; kubeProxy: string } {
  fs.mkdirSync(dir, { recursive: true });
  return {
    kubelet: clientKubeconfig(dir, "kubelet", `/O=system:nodes/CN=system:node:${name}`, cp),
    kubeProxy: clientKubeconfig(dir, "kube-proxy", "/CN=system:kube-proxy", cp),
  };
}

/** The node's veth name for ip (at most 15 characters with the peer's "p"). */
export function nodeIfName(ip: string): string {
  return `fe${ip.split(".").slice(-2).join("x")}`.slice(0, 13);
}

/** Shell lines that put ip on a veth of its own unless an interface has it already (the kubelet refuses loopback). */
export function nodeIpLines(ip: string): string[] {
  const ifc = nodeIfName(ip);
  return [
    `if ! ip -4 -o addr show | grep -qF ' inet ${ip}/'; then`,
    `  ip link add ${shq(ifc)} type veth peer name ${shq(ifc + "p")}`,
    `  ip addr add ${shq(ip)}/32 dev ${shq(ifc)}`,
    `  ip link set ${shq(ifc)} up && ip link set ${shq(ifc + "p")} up`,
    "fi",
  ];
}

/**
 * Starts the node: a namespace script (private mounts, config, images) that runs `k3s-node.sh start` and then
 * stays as the namespace's anchor until stop(). Resolves once the kubelet answers /healthz.
 */
export async function startRealNode(opts: RealNodeOptions): Promise<RealNode> {
  const t0 = Date.now();
  const tc = opts.toolchain ?? nodeToolchain();
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  const { kubelet: kubeconfig, kubeProxy: proxyKubeconfig } = nodeKubeconfigs(
    dir,
    opts.name,
    opts.controlPlane,
  );
  const backing: Record<string, string> = {};
  for (const d of NODE_PRIVATE_DIRS) {
    backing[d] = path.join(dir, "root", d.slice(1).replace(/\//g, "-"));
    fs.rmSync(backing[d], { recursive: true, force: true });
    fs.mkdirSync(backing[d], { recursive: true });
  }
  const agent = path.join(backing["/var/lib/rancher"], "k3s/agent");
  fs.mkdirSync(path.join(agent, "etc/containerd"), { recursive: true });
  fs.mkdirSync(path.join(agent, "images"), { recursive: true });
  fs.writeFileSync(path.join(agent, "etc/containerd/config-v3.toml.tmpl"), opts.containerdTemplate);
  // K3s's agent/client-ca.crt: the kubelet verifies the apiserver's client certificate (logs, exec) with it.
  fs.copyFileSync(opts.controlPlane.caFile, path.join(agent, "client-ca.crt"));
  for (const t of opts.imageTarballs ?? [tc.images.pause])
    fs.copyFileSync(t, path.join(agent, "images", path.basename(t)));
  const bin = backing["/usr/local/bin"];
  fs.copyFileSync(
    path.join(HARNESS_DIR, "doubles/nvidia-container-runtime"),
    path.join(bin, "nvidia-container-runtime"),
  );
  fs.chmodSync(path.join(bin, "nvidia-container-runtime"), 0o755);

  const env: Record<string, string> = {
    FORGE_HARNESS_DIR: HARNESS_DIR,
    FORGE_NODE_BIN: tc.dir,
    FORGE_NODE_NAME: opts.name,
    FORGE_NODE_IP: opts.ip,
    FORGE_NODE_KUBECONFIG: kubeconfig,
    FORGE_NODE_PROXY_KUBECONFIG: proxyKubeconfig,
    FORGE_NODE_GPUS: String(opts.gpus ?? 0),
    FORGE_NODE_GPU_REPLICAS: String(opts.gpuReplicas ?? 1),
    FORGE_GPU_FILE: opts.gpuFile ?? "",
    FORGE_NODE_POD_CIDR: opts.podCidr ?? "10.42.0.0/24",
    FORGE_NODE_LABELS: (opts.labels ?? []).join(","),
    FORGE_NODE_RETAG: (opts.retag ?? []).map(([s, d]) => `${s}=${d}`).join(" "),
    FORGE_NODE_WAIT_S: String(opts.waitSec ?? 90),
  };
  if (opts.netpol) {
    env.FORGE_NODE_NETPOL = "1";
    env.FORGE_NODE_NETPOL_BIN = opts.netpol.bin;
    env.FORGE_NODE_NETPOL_KUBECONFIG = clientKubeconfig(
      dir,
      "k3s-controller",
      "/CN=system:k3s-controller",
      opts.controlPlane,
    );
  }
  const ready = path.join(dir, "node.ready");
  fs.rmSync(ready, { force: true });
  const script = path.join(dir, "node-namespace.sh");
  fs.writeFileSync(
    script,
    [
      "#!/bin/bash",
      "# Runs inside `unshare --mount --uts --propagation private`: private mounts, the node, then waits.",
      "set -euo pipefail",
      `hostname ${shq(opts.name)}`,
      ...nodeIpLines(opts.ip),
      ...NODE_PRIVATE_DIRS.map((d) => `mkdir -p ${shq(d)} && mount --bind ${shq(backing[d])} ${shq(d)}`),
      ...Object.entries(env).map(([k, v]) => `export ${k}=${shq(v)}`),
      `trap 'bash ${shq(NODE_SCRIPT)} stop; exit 0' TERM INT`,
      // No systemd here: K3s renders SystemdCgroup = false then; the PATH is systemd's, as in the k3s double.
      `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ${shq(opts.checker)} render-containerd --k3s-version ${shq(opts.k3sVersion ?? "v1.36.4+k3s1")} \\`,
      "  --tmpl-dir /var/lib/rancher/k3s/agent/etc/containerd --out /var/lib/rancher/k3s/agent/etc/containerd/config.toml \\",
      "  --systemd-cgroup=false",
      `bash ${shq(NODE_SCRIPT)} start`,
      `touch ${shq(ready)}`,
      // The namespace lives as long as this shell: sleep in the background so the TERM trap runs at once.
      "while :; do sleep 3600 & wait $! || true; done",
    ].join("\n") + "\n",
    { mode: 0o755 },
  );
  const setupLog = path.join(dir, "node.log");
  const proc: Managed = spawnLogged(
    `node(${opts.name})`,
    "/usr/bin/unshare",
    ["--mount", "--uts", "--propagation", "private", "/bin/bash", script],
    setupLog,
  );
  const ownNs = mountNs(process.pid);
  let nodeNs: string | undefined;
  const logsDir = path.join(backing["/var/log/forge-edge"], "node");
  const node: RealNode = {
    name: opts.name,
    ip: opts.ip,
    logs: {
      setup: setupLog,
      containerd: path.join(logsDir, "containerd.log"),
      kubelet: path.join(logsDir, "kubelet.log"),
    },
    hostPath: (d) => backing[d],
    startMs: 0,
    stop: async () => {
      // TERM lets the namespace script run `k3s-node.sh stop` (containers are in their own namespaces).
      await killGroup(proc, 30000);
      // containerd and the kubelet run in sessions of their own: whatever outlived the script goes now.
      if (nodeNs !== undefined && nodeNs !== ownNs) {
        for (const pid of fs
          .readdirSync("/proc")
          .filter((e) => /^\d+$/.test(e))
          .map(Number)) {
          if (mountNs(pid) !== nodeNs) continue;
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
        }
      }
    },
  };
  try {
    await waitFor(
      `node ${opts.name}: k3s-node.sh start`,
      ((opts.waitSec ?? 90) * 2 + 30) * 1000,
      () => {
        const info = proc.exitInfo();
        if (info !== undefined) throw new WaitAbort(`${info}\n${tail(setupLog)}`);
        nodeNs ??= mountNs(proc.pid) !== ownNs ? mountNs(proc.pid) : undefined;
        return Promise.resolve(fs.existsSync(ready) ? true : undefined);
      },
      200,
    );
  } catch (e) {
    await node.stop();
    throw e;
  }
  node.startMs = Date.now() - t0;
  return node;
}

function mountNs(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** forge-edge's containerd template for K3s with containerd 2, as scripts/nvidia-runtime.sh writes it. */
export function nvidiaTemplate(runtimePath = "/usr/local/bin/nvidia-container-runtime"): string {
  const table = "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'";
  return [
    "# forge-edge nvidia runtime (real-node drill)",
    '{{ template "base" . }}',
    '{{ if not (index .ExtraRuntimes "nvidia").BinaryName }}',
    `[${table}]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${table}.options]`,
    `  BinaryName = "${runtimePath}"`,
    "  SystemdCgroup = {{ .SystemdCgroup }}",
    "{{ end }}",
    "",
  ].join("\n");
}
