/**
 * A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler) plus kwok as the stand-in for every kubelet, all bound to 127.0.0.1
 * on ports picked at run time. PKI comes from pki.ts, process control from proc.ts, the
 * readiness checks go through kubeClient.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";
import { KubeClient, renderKubeconfig, type KubeCreds } from "./kubeClient";
import { makePki, type Pki } from "./pki";
import { canConnect, freePorts, killGroup, spawnLogged, waitFor, WaitAbort, type Managed } from "./proc";
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
  /**
   * Pods with these labels turn Ready only this long after kwok first sees them Pending: a model load (issue 12's
   * realistic durations, harness/ttsSim.ts). Default: none (every pod is made Ready at once).
   */
  podReadyDelay?: PodReadyDelay;
}

export interface PodReadyDelay {
  /** The label that selects the delayed pods. */
  label: { key: string; value: string };
  milliseconds: number;
}

export interface ControlPlane {
  /** Admin kubeconfig (O=system:masters), server https://127.0.0.1:<apiPort>, certs embedded. */
  kubeconfigPath: string;
  /** https://127.0.0.1:<apiPort> */
  server: string;
  caPem: string;
  /** The cluster CA's certificate and key files: a real node signs its kubelet's and kube-proxy's certs with them. */
  pki: { caFile: string; caKeyFile: string };
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

  const [etcdClient, etcdPeer, apiPort, cmPort, schedPort] = await freePorts(5);
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfigs = writeKubeconfigs(dir, server, pki);
  const kwok = writeKwokStages(dir, tc, opts.podReadyDelay);
  const components = new Components(dir);
  const { check } = components;

  try {
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    components.start("etcd", tc.bin.etcd, etcdArgs(dir, etcdUrl, `http://127.0.0.1:${etcdPeer}`));
    await waitFor("etcd", timeoutMs, async () => {
      check();
      return (await canConnect("127.0.0.1", etcdClient)) ? true : undefined;
    });

    components.start("kube-apiserver", tc.bin["kube-apiserver"], apiserverArgs(dir, apiPort, etcdUrl, pki));
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

    // K3s's manifests/rolebindings.yaml: the apiserver may use the kubelet API (logs, exec, port-forward).
    await admin.send(
      "POST",
      "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
      KUBELET_API_ADMIN_BINDING,
    );

    components.start(
      "kube-controller-manager",
      tc.bin["kube-controller-manager"],
      controllerManagerArgs(kubeconfigs.controllerManager, cmPort, pki),
    );
    components.start(
      "kube-scheduler",
      tc.bin["kube-scheduler"],
      schedulerArgs(kubeconfigs.scheduler, schedPort),
    );
    components.start("kwok", tc.bin.kwok, kwokArgs(kubeconfigs.admin, kwok.stagesFile, kwok.useLease));

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
    await components.stop();
    throw e;
  }

  return {
    kubeconfigPath: kubeconfigs.admin,
    server,
    caPem: pki.caPem,
    pki: { caFile: pki.caFile, caKeyFile: pki.caKeyFile },
    apiPort,
    adminCertPem: pki.admin.certPem,
    adminKeyPem: pki.admin.keyPem,
    logs: components.logs,
    startMs: Date.now() - t0,
    stop: components.stop,
  };
}

/** The components started so far: one log file each in dir, stopped in reverse order. */
class Components {
  readonly logs: Record<string, string> = {};
  private readonly procs: Managed[] = [];
  private stopped: Promise<number> | undefined;

  constructor(private readonly dir: string) {}

  /** Starts a component in its own process group, logging to dir/<name>.log. */
  start(name: string, bin: string, args: string[]): void {
    this.logs[name] = path.join(this.dir, `${name}.log`);
    this.procs.push(spawnLogged(name, bin, args, this.logs[name]));
  }

  /** Kills every component (process groups, last started first); idempotent. Resolves with the milliseconds it took. */
  readonly stop = (): Promise<number> => {
    this.stopped ??= (async () => {
      const s = Date.now();
      for (const p of [...this.procs].reverse()) await killGroup(p);
      return Date.now() - s;
    })();
    return this.stopped;
  };

  /** Stops a waitFor at once when a component has exited, with the tail of its log. */
  readonly check = (): void => {
    for (const p of this.procs) {
      const info = p.exitInfo();
      if (info !== undefined) throw new WaitAbort(`${info}\n${this.tail(p.name)}`);
    }
  };

