/**
 * Issue 11, item 4: the stack's NetworkPolicy enforced with real packets on a real node. kube-router's network
 * policy controller runs as a K3s agent runs it (k3s-netpol, toolchain group `netpol`; k3s pkg/agent/netpol), with
 * K3s's system:k3s-controller identity and ClusterRole. On the node: the stack's inference Deployment and NodePort
 * Service, CoreDNS behind kube-dns (10.43.0.10) as K3s deploys it, and the stack's own policies
 * (components/inferenceStack.ts networkPolicies) with the site's allowedCidrs from the real stack parser.
 *
 * Clients sit in network namespaces of their own, on veths into the run's namespace (198.18.1.0/24 allowed,
 * 198.18.2.0/24 not). Drills: before any policy both reach /health; with the policies the allowed client gets 200
 * and the other no HTTP answer (kube-router rejects it); a pod of the inference server resolves through cluster DNS
 * and reaches nothing else; another pod of the namespace reaches nothing, DNS included; with the policies deleted
 * every one of those gets through again (so the enforcer denied it, not the network).
 *
 * After `bash harness/build-toolchain.sh node netpol` (Debian's ipset and iptables on the machine):
 *   bash harness/netns-run.sh npx mocha --timeout 900000 tests/realnode/networkPolicy.test.ts
 */
import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { networkPolicies, serviceSpec } from "../../components/inferenceStack";
import { INFERENCE, NAMESPACE } from "../../components/names";
import type { InferenceConfig, SiteConfig } from "../../config/stack";
import { killGroup, spawnLogged, waitFor, type Managed } from "../../harness/proc";
import { nodeToolchain, readVersions, type RealNode } from "../../harness/realNode";
import {
  drillStack,
  inferenceObjects,
  inferencePrerequisites,
  startDrillNode,
  STACK_IMAGE,
  type DrillNode,
} from "./fixture";

const NODE = "edge-netpol-1";
const NODE_IP = "198.18.0.20";
const CLUSTER_DNS = "10.43.0.10"; // K3s's default cluster DNS address (the kubelet's clusterDNS)
/** The site's client network (allowed) and another network (not allowed), each a client namespace on a veth. */
const ALLOWED = { name: "allowed", hostIp: "198.18.1.1", clientIp: "198.18.1.2", cidr: "198.18.1.0/24" };
const DENIED = { name: "denied", hostIp: "198.18.2.1", clientIp: "198.18.2.2", cidr: "198.18.2.0/24" };
/** A TCP listener outside the cluster (in the node's network namespace, on the allowed client's veth). */
const OUTSIDE_PORT = 18080;
/** How long a client waits for an HTTP answer (kube-router REJECTs at once; a DROP would end at this bound). */
const DENY_BOUND_S = 3;

/** The site as the stack parser gives it: the rtx4000 stack file with its client network moved to ALLOWED.cidr. */
function drillSite(): { site: SiteConfig; inference: InferenceConfig } {
  const cfg = drillStack({ settings: { MODEL_LOAD_SECONDS: "1" } }, { allowedCidrs: [ALLOWED.cidr] });
  return { site: cfg.sites[0], inference: cfg.inference };
}

/** The `netpol` toolchain group's files. */
function netpolToolchain(
  cache = process.env.FORGE_EDGE_CACHE ?? path.join(os.homedir(), ".cache/forge-edge"),
): {
  bin: string;
  images: string[];
  corednsImage: string;
  probeImage: string;
} {
  const v = readVersions();
  const dir = path.join(
    cache,
    "bin",
    `netpol-${v.NETPOL_KUBE_ROUTER_VERSION}-${v.NETPOL_COREDNS_VERSION}-${v.NETPOL_IMAGES_VERSION}`,
  );
  const files = ["k3s-netpol", "images/coredns.tar", "images/netprobe.tar"].map((f) => path.join(dir, f));
  for (const f of files)
    if (!fs.existsSync(f))
      throw new Error(`${f} is missing: build it with \`bash harness/build-toolchain.sh netpol\``);
  return {
    bin: files[0],
    images: files.slice(1),
    corednsImage: v.NETPOL_COREDNS_IMAGE,
    probeImage: v.NETPOL_PROBE_IMAGE,
  };
}

