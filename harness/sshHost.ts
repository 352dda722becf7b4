/**
 * A fake "GPU edge node" reachable over real SSH: a real /usr/sbin/sshd on 127.0.1.N:22, started in
 * its own mount + UTS namespace so that everything the bootstrap scripts write lands in private,
 * per-host directories and never on the real machine. The network namespace is shared with the test
 * machine, so the host reaches the control plane on 127.0.0.1.
 *
 * Inside the host:
 *   /etc/rancher, /var/lib/rancher, /var/lib/forge-edge, /etc/nvidia-container-toolkit, /etc/cdi,
 *   /var/log/forge-edge, /root       private, initially empty
 *   /usr/local/bin                   private, holds the driver/toolkit/systemctl doubles
 *   /opt/forge-harness               read-only: kubeconfig, env, gpu, k3s-version, doubles/
 *   /opt/forge-harness-shared        read-write, shared by all hosts of one control plane (K3s tokens)
 * With `kubelet` (a real node below the API, FORGE_EDGE_NODE=kubelet), also:
 *   /var/lib/kubelet, /run/k3s, /run/containerd, /run/netns, /var/log/pods, /var/log/containers   private
 *   /opt/forge-harness/node          read-only: bin/ (the `node` toolchain group), the kubelet's and kube-proxy's
 *                                    kubeconfigs (client certificates signed by the control plane's CA)
 *   the node IP on a veth of its own in the run's network namespace (the kubelet refuses a loopback node IP)
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { canConnect } from "./proc";
import { nodeIpLines, nodeKubeconfigs, nodeToolchain, type NodeControlPlane } from "./realNode";
import { NamespacedSshd } from "./sshdNamespace";
import { CheckerMissingError, checkerPath, loadToolchain } from "./toolchain";

export interface GpuSpec {
  /** e.g. "Tesla P40", "NVIDIA RTX PRO 4000 Blackwell", "NVIDIA Thor" */
  name: string;
  memoryMiB: number;
  /** Driver version, e.g. "580.95.05". "" means no driver (nvidia-smi exits 9). */
  driver: string;
  /** e.g. "6.1", "12.0", "11.0" */
  computeCap: string;
  count: number;
  /** false: the driver is "not loaded" (nvidia-smi exits 9). Default: driver !== "". */
  driverLoaded?: boolean;
}

export interface SshHostOptions {
  /** Host name (also the UTS hostname inside the host and the default K3s node name). */
  name: string;
  /** A loopback address 127.0.1.N, unique per host. */
  ip: string;
  /** Working dir of this host (config, keys, logs, backing dirs of the private mounts). */
  dir: string;
  /** "ssh-ed25519 AAAA..." line that may log in as root. */
  authorizedKey: string;
  gpu: GpuSpec;
  /**
   * The control plane the K3s doubles talk to. Optional only so that pure SSH tests can run
   * without one; the k3s/install doubles fail with a clear message when it is absent.
   */
  controlPlane?: { kubeconfigPath: string; apiPort: number };
  /** nvidia-ctk / nvidia-container-runtime doubles present in /usr/local/bin. Default true. */
  toolkitInstalled?: boolean;
  /** Version the k3s double reports (changeable later with setK3sVersion). Default v1.36.4+k3s1. */
  k3sVersion?: string;
  /** Node capacity the k3s double registers. Defaults: cpu "16", memory "64Gi", pods "110". */
  node?: { cpu?: string; memory?: string; pods?: string };
  /** Shared rw dir of all hosts of one cluster. Default: <dir of kubeconfigPath>/harness-shared. */
  sharedDir?: string;
  /** kubectl used by the doubles. Default: the toolchain's kubectl. */
  kubectlPath?: string;
  /** Also place the k3s + install.sh doubles in /var/lib/forge-edge/airgap at start. Default false. */
  preloadAirgap?: boolean;
  /**
   * forge-edge-checker, with which the k3s double renders containerd's config.toml as K3s does. Default: the
   * toolchain's (`checkerPath()`), or none when it is not built (then a K3s start fails, saying so).
   */
  checkerPath?: string;
  /**
   * Files laid over the machine's /etc inside the host through an overlay (the machine's /etc is never written),
   * e.g. `{ nv_tegra_release: "# R38 (release), REVISION: 2.0, ..." }` for a JetPack 7 box. Default: none.
   */
  etcFiles?: Record<string, string>;
  /**
   * Extra login users with the authorized key (uid 2000+, home /tmp, no sudo rights), added to the host's overlaid
   * /etc/passwd and /etc/group; they may write the doubles' log. Default: none (root only).
   */
  loginUsers?: string[];
  /** Size in MiB of a tmpfs mounted over /var/lib/rancher inside the host: a nearly full disk. Default: none. */
  rancherDiskMiB?: number;
  /**
   * What /proc/1/comm reads inside the host (a file bound over it in the host's mount namespace), e.g. "systemd":
   * the init a real edge box runs, which Ansible's service-manager fact reads. Default: the machine's own PID 1.
   */
  initComm?: string;
  /**
   * Realistic durations of the doubles (issue 12): JSON that harness/ttsSim.ts writes, put in the host's env as
   * FORGE_EDGE_DURATIONS for lib.sh's forge_delay. Default: none, and the doubles take no extra time.
   */
  durations?: string;
  /**
   * A real node (kubelet, containerd, runc, CNI, kube-proxy) instead of a kwok Node: the k3s double starts
   * harness/doubles/k3s-node.sh in the host. Needs the run's own network namespace (harness/netns-run.sh) and
   * `bash harness/build-toolchain.sh node`. Default: none (kwok).
   */
  kubelet?: KubeletNodeOptions;
}

