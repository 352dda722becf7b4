/**
 * Issue 11: a real kubelet (with containerd 2, runc, the CNI plugins and kube-proxy, configured as K3s would)
 * registers a Node with a real kube-apiserver; the pause image built here runs; the stack's own inference
 * Deployment and NodePort Service serve /health on :30080 through the nvidia runtime double; drills: liveness
 * (hang -> restart), time-slicing (gpus x replicas slices, the next Pending), startup budget (within / beyond),
 * rollout on a full GPU (maxSurge 0, real termination) and eviction against the disruption budget.
 * The probes are scaled for the drills through the stack's own config key `inference.probes` (DRILL_PROBES), parsed
 * by the real parser, never by editing the rendered spec.
 * `npm run test:realnode`, or after `bash harness/build-toolchain.sh node`
 *   bash harness/netns-run.sh npx mocha --timeout 900000 tests/realnode/realNode.test.ts
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { configData, pdbSpec, serviceSpec, startupBudgetSeconds } from "../../components/inferenceStack";
import { ANNOTATIONS, configHash, INFERENCE, NAMESPACE, RUNTIME_CLASS } from "../../components/names";
import type { ProbeConfig } from "../../config/sections/inference";
import type { InferenceConfig } from "../../config/stack";
import type { ControlPlane } from "../../harness/controlPlane";
import { readKubeconfig, type KubeClient } from "../../harness/kubeClient";
import { waitFor } from "../../harness/proc";
import { nodeToolchain, type RealNode } from "../../harness/realNode";
import {
  drillStack,
  inferenceObjects as stackInferenceObjects,
  inferencePrerequisites,
  startDrillNode,
  STACK_IMAGE,
  type DrillNode,
  type Obj,
} from "./fixture";

const NODE = "edge-real-1";
const NODE_IP = "198.18.0.10"; // benchmarking range (RFC 2544): the kubelet refuses a loopback node IP
const NODE_PORT = 30080;
const GPUS = 1;
const REPLICAS = 4; // time-slicing replicas per GPU: nvidia.com/gpu = 4
/**
 * The drills' probes, set as an operator would (`pulumi config set --path 'inference.probes.livenessPeriodSeconds'
 * 2`): liveness 3 x 2 s, readiness 2 x 1 s, startup every 1 s with a floor of 1, so modelLoadSeconds 10 gives a
 * 10 s startup budget. The stacks' defaults are the design's 3 x 30 s, 3 x 10 s and 30 x 10 s.
 */
const DRILL_PROBES: ProbeConfig = {
  startupPeriodSeconds: 1,
  minStartupFailureThreshold: 1,
  livenessPeriodSeconds: 2,
  livenessFailureThreshold: 3,
  readinessPeriodSeconds: 1,
  readinessFailureThreshold: 2,
};

/** The drill's inference config, through the real stack parser (and its fit rules) from the rtx4000 stack file. */
function drillInference(patch: Record<string, unknown> = {}): InferenceConfig {
  return drillStack({
    maxReplicas: GPUS * REPLICAS,
    port: 8080,
    // The fake server's model-load delay, through the inference-config ConfigMap like any server setting.
    settings: { MODEL_LOAD_SECONDS: "2" },
    probes: DRILL_PROBES,
    ...patch,
  }).inference;
}
const INF = drillInference();

/** The stack's ConfigMap and Deployment for `inf` on this node (the model volume an emptyDir). */
const inferenceObjects = (inf: InferenceConfig): Obj[] => stackInferenceObjects(inf, NODE);