/** K3s's grant to its agent's policy controller (k3s-io/k3s manifests/rolebindings.yaml). */
const K3S_CONTROLLER_RBAC = [
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "system:k3s-controller" },
    rules: [
      { apiGroups: [""], resources: ["nodes"], verbs: ["get"] },
      { apiGroups: [""], resources: ["namespaces"], verbs: ["list", "watch"] },
      { apiGroups: ["networking.k8s.io"], resources: ["networkpolicies"], verbs: ["list", "watch"] },
      { apiGroups: [""], resources: ["endpoints", "pods"], verbs: ["list", "get", "watch"] },
    ],
  },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "system:k3s-controller" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:k3s-controller" },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "system:k3s-controller" }],
  },
];

/**
 * CoreDNS as K3s deploys it (manifests/coredns.yaml: ConfigMap with Corefile + NodeHosts, Deployment labelled
 * k8s-app=kube-dns, Service kube-dns at the cluster DNS address). The Corefile is K3s's without the plugins this
 * offline node cannot serve (kubernetes, prometheus, forward; see harness/toolchain/netpol/dns/coredns).
 */
function corednsObjects(image: string): Array<Record<string, unknown>> {
  const corefile = [
    ".:53 {",
    "    errors",
    "    health",
    "    ready",
    "    hosts /etc/coredns/NodeHosts {",
    "      ttl 60",
    "      reload 15s",
    "      fallthrough",
    "    }",
    "    cache 30",
    "    loop",
    "    reload",
    "    loadbalance",
    "}",
    "",
  ].join("\n");
  const labels = { "k8s-app": "kube-dns" };
  return [
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "coredns", namespace: "kube-system" },
      // K3s's NodeHosts: one "<node ip> <node name>" line per node.
      data: { Corefile: corefile, NodeHosts: `${NODE_IP} ${NODE}\n` },
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "coredns", namespace: "kube-system", labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            dnsPolicy: "Default",
            containers: [
              {
                name: "coredns",
                image,
                imagePullPolicy: "Never",
                args: ["-conf", "/etc/coredns/Corefile"],
                ports: [
                  { containerPort: 53, name: "dns", protocol: "UDP" },
                  { containerPort: 53, name: "dns-tcp", protocol: "TCP" },
                ],
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { add: ["NET_BIND_SERVICE"], drop: ["all"] },
                  readOnlyRootFilesystem: true,
                },
                readinessProbe: { httpGet: { path: "/ready", port: 8181 }, periodSeconds: 2 },
                livenessProbe: { httpGet: { path: "/health", port: 8080 }, periodSeconds: 10 },
                volumeMounts: [{ name: "config-volume", mountPath: "/etc/coredns", readOnly: true }],
              },
            ],
            volumes: [
              {
                name: "config-volume",
                configMap: {
                  name: "coredns",
                  items: [
                    { key: "Corefile", path: "Corefile" },
                    { key: "NodeHosts", path: "NodeHosts" },
                  ],
                },
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kube-dns", namespace: "kube-system", labels },
      spec: {
        selector: labels,
        clusterIP: CLUSTER_DNS,
        ports: [
          { name: "dns", port: 53, protocol: "UDP" },
          { name: "dns-tcp", port: 53, protocol: "TCP" },
        ],
      },
    },
  ];
}