export interface KubeletNodeOptions {
  /** The node IP (kubelet --node-ip), in 198.18.0.0/24 (SIMULATED_NODE_NET). */
  ip: string;
  /** Signs the kubelet's and kube-proxy's client certificates; the server they dial. */
  controlPlane: NodeControlPlane;
  /** The `node` toolchain group's dir. Default: nodeToolchain().dir. */
  toolchainDir?: string;
}

export interface SshHost {
  name: string;
  /** = ip */
  host: string;
  port: 22;
  /** "ssh-ed25519 AAAA..." (no comment), for known_hosts as `<host> <hostKeyLine>`. */
  hostKeyLine: string;
  /** In-host path → backing dir on the real machine. */
  rootDirs: Record<string, string>;
  /** Milliseconds from the call until sshd accepted TCP connections. */
  startMs: number;
  /** Lines of /var/log/forge-edge/doubles.log: "<epoch> <name> <args...>". */
  calls(): string[];
  /**
   * In-host path → "dir:<mode>" | "file:<mode>:<sha256>" | "link:<target>" for everything under the
   * private dirs except /var/log/forge-edge (the doubles' own log and state) and /root (HOME caches).
   */
  snapshot(): Record<string, string>;
  /** Changes what `k3s --version` reports from now on. */
  setK3sVersion(v: string): void;
  /** Changes what the driver double reports from now on (e.g. `{ driverLoaded: false }`). */
  setGpu(gpu: Partial<GpuSpec>): void;
  /** Makes the double NAME (e.g. "install.sh") fail with `message` until cleared with `undefined`. */
  fault(name: string, message: string | undefined): void;
  /** "<pid> <executable>" of every process in the host's mount namespace (none once stopped). */
  processes(): string[];
  /**
   * The cgroup parent of a real node's pods on this host, /forge-edge/<name>-<inode of the host's mount namespace>
   * (k3s-node.sh's CGROUP_ROOT): unique per running host, so nodes of two runs with one name never share it. The
   * last one seen once the host is stopped.
   */
  cgroupRoot(): string;
  /** Brings a stopped host back with the same address, host key and disks, like a reboot. */
  restart(): Promise<void>;
  /** Kills every process in the host's mount namespace (sshd, sessions, forwarders); idempotent. */
  stop(): Promise<number>;
}

export const DOUBLES_DIR = path.resolve(__dirname, "doubles");
/** The air-gap doubles a test ships as the K3s air-gap bundle (file name → path in the repo). */
export const AIRGAP_DOUBLES: Readonly<Record<"k3s" | "install.sh", string>> = {
  k3s: path.join(DOUBLES_DIR, "k3s"),
  "install.sh": path.join(DOUBLES_DIR, "install.sh"),
};

/** Copies the air-gap doubles into dir (mode 0755), e.g. to serve as the program's air-gap bundle dir. */
export function makeAirgapBundle(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of Object.keys(AIRGAP_DOUBLES)) copyDouble(f, dir);
  return dir;
}

/** Mount points inside the host and the slug of their backing dir. */
const PRIVATE_DIRS: ReadonlyArray<[string, string]> = [
  ["/etc/rancher", "etc-rancher"],
  ["/var/lib/rancher", "var-lib-rancher"],
  ["/var/lib/forge-edge", "var-lib-forge-edge"],
  ["/etc/nvidia-container-toolkit", "etc-nvidia-container-toolkit"],
  ["/etc/cdi", "etc-cdi"],
  ["/var/log/forge-edge", "var-log-forge-edge"],
  ["/usr/local/bin", "usr-local-bin"],
  ["/root", "root-home"],
  // Where the K3s installer writes the unit's environment file (k3s-ansible edits it: the agent's K3S_TOKEN).
  ["/etc/systemd/system", "etc-systemd-system"],
];
/**
 * A real node's private dirs (harness/realNode.ts NODE_PRIVATE_DIRS, plus /run/netns: the pods' network namespaces
 * are bound there, and the machine's /run/netns is shared with other runs).
 */
