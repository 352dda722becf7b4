/**
 * A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler) plus kwok as the stand-in for every kubelet, all bound to 127.0.0.1
 * on ports picked at run time. PKI is made with the `openssl` CLI.
 *
 * Also exports a tiny HTTPS client (KubeClient) over an admin kubeconfig, used by the
 * readiness checks, the device-plugin simulator and the smoke tests.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import * as path from "node:path";
import { loadToolchain, type Toolchain } from "./toolchain";

export interface ControlPlaneOptions {
  /** Working dir: PKI, etcd data, kubeconfigs and one log file per component go here. */
  dir: string;
  /** Extra IP SANs for the apiserver serving cert: every SSH test host's address (their K3s forwarders serve it). */
  hostIps: string[];
  /** Defaults to loadToolchain(). */
  toolchain?: Toolchain;
  /** Seconds to wait for /readyz and the default ServiceAccount. Default 180 (the machine may be busy). */
  readyTimeoutSec?: number;
}

export interface ControlPlane {
  /** Admin kubeconfig (O=system:masters), server https://127.0.0.1:<apiPort>, certs embedded. */
  kubeconfigPath: string;
  /** https://127.0.0.1:<apiPort> */
  server: string;
  caPem: string;
  apiPort: number;
  /** Admin client cert/key (PEM), for direct HTTPS calls. */
  adminCertPem: string;
  adminKeyPem: string;
  /** Log file of each component, in dir. */
  logs: Record<string, string>;
  /** Milliseconds from the call to readiness (readyz ok + default ServiceAccount). */
  startMs: number;
  /** Kills every component (process groups); idempotent. Resolves with the milliseconds it took. */
  stop(): Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Small utilities shared by the harness.

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A TCP port that was free on host a moment ago. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** True when something accepts TCP connections on host:port (host must be loopback). */
export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/** Thrown from a waitFor callback to stop waiting at once (e.g. the awaited process died). */
export class WaitAbort extends Error {}

/** Polls fn until it returns a non-undefined value, or throws after timeoutMs with what. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined>,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = "";
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      if (e instanceof WaitAbort) throw e;
      lastErr = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr})` : ""}`,
      );
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Process groups. Every child is started detached (its own process group) so stop() can kill
// the whole group; a process 'exit' hook kills whatever is left if the test runner dies early.

const liveGroups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  });
  // A runner killed by a signal never reaches 'exit' unless someone exits for it; a program with its own
  // handler (the demo cleans up first) keeps that job.
  for (const [sig, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(sig) === 1) process.exit(code);
    };
    process.on(sig, onSignal);
  }
}

export interface Managed {
  name: string;
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
  exitInfo(): string | undefined;
}

/** Spawns cmd in its own process group, stdout+stderr appended to logFile. */
export function spawnLogged(
  name: string,
  cmd: string,
  args: string[],
  logFile: string,
  env?: NodeJS.ProcessEnv,
): Managed {
  installExitHook();
  const fd = fs.openSync(logFile, "a");
  fs.writeSync(fd, `# ${new Date().toISOString()} ${cmd} ${args.join(" ")}\n`);
  const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd], env: env ?? process.env });
  fs.closeSync(fd);
  if (child.pid === undefined) throw new Error(`failed to start ${name} (${cmd})`);
  const pid = child.pid;
  liveGroups.add(pid);
  let info: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      info = `${name} exited (code ${String(code)}, signal ${String(signal)}); see ${logFile}`;
      liveGroups.delete(pid);
      resolve();
    });
    child.once("error", (e) => {
      info = `${name} failed to start: ${e.message}`;
      liveGroups.delete(pid);
      resolve();
    });
  });
  return { name, child, pid, exited, exitInfo: () => info };
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to the process group, SIGKILL after graceMs; waits until the group is gone. */
export async function killGroup(m: Managed, graceMs = 5000): Promise<void> {
  const pgid = m.pid;
  try {
    process.kill(-pgid, "SIGTERM");
  } catch {
    /* gone */
  }
  const deadline = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
  if (groupAlive(pgid)) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      /* gone */
    }
    while (groupAlive(pgid)) await sleep(20);
  }
  await Promise.race([m.exited, sleep(1000)]);
  liveGroups.delete(pgid);
}

// ---------------------------------------------------------------------------------------------
// Kubeconfig + HTTPS client.