/** A client network namespace: held by a sleeping process, joined to this namespace by a veth. */
interface Client {
  name: string;
  ip: string;
  holder: Managed;
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function startClient(dir: string, net_: typeof ALLOWED): Client {
  const holder = spawnLogged(
    `client(${net_.name})`,
    "/usr/bin/unshare",
    ["--net", "--", "sleep", "infinity"],
    path.join(dir, `client-${net_.name}.log`),
  );
  const pid = String(holder.pid);
  // unshare creates the namespace before exec'ing sleep: wait until the holder's namespace differs from ours.
  const own = fs.readlinkSync("/proc/self/ns/net");
  const deadline = Date.now() + 10000;
  while (fs.readlinkSync(`/proc/${pid}/ns/net`) === own) {
    if (Date.now() > deadline) throw new Error(`client ${net_.name}: no network namespace after 10 s`);
    execFileSync("sleep", ["0.05"]);
  }
  const host = `fenp${net_.name.slice(0, 1)}h`;
  const peer = `fenp${net_.name.slice(0, 1)}c`;
  sh("ip", ["link", "add", host, "type", "veth", "peer", "name", peer]);
  sh("ip", ["link", "set", peer, "netns", pid]);
  sh("ip", ["addr", "add", `${net_.hostIp}/24`, "dev", host]);
  sh("ip", ["link", "set", host, "up"]);
  const inNs = (...args: string[]): string => sh("nsenter", ["-t", pid, "-n", "--", ...args]);
  inNs("ip", "link", "set", "lo", "up");
  inNs("ip", "addr", "add", `${net_.clientIp}/24`, "dev", peer);
  inNs("ip", "link", "set", peer, "up");
  inNs("ip", "route", "add", "default", "via", net_.hostIp);
  return { name: net_.name, ip: net_.clientIp, holder };
}

/**
 * GET url from inside the client's namespace: the HTTP status, or "000" when no HTTP answer came within the bound
 * (error: curl's message, e.g. a timeout for a dropped SYN or "Couldn't connect" for a rejected one).
 */
function clientGet(c: Client, url: string): { code: string; body: string; ms: number; error: string } {
  const t0 = Date.now();
  const r = spawnSync(
    "nsenter",
    [
      "-t",
      String(c.holder.pid),
      "-n",
      "--",
      "curl",
      "-sS",
      "-m",
      String(DENY_BOUND_S),
      "-w",
      "\n%{http_code}",
      url,
    ],
    { encoding: "utf8" },
  );
  const out = r.stdout.split("\n");
  const code = out.pop() ?? "000";
  return {
    code: code === "" ? "000" : code,
    body: out.join("\n"),
    ms: Date.now() - t0,
    error: r.stderr.trim(),
  };
}

describe("NetworkPolicy on a real node (kube-router's controller as K3s runs it)", function () {
  this.timeout(600000);
  const { site, inference } = drillSite();
  let fx: DrillNode | undefined;
  let dir: string;
  let node: RealNode;
  let np: ReturnType<typeof netpolToolchain>;
  const clients: Client[] = [];
  let outside: net.Server | undefined;
  const timings: Record<string, number> = {};
  /** What the denied client saw (kube-router REJECTs: "Couldn't connect", not a timeout). */
  let deniedError = "";

  const kubectl = (...args: string[]): string => fx!.kubectl(...args);
  const apply = (items: unknown[]): void => fx!.apply(items);
  const podIp = (ns: string, selector: string): string =>
    kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "jsonpath={.items[0].status.podIP}");
  const nodePortUrl = `http://${NODE_IP}:${site.nodePort}/health`;

  /**
   * kube-router's chains of NetworkPolicies (KUBE-NWPLCY-*, but its default chain). A full sync writes the whole filter
   * table in one iptables-restore, so their presence or absence tells a sync that saw the policies from one that did
   * not. (Pod chains do not: kube-router v2 gives every local pod one, policies or not.)
   */
  const policyChains = (): string[] =>
    sh("iptables-save", ["-t", "filter"])
      .split("\n")
      .filter((l) => l.startsWith(":KUBE-NWPLCY-") && !l.startsWith(":KUBE-NWPLCY-DEFAULT "));
  /**
   * kube-router's REJECT rule in a pod's firewall chain: the chain (renamed at every full sync, counters restart)
   * and the packets it rejected (iptables-save -c).
   */
  const rejectRule = (podName: string): { chain: string; packets: number } => {
    const l = sh("iptables-save", ["-c", "-t", "filter"])
      .split("\n")
      .find((x) => x.includes(`rule to REJECT traffic destined for POD name:${podName} `));
    return {
      chain: / -A (\S+) /.exec(l ?? "")?.[1] ?? "",
      packets: Number(/^\[(\d+):/.exec(l ?? "")?.[1] ?? -1),
    };
  };
  /** The pod firewall jumps kube-router has for ip (KUBE-ROUTER-FORWARD/INPUT/OUTPUT -> KUBE-POD-FW-*). */
  const podFwRules = (ip: string): string[] =>
    sh("iptables-save", ["-t", "filter"])
      .split("\n")
      .filter((l) => l.includes(` ${ip}/32 `) && l.includes("-j KUBE-POD-FW-"));

  /** The netprobe results of a pod from its container log on the node, rounds after sinceMs only. */
  const probeResults = (podName: string, sinceMs: number): string[] => {
    const logs = node.hostPath("/var/log/pods");
    const podDir = fs.readdirSync(logs).find((d) => d.startsWith(`${NAMESPACE}_${podName}_`));
    if (podDir === undefined) return [];
    const file = path.join(logs, podDir, "probe", "0.log");
    if (!fs.existsSync(file)) return [];
    // CRI log lines: "<time> stdout F <line>".
    return fs
      .readFileSync(file, "utf8")
      .split("\n")
      .map((l) => l.split(" ").slice(3).join(" "))
      .filter((l) => /^\d+ /.test(l) && Number(l.split(" ")[0]) > sinceMs)
      .map((l) => l.slice(l.indexOf(" ") + 1));
  };
  /** One whole round of a probe pod's results (probes lines), the first one started after sinceMs. */
  const nextRound = (podName: string, probes: number, sinceMs: number): Promise<string[]> =>
    waitFor(
      `a round of ${podName}'s probes after ${new Date(sinceMs).toISOString()}`,
      60000,
      () => {
        const r = probeResults(podName, sinceMs);
        return Promise.resolve(r.length >= probes ? r.slice(0, probes) : undefined);
      },
      500,
    );

  before(async function () {
    assert.equal(process.getuid?.(), 0, "a real node needs root (mounts, cgroups, netfilter)");
    assert.equal(
      process.env.FORGE_EDGE_NETNS,
      "1",
      "run inside harness/netns-run.sh (a private network namespace)",
    );
    np = netpolToolchain();
    const tc = nodeToolchain();
    // What K3s's agent sets before its components start (k3s pkg/agent/syssetup: kernelSysctls), here in the run's
    // own network namespace: routed pod traffic, and bridged pod-to-pod traffic through iptables.
    fs.writeFileSync("/proc/sys/net/ipv4/conf/all/forwarding", "1");
    fs.writeFileSync("/proc/sys/net/ipv4/conf/default/forwarding", "1");
    if (!fs.existsSync("/proc/sys/net/bridge/bridge-nf-call-iptables"))
      execFileSync("modprobe", ["br_netfilter"]);
    fs.writeFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "1");
    fx = await startDrillNode({
      tmpPrefix: "forge-netpol-",
      name: NODE,
      ip: NODE_IP,
      gpus: 1,
      gpuReplicas: 1,
      imageTarballs: [tc.images.pause, tc.images.inference, ...np.images],
      retag: [[tc.inferenceImage, STACK_IMAGE]],
      netpol: { bin: np.bin },
      // The node's policy controller runs as system:k3s-controller: its grant is in place before it starts.
      beforeNode: (d) => d.apply(K3S_CONTROLLER_RBAC),
    });
    ({ dir, node } = fx);
    timings.controlPlaneMs = fx.cp.startMs;
    timings.nodeStartMs = node.startMs;
    for (const c of [ALLOWED, DENIED]) clients.push(startClient(dir, c));
    outside = net.createServer((s) => s.end());
    await new Promise<void>((resolve) => outside!.listen(OUTSIDE_PORT, ALLOWED.hostIp, resolve));
  });

  after(async function () {
    console.log(`      timings: ${JSON.stringify(timings)}; denied client: ${deniedError}`);
    outside?.close();
    for (const c of clients) await killGroup(c.holder);
    await fx?.stop();
  });

  it("runs kube-router's controller with K3s's identity: its chains are in place", function () {
    const log = fs.readFileSync(
      path.join(node.hostPath("/var/log/forge-edge"), "node", "netpol.log"),
      "utf8",
    );
    assert.match(log, /Starting network policy controller version v2\.1\.0/);
    for (const chain of ["KUBE-ROUTER-FORWARD", "KUBE-ROUTER-INPUT", "KUBE-ROUTER-OUTPUT"])
      assert.ok(sh("iptables", ["-S", chain]).includes(`-N ${chain}`), chain);
    assert.equal(site.nodePort, 30080);
    assert.deepEqual(site.allowedCidrs, [ALLOWED.cidr]);
  });

  it("before any policy: both clients reach /health on the NodePort (the network path works for both)", async function () {
    const t0 = Date.now();
    apply([
      ...inferencePrerequisites(),
      // The stack's ConfigMap and Deployment; no volume provisioner on this node: the model volume is an emptyDir.
      ...inferenceObjects(inference, NODE),
      { apiVersion: "v1", kind: "Service", ...serviceSpec(inference, site.nodePort) },
      ...corednsObjects(np.corednsImage),
    ]);
    for (const [ns, name] of [
      [NAMESPACE, INFERENCE.name],
      ["kube-system", "coredns"],
    ])
      await waitFor(
        `${ns}/${name} readyReplicas 1`,
        240000,
        () => {
          const n = kubectl("-n", ns, "get", "deployment", name, "-o", "jsonpath={.status.readyReplicas}");
          return Promise.resolve(n === "1" ? n : undefined);
        },
        500,
      );
    timings.stackReadyMs = Date.now() - t0;
    for (const c of clients) {
      const r = await waitFor(
        `${c.name} client: ${nodePortUrl}`,
        60000,
        () => {
          const g = clientGet(c, nodePortUrl);
          return Promise.resolve(g.code === "200" ? g : undefined);
        },
        500,
      );
      assert.equal(r.body.trim(), "ok", `${c.name} client`);
    }
  });

  it("with the stack's policies: the allowed client gets 200, the other is rejected by kube-router (no HTTP answer)", async function () {
    const inferenceIp = podIp(NAMESPACE, `app=${INFERENCE.labels.app}`);
    const t0 = Date.now();
    apply(
      networkPolicies(inference.port, site.allowedCidrs).map((p) => ({
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        ...p,
      })),
    );
    // Synced once kube-router wrote both policies' chains (and the inference pod's firewall chain with them).
    await waitFor("kube-router: the policies' chains", 60000, () =>
      Promise.resolve(policyChains().length >= 2 && podFwRules(inferenceIp).length > 0 ? true : undefined),
    );
    timings.policySyncMs = Date.now() - t0;
    const [allowedClient, deniedClient] = clients;
    const inferencePod = kubectl(
      "-n",
      NAMESPACE,
      "get",
      "pods",
      "-l",
      `app=${INFERENCE.labels.app}`,
      "-o",
      "jsonpath={.items[0].metadata.name}",
    );
    let verified = 0;
    for (let i = 0; i < 3; i++) {
      const ok = clientGet(allowedClient, nodePortUrl);
      assert.equal(ok.code, "200", `allowed client (${ALLOWED.clientIp}), try ${i + 1}`);
      const before = rejectRule(inferencePod);
      const denied = clientGet(deniedClient, nodePortUrl);
      const after = rejectRule(inferencePod);
      // Same chain (no resync in between): kube-router's REJECT counted the denied client's SYN.
      if (after.chain !== "" && after.chain === before.chain) {
        assert.ok(
          after.packets > before.packets,
          `REJECT ${after.chain}: ${before.packets} -> ${after.packets}`,
        );
        verified++;
      }
      assert.equal(
        denied.code,
        "000",
        `denied client (${DENIED.clientIp}), try ${i + 1}: ${JSON.stringify(denied)}`,
      );
      timings.deniedWaitMs = denied.ms;
      deniedError = denied.error;
    }
    // It was kube-router that turned the denied client away (after kube-proxy's DNAT to the pod), not kube-proxy.
    assert.ok(verified > 0, "no try without a kube-router resync in between");
    // The pod is still Ready: the kubelet's probes (from the node) pass the policy, as kube-router permits them.
    assert.equal(
      kubectl("-n", NAMESPACE, "get", "deployment", INFERENCE.name, "-o", "jsonpath={.status.readyReplicas}"),
      "1",
    );
  });

  const PROBE_PODS = {
    // A pod of the inference server (its labels, no ports: never a Service endpoint): the policy's egress applies.
    server: { name: "netpol-probe-server", labels: { ...INFERENCE.labels } },
    // Another pod of the namespace: only the default deny applies.
    other: { name: "netpol-probe-other", labels: { app: "netpol-probe-other" } },
  };
  let probeArgs: string[] = [];

  it("egress: the inference server's pod resolves through cluster DNS and reaches nothing else; other pods nothing", async function () {
    const dnsPodIp = podIp("kube-system", "k8s-app=kube-dns");
    probeArgs = [
      `dns:${CLUSTER_DNS}:53:${NODE}`,
      `tcp:${dnsPodIp}:53`,
      `tcp:${dnsPodIp}:8080`, // CoreDNS's health port: same pod, not a DNS port
      `tcp:${ALLOWED.hostIp}:${OUTSIDE_PORT}`, // outside the cluster
    ];
    apply(
      Object.values(PROBE_PODS).map((p) => ({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: p.name, namespace: NAMESPACE, labels: p.labels },
        spec: {
          nodeName: NODE,
          restartPolicy: "Never",
          terminationGracePeriodSeconds: 0,
          containers: [
            {
              name: "probe",
              image: np.probeImage,
              imagePullPolicy: "Never",
              args: ["-rounds", "600", "-interval", "1s", ...probeArgs],
            },
          ],
        },
      })),
    );
    const since: Record<string, number> = {};
    for (const p of Object.values(PROBE_PODS)) {
      const ip = await waitFor(`${p.name} running`, 120000, () => {
        const out = kubectl(
          "-n",
          NAMESPACE,
          "get",
          "pod",
          p.name,
          "-o",
          "jsonpath={.status.phase} {.status.podIP}",
        );
        const [phase, ipAddr] = out.split(" ");
        return Promise.resolve(phase === "Running" && ipAddr ? ipAddr : undefined);
      });
      // Only rounds after kube-router put the pod behind its firewall chain count.
      await waitFor(`kube-router: ${p.name}'s firewall chain`, 60000, () =>
        Promise.resolve(podFwRules(ip).length > 0 ? true : undefined),
      );
      since[p.name] = Date.now();
    }
    const server = await nextRound(PROBE_PODS.server.name, probeArgs.length, since[PROBE_PODS.server.name]);
    assert.match(
      server[0],
      new RegExp(`^dns ${CLUSTER_DNS}:53 ${NODE} ok ${NODE_IP.replace(/\./g, "\\.")}$`),
    );
    assert.match(server[1], / ok$/, "TCP 53 to the DNS pod");
    assert.match(server[2], / fail /, "another port of the DNS pod");
    assert.match(server[3], / fail /, "a destination outside the cluster");
    const other = await nextRound(PROBE_PODS.other.name, probeArgs.length, since[PROBE_PODS.other.name]);
    for (const line of other) assert.match(line, / fail /, `${PROBE_PODS.other.name}: ${line}`);
  });