  private tail(name: string): string {
    try {
      return fs.readFileSync(this.logs[name], "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "";
    }
  }
}

/** The admin, controller-manager and scheduler kubeconfigs (mode 0600), each with its own client cert. */
function writeKubeconfigs(
  dir: string,
  server: string,
  pki: Pki,
): { admin: string; controllerManager: string; scheduler: string } {
  const write = (file: string, creds: Omit<KubeCreds, "server" | "caPem">, user?: string): string => {
    const p = path.join(dir, file);
    fs.writeFileSync(p, renderKubeconfig({ server, caPem: pki.caPem, ...creds }, user), { mode: 0o600 });
    return p;
  };
  return {
    admin: write("admin.kubeconfig", pki.admin),
    controllerManager: write("controller-manager.kubeconfig", pki.controllerManager, "cm"),
    scheduler: write("scheduler.kubeconfig", pki.scheduler, "sched"),
  };
}

/**
 * The stages with a delayed copy of `pod-ready` for pods with `delay.label` (kwok v0.8.0 Stage `spec.delay.
 * durationMilliseconds`, sigs.k8s.io/kwok pkg/apis/v1alpha1/stage_types.go), and `pod-ready` itself narrowed to the
 * other pods: kwok plays one matching stage per event, so both must not match the same pod.
 */
export function withPodReadyDelay(stagesYaml: string, delay: PodReadyDelay): string {
  type Expr = { key: string; operator: string; values?: string[] };
  type StageDoc = {
    metadata: { name: string };
    spec: { selector?: { matchExpressions?: Expr[] }; delay?: { durationMilliseconds: number } };
  };
  const docs = (yaml.loadAll(stagesYaml) as (StageDoc | null)[]).filter((d): d is StageDoc => d !== null);
  const ready = docs.find((d) => d.metadata?.name === "pod-ready");
  if (!ready) throw new Error("kwok stages lack the pod-ready stage: no pod readiness to delay");
  const key = `.metadata.labels[${JSON.stringify(delay.label.key)}]`;
  const base = ready.spec.selector?.matchExpressions ?? [];
  const delayed: StageDoc = JSON.parse(JSON.stringify(ready)) as StageDoc;
  delayed.metadata.name = "pod-ready-delayed";
  delayed.spec.selector = {
    matchExpressions: [...base, { key, operator: "In", values: [delay.label.value] }],
  };
  delayed.spec.delay = { durationMilliseconds: Math.round(delay.milliseconds) };
  ready.spec.selector = {
    matchExpressions: [...base, { key, operator: "NotIn", values: [delay.label.value] }],
  };
  return [...docs, delayed].map((d) => yaml.dump(d, { lineWidth: -1 })).join("---\n");
}

/** kwok's stages config in dir; refuses stages without pod-delete, and tells whether node leases are on. */
function writeKwokStages(
  dir: string,
  tc: Toolchain,
  delay?: PodReadyDelay,
): { stagesFile: string; useLease: boolean } {
  const stagesFile = path.join(dir, "kwok-stages.yaml");
  fs.writeFileSync(stagesFile, delay ? withPodReadyDelay(tc.kwokStages, delay) : tc.kwokStages);
  if (!/name:\s*pod-delete\b/.test(tc.kwokStages)) {
    throw new Error(
      `${tc.manifestPath}: kwokStages lacks the pod-delete stage (pods would never finish deleting)`,
    );
  }
  return { stagesFile, useLease: /name:\s*node-heartbeat-with-lease\b/.test(tc.kwokStages) };
}

const KUBELET_API_ADMIN_BINDING = {
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind: "ClusterRoleBinding",
  metadata: { name: "kube-apiserver-kubelet-admin" },
  roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:kubelet-api-admin" },
  subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "kube-apiserver" }],
};

function etcdArgs(dir: string, clientUrl: string, peerUrl: string): string[] {
  return [
    "--name=default",
    `--data-dir=${path.join(dir, "etcd-data")}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=default=${peerUrl}`,
    "--unsafe-no-fsync",
    "--log-level=warn",
  ];
}

function apiserverArgs(dir: string, port: number, etcdUrl: string, pki: Pki): string[] {
  return [
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${port}`,
    `--etcd-servers=${etcdUrl}`,
    `--client-ca-file=${pki.caFile}`,
    `--tls-cert-file=${pki.apiserver.certFile}`,
    `--tls-private-key-file=${pki.apiserver.keyFile}`,
    // `kubectl logs/exec` on a real node: the apiserver authenticates to the kubelet as user kube-apiserver, and
    // dials its InternalIP (the test network has no DNS for node names; the upstream default tries Hostname first).
    `--kubelet-client-certificate=${pki.kubeletClient.certFile}`,
    `--kubelet-client-key=${pki.kubeletClient.keyFile}`,
    "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
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
  ];
}

/** kubeconfig for the component itself and for delegated authn/authz, on 127.0.0.1:port, no leader election. */
function ownKubeconfigArgs(kubeconfig: string, port: number): string[] {
  return [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${port}`,
    "--leader-elect=false",
  ];
}

function controllerManagerArgs(kubeconfig: string, port: number, pki: Pki): string[] {
  return [
    ...ownKubeconfigArgs(kubeconfig, port),
    `--service-account-private-key-file=${pki.saKeyFile}`,
    `--root-ca-file=${pki.caFile}`,
    `--cluster-signing-cert-file=${pki.caFile}`,
    `--cluster-signing-key-file=${pki.caKeyFile}`,
    "--use-service-account-credentials=true",
    "--service-cluster-ip-range=10.43.0.0/16",
    "--allocate-node-cidrs=false",
    "--controllers=*,bootstrapsigner,tokencleaner",
  ];
}

function schedulerArgs(kubeconfig: string, port: number): string[] {
  return ownKubeconfigArgs(kubeconfig, port);
}

function kwokArgs(kubeconfig: string, stagesFile: string, useLease: boolean): string[] {
  return [
    `--kubeconfig=${kubeconfig}`,
    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
    `--config=${stagesFile}`,
    // Fake addresses written into Node/Pod status only; nothing listens or dials there. Pod IPs come from
    // 198.18.0.0/15 (RFC 2544, reserved for benchmarks, never routed): EndpointSlices refuse loopback pod IPs,
    // and without endpoints a Service never becomes ready.
    "--node-ip=127.77.0.1",
    "--cidr=198.18.0.0/16",
    ...(useLease ? [`--node-lease-duration-seconds=${NODE_LEASE_SECONDS}`] : []),
  ];
}