export interface KubeCreds {
  server: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export function renderKubeconfig(c: KubeCreds, user = "admin", cluster = "forge-edge"): string {
  const b64 = (s: string): string => Buffer.from(s).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${cluster}`,
    "  cluster:",
    `    server: ${c.server}`,
    `    certificate-authority-data: ${b64(c.caPem)}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    client-certificate-data: ${b64(c.certPem)}`,
    `    client-key-data: ${b64(c.keyPem)}`,
    "contexts:",
    `- name: ${cluster}`,
    "  context:",
    `    cluster: ${cluster}`,
    `    user: ${user}`,
    `current-context: ${cluster}`,
    "",
  ].join("\n");
}

/** Reads server + embedded CA/client cert/key from a kubeconfig (the form renderKubeconfig and K3s write). */
export function readKubeconfig(file: string): KubeCreds {
  const text = fs.readFileSync(file, "utf8");
  const field = (key: string): string => {
    const m = new RegExp(`^\\s*${key}:\\s*"?([^"\\s]+)"?\\s*$`, "m").exec(text);
    if (!m) throw new Error(`${file}: no ${key}`);
    return m[1];
  };
  const data = (key: string): string => Buffer.from(field(key), "base64").toString("utf8");
  return {
    server: field("server"),
    caPem: data("certificate-authority-data"),
    certPem: data("client-certificate-data"),
    keyPem: data("client-key-data"),
  };
}

export interface KubeResponse {
  status: number;
  body: string;
  json(): unknown;
}

/** Minimal Kubernetes API client over https with client-cert auth. Loopback servers only. */
export class KubeClient {
  private readonly url: URL;
  private readonly agent: https.Agent;

  constructor(readonly creds: KubeCreds) {
    this.url = new URL(creds.server);
    this.agent = new https.Agent({
      ca: creds.caPem,
      cert: creds.certPem,
      key: creds.keyPem,
      keepAlive: false,
    });
  }

  static fromKubeconfig(file: string): KubeClient {
    return new KubeClient(readKubeconfig(file));
  }

  request(
    method: string,
    apiPath: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<KubeResponse> {
    const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.url.hostname,
          port: this.url.port === "" ? 443 : Number(this.url.port),
          method,
          path: apiPath,
          agent: this.agent,
          timeout: 15000,
          headers:
            payload === undefined
              ? {}
              : { "content-type": contentType, "content-length": Buffer.byteLength(payload) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) as unknown });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${apiPath}: timeout`)));
      req.on("error", reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** GET returning parsed JSON, undefined on 404, throwing on other errors. */
  async get(apiPath: string): Promise<unknown> {
    const r = await this.request("GET", apiPath);
    if (r.status === 404) return undefined;
    if (r.status >= 300) throw new Error(`GET ${apiPath}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
    return r.json();
  }

  /** Sends and throws unless 2xx (404 allowed when okIfMissing). */
  async send(
    method: string,
    apiPath: string,
    body?: unknown,
    contentType?: string,
    okIfMissing = false,
  ): Promise<unknown> {
    const r = await this.request(method, apiPath, body, contentType);
    if (okIfMissing && r.status === 404) return undefined;
    if (r.status >= 300) throw new Error(`${method} ${apiPath}: HTTP ${r.status} ${r.body.slice(0, 500)}`);
    return r.body === "" ? undefined : r.json();
  }
}

// ---------------------------------------------------------------------------------------------
// PKI with the openssl CLI (EC P-256 keys: fast to generate, accepted by every component).

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function ecKey(file: string, cwd: string): void {
  openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file], cwd);
}

function signedCert(
  cwd: string,
  base: string,
  subject: string,
  ext: string[],
): { certPem: string; keyPem: string; certFile: string; keyFile: string } {
  ecKey(`${base}.key`, cwd);
  openssl(["req", "-new", "-key", `${base}.key`, "-subj", subject, "-out", `${base}.csr`], cwd);
  fs.writeFileSync(path.join(cwd, `${base}.ext`), ext.join("\n") + "\n");
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${base}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "30",
      "-sha256",
      "-extfile",
      `${base}.ext`,
      "-out",
      `${base}.crt`,
    ],
    cwd,
  );
  return {
    certPem: fs.readFileSync(path.join(cwd, `${base}.crt`), "utf8"),
    keyPem: fs.readFileSync(path.join(cwd, `${base}.key`), "utf8"),
    certFile: path.join(cwd, `${base}.crt`),
    keyFile: path.join(cwd, `${base}.key`),
  };
}

export interface Pki {
  caFile: string;
  caKeyFile: string;
  caPem: string;
  apiserver: { certFile: string; keyFile: string };
  admin: { certPem: string; keyPem: string };
  controllerManager: { certPem: string; keyPem: string };
  scheduler: { certPem: string; keyPem: string };
  saKeyFile: string;
  saPubFile: string;
}