const NODE_DIRS: ReadonlyArray<[string, string]> = [
  ["/var/lib/kubelet", "var-lib-kubelet"],
  ["/run/k3s", "run-k3s"],
  ["/run/containerd", "run-containerd"],
  ["/run/netns", "run-netns"],
  ["/var/log/pods", "var-log-pods"],
  ["/var/log/containers", "var-log-containers"],
];
/**
 * Not in snapshots: the doubles' log and state, HOME caches, and what K3s's own uninstall leaves on a node (its
 * k3s-uninstall.sh removes /var/lib/kubelet and /run/k3s, not runc's state, pod network namespaces or pod logs).
 */
const SNAPSHOT_EXCLUDED = new Set([
  "/var/log/forge-edge",
  "/root",
  "/run/containerd",
  "/run/netns",
  "/var/log/pods",
  "/var/log/containers",
]);
/** In-host dir of the real node's binaries (bin/) and kubeconfigs, read-only. */
const NODE_MOUNT = "/opt/forge-harness/node";
const HARNESS_MOUNT = "/opt/forge-harness";
const SHARED_MOUNT = "/opt/forge-harness-shared";

/** Doubles copied into the private /usr/local/bin at start. */
const BIN_DOUBLES = ["nvidia-smi", "systemctl"];
const TOOLKIT_DOUBLES = ["nvidia-ctk", "nvidia-container-runtime"];
/** Names under which the package-manager guard double is installed. */
const PKG_GUARD_NAMES = ["apt-get", "apt", "dpkg"];

export interface KeyPair {
  /** OpenSSH-format private key ("-----BEGIN OPENSSH PRIVATE KEY-----"). */
  privateKeyPem: string;
  /** "ssh-ed25519 AAAA..." */
  publicKeyLine: string;
}

/** A fresh ed25519 key pair made with ssh-keygen. */
export function makeKeyPair(comment = "forge-edge-test"): KeyPair {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-key-"));
  try {
    const f = path.join(tmp, "id");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", f], {
      stdio: "ignore",
    });
    const pub = fs.readFileSync(`${f}.pub`, "utf8").trim().split(/\s+/);
    return { privateKeyPem: fs.readFileSync(f, "utf8"), publicKeyLine: `${pub[0]} ${pub[1]}` };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Single-quotes a value for a shell file that the doubles source. */