interface PodObj {
  metadata: { name: string; annotations?: Record<string, string>; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{
      containerID?: string;
      ready: boolean;
      restartCount: number;
      state?: { terminated?: { exitCode: number; reason?: string; startedAt?: string; finishedAt?: string } };
    }>;
  };
}
const isReady = (p: PodObj): boolean =>
  p.metadata.deletionTimestamp === undefined &&
  (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
const containerId = (p: PodObj): string =>
  (p.status.containerStatuses?.[0]?.containerID ?? "").replace(/^containerd:\/\//, "");

/**
 * A watch on the inference pods from `resourceVersion`: every change in the apiserver's order, each handed to
 * `onEvent` as it arrives (so a check can look at the node at that moment).
 */
function watchPods(
  kubeconfig: string,
  resourceVersion: string,
  onEvent: (type: string, pod: PodObj) => void,
): { stop(): void } {
  const creds = readKubeconfig(kubeconfig);
  const url = new URL(creds.server);
  const req = https.get({
    host: url.hostname,
    port: Number(url.port),
    path:
      `/api/v1/namespaces/${NAMESPACE}/pods?watch=1&allowWatchBookmarks=false` +
      `&labelSelector=app%3D${INFERENCE.name}&resourceVersion=${resourceVersion}&timeoutSeconds=600`,
    ca: creds.caPem,
    cert: creds.certPem,
    key: creds.keyPem,
  });
  req.on("response", (res) => {
    let buf = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim() === "") continue;
        const ev = JSON.parse(line) as { type: string; object: PodObj };
        onEvent(ev.type, ev.object);
      }
    });
    res.on("error", () => undefined);
  });
  req.on("error", () => undefined);
  return { stop: () => req.destroy() };
}