  it("with the policies deleted, the denied client and every probe get through: the enforcer denied them", async function () {
    const t0 = Date.now();
    kubectl("-n", NAMESPACE, "delete", "networkpolicy", "--all", "--wait=true");
    await waitFor("kube-router: no policy chains", 60000, () =>
      Promise.resolve(policyChains().length === 0 ? true : undefined),
    );
    timings.policyRemovedSyncMs = Date.now() - t0;
    const since = Date.now();
    const denied = clientGet(clients[1], nodePortUrl);
    if (denied.code !== "200") {
      fs.writeFileSync(path.join(dir, "iptables-after-delete.txt"), sh("iptables-save", []));
      fs.writeFileSync(
        path.join(dir, "state-after-delete.txt"),
        kubectl("-n", NAMESPACE, "get", "pods,endpointslices", "-o", "yaml") +
          kubectl("get", "events", "-A", "--sort-by=.lastTimestamp"),
      );
      for (let i = 0; i < 20; i++) {
        const again = clientGet(clients[1], nodePortUrl);
        console.log(`      retry ${i}: ${JSON.stringify(again)} +${Date.now() - since} ms`);
        if (again.code === "200") break;
      }
    }
    assert.equal(denied.code, "200", `formerly denied client: ${JSON.stringify(denied)}`);
    for (const p of Object.values(PROBE_PODS)) {
      const round = await nextRound(p.name, probeArgs.length, since);
      for (const line of round) assert.match(line, / ok/, `${p.name}: ${line}`);
    }
  });
});