function shq(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

function copyDouble(name: string, destDir: string): void {
  const dest = path.join(destDir, path.basename(name));
  fs.copyFileSync(path.join(DOUBLES_DIR, name), dest);
  fs.chmodSync(dest, 0o755);
}

function checkPrereqs(): void {
  const missing: string[] = [];
  for (const [bin, pkg] of [
    ["/usr/sbin/sshd", "openssh-server"],
    ["/usr/bin/ssh-keygen", "openssh-client"],
    ["/usr/bin/socat", "socat"],
    ["/usr/bin/jq", "jq"],
    ["/usr/bin/unshare", "util-linux"],
  ] as const) {
    if (!fs.existsSync(bin)) missing.push(`${bin} (apt package ${pkg})`);
  }
  if (missing.length > 0) {
    throw new Error(
      `sshHost: missing ${missing.join(", ")}; apt-get install -y openssh-server openssh-client socat jq`,
    );
  }
  if (process.getuid?.() !== 0)
    throw new Error("sshHost: must run as root (mount namespaces, sshd on port 22)");
}

export async function startSshHost(opts: SshHostOptions): Promise<SshHost> {
  const t0 = Date.now();
  await checkHostOptions(opts);
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  const rootDirs = preparePrivateDirs(dir, opts.toolkitInstalled ?? true, opts.kubelet !== undefined);
  const harnessDir = prepareHarnessDir(dir);
  const node = opts.kubelet ? prepareNode(dir, harnessDir, opts.name, opts.kubelet) : undefined;
  if (opts.preloadAirgap === true) makeAirgapBundle(path.join(rootDirs["/var/lib/forge-edge"], "airgap"));
  const etcOverlay = writeEtcOverlay(dir, opts, rootDirs["/var/log/forge-edge"]);
  const tools = placeHarnessTools(dir, harnessDir, opts);
  const hostFiles = writeHostFiles(harnessDir, opts, tools);
  const sshd = writeSshdFiles(harnessDir, opts);
  makeMountPoints(Object.keys(rootDirs));
  const setup = writeNamespaceSetup(dir, opts, {
    harnessDir,
    rootDirs,
    etcOverlay,
    tools,
    sshdConfig: sshd.config,
    node,
  });
  const proc = new NamespacedSshd(opts.name, opts.ip, dir, setup);
  await proc.boot();
  let cgroupRoot = nodeCgroupRoot(dir, opts.name) ?? "";

  const doublesLog = path.join(rootDirs["/var/log/forge-edge"], "doubles.log");
  return {
    name: opts.name,
    host: opts.ip,
    port: 22,
    hostKeyLine: sshd.hostKeyLine,
    rootDirs,
    startMs: Date.now() - t0,
    calls: () =>
      fs.existsSync(doublesLog)
        ? fs
            .readFileSync(doublesLog, "utf8")
            .split("\n")
            .filter((l) => l !== "")
        : [],
    snapshot: () => snapshotDirs(rootDirs),
    processes: () => hostProcesses(dir),
    cgroupRoot: () => (cgroupRoot = nodeCgroupRoot(dir, opts.name) ?? cgroupRoot),
    ...hostFiles,
    // Containers live in mount namespaces of their own: a kill of the host's namespace would leave them running.
    restart: async () => {
      if (node) stopNode(dir, opts.name);
      await proc.restart();
    },
    stop: async () => {
      if (node) stopNode(dir, opts.name);
      return proc.stop();
    },
  };
}

/** The in-host file of sshd's pid (the namespace setup script's, which execs sshd): what nsenter enters. */
const SSHD_PID_FILE = "sshd.pid";

/** k3s-node.sh's CGROUP_ROOT for the host whose sshd pid is in dir; undefined while no sshd runs. */
function nodeCgroupRoot(dir: string, name: string): string | undefined {
  try {
    const pid = fs.readFileSync(path.join(dir, SSHD_PID_FILE), "utf8").trim();
    return `/forge-edge/${name}-${fs.statSync(`/proc/${pid}/ns/mnt`).ino}`;
  } catch {
    return undefined;
  }
}

/**
 * `k3s-node.sh stop` inside the host (kubelet, every container of the node, containerd; K3s's killall unmounts),
 * bounded; a host whose sshd is gone has no namespace left to enter.
 */
function stopNode(dir: string, name: string): void {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dir, SSHD_PID_FILE), "utf8").trim());
    process.kill(pid, 0);
  } catch {
    return;
  }
  const r = spawnSync(
    "nsenter",
    [
      "-t",
      String(pid),
      "-m",
      "-u",
      "--",
      "/bin/bash",
      "-c",
      `set -a && . ${HARNESS_MOUNT}/env && set +a && exec bash ${HARNESS_MOUNT}/doubles/k3s-node.sh stop`,
    ],
    { encoding: "utf8", timeout: 60000 },
  );
  if (r.status !== 0)
    console.error(`sshHost ${name}: k3s-node.sh stop: ${r.error?.message ?? r.stderr.trim()}`);
}

/** "<pid> <executable>" of the processes in the mount namespace of the host whose sshd pid is in dir. */
function hostProcesses(dir: string): string[] {
  let ns: string;
  try {
    ns = fs.readlinkSync(`/proc/${fs.readFileSync(path.join(dir, SSHD_PID_FILE), "utf8").trim()}/ns/mnt`);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      if (fs.readlinkSync(`/proc/${e}/ns/mnt`) === ns) out.push(`${e} ${fs.readlinkSync(`/proc/${e}/exe`)}`);
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return out;
}

/**
 * A real node's processes on host (node named as the host): the node group's (kubelet, kube-proxy, containerd,
 * shims) among inHost (default: the host's mount namespace now), and every container process of the node, in its
 * pod cgroups (host.cgroupRoot()) and mount namespaces of their own.
 */
export function nodeProcesses(
  host: Pick<SshHost, "cgroupRoot" | "processes">,
  binDir: string,
  inHost: string[] = host.processes(),
): string[] {
  const out = inHost.filter((p) => p.split(" ")[1].startsWith(`${binDir}/`));
  const cgroup = `${host.cgroupRoot()}/`;
  for (const e of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      if (fs.readFileSync(`/proc/${e}/cgroup`, "utf8").includes(cgroup)) out.push(`${e} (pod)`);
    } catch {
      /* gone */
    }
  }
  return out;
}

interface NodeFiles {
  /** Backing dir of NODE_MOUNT/bin: the `node` toolchain dir. */
  binDir: string;
  ip: string;
}

/**
 * harnessDir/node: the kubelet's and kube-proxy's kubeconfigs (as K3s's agent gets them from its server) and an
 * empty bin/ that the node toolchain dir is bound over (it may live under the private /root).
 */
