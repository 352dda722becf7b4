/**
 * Issue 11: a real kubelet (with containerd 2, runc, the CNI plugins and kube-proxy, configured as K3s would)
 * registers a Node with a real kube-apiserver; the pause image built here runs; the stack's own inference
 * Deployment and NodePort Service serve /health on :30080 through the nvidia runtime double; drills: liveness
 * (hang -> restart), time-slicing (gpus x replicas slices, the next Pending), startup budget (within / beyond).
 * Not in `npm run test:e2e` (about 8 min): `npm run test:realnode`, or after `bash harness/build-toolchain.sh node`
 *   unshare --net -- bash -c 'ip link set lo up && npx mocha --timeout 900000 tests/realnode/realNode.test.ts'
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  configData,
  deploymentSpec,
  serviceSpec,
  startupBudgetSeconds,
} from "../../components/inferenceStack";
import { INFERENCE, NAMESPACE, NODE_LABELS, PRIORITY_CLASSES, RUNTIME_CLASS } from "../../components/names";
import type { InferenceConfig } from "../../config/stack";
import { startControlPlane, type ControlPlane } from "../../harness/controlPlane";
import { waitFor } from "../../harness/proc";
import { nodeToolchain, nvidiaTemplate, startRealNode, type RealNode } from "../../harness/realNode";
import { checkerPath, loadToolchain } from "../../harness/toolchain";

const NODE = "edge-real-1";
const NODE_IP = "192.0.2.10"; // TEST-NET-1: the kubelet refuses a loopback node IP
const NODE_PORT = 30080;
/** The image name a stack configures; the fake inference image is retagged to it on the node. */
const STACK_IMAGE = "registry.example.com/forge/cognition-llm:1.2.0";
const GPUS = 1;
const REPLICAS = 4; // time-slicing replicas per GPU: nvidia.com/gpu = 4
const INF: InferenceConfig = {
  image: STACK_IMAGE,
  replicas: 1,
  maxReplicas: 1,
  cpuRequest: "100m",
  cpuLimit: "1",
  memoryRequest: "64Mi",
  memoryLimit: "256Mi",
  gpuSlicesPerPod: 1,
  modelMemoryGiB: 10,
  cudaMajor: 12,
  modelLoadSeconds: 2,
  port: 8080,
  shmSize: "64Mi",
  readOnlyRootFilesystem: true,
  // The fake server's model-load delay, through the inference-config ConfigMap like any server setting.
  settings: { MODEL_LOAD_SECONDS: "2" },
};