/** CA, apiserver serving cert (IP SANs 127.0.0.1, 10.43.0.1, hostIps), client certs, SA key pair. */
export function makePki(dir: string, hostIps: string[]): Pki {
  fs.mkdirSync(dir, { recursive: true });
  ecKey("ca.key", dir);
  openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "ca.key",
      "-subj",
      "/CN=forge-edge-test-ca",
      "-days",
      "30",
      "-sha256",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
      "-out",
      "ca.crt",
    ],
    dir,
  );
  const ips = [...new Set(["127.0.0.1", "10.43.0.1", ...hostIps])];
  for (const ip of ips) if (net.isIP(ip) === 0) throw new Error(`hostIps: ${ip} is not an IP address`);
  const dns = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
  ];
  const san = [...ips.map((i) => `IP:${i}`), ...dns.map((d) => `DNS:${d}`)].join(",");
  const serverExt = [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    `subjectAltName=${san}`,
  ];
  const clientExt = [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=clientAuth",
  ];
  const apiserver = signedCert(dir, "apiserver", "/CN=kube-apiserver", serverExt);
  const admin = signedCert(dir, "admin", "/O=system:masters/CN=kubernetes-admin", clientExt);
  const cm = signedCert(dir, "controller-manager", "/CN=system:kube-controller-manager", clientExt);
  const sched = signedCert(dir, "scheduler", "/CN=system:kube-scheduler", clientExt);
  ecKey("sa.key", dir);
  openssl(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
  return {
    caFile: path.join(dir, "ca.crt"),
    caKeyFile: path.join(dir, "ca.key"),
    caPem: fs.readFileSync(path.join(dir, "ca.crt"), "utf8"),
    apiserver: { certFile: apiserver.certFile, keyFile: apiserver.keyFile },
    admin: { certPem: admin.certPem, keyPem: admin.keyPem },
    controllerManager: { certPem: cm.certPem, keyPem: cm.keyPem },
    scheduler: { certPem: sched.certPem, keyPem: sched.keyPem },
    saKeyFile: path.join(dir, "sa.key"),
    saPubFile: path.join(dir, "sa.pub"),
  };
}

// ---------------------------------------------------------------------------------------------