function prepareNode(dir: string, harnessDir: string, name: string, k: KubeletNodeOptions): NodeFiles {
  const binDir = k.toolchainDir ?? nodeToolchain().dir;
  const pki = path.join(dir, "node-pki");
  fs.rmSync(pki, { recursive: true, force: true });
  const kc = nodeKubeconfigs(pki, name, k.controlPlane);
  const nodeDir = path.join(harnessDir, "node");
  fs.mkdirSync(path.join(nodeDir, "bin"), { recursive: true });
  fs.copyFileSync(kc.kubelet, path.join(nodeDir, "kubelet.kubeconfig"));
  fs.copyFileSync(kc.kubeProxy, path.join(nodeDir, "kubeproxy.kubeconfig"));
  // The CA the kubelet verifies client certificates with (the apiserver's, for logs and exec): agent/client-ca.crt.
  fs.copyFileSync(k.controlPlane.caFile, path.join(nodeDir, "client-ca.crt"));
  return { binDir, ip: k.ip };
}

/** Refuses to start without the tools, without root, with a bad name or address, or on an address in use. */
async function checkHostOptions(opts: SshHostOptions): Promise<void> {
  checkPrereqs();
  if (!/^127\.0\.1\.\d{1,3}$/.test(opts.ip))
    throw new Error(`sshHost ${opts.name}: ip must be 127.0.1.N, got ${opts.ip}`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(opts.name))
    throw new Error(`sshHost: bad host name ${opts.name}`);
  if (await canConnect(opts.ip, 22, 300))
    throw new Error(`sshHost ${opts.name}: ${opts.ip}:22 is already in use`);
}

/** Empty backing dirs of the private mounts (in-host path → backing dir), /usr/local/bin holding the doubles. */
function preparePrivateDirs(
  dir: string,
  toolkitInstalled: boolean,
  nodeDirs: boolean,
): Record<string, string> {
  const privRoot = path.join(dir, "private");
  const rootDirs: Record<string, string> = {};
  for (const [mnt, slug] of [...PRIVATE_DIRS, ...(nodeDirs ? NODE_DIRS : [])]) {
    const backing = path.join(privRoot, slug);
    fs.rmSync(backing, { recursive: true, force: true });
    fs.mkdirSync(backing, { recursive: true, mode: 0o755 });
    rootDirs[mnt] = backing;
  }
  fs.chmodSync(rootDirs["/root"], 0o700);
  fs.mkdirSync(path.join(rootDirs["/var/log/forge-edge"], "systemd-state"));
  const bin = rootDirs["/usr/local/bin"];
  for (const d of BIN_DOUBLES) copyDouble(d, bin);
  for (const n of PKG_GUARD_NAMES) {
    fs.copyFileSync(path.join(DOUBLES_DIR, "pkg-guard"), path.join(bin, n));
    fs.chmodSync(path.join(bin, n), 0o755);
  }
  if (toolkitInstalled) for (const d of TOOLKIT_DOUBLES) copyDouble(d, bin);
  return rootDirs;
}

/** The backing dir of /opt/forge-harness (read-only inside the host), fresh, with every double in doubles/. */
function prepareHarnessDir(dir: string): string {
  const harnessDir = path.join(dir, "harness");
  fs.rmSync(harnessDir, { recursive: true, force: true });
  fs.mkdirSync(path.join(harnessDir, "doubles"), { recursive: true });
  for (const f of fs.readdirSync(DOUBLES_DIR)) {
    if (fs.statSync(path.join(DOUBLES_DIR, f)).isFile()) copyDouble(f, path.join(harnessDir, "doubles"));
  }
  return harnessDir;
}

interface EtcOverlay {
  upper: string;
  work: string;
}

/**
 * The optional private /etc layer (extra files and login users, visible only inside the host); undefined when the
 * host needs none. Login users may write the doubles' log in logDir.
 */
function writeEtcOverlay(dir: string, opts: SshHostOptions, logDir: string): EtcOverlay | undefined {
  const loginUsers = opts.loginUsers ?? [];
  if (loginUsers.length === 0 && Object.keys(opts.etcFiles ?? {}).length === 0) return undefined;
  const overlay = { upper: path.join(dir, "etc-upper"), work: path.join(dir, "etc-work") };
  for (const d of [overlay.upper, overlay.work]) {
    fs.rmSync(d, { recursive: true, force: true });
    fs.mkdirSync(d, { recursive: true });
  }
  for (const [f, content] of Object.entries(opts.etcFiles ?? {})) {
    fs.mkdirSync(path.dirname(path.join(overlay.upper, f)), { recursive: true });
    fs.writeFileSync(path.join(overlay.upper, f), content);
  }
  if (loginUsers.length > 0) {
    const add = (file: string, line: (u: string, id: number) => string) =>
      fs.writeFileSync(
        path.join(overlay.upper, file),
        fs.readFileSync(`/etc/${file}`, "utf8") + loginUsers.map((u, i) => `${line(u, 2000 + i)}\n`).join(""),
      );
    add("passwd", (u, id) => `${u}:x:${id}:${id}:forge-edge test user:/tmp:/bin/bash`);
    add("group", (u, id) => `${u}:x:${id}:`);
    fs.chmodSync(logDir, 0o1777);
    fs.writeFileSync(path.join(logDir, "doubles.log"), "", { mode: 0o666 });
    fs.chmodSync(path.join(logDir, "doubles.log"), 0o666);
  }
  return overlay;
}