describe("real node below the API (kubelet + containerd + runc)", function () {
  this.timeout(600000);
  let dir: string;
  let cp: ControlPlane;
  let node: RealNode;
  let kubectlBin: string;
  const timings: Record<string, number> = {};

  const kubectl = (...args: string[]): string =>
    execFileSync(kubectlBin, ["--kubeconfig", cp.kubeconfigPath, ...args], { encoding: "utf8" });

  before(async function () {
    assert.equal(process.getuid?.(), 0, "a real node needs root (mounts, cgroups, netfilter)");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-realnode-"));
    kubectlBin = loadToolchain(["kubectl"]).bin.kubectl;
    cp = await startControlPlane({ dir: path.join(dir, "cp"), hostIps: [NODE_IP] });
    timings.controlPlaneMs = cp.startMs;
    node = await startRealNode({
      name: NODE,
      ip: NODE_IP,
      dir: path.join(dir, "node"),
      controlPlane: {
        server: cp.server,
        caFile: path.join(dir, "cp/pki/ca.crt"),
        caKeyFile: path.join(dir, "cp/pki/ca.key"),
      },
      containerdTemplate: nvidiaTemplate(),
      checker: checkerPath(),
      toolchain: nodeToolchain(),
      labels: [`${NODE_LABELS.gpuPresent}=true`],
      gpus: GPUS,
      gpuReplicas: REPLICAS,
      imageTarballs: [nodeToolchain().images.pause, nodeToolchain().images.inference],
      retag: [[nodeToolchain().inferenceImage, STACK_IMAGE]],
    });
    timings.nodeStartMs = node.startMs;
  });

  after(async function () {
    console.log(`      timings: ${JSON.stringify(timings)}`);
    if (node) await node.stop();
    if (cp) await cp.stop();
    if (dir && process.env.FORGE_KEEP !== "1") fs.rmSync(dir, { recursive: true, force: true });
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
    execFileSync(kubectlBin, ["--kubeconfig", cp.kubeconfigPath, "apply", "-f", "-"], {
      input: JSON.stringify(pod),
    });
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
    const dep = deploymentSpec(
      INF,
      "drill",
      { size: "1Gi", storageClass: "local-path" },
      { gpuNodes: 1, entryNode: NODE },
    ) as {
      spec: { template: { spec: { volumes: Array<{ name: string }> } } };
    };
    // No volume provisioner on this node yet: the model volume is an emptyDir (the only change to the stack's spec).
    const vols = dep.spec.template.spec.volumes;
    vols.splice(
      vols.findIndex((v) => v.name === "models"),
      1,
      { name: "models", emptyDir: {} } as { name: string },
    );
    const objects = [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } },
      {
        apiVersion: "scheduling.k8s.io/v1",
        kind: "PriorityClass",
        metadata: { name: PRIORITY_CLASSES.llmCritical.name },
        value: PRIORITY_CLASSES.llmCritical.value,
      },
      // K3s's packaged runtimes.yaml: the nvidia RuntimeClass, handler nvidia.
      {
        apiVersion: "node.k8s.io/v1",
        kind: "RuntimeClass",
        metadata: { name: RUNTIME_CLASS },
        handler: "nvidia",
      },
      {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: INFERENCE.configMap, namespace: NAMESPACE },
        data: configData(INF),
      },
      { apiVersion: "apps/v1", kind: "Deployment", ...dep },
      { apiVersion: "v1", kind: "Service", ...serviceSpec(INF, NODE_PORT) },
    ];
    const t0 = Date.now();
    execFileSync(kubectlBin, ["--kubeconfig", cp.kubeconfigPath, "apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }),
    });
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
    // The probes are the stack's own (liveness every 30 s, 3 failures; readiness every 10 s): nothing scaled.
    const r = await fetch(`http://${before.podIP}:${INF.port}/admin/hang`, { method: "POST" });
    assert.equal(r.status, 200);
    const seen = { dropped: false, restarted: false, returned: false };
    await waitFor(
      "restart, endpoint drop and return",
      300000,
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
      1000,
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
    execFileSync(kubectlBin, ["--kubeconfig", cp.kubeconfigPath, "apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "v1", kind: "List", items: pods }),
    });
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
    const budget = startupBudgetSeconds(INF.modelLoadSeconds);
    const dep = deploymentSpec(
      INF,
      "drill",
      { size: "1Gi", storageClass: "local-path" },
      { gpuNodes: 1, entryNode: NODE },
    ) as unknown as {
      spec: {
        template: {
          metadata: unknown;
          spec: Record<string, unknown> & { containers: Array<Record<string, unknown>> };
        };
      };
    };
    const pod = (name: string, loadSeconds: number): unknown => {
      const spec = JSON.parse(JSON.stringify(dep.spec.template.spec)) as typeof dep.spec.template.spec;
      spec.volumes = [
        { name: "models", emptyDir: {} },
        { name: "dshm", emptyDir: { medium: "Memory", sizeLimit: "64Mi" } },
        { name: "tmp", emptyDir: {} },
      ];
      const c = spec.containers[0];
      // The stack's probes as they are; only the GPU request is dropped (the slices belong to the other drills)
      // and the fake server's load time set per pod (env wins over the ConfigMap's envFrom).
      c.resources = { requests: { cpu: "50m", memory: "32Mi" }, limits: { cpu: "500m", memory: "128Mi" } };
      c.env = [{ name: "MODEL_LOAD_SECONDS", value: String(loadSeconds) }];
      return {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace: NAMESPACE, labels: { drill: "startup" } },
        spec,
      };
    };
    const within = Math.max(30, Math.floor(budget / 5));
    const beyond = budget + 120;
    const t0 = Date.now();
    execFileSync(kubectlBin, ["--kubeconfig", cp.kubeconfigPath, "apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: [pod("startup-within", within), pod("startup-beyond", beyond)],
      }),
    });
    const status = (name: string): { restartCount: number; ready: boolean } => {
      const s = JSON.parse(
        kubectl("-n", NAMESPACE, "get", "pod", name, "-o", "jsonpath={.status.containerStatuses[0]}") || "{}",
      ) as {
        restartCount?: number;
        ready?: boolean;
      };
      return { restartCount: s.restartCount ?? 0, ready: s.ready === true };
    };
    await waitFor(
      `startup-within Ready and startup-beyond killed after the ${budget} s startup budget`,
      (budget + 240) * 1000,
      () => {
        const w = status("startup-within");
        const b = status("startup-beyond");
        if (w.ready && timings.startupWithinReadyMs === undefined)
          timings.startupWithinReadyMs = Date.now() - t0;
        if (b.restartCount >= 1 && timings.startupBeyondKilledMs === undefined)
          timings.startupBeyondKilledMs = Date.now() - t0;
        return Promise.resolve(w.ready && b.restartCount >= 1 ? true : undefined);
      },
      2000,
    );
    assert.deepEqual(status("startup-within"), { restartCount: 0, ready: true });
    assert.ok(status("startup-beyond").restartCount >= 1);
    const events = kubectl(
      "-n",
      NAMESPACE,
      "get",
      "events",
      "--field-selector",
      "involvedObject.name=startup-beyond",
      "-o",
      "jsonpath={.items[*].message}",
    );
    assert.match(events, /Startup probe failed/);
    assert.match(events, /failed startup probe, will be restarted/);
  });
});