/** Node lease duration passed to kwok when its stages include the heartbeat-with-lease stage. */
const NODE_LEASE_SECONDS = 40;

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const t0 = Date.now();
  const tc =
    opts.toolchain ??
    loadToolchain(["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]);
  const timeoutMs = (opts.readyTimeoutSec ?? 180) * 1000;
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  const pki = makePki(path.join(dir, "pki"), opts.hostIps);

  const [etcdClient, etcdPeer, apiPort, cmPort, schedPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfigPath = path.join(dir, "admin.kubeconfig");
  fs.writeFileSync(kubeconfigPath, renderKubeconfig({ server, caPem: pki.caPem, ...pki.admin }), {
    mode: 0o600,
  });
  const cmKubeconfig = path.join(dir, "controller-manager.kubeconfig");
  fs.writeFileSync(
    cmKubeconfig,
    renderKubeconfig({ server, caPem: pki.caPem, ...pki.controllerManager }, "cm"),
    { mode: 0o600 },
  );
  const schedKubeconfig = path.join(dir, "scheduler.kubeconfig");
  fs.writeFileSync(
    schedKubeconfig,
    renderKubeconfig({ server, caPem: pki.caPem, ...pki.scheduler }, "sched"),
    { mode: 0o600 },
  );

  const kwokConfig = path.join(dir, "kwok-stages.yaml");
  fs.writeFileSync(kwokConfig, tc.kwokStages);
  if (!/name:\s*pod-delete\b/.test(tc.kwokStages)) {
    throw new Error(
      `${tc.manifestPath}: kwokStages lacks the pod-delete stage (pods would never finish deleting)`,
    );
  }
  const useLease = /name:\s*node-heartbeat-with-lease\b/.test(tc.kwokStages);

  const logs: Record<string, string> = {};
  const procs: Managed[] = [];
  const log = (n: string): string => (logs[n] = path.join(dir, `${n}.log`));
  let stopped: Promise<number> | undefined;
  const stop = (): Promise<number> => {
    stopped ??= (async () => {
      const s = Date.now();
      for (const p of [...procs].reverse()) await killGroup(p);
      return Date.now() - s;
    })();
    return stopped;
  };
  const tail = (name: string): string => {
    try {
      return fs.readFileSync(logs[name], "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "";
    }
  };
  const check = (): void => {
    for (const p of procs) {
      const info = p.exitInfo();
      if (info !== undefined) throw new WaitAbort(`${info}\n${tail(p.name)}`);
    }
  };

  try {
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    procs.push(
      spawnLogged(
        "etcd",
        tc.bin.etcd,
        [
          "--name=default",
          `--data-dir=${path.join(dir, "etcd-data")}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=default=${peerUrl}`,
          "--unsafe-no-fsync",
          "--log-level=warn",
        ],
        log("etcd"),
      ),
    );
    await waitFor("etcd", timeoutMs, async () => {
      check();
      return (await canConnect("127.0.0.1", etcdClient)) ? true : undefined;
    });

    procs.push(
      spawnLogged(
        "kube-apiserver",
        tc.bin["kube-apiserver"],
        [
          "--bind-address=127.0.0.1",
          "--advertise-address=127.0.0.1",
          `--secure-port=${apiPort}`,
          `--etcd-servers=${etcdUrl}`,
          `--client-ca-file=${pki.caFile}`,
          `--tls-cert-file=${pki.apiserver.certFile}`,
          `--tls-private-key-file=${pki.apiserver.keyFile}`,
          "--authorization-mode=Node,RBAC",
          "--service-cluster-ip-range=10.43.0.0/16",
          "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
          `--service-account-key-file=${pki.saPubFile}`,
          `--service-account-signing-key-file=${pki.saKeyFile}`,
          "--allow-privileged=true",
          // 127.0.0.1 is not a valid Endpoints address; nothing ever dials the kubernetes Service here.
          "--endpoint-reconciler-type=none",
          "--profiling=false",
          `--cert-dir=${path.join(dir, "apiserver-certs")}`,
        ],
        log("kube-apiserver"),
      ),
    );
    const admin = new KubeClient({ server, caPem: pki.caPem, ...pki.admin });
    await waitFor(
      "kube-apiserver /readyz",
      timeoutMs,
      async () => {
        check();
        const r = await admin.request("GET", "/readyz");
        return r.status === 200 ? true : undefined;
      },
      300,
    );

    procs.push(
      spawnLogged(
        "kube-controller-manager",
        tc.bin["kube-controller-manager"],
        [
          `--kubeconfig=${cmKubeconfig}`,
          `--authentication-kubeconfig=${cmKubeconfig}`,
          `--authorization-kubeconfig=${cmKubeconfig}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${cmPort}`,
          "--leader-elect=false",
          `--service-account-private-key-file=${pki.saKeyFile}`,
          `--root-ca-file=${pki.caFile}`,
          `--cluster-signing-cert-file=${pki.caFile}`,
          `--cluster-signing-key-file=${pki.caKeyFile}`,
          "--use-service-account-credentials=true",
          "--service-cluster-ip-range=10.43.0.0/16",
          "--allocate-node-cidrs=false",
          "--controllers=*,bootstrapsigner,tokencleaner",
        ],
        log("kube-controller-manager"),
      ),
    );
    procs.push(
      spawnLogged(
        "kube-scheduler",
        tc.bin["kube-scheduler"],
        [
          `--kubeconfig=${schedKubeconfig}`,
          `--authentication-kubeconfig=${schedKubeconfig}`,
          `--authorization-kubeconfig=${schedKubeconfig}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${schedPort}`,
          "--leader-elect=false",
        ],
        log("kube-scheduler"),
      ),
    );
    const kwokArgs = [
      `--kubeconfig=${kubeconfigPath}`,
      "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
      `--config=${kwokConfig}`,
      // Fake addresses written into Node/Pod status only; nothing listens or dials there. Pod IPs come from
      // 198.18.0.0/15 (RFC 2544, reserved for benchmarks, never routed): EndpointSlices refuse loopback pod IPs,
      // and without endpoints a Service never becomes ready.
      "--node-ip=127.77.0.1",
      "--cidr=198.18.0.0/16",
    ];
    if (useLease) kwokArgs.push(`--node-lease-duration-seconds=${NODE_LEASE_SECONDS}`);
    procs.push(spawnLogged("kwok", tc.bin.kwok, kwokArgs, log("kwok")));

    await waitFor(
      "the default ServiceAccount in namespace default",
      timeoutMs,
      async () => {
        check();
        return (await admin.get("/api/v1/namespaces/default/serviceaccounts/default")) === undefined
          ? undefined
          : true;
      },
      300,
    );
    check();
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    kubeconfigPath,
    server,
    caPem: pki.caPem,
    apiPort,
    adminCertPem: pki.admin.certPem,
    adminKeyPem: pki.admin.keyPem,
    logs,
    startMs: Date.now() - t0,
    stop,
  };
}