/** What the namespace binds in from the real machine; "" = not available. */
interface HarnessTools {
  /** kubectl binary, bound over /opt/forge-harness/bin/kubectl. */
  kubectl: string;
  /** forge-edge-checker binary, bound over /opt/forge-harness/bin/forge-edge-checker. */
  checker: string;
  /** Backing dir of /opt/forge-harness-shared. */
  sharedDir: string;
}

/**
 * The control plane's kubeconfig in the harness dir, placeholders for the binaries bound in later (they may live
 * under the private /root), and the shared dir with its k3s-tokens/.
 */
function placeHarnessTools(dir: string, harnessDir: string, opts: SshHostOptions): HarnessTools {
  let kubectl = opts.kubectlPath ?? "";
  let sharedDir = opts.sharedDir ?? "";
  if (opts.controlPlane) {
    if (kubectl === "") kubectl = loadToolchain(["kubectl"]).bin.kubectl;
    if (sharedDir === "")
      sharedDir = path.join(path.dirname(path.resolve(opts.controlPlane.kubeconfigPath)), "harness-shared");
    fs.copyFileSync(opts.controlPlane.kubeconfigPath, path.join(harnessDir, "kubeconfig"));
  }
  if (sharedDir === "") sharedDir = path.join(dir, "harness-shared");
  if (kubectl !== "") {
    fs.mkdirSync(path.join(harnessDir, "bin"));
    fs.writeFileSync(path.join(harnessDir, "bin", "kubectl"), "");
  }
  let checker = opts.checkerPath ?? "";
  if (opts.checkerPath === undefined) {
    try {
      checker = checkerPath();
    } catch (e) {
      if (!(e instanceof CheckerMissingError)) throw e;
    }
  }
  if (checker !== "") {
    fs.mkdirSync(path.join(harnessDir, "bin"), { recursive: true });
    fs.writeFileSync(path.join(harnessDir, "bin", "forge-edge-checker"), "");
  }
  fs.mkdirSync(path.join(sharedDir, "k3s-tokens"), { recursive: true });
  return { kubectl, checker, sharedDir };
}

/** A shell file of KEY='value' lines, as the doubles source it. */
function shellVars(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([k, v]) => `${k}=${shq(v)}\n`)
    .join("");
}

/**
 * What the doubles read in /opt/forge-harness: env, gpu, identity.json, k3s-version, faults/. Returns the
 * host's knobs that rewrite them later.
 */
function writeHostFiles(
  harnessDir: string,
  opts: SshHostOptions,
  tools: HarnessTools,
): Pick<SshHost, "setK3sVersion" | "setGpu" | "fault"> {
  const env: Record<string, string> = {
    FORGE_HOST_NAME: opts.name,
    FORGE_HOST_IP: opts.ip,
    FORGE_API_PORT: opts.controlPlane ? String(opts.controlPlane.apiPort) : "",
    FORGE_KUBECTL: tools.kubectl !== "" ? `${HARNESS_MOUNT}/bin/kubectl` : "",
    FORGE_CHECKER: tools.checker !== "" ? `${HARNESS_MOUNT}/bin/forge-edge-checker` : "",
    FORGE_KUBECONFIG: opts.controlPlane ? `${HARNESS_MOUNT}/kubeconfig` : "",
    FORGE_SHARED: SHARED_MOUNT,
    FORGE_NODE_CPU: opts.node?.cpu ?? "16",
    FORGE_NODE_MEMORY: opts.node?.memory ?? "64Gi",
    FORGE_NODE_PODS: opts.node?.pods ?? "110",
    FORGE_EDGE_DURATIONS: opts.durations ?? "",
    // k3s double: "kubelet" starts a real node (k3s-node.sh) instead of registering a kwok Node.
    FORGE_NODE_MODE: opts.kubelet ? "kubelet" : "kwok",
    FORGE_NODE_IP: opts.kubelet?.ip ?? "",
    FORGE_NODE_BIN: opts.kubelet ? `${NODE_MOUNT}/bin` : "",
  };
  fs.writeFileSync(path.join(harnessDir, "env"), shellVars(env));
  let g = opts.gpu;
  const writeGpu = (): void =>
    fs.writeFileSync(
      path.join(harnessDir, "gpu"),
      shellVars({
        GPU_NAME: g.name,
        GPU_MEMORY_MIB: String(g.memoryMiB),
        GPU_DRIVER: g.driver,
        GPU_COMPUTE_CAP: g.computeCap,
        GPU_COUNT: String(g.count),
        GPU_DRIVER_LOADED: String(g.driverLoaded ?? g.driver !== ""),
      }),
    );
  writeGpu();
  fs.mkdirSync(path.join(harnessDir, "faults"));
  fs.writeFileSync(
    path.join(harnessDir, "identity.json"),
    JSON.stringify({ name: opts.name, ip: opts.ip, gpu: g }, null, 2),
  );
  const versionFile = path.join(harnessDir, "k3s-version");
  fs.writeFileSync(versionFile, `${opts.k3sVersion ?? "v1.36.4+k3s1"}\n`);
  return {
    setK3sVersion: (v: string) => fs.writeFileSync(versionFile, `${v}\n`),
    setGpu: (gpu: Partial<GpuSpec>) => {
      g = { ...g, ...gpu };
      writeGpu();
    },
    fault: (name: string, message: string | undefined) => {
      const f = path.join(harnessDir, "faults", name);
      if (message === undefined) fs.rmSync(f, { force: true });
      else fs.writeFileSync(f, message);
    },
  };
}