describe("real node below the API (kubelet + containerd + runc)", function () {
  this.timeout(600000);
  let fx: DrillNode | undefined;
  let cp: ControlPlane;
  let node: RealNode;
  let kube: KubeClient;
  const timings: Record<string, number> = {};

  const kubectl = (...args: string[]): string => fx!.kubectl(...args);
  const apply = (objects: unknown[]): void => fx!.apply(objects);

  before(async function () {
    const tc = nodeToolchain();
    fx = await startDrillNode({
      tmpPrefix: "forge-realnode-",
      name: NODE,
      ip: NODE_IP,
      gpus: GPUS,
      gpuReplicas: REPLICAS,
      imageTarballs: [tc.images.pause, tc.images.inference],
      retag: [[tc.inferenceImage, STACK_IMAGE]],
    });
    ({ cp, node, kube } = fx);
    timings.controlPlaneMs = cp.startMs;
    timings.nodeStartMs = node.startMs;
  });

  after(async function () {
    console.log(`      timings: ${JSON.stringify(timings)}`);
    await fx?.stop();
  });

  it("registers a Ready Node through the kubelet", async function () {
    const t0 = Date.now();
    const ready = await waitFor(
      `Node ${NODE} Ready`,
      180000,
      () => {
        try {
          const out = kubectl(
            "get",
            "node",
            NODE,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
          );
          return Promise.resolve(out === "True" ? out : undefined);
        } catch {
          return Promise.resolve(undefined);
        }
      },
      500,
    );
    timings.nodeReadyMs = Date.now() - t0;
    assert.equal(ready, "True");
    const info = JSON.parse(kubectl("get", "node", NODE, "-o", "jsonpath={.status.nodeInfo}")) as Record<
      string,
      string
    >;
    assert.equal(info.kubeletVersion, "v1.37.2");
    assert.match(info.containerRuntimeVersion, /^containerd:\/\/v?2\.3\.4/);
    assert.equal(
      kubectl("get", "node", NODE, "-o", "jsonpath={.metadata.annotations.kwok\\.x-k8s\\.io/node}"),
      "",
    );
  });

  it("runs a pod of the pause image built here (kubectl get pods: Running)", async function () {
    const tc = nodeToolchain();
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "pause-drill", namespace: "default" },
      spec: {
        nodeName: NODE,
        containers: [{ name: "pause", image: tc.pauseImage, imagePullPolicy: "Never" }],
      },
    };
    const t0 = Date.now();
    apply([pod]);
    await waitFor(
      "pod pause-drill Running",
      180000,
      () => {
        const phase = kubectl("get", "pod", "pause-drill", "-o", "jsonpath={.status.phase}");
        return Promise.resolve(phase === "Running" ? phase : undefined);
      },
      500,
    );
    timings.podRunningMs = Date.now() - t0;
    const row = kubectl("get", "pods", "pause-drill", "--no-headers");
    assert.match(row, /^pause-drill\s+1\/1\s+Running\s+0\s/);
    const ip = kubectl("get", "pod", "pause-drill", "-o", "jsonpath={.status.podIP}");
    assert.match(ip, /^10\.42\.0\.\d+$/, "the pod got its address from the bridge CNI's host-local range");
  });

  it("serves /health on NodePort 30080 from the inference pod, which ran through the nvidia runtime", async function () {
    const objects = [
      // The namespace, priority class and K3s's nvidia RuntimeClass.
      ...inferencePrerequisites(),
      ...inferenceObjects(INF),
      { apiVersion: "v1", kind: "Service", ...serviceSpec(INF, NODE_PORT) },
    ];
    const t0 = Date.now();
    apply(objects);
    // The device-plugin stand-in's devices reach the Node with the kubelet's next status update.
    const gpu = await waitFor(
      "nvidia.com/gpu allocatable",
      60000,
      () => {
        const v = kubectl("get", "node", NODE, "-o", "jsonpath={.status.allocatable.nvidia\\.com/gpu}");
        return Promise.resolve(v !== "" && v !== "0" ? v : undefined);
      },
      500,
    );
    assert.equal(gpu, String(GPUS * REPLICAS));
    // Ready replicas, not the Available condition: with maxUnavailable 1 a one-replica Deployment is "Available"
    // with no pod ready at all.
    await waitFor(
      "inference-server readyReplicas 1",
      180000,
      () => {
        const n = kubectl(
          "-n",
          NAMESPACE,
          "get",
          "deployment",
          INFERENCE.name,
          "-o",
          "jsonpath={.status.readyReplicas}",
        );
        return Promise.resolve(n === "1" ? n : undefined);
      },
      500,
    );
    timings.inferenceReadyMs = Date.now() - t0;
    const res = await waitFor(
      `http://${NODE_IP}:${NODE_PORT}/health`,
      60000,
      async () => {
        const r = await fetch(`http://${NODE_IP}:${NODE_PORT}/health`, { signal: AbortSignal.timeout(2000) });
        return r.status === 200 ? { status: r.status, body: await r.text() } : undefined;
      },
      500,
    );
    timings.nodePortHealthMs = Date.now() - t0;
    assert.deepEqual(res, { status: 200, body: "ok\n" });
    // The container went through the nvidia-container-runtime double (which execs runc), the sandbox too.
    const id = kubectl(
      "-n",
      NAMESPACE,
      "get",
      "pods",
      "-l",
      "app=inference-server",
      "-o",
      "jsonpath={.items[0].status.containerStatuses[0].containerID}",
    ).replace(/^containerd:\/\//, "");
    assert.match(id, /^[0-9a-f]{64}$/);
    const calls = fs.readFileSync(path.join(node.hostPath("/var/log/forge-edge"), "doubles.log"), "utf8");
    assert.match(
      calls,
      new RegExp(`nvidia-container-runtime .* create --bundle \\S+/${id} `),
      "the inference container's create went through the nvidia runtime",
    );
  });

  it("liveness drill: a hung server is restarted by the kubelet (restart count 1), its endpoint drops and returns", async function () {
    const pod = () =>
      JSON.parse(kubectl("-n", NAMESPACE, "get", "pods", "-l", "app=inference-server", "-o", "json")) as {
        items: Array<{
          status: { podIP?: string; containerStatuses?: Array<{ restartCount: number; ready: boolean }> };
        }>;
      };
    const endpointReady = (): boolean | undefined => {
      const slices = JSON.parse(
        kubectl(
          "-n",
          NAMESPACE,
          "get",
          "endpointslices",
          "-l",
          `kubernetes.io/service-name=${INFERENCE.name}`,
          "-o",
          "json",
        ),
      ) as { items: Array<{ endpoints?: Array<{ conditions?: { ready?: boolean } }> }> };
      const eps = slices.items.flatMap((s) => s.endpoints ?? []);
      return eps.length === 0 ? false : eps.every((e) => e.conditions?.ready === true);
    };
    const before = pod().items[0].status;
    assert.equal(before.containerStatuses?.[0].restartCount, 0);
    assert.equal(endpointReady(), true);
    const t0 = Date.now();
    // The stack's probes as `inference.probes` configures them: liveness 3 x 2 s, readiness 2 x 1 s.
    const r = await fetch(`http://${before.podIP}:${INF.port}/admin/hang`, { method: "POST" });
    assert.equal(r.status, 200);
    const seen = { dropped: false, restarted: false, returned: false };
    await waitFor(
      "restart, endpoint drop and return",
      120000,
      () => {
        const st = pod().items[0].status.containerStatuses?.[0];
        const ready = endpointReady();
        if (!seen.dropped && ready === false) {
          seen.dropped = true;
          timings.livenessEndpointDroppedMs = Date.now() - t0;
        }
        if (!seen.restarted && (st?.restartCount ?? 0) >= 1) {
          seen.restarted = true;
          timings.livenessRestartMs = Date.now() - t0;
        }
        if (seen.dropped && seen.restarted && ready === true) {
          seen.returned = true;
          timings.livenessEndpointReturnedMs = Date.now() - t0;
        }
        return Promise.resolve(seen.returned ? true : undefined);
      },
      250,
    );
    assert.equal(pod().items[0].status.containerStatuses?.[0].restartCount, 1);
    const health = await fetch(`http://${NODE_IP}:${NODE_PORT}/health`, {
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(health.status, 200);
  });

  it("time-slicing drill: exactly gpus x replicas one-slice pods run, the next is Pending, all through the nvidia runtime", async function () {
    // The inference pod holds one slice already; fill the rest with one-slice pods of the pause image, plus one.
    const used = Number(
      kubectl(
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        "app=inference-server",
        "-o",
        "jsonpath={.items[0].spec.containers[0].resources.limits.nvidia\\.com/gpu}",
      ),
    );
    const free = GPUS * REPLICAS - used;
    const names = Array.from({ length: free + 1 }, (_, i) => `slice-${i}`);
    const pods = names.map((name) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: "default", labels: { drill: "time-slicing" } },
      spec: {
        runtimeClassName: RUNTIME_CLASS,
        containers: [
          {
            name: "c",
            image: nodeToolchain().pauseImage,
            imagePullPolicy: "Never",
            resources: { limits: { "nvidia.com/gpu": "1" } },
          },
        ],
      },
    }));
    const t0 = Date.now();
    apply(pods);
    const phases = await waitFor(
      `${free} slice pods Running and one Pending (unschedulable)`,
      120000,
      () => {
        const list = JSON.parse(kubectl("get", "pods", "-l", "drill=time-slicing", "-o", "json")) as {
          items: Array<{
            metadata: { name: string };
            status: { phase: string; conditions?: Array<{ type: string; reason?: string }> };
          }>;
        };
        const running = list.items.filter((p) => p.status.phase === "Running");
        const unschedulable = list.items.filter((p) =>
          p.status.conditions?.some((c) => c.type === "PodScheduled" && c.reason === "Unschedulable"),
        );
        return Promise.resolve(
          running.length === free && unschedulable.length === 1 ? list.items : undefined,
        );
      },
      500,
    );
    timings.timeSlicingSettledMs = Date.now() - t0;
    assert.equal(phases.length, free + 1);
    const pending = phases.find((p) => p.status.phase === "Pending");
    assert.ok(pending);
    assert.match(
      kubectl("get", "pod", pending.metadata.name, "-o", "jsonpath={.status.conditions[0].message}"),
      /Insufficient nvidia\.com\/gpu/,
    );
    // Every running slice pod's container was created through the nvidia runtime double.
    const calls = fs.readFileSync(path.join(node.hostPath("/var/log/forge-edge"), "doubles.log"), "utf8");
    for (const p of phases.filter((x) => x.status.phase === "Running")) {
      const id = kubectl(
        "get",
        "pod",
        p.metadata.name,
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID}",
      ).replace(/^containerd:\/\//, "");
      assert.match(
        calls,
        new RegExp(`nvidia-container-runtime .* create --bundle \\S+/${id} `),
        `${p.metadata.name} went through the nvidia runtime`,
      );
    }
    assert.equal(
      kubectl("get", "node", NODE, "-o", "jsonpath={.status.allocatable.nvidia\\.com/gpu}"),
      String(GPUS * REPLICAS),
    );
  });

  it("startup drill: a model load inside the startup budget is never killed, one beyond it is", async function () {
    kubectl("delete", "pods", "-l", "drill=time-slicing", "--wait=false");
    // The configured budget: startup period 1 s, threshold max(1, ceil(10 / 1)) = 10, so 10 s.
    const budget = startupBudgetSeconds(INF.modelLoadSeconds, INF.probes);
    const dep = inferenceObjects(INF)[1] as unknown as {
      spec: { template: { spec: Record<string, unknown> & { containers: Array<Record<string, unknown>> } } };
    };
    const pod = (name: string, loadSeconds: number): unknown => {
      const spec = JSON.parse(JSON.stringify(dep.spec.template.spec)) as typeof dep.spec.template.spec;
      const c = spec.containers[0];
      // The stack's probes as configured; only the GPU request is dropped (the slices belong to the other
      // drills) and the fake server's load time set per pod (env wins over the ConfigMap's envFrom).
      c.resources = { requests: { cpu: "50m", memory: "32Mi" }, limits: { cpu: "500m", memory: "128Mi" } };
      c.env = [{ name: "MODEL_LOAD_SECONDS", value: String(loadSeconds) }];
      return {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace: NAMESPACE, labels: { drill: "startup" } },
        spec,
      };
    };
    const within = Math.floor(budget / 2);
    const beyond = budget * 3;
    const t0 = Date.now();
    apply([pod("startup-within", within), pod("startup-beyond", beyond)]);
    const status = async (
      name: string,
    ): Promise<{ restartCount: number; ready: boolean; ranSeconds?: number }> => {
      const p = (await kube.get(`/api/v1/namespaces/${NAMESPACE}/pods/${name}`)) as {
        status: {
          containerStatuses?: Array<{
            restartCount: number;
            ready: boolean;
            lastState?: { terminated?: { startedAt: string; finishedAt: string } };
          }>;
        };
      };
      const s = p.status.containerStatuses?.[0];
      const t = s?.lastState?.terminated;
      return {
        restartCount: s?.restartCount ?? 0,
        ready: s?.ready === true,
        ...(t ? { ranSeconds: (Date.parse(t.finishedAt) - Date.parse(t.startedAt)) / 1000 } : {}),
      };
    };
    await waitFor(
      `startup-within Ready and startup-beyond killed after the ${budget} s startup budget`,
      (budget + 120) * 1000,
      async () => {
        const w = await status("startup-within");
        const b = await status("startup-beyond");
        if (w.ready && timings.startupWithinReadyMs === undefined)
          timings.startupWithinReadyMs = Date.now() - t0;
        if (b.restartCount >= 1 && timings.startupBeyondKilledMs === undefined)
          timings.startupBeyondKilledMs = Date.now() - t0;
        return w.ready && b.restartCount >= 1 ? true : undefined;
      },
      250,
    );
    const eventsOf = (name: string): string =>
      kubectl(
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        `involvedObject.name=${name}`,
        "-o",
        'jsonpath={range .items[*]}{.lastTimestamp} {.reason}: {.message}{"\\n"}{end}',
      );
    const w = await status("startup-within");
    assert.deepEqual(
      { restartCount: w.restartCount, ready: w.ready },
      { restartCount: 0, ready: true },
      `startup-within: ${JSON.stringify(w)}\n${eventsOf("startup-within")}\n${kubectl("-n", NAMESPACE, "get", "pod", "startup-within", "-o", "jsonpath={.status.containerStatuses[0].lastState}")}`,
    );
    const killed = await status("startup-beyond");
    assert.ok(killed.restartCount >= 1);
    // Never before the budget (the API's timestamps have 1 s resolution); how long after it is a figure.
    assert.ok(killed.ranSeconds !== undefined && killed.ranSeconds >= budget - 1, JSON.stringify(killed));
    timings.startupBeyondRanSeconds = killed.ranSeconds;
    const events = eventsOf("startup-beyond");
    assert.match(events, /Startup probe failed/);
    assert.match(events, /failed startup probe, will be restarted/);
    kubectl("-n", NAMESPACE, "delete", "pods", "-l", "drill=startup", "--wait=false");
  });

  /** The inference pods as the API lists them, with the list's resourceVersion. */
  const inferencePods = async (): Promise<{ items: PodObj[]; resourceVersion: string }> => {
    const list = (await kube.get(
      `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=app%3D${INFERENCE.name}`,
    )) as { items: PodObj[]; metadata: { resourceVersion: string } };
    return { items: list.items, resourceVersion: list.metadata.resourceVersion };
  };
  /**
   * The node's containerd tasks (K3s's socket, as `k3s ctr` reads it): container ID to status. A container whose
   * process exited has no task once CRI handled the exit (containerd deletes it before it reports the container
   * exited), so "no task" is "its process is gone from containerd".
   */
  const tasks = (): Map<string, string> => {
    const out = execFileSync(
      path.join(nodeToolchain().dir, "ctr"),
      [
        "--address",
        path.join(node.hostPath("/run/k3s"), "containerd/containerd.sock"),
        "-n",
        "k8s.io",
        "tasks",
        "ls",
      ],
      { encoding: "utf8" },
    );
    const rows = out
      .split("\n")
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length >= 3);
    return new Map(rows.map((f) => [f[0], f[2]]));
  };
  /** `n` Ready inference pods of the template with config hash `hash`, and no other inference pod. */
  const readyReplicas = (n: number, hash: string): Promise<PodObj[]> =>
    waitFor(
      `${n} Ready inference pods of config ${hash.slice(0, 12)}, no other`,
      180000,
      async () => {
        const { items } = await inferencePods();
        const ok =
          items.length === n &&
          items.every((p) => isReady(p) && p.metadata.annotations?.[ANNOTATIONS.configHash] === hash);
        return ok ? items : undefined;
      },
      250,
    );

  it("rollout drill: every slice held by inference replicas (maxSurge 0), a changed inference-config replaces them one at a time with real termination", async function () {
    const slices = GPUS * REPLICAS;
    // Free the slices the time-slicing drill took; the startup drill's pods hold none.
    kubectl("delete", "pods", "-l", "drill=time-slicing", "--wait=true", "--timeout=120s");
    const full = drillInference({ replicas: slices });
    const fullHash = configHash(configData(full));
    const t0 = Date.now();
    apply([
      ...inferenceObjects(full),
      { apiVersion: "policy/v1", kind: "PodDisruptionBudget", ...pdbSpec() },
    ]);
    const old = await readyReplicas(slices, fullHash);
    timings.rolloutFullGpuReadyMs = Date.now() - t0;
    // Every slice is an inference replica's: the node has no free nvidia.com/gpu left.
    const allocatable = kubectl("get", "node", NODE, "-o", "jsonpath={.status.allocatable.nvidia\\.com/gpu}");
    assert.equal(allocatable, String(slices));
    assert.ok(old.every((p) => p.spec.nodeName === NODE));
    const oldIds = new Map(old.map((p) => [p.metadata.name, containerId(p)]));
    const running = tasks();
    for (const [name, id] of oldIds)
      assert.equal(running.get(id), "RUNNING", `${name}'s container ${id} runs in containerd`);

    // A changed server setting: a new inference-config, so a new config-hash annotation on the pod template.
    const changed = drillInference({
      replicas: slices,
      settings: { MODEL_LOAD_SECONDS: "2", FORGE_DRILL_REVISION: "2" },
    });
    const newHash = configHash(configData(changed));
    assert.notEqual(newHash, fullHash);

    // Every pod change in the apiserver's order. A pod holds its slice from its binding until it is terminal: the
    // scheduler's informer drops Succeeded/Failed pods (k8s v1.37.2 pkg/scheduler/scheduler.go newPodInformer),
    // and the kubelet makes a deleted pod terminal once its containers stopped (pkg/kubelet/kubelet_pods.go
    // getPhase). At that event, is the old pod's container still running in containerd?
    const holding = new Set(old.map((p) => p.metadata.name));
    const seen = { oldTerminated: 0, newBound: 0, maxHolding: holding.size };
    const problems: string[] = [];
    const lastOld = new Map<string, PodObj>();
    const { resourceVersion } = await inferencePods();
    const watch = watchPods(cp.kubeconfigPath, resourceVersion, (type, p) => {
      const name = p.metadata.name;
      const isOld = oldIds.has(name);
      if (isOld) lastOld.set(name, p);
      const terminal = type === "DELETED" || p.status.phase === "Succeeded" || p.status.phase === "Failed";
      if (terminal) {
        if (holding.delete(name) && isOld) {
          seen.oldTerminated++;
          const task = tasks().get(oldIds.get(name)!);
          if (task !== undefined)
            problems.push(`${name} freed its slice while its container's task was ${task}`);
        }
      } else if (p.spec.nodeName !== undefined && !holding.has(name) && !isOld) {
        holding.add(name);
        seen.newBound++;
        if (seen.newBound > seen.oldTerminated)
          problems.push(`${name} got a slice while only ${seen.oldTerminated} old pod(s) had terminated`);
      }
      seen.maxHolding = Math.max(seen.maxHolding, holding.size);
    });
    const t1 = Date.now();
    try {
      apply(inferenceObjects(changed));
      await readyReplicas(slices, newHash);
      // The watch may trail the list by a few events.
      await waitFor(
        "the watch to see every old pod terminate and every new one bind",
        30000,
        () => Promise.resolve(seen.oldTerminated >= slices && seen.newBound >= slices ? true : undefined),
        100,
      );
    } finally {
      watch.stop();
    }
    timings.rolloutMs = Date.now() - t1;
    assert.deepEqual(problems, []);
    assert.equal(seen.oldTerminated, slices, "every old pod terminated");
    assert.equal(seen.newBound, slices, "every new pod got a slice");
    assert.ok(seen.maxHolding <= slices, `at most ${slices} pods held a slice, saw ${seen.maxHolding}`);
    // Graceful: each old server exited on SIGTERM within its grace period, not SIGKILLed at its end (137). The fake
    // server, its container's PID 1, exits 2 on SIGTERM (Go runtime signal_unix.go dieFromSignal: exit(2) when the
    // re-raised signal is ignored, as a PID namespace's init ignores it).
    for (const [name, p] of lastOld) {
      const term = p.status.containerStatuses?.[0]?.state?.terminated;
      assert.ok(term, `${name}: terminated state seen before deletion`);
      assert.notEqual(term.exitCode, 137, `${name} was SIGKILLed: ${JSON.stringify(term)}`);
    }
    const now = tasks();
    for (const [name, id] of oldIds)
      assert.ok(!now.has(id), `${name}'s container ${id} is gone from containerd`);
  });

  it("eviction drill: the budget refuses (429) a serving replica while another is unready, allows (201) otherwise; the evicted container stops", async function () {
    const pdbPath = `/apis/policy/v1/namespaces/${NAMESPACE}/poddisruptionbudgets/${INFERENCE.name}`;
    const evict = (name: string) =>
      kube.request("POST", `/api/v1/namespaces/${NAMESPACE}/pods/${name}/eviction`, {
        apiVersion: "policy/v1",
        kind: "Eviction",
        metadata: { name, namespace: NAMESPACE },
      });
    const budget = (healthy: number, allowed: number) =>
      waitFor(
        `the budget at currentHealthy ${healthy}, disruptionsAllowed ${allowed}`,
        60000,
        async () => {
          const pdb = (await kube.get(pdbPath)) as {
            status?: { currentHealthy?: number; disruptionsAllowed?: number };
          };
          return pdb.status?.currentHealthy === healthy && pdb.status.disruptionsAllowed === allowed
            ? true
            : undefined;
        },
        250,
      );
    const gone = (name: string) =>
      waitFor(
        `${name} gone`,
        120000,
        async () =>
          (await kube.get(`/api/v1/namespaces/${NAMESPACE}/pods/${name}`)) === undefined ? true : undefined,
        250,
      );
    const { items } = await inferencePods();
    const hash = items[0].metadata.annotations![ANNOTATIONS.configHash];
    const slices = items.length;
    const [broken, serving] = items;
    const ids = new Map(items.map((p) => [p.metadata.name, containerId(p)]));
    const t0 = Date.now();
    // The server stays alive but reports unready: it leaves the Service, the budget is spent.
    const r = await fetch(`http://${broken.status.podIP}:${INF.port}/admin/unready`, { method: "POST" });
    assert.equal(r.status, 200);
    await budget(slices - 1, 0);
    timings.evictionBudgetSpentMs = Date.now() - t0;
    const refused = await evict(serving.metadata.name);
    assert.equal(refused.status, 429, refused.body);
    assert.match(refused.body, /disruption budget/);
    assert.equal(
      tasks().get(ids.get(broken.metadata.name)!),
      "RUNNING",
      "the unready pod runs until evicted",
    );
    const allowed = await evict(broken.metadata.name);
    assert.equal(allowed.status, 201, allowed.body);
    await gone(broken.metadata.name);
    assert.ok(!tasks().has(ids.get(broken.metadata.name)!), "the evicted unready pod's container is gone");
    // Its replacement takes the freed slice; with every replica healthy, one may go again.
    await readyReplicas(slices, hash);
    await budget(slices, 1);
    const second = await evict(serving.metadata.name);
    assert.equal(second.status, 201, second.body);
    await gone(serving.metadata.name);
    assert.ok(!tasks().has(ids.get(serving.metadata.name)!), "the evicted serving pod's container is gone");
    await readyReplicas(slices, hash);
    timings.evictionDrillMs = Date.now() - t0;
  });
});
