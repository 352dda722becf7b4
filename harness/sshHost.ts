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
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { canConnect, sleep, spawnLogged, waitFor, WaitAbort, type Managed } from "./controlPlane";
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
];
const SNAPSHOT_EXCLUDED = new Set(["/var/log/forge-edge", "/root"]);
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

function mountNsOf(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

function pidsInMountNs(ns: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (mountNsOf(pid) === ns) out.push(pid);
  }
  return out;
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

/** One process 'exit' listener for every live host (a fleet of hosts would otherwise trip MaxListeners). */
const exitHooks = new Set<() => void>();
process.on("exit", () => {
  for (const hook of exitHooks) hook();
});

export async function startSshHost(opts: SshHostOptions): Promise<SshHost> {
  const t0 = Date.now();
  checkPrereqs();
  if (!/^127\.0\.1\.\d{1,3}$/.test(opts.ip))
    throw new Error(`sshHost ${opts.name}: ip must be 127.0.1.N, got ${opts.ip}`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(opts.name))
    throw new Error(`sshHost: bad host name ${opts.name}`);
  if (await canConnect(opts.ip, 22, 300))
    throw new Error(`sshHost ${opts.name}: ${opts.ip}:22 is already in use`);

  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  const privRoot = path.join(dir, "private");
  const rootDirs: Record<string, string> = {};
  for (const [mnt, slug] of PRIVATE_DIRS) {
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
  if (opts.toolkitInstalled ?? true) for (const d of TOOLKIT_DOUBLES) copyDouble(d, bin);

  // /opt/forge-harness (read-only inside the host).
  const harnessDir = path.join(dir, "harness");
  fs.rmSync(harnessDir, { recursive: true, force: true });
  fs.mkdirSync(path.join(harnessDir, "doubles"), { recursive: true });
  for (const f of fs.readdirSync(DOUBLES_DIR)) {
    if (fs.statSync(path.join(DOUBLES_DIR, f)).isFile()) copyDouble(f, path.join(harnessDir, "doubles"));
  }
  if (opts.preloadAirgap === true) makeAirgapBundle(path.join(rootDirs["/var/lib/forge-edge"], "airgap"));

  // Optional private /etc layer: extra files and login users, visible only inside the host.
  const etcUpper = path.join(dir, "etc-upper");
  const etcWork = path.join(dir, "etc-work");
  const loginUsers = opts.loginUsers ?? [];
  const etcOverlay = loginUsers.length > 0 || Object.keys(opts.etcFiles ?? {}).length > 0;
  if (etcOverlay) {
    for (const d of [etcUpper, etcWork]) {
      fs.rmSync(d, { recursive: true, force: true });
      fs.mkdirSync(d, { recursive: true });
    }
    for (const [f, content] of Object.entries(opts.etcFiles ?? {})) {
      fs.mkdirSync(path.dirname(path.join(etcUpper, f)), { recursive: true });
      fs.writeFileSync(path.join(etcUpper, f), content);
    }
    if (loginUsers.length > 0) {
      const add = (file: string, line: (u: string, id: number) => string) =>
        fs.writeFileSync(
          path.join(etcUpper, file),
          fs.readFileSync(`/etc/${file}`, "utf8") +
            loginUsers.map((u, i) => `${line(u, 2000 + i)}\n`).join(""),
        );
      add("passwd", (u, id) => `${u}:x:${id}:${id}:forge-edge test user:/tmp:/bin/bash`);
      add("group", (u, id) => `${u}:x:${id}:`);
      fs.chmodSync(rootDirs["/var/log/forge-edge"], 0o1777);
      fs.writeFileSync(path.join(rootDirs["/var/log/forge-edge"], "doubles.log"), "", { mode: 0o666 });
      fs.chmodSync(path.join(rootDirs["/var/log/forge-edge"], "doubles.log"), 0o666);
    }
  }

  let kubectl = opts.kubectlPath ?? "";
  let sharedDir = opts.sharedDir ?? "";
  let apiPort = "";
  if (opts.controlPlane) {
    if (kubectl === "") kubectl = loadToolchain(["kubectl"]).bin.kubectl;
    if (sharedDir === "")
      sharedDir = path.join(path.dirname(path.resolve(opts.controlPlane.kubeconfigPath)), "harness-shared");
    fs.copyFileSync(opts.controlPlane.kubeconfigPath, path.join(harnessDir, "kubeconfig"));
    apiPort = String(opts.controlPlane.apiPort);
  }
  if (sharedDir === "") sharedDir = path.join(dir, "harness-shared");
  if (kubectl !== "") {
    // Bind-mounted over this placeholder inside the host (the binary may live under the private /root).
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

  const env: Record<string, string> = {
    FORGE_HOST_NAME: opts.name,
    FORGE_HOST_IP: opts.ip,
    FORGE_API_PORT: apiPort,
    FORGE_KUBECTL: kubectl !== "" ? `${HARNESS_MOUNT}/bin/kubectl` : "",
    FORGE_CHECKER: checker !== "" ? `${HARNESS_MOUNT}/bin/forge-edge-checker` : "",
    FORGE_KUBECONFIG: opts.controlPlane ? `${HARNESS_MOUNT}/kubeconfig` : "",
    FORGE_SHARED: SHARED_MOUNT,
    FORGE_NODE_CPU: opts.node?.cpu ?? "16",
    FORGE_NODE_MEMORY: opts.node?.memory ?? "64Gi",
    FORGE_NODE_PODS: opts.node?.pods ?? "110",
  };
  fs.writeFileSync(
    path.join(harnessDir, "env"),
    Object.entries(env)
      .map(([k, v]) => `${k}=${shq(v)}\n`)
      .join(""),
  );
  let g = opts.gpu;
  const writeGpu = (): void => {
    const gpuFile: Record<string, string> = {
      GPU_NAME: g.name,
      GPU_MEMORY_MIB: String(g.memoryMiB),
      GPU_DRIVER: g.driver,
      GPU_COMPUTE_CAP: g.computeCap,
      GPU_COUNT: String(g.count),
      GPU_DRIVER_LOADED: String(g.driverLoaded ?? g.driver !== ""),
    };
    fs.writeFileSync(
      path.join(harnessDir, "gpu"),
      Object.entries(gpuFile)
        .map(([k, v]) => `${k}=${shq(v)}\n`)
        .join(""),
    );
  };
  writeGpu();
  fs.mkdirSync(path.join(harnessDir, "faults"));
  fs.writeFileSync(
    path.join(harnessDir, "identity.json"),
    JSON.stringify({ name: opts.name, ip: opts.ip, gpu: g }, null, 2),
  );
  const versionFile = path.join(harnessDir, "k3s-version");
  fs.writeFileSync(versionFile, `${opts.k3sVersion ?? "v1.36.4+k3s1"}\n`);

  // sshd: own host key, own config, root with the test key only.
  // sshd's own files live in the harness dir: /root (where a test dir may be) is private inside the host.
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
  const hostKeyLine = `${pub[0]} ${pub[1]}`;
  const authorizedKeys = path.join(sshdDir, "authorized_keys");
  fs.writeFileSync(authorizedKeys, `${opts.authorizedKey.trim()}\n`, { mode: 0o600 });
  if (loginUsers.length > 0) {
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
  // Privilege-separation dir, normally made by the ssh service unit.
  fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });

  // Mount points on the real machine (empty dirs; the private mounts exist only inside the host).
  for (const [mnt] of PRIVATE_DIRS) fs.mkdirSync(mnt, { recursive: true });
  fs.mkdirSync(HARNESS_MOUNT, { recursive: true });
  fs.mkdirSync(SHARED_MOUNT, { recursive: true });

  const setup = path.join(dir, "namespace-setup.sh");
  const lines = [
    "#!/usr/bin/env bash",
    "# Runs inside `unshare --mount --uts --propagation private`: private mounts, then sshd.",
    "set -euo pipefail",
    `hostname ${shq(opts.name)}`,
    ...(etcOverlay
      ? [`mount -t overlay overlay -o lowerdir=/etc,upperdir=${shq(etcUpper)},workdir=${shq(etcWork)} /etc`]
      : []),
    `mount --bind ${shq(harnessDir)} ${HARNESS_MOUNT}`,
    `mount -o remount,bind,ro ${HARNESS_MOUNT}`,
    `mount --bind ${shq(sharedDir)} ${SHARED_MOUNT}`,
    ...(kubectl !== "" ? [`mount --bind ${shq(kubectl)} ${HARNESS_MOUNT}/bin/kubectl`] : []),
    ...(checker !== "" ? [`mount --bind ${shq(checker)} ${HARNESS_MOUNT}/bin/forge-edge-checker`] : []),
    // Last: the sources above may live under one of these (e.g. /root/.cache).
    ...PRIVATE_DIRS.map(([mnt]) => `mount --bind ${shq(rootDirs[mnt])} ${shq(mnt)}`),
    ...(opts.rancherDiskMiB !== undefined
      ? [`mount -t tmpfs -o size=${Math.floor(opts.rancherDiskMiB)}m tmpfs /var/lib/rancher`]
      : []),
    `exec /usr/sbin/sshd -D -e -f ${inHost(sshdConfig)}`,
    "",
  ];
  fs.writeFileSync(setup, lines.join("\n"), { mode: 0o755 });
  const spawnSshd = (): Managed =>
    spawnLogged(
      `sshd(${opts.name})`,
      "/usr/bin/unshare",
      ["--mount", "--uts", "--propagation", "private", "/bin/bash", setup],
      path.join(dir, "sshd.log"),
    );
  let sshd = spawnSshd();

  const ownNs = mountNsOf(process.pid);
  // If the test runner dies without stop(), take the host's processes (incl. setsid'd forwarders) down too.
  const onExit = (): void => {
    const target = ns ?? mountNsOf(sshd.pid);
    if (target === undefined || target === ownNs) return;
    for (const pid of pidsInMountNs(target)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  };
  let ns: string | undefined;
  let stopped: Promise<number> | undefined;
  const stop = (): Promise<number> => {
    stopped ??= (async () => {
      exitHooks.delete(onExit);
      const s = Date.now();
      const target = ns ?? mountNsOf(sshd.pid);
      const killAll = (sig: NodeJS.Signals): number => {
        const pids = target !== undefined && target !== ownNs ? pidsInMountNs(target) : [];
        if (target === undefined || target === ownNs) pids.push(sshd.pid);
        for (const pid of pids) {
          try {
            process.kill(pid, sig);
          } catch {
            /* gone */
          }
        }
        return pids.length;
      };
      killAll("SIGTERM");
      const deadline = Date.now() + 3000;
      while (
        Date.now() < deadline &&
        (target !== undefined && target !== ownNs ? pidsInMountNs(target).length : 0) > 0
      ) {
        await sleep(50);
      }
      if (target !== undefined && target !== ownNs) {
        const hardDeadline = Date.now() + 5000;
        while (killAll("SIGKILL") > 0) {
          if (Date.now() > hardDeadline)
            throw new Error(`sshHost ${opts.name}: processes in ${target} survive SIGKILL`);
          await sleep(50);
        }
      }
      await Promise.race([sshd.exited, sleep(2000)]);
      exitHooks.delete(onExit);
      return Date.now() - s;
    })();
    return stopped;
  };

  const boot = async (): Promise<void> => {
    exitHooks.add(onExit);
    try {
      await waitFor(
        `sshd of ${opts.name} on ${opts.ip}:22`,
        30000,
        async () => {
          const info = sshd.exitInfo();
          if (info !== undefined)
            throw new WaitAbort(`${info}\n${fs.readFileSync(path.join(dir, "sshd.log"), "utf8")}`);
          return (await canConnect(opts.ip, 22, 500)) ? true : undefined;
        },
        100,
      );
      ns = mountNsOf(sshd.pid);
      if (ns === undefined || ns === ownNs)
        throw new Error(`sshd of ${opts.name} is not in its own mount namespace`);
    } catch (e) {
      await stop();
      throw e;
    }
  };
  exitHooks.delete(onExit);
  await boot();
  const restart = async (): Promise<void> => {
    await stop();
    ns = undefined;
    stopped = undefined;
    sshd = spawnSshd();
    await boot();
  };

  const doublesLog = path.join(rootDirs["/var/log/forge-edge"], "doubles.log");
  return {
    name: opts.name,
    host: opts.ip,
    port: 22,
    hostKeyLine,
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
    restart,
    stop,
  };
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