/**
 * sshd's own host key, authorized_keys (root with the test key only) and config, in the harness dir (/root, where
 * a test dir may be, is private inside the host). Returns the host key line and the config's in-host path.
 */
function writeSshdFiles(harnessDir: string, opts: SshHostOptions): { hostKeyLine: string; config: string } {
  const sshdDir = path.join(harnessDir, "sshd");
  fs.mkdirSync(sshdDir, { mode: 0o700 });
  const inHost = (p: string): string => path.join(HARNESS_MOUNT, path.relative(harnessDir, p));
  const hostKey = path.join(sshdDir, "ssh_host_ed25519_key");
  fs.rmSync(hostKey, { force: true });
  fs.rmSync(`${hostKey}.pub`, { force: true });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", opts.name, "-f", hostKey], {
    stdio: "ignore",
  });
  const pub = fs.readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/);
  const authorizedKeys = path.join(sshdDir, "authorized_keys");
  fs.writeFileSync(authorizedKeys, `${opts.authorizedKey.trim()}\n`, { mode: 0o600 });
  if ((opts.loginUsers ?? []).length > 0) {
    // sshd reads a user's authorized keys as that user: let the extra users read the (public) key.
    fs.chmodSync(sshdDir, 0o711);
    fs.chmodSync(authorizedKeys, 0o644);
  }
  const sshdConfig = path.join(sshdDir, "sshd_config");
  fs.writeFileSync(
    sshdConfig,
    [
      `ListenAddress ${opts.ip}:22`,
      `HostKey ${inHost(hostKey)}`,
      "PidFile none",
      `AuthorizedKeysFile ${inHost(authorizedKeys)}`,
      "PermitRootLogin prohibit-password",
      "PubkeyAuthentication yes",
      "AuthenticationMethods publickey",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      // The test's dirs may live under /tmp (mode 1777), which StrictModes would reject.
      "StrictModes no",
      "UseDNS no",
      "PrintMotd no",
      "PrintLastLog no",
      "X11Forwarding no",
      "AllowTcpForwarding yes",
      "MaxStartups 64:30:128",
      "MaxSessions 64",
      "Subsystem sftp internal-sftp",
      "LogLevel VERBOSE",
      "",
    ].join("\n"),
  );
  return { hostKeyLine: `${pub[0]} ${pub[1]}`, config: inHost(sshdConfig) };
}

/** sshd's privilege-separation dir and the empty mount points on the real machine (the mounts exist only inside). */
function makeMountPoints(privateDirs: string[]): void {
  // Normally made by the ssh service unit.
  fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  for (const mnt of privateDirs) fs.mkdirSync(mnt, { recursive: true });
  fs.mkdirSync(HARNESS_MOUNT, { recursive: true });
  fs.mkdirSync(SHARED_MOUNT, { recursive: true });
}

/** dir/namespace-setup.sh: run under `unshare`, it makes the host's mounts and then execs sshd. Returns its path. */
function writeNamespaceSetup(
  dir: string,
  opts: SshHostOptions,
  host: {
    harnessDir: string;
    rootDirs: Record<string, string>;
    etcOverlay: EtcOverlay | undefined;
    tools: HarnessTools;
    /** In-host path of sshd_config. */
    sshdConfig: string;
    node: NodeFiles | undefined;
  },
): string {
  const { harnessDir, rootDirs, etcOverlay, tools } = host;
  const setup = path.join(dir, "namespace-setup.sh");
  const lines = [
    "#!/usr/bin/env bash",
    "# Runs inside `unshare --mount --uts --propagation private`: private mounts, then sshd.",
    "set -euo pipefail",
    `hostname ${shq(opts.name)}`,
    // Before the private mounts, which may hide dir; this shell execs sshd, so $$ is sshd's pid.
    `echo $$ > ${shq(path.join(dir, SSHD_PID_FILE))}`,
    ...(etcOverlay
      ? [
          `mount -t overlay overlay -o lowerdir=/etc,upperdir=${shq(etcOverlay.upper)},workdir=${shq(etcOverlay.work)} /etc`,
        ]
      : []),
    `mount --bind ${shq(harnessDir)} ${HARNESS_MOUNT}`,
    `mount -o remount,bind,ro ${HARNESS_MOUNT}`,
    `mount --bind ${shq(tools.sharedDir)} ${SHARED_MOUNT}`,
    ...(tools.kubectl !== "" ? [`mount --bind ${shq(tools.kubectl)} ${HARNESS_MOUNT}/bin/kubectl`] : []),
    ...(tools.checker !== ""
      ? [`mount --bind ${shq(tools.checker)} ${HARNESS_MOUNT}/bin/forge-edge-checker`]
      : []),
    ...(host.node
      ? [
          `mount --bind ${shq(host.node.binDir)} ${NODE_MOUNT}/bin`,
          `mount -o remount,bind,ro ${NODE_MOUNT}/bin`,
          ...nodeIpLines(host.node.ip),
        ]
      : []),
    // Last: the sources above may live under one of these (e.g. /root/.cache).
    ...Object.keys(rootDirs).map((mnt) => `mount --bind ${shq(rootDirs[mnt])} ${shq(mnt)}`),
    ...(opts.rancherDiskMiB !== undefined
      ? [`mount -t tmpfs -o size=${Math.floor(opts.rancherDiskMiB)}m tmpfs /var/lib/rancher`]
      : []),
    ...(opts.initComm !== undefined
      ? [`mount --bind ${shq(writeInitComm(dir, opts.initComm))} /proc/1/comm`]
      : []),
    `exec /usr/sbin/sshd -D -e -f ${host.sshdConfig}`,
    "",
  ];
  fs.writeFileSync(setup, lines.join("\n"), { mode: 0o755 });
  return setup;
}

/** dir/init-comm: the host's view of /proc/1/comm. */
function writeInitComm(dir: string, comm: string): string {
  const f = path.join(dir, "init-comm");
  fs.writeFileSync(f, `${comm.trim()}\n`);
  return f;
}

function snapshotDirs(rootDirs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (inHost: string, real: string): void => {
    for (const e of fs.readdirSync(real).sort()) {
      const r = path.join(real, e);
      const h = `${inHost}/${e}`;
      const st = fs.lstatSync(r);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[h] = `link:${fs.readlinkSync(r)}`;
      else if (st.isDirectory()) {
        out[h] = `dir:${mode}`;
        walk(h, r);
      } else if (st.isFile()) {
        out[h] = `file:${mode}:${crypto.createHash("sha256").update(fs.readFileSync(r)).digest("hex")}`;
      } else out[h] = "other";
    }
  };
  for (const [mnt, real] of Object.entries(rootDirs)) if (!SNAPSHOT_EXCLUDED.has(mnt)) walk(mnt, real);
  return out;
}

/** known_hosts line for a host. */
export function knownHostsLine(h: Pick<SshHost, "host" | "hostKeyLine">): string {
  return `${h.host} ${h.hostKeyLine}`;
}

/**
 * Runs a command on a host with the OpenSSH client (strict host key checking against hostKeyLine).
 * privateKeyFile must be mode 0600.
 */
export function sshRun(
  h: Pick<SshHost, "host" | "hostKeyLine">,
  privateKeyFile: string,
  command: string,
  input?: string,
  timeoutMs = 120000,
): { status: number; stdout: string; stderr: string } {
  const kh = `${privateKeyFile}.known_hosts`;
  fs.writeFileSync(kh, `${knownHostsLine(h)}\n`);
  const r = spawnSync(
    "ssh",
    [
      "-i",
      privateKeyFile,
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${kh}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "ConnectTimeout=10",
      "-o",
      "LogLevel=ERROR",
      `root@${h.host}`,
      command,
    ],
    { input: input ?? "", encoding: "utf8", timeout: timeoutMs },
  );
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
