/**
 * The design's promises, shown happening on a simulated P40 site after a real `pulumi up`: GPU slices, priority
 * preemption, quotas, the disruption budget, failover through readiness, and configuration rollouts. Scheduling,
 * admission, quota, eviction and endpoint updates are the real control plane's; only the kubelet is kwok.
 */
import * as assert from "node:assert/strict";

import { EngineStack, PROJECT } from "../../harness/engine";
import { useSite } from "../../harness/fixture";
import { Site } from "../../harness/site";

const NS = "forge-cognition";
const BATCH_NS = "forge-batch";
const NODE = "p40-01";
export const MEASURED: Record<string, string> = {};

interface Pod {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec: { nodeName?: string; priorityClassName?: string };
  status: {
    phase?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

async function until<T>(
  what: string,
  f: () => Promise<T | undefined | false>,
  timeoutMs = 90_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A restricted-profile pod asking for GPU slices, as a batch job or a stray workload would. */
function slicePod(
  name: string,
  opts: { priority?: string; gpu?: number; memory?: string; ns?: string } = {},
) {
  const gpu = opts.gpu ?? 1;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: opts.ns ?? BATCH_NS, labels: { drill: "true" } },
    spec: {
      priorityClassName: opts.priority ?? "forge-low",
      runtimeClassName: "nvidia",
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
      tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
      containers: [
        {
          name: "work",
          image: "registry.example.com/forge/batch:1",
          resources: {
            requests: {
              cpu: "100m",
              memory: opts.memory ?? "256Mi",
              ...(gpu ? { "nvidia.com/gpu": String(gpu) } : {}),
            },
            limits: { memory: opts.memory ?? "256Mi", ...(gpu ? { "nvidia.com/gpu": String(gpu) } : {}) },
          },
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
        },
      ],
    },
  };
}

describe("e2e: the design's guarantees on a simulated P40 site", function () {
  this.timeout(20 * 60_000);
  let site: Site;
  let es: EngineStack;

  const pods = async (ns: string, selector: string): Promise<Pod[]> =>
    (
      (await site.kube.get(
        `/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}`,
      )) as { items: Pod[] }
    ).items.filter((p) => !p.metadata.deletionTimestamp);
  const running = (p: Pod) => p.status.phase === "Running" && !!p.spec.nodeName;
  const inferencePods = () => pods(NS, "app=inference-server");
  const scaleInference = (replicas: number) =>
    site.kube.send(
      "PATCH",
      `/apis/apps/v1/namespaces/${NS}/deployments/inference-server/scale`,
      { spec: { replicas } },
      "application/merge-patch+json",
    );
  /** Drives a pod's readiness as a kubelet would after its probe (kwok has no prober). */
  const setPodReady = (name: string, status: "True" | "False") =>
    site.kube.send(
      "PATCH",
      `/api/v1/namespaces/${NS}/pods/${name}/status`,
      {
        status: {
          conditions: [
            { type: "Ready", status, lastTransitionTime: new Date().toISOString() },
            { type: "ContainersReady", status, lastTransitionTime: new Date().toISOString() },
          ],
        },
      },
      "application/strategic-merge-patch+json",
    );
  const createPod = (pod: ReturnType<typeof slicePod>) =>
    site.kube.request("POST", `/api/v1/namespaces/${pod.metadata.namespace}/pods`, pod);

  useSite(this, {
    name: "drills",
    sku: "p40",
    ipBase: 60,
    ready: async (f) => {
      ({ site, es } = f);
      await es.stack.up();
      await site.kube.send("POST", "/api/v1/namespaces", { metadata: { name: BATCH_NS } });
    },
    beforeStop: async () => {
      console.log("\n  guarantee measurements:");
      for (const [k, v] of Object.entries(MEASURED)) console.log(`    ${k}: ${v}`);
      await site?.kube
        .send("DELETE", `/api/v1/namespaces/${BATCH_NS}`, undefined, undefined, true)
        .catch(() => undefined);
    },
    destroy: true,
  });

  it("the node advertises replicas × GPUs slices and exactly that many one-slice pods run", async () => {
    const node = (await site.kube.get(`/api/v1/nodes/${NODE}`)) as {
      status: { allocatable: Record<string, string> };
    };
    assert.equal(node.status.allocatable["nvidia.com/gpu"], "2", "P40 stack: timeSlicingReplicas 2 × 1 GPU");
    await until("the inference pod to run", async () => (await inferencePods()).some(running));
    assert.equal((await createPod(slicePod("slice-2"))).status, 201);
    await until("slice-2 to run", async () =>
      (await pods(BATCH_NS, "drill=true")).some((p) => p.metadata.name === "slice-2" && running(p)),
    );
    assert.equal((await createPod(slicePod("slice-3"))).status, 201);
    const pending = await until("slice-3 to be unschedulable", async () => {
      const p = (await pods(BATCH_NS, "drill=true")).find((x) => x.metadata.name === "slice-3");
      return p?.status.conditions?.find((c) => c.type === "PodScheduled" && c.reason === "Unschedulable");
    });
    assert.match(pending.message ?? "", /Insufficient nvidia\.com\/gpu/);
    MEASURED["slices"] =
      "2 advertised, 2 one-slice pods running, the 3rd Unschedulable (Insufficient nvidia.com/gpu)";
    await site.kube.send("DELETE", `/api/v1/namespaces/${BATCH_NS}/pods/slice-3`);
  });

  it("inference (forge-llm-critical) preempts forge-low batch pods holding every slice", async () => {
    await scaleInference(0);
    await until("inference pods to go", async () => (await inferencePods()).length === 0);
    assert.equal((await createPod(slicePod("slice-4"))).status, 201);
    await until(
      "both slices held by batch pods",
      async () => (await pods(BATCH_NS, "drill=true")).filter(running).length === 2,
    );
    const t = Date.now();
    await scaleInference(1);
    await until("the inference pod to preempt a batch pod and run", async () =>
      (await inferencePods()).some(running),
    );
    MEASURED["preemption"] =
      `inference pod Running ${((Date.now() - t) / 1000).toFixed(1)} s after scale-up with all slices held by forge-low`;
    const batch = await pods(BATCH_NS, "drill=true");
    assert.equal(batch.filter(running).length, 1, "exactly one batch pod was preempted");
  });

  it("the ResourceQuota refuses GPU slices, memory and pods beyond it, with the quota's own error", async () => {
    const gpu = await createPod(slicePod("too-many-slices", { ns: NS, priority: "forge-high", gpu: 2 }));
    assert.equal(gpu.status, 403);
    assert.match(gpu.body, /exceeded quota: forge-cognition-quota.*requests\.nvidia\.com\/gpu/);
    const mem = await createPod(
      slicePod("too-much-memory", { ns: NS, priority: "forge-high", gpu: 0, memory: "40Gi" }),
    );
    assert.equal(mem.status, 403);
    assert.match(mem.body, /exceeded quota: forge-cognition-quota.*requests\.memory/);
    let refused = "";
    let accepted = 0;
    for (let i = 0; i < 12 && !refused; i++) {
      const r = await createPod(
        slicePod(`filler-${i}`, { ns: NS, priority: "forge-low", gpu: 0, memory: "64Mi" }),
      );
      if (r.status === 403) refused = r.body;
      else {
        assert.equal(r.status, 201, r.body);
        accepted++;
      }
    }
    assert.match(refused, /exceeded quota: forge-cognition-quota.*pods/);
    await site.kube.send("DELETE", `/api/v1/namespaces/${NS}/pods?labelSelector=drill%3Dtrue`);
    const inNs = (await pods(NS, "app=inference-server")).length;
    assert.equal(inNs + accepted, 10, "the quota admits exactly its pod count");
    MEASURED["quota"] =
      `refused: requests.nvidia.com/gpu=2, requests.memory=40Gi, and pod ${inNs + accepted + 1} (pods: 10)`;
  });

  it("the disruption budget keeps the last serving replica and never holds back an unhealthy one", async () => {
    // Two replicas (the HPA's way: the scale subresource), one of them unready: the budget (maxUnavailable 1) is
    // spent, so evicting the serving one is refused, while the unready one may go (unhealthyPodEvictionPolicy
    // AlwaysAllow) — a broken pod never blocks a drain.
    await site.kube.send("DELETE", `/api/v1/namespaces/${BATCH_NS}/pods?labelSelector=drill%3Dtrue`);
    await scaleInference(2);
    const [healthy, broken] = await until("two inference pods to run", async () => {
      const ps = (await inferencePods()).filter(running);
      return ps.length === 2 && ps;
    });
    await setPodReady(broken.metadata.name, "False");
    const pdbPath = `/apis/policy/v1/namespaces/${NS}/poddisruptionbudgets/inference-server`;
    await until("the budget to be spent", async () => {
      const pdb = (await site.kube.get(pdbPath)) as {
        status?: { disruptionsAllowed?: number; currentHealthy?: number };
      };
      return pdb.status?.currentHealthy === 1 && pdb.status.disruptionsAllowed === 0;
    });
    const evict = (name: string) =>
      site.kube.request("POST", `/api/v1/namespaces/${NS}/pods/${name}/eviction`, {
        apiVersion: "policy/v1",
        kind: "Eviction",
        metadata: { name, namespace: NS },
      });
    const refused = await evict(healthy.metadata.name);
    assert.equal(refused.status, 429, refused.body);
    assert.match(refused.body, /disruption budget/);
    const allowed = await evict(broken.metadata.name);
    assert.equal(allowed.status, 201, allowed.body);
    MEASURED["pdb"] =
      "2 replicas, 1 unready: evicting the serving one HTTP 429 (budget spent), the unready one HTTP 201 (AlwaysAllow)";
    await scaleInference(1);
    await until("one ready inference pod", async () => {
      const ps = (await inferencePods()).filter(running);
      return (
        ps.length === 1 && ps[0].status.conditions?.some((c) => c.type === "Ready" && c.status === "True")
      );
    });
  });

  it("an unready inference pod leaves the Service endpoints and comes back when ready", async () => {
    const [pod] = (await inferencePods()).filter(running);
    const endpointReady = async (): Promise<boolean | undefined> => {
      const slices = (await site.kube.get(
        `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dinference-server`,
      )) as { items: { endpoints?: { targetRef?: { name: string }; conditions?: { ready?: boolean } }[] }[] };
      const ep = slices.items
        .flatMap((s) => s.endpoints ?? [])
        .find((e) => e.targetRef?.name === pod.metadata.name);
      return ep?.conditions?.ready;
    };
    assert.equal(await until("the endpoint to be ready", endpointReady), true);
    const setReady = (status: "True" | "False") => setPodReady(pod.metadata.name, status);
    let t = Date.now();
    await setReady("False");
    await until("the endpoint to turn unready", async () => (await endpointReady()) === false);
    const out = (Date.now() - t) / 1000;
    t = Date.now();
    await setReady("True");
    await until("the endpoint to be ready again", async () => (await endpointReady()) === true);
    MEASURED["failover"] =
      `unready → out of endpoints in ${out.toFixed(1)} s; ready → back in ${((Date.now() - t) / 1000).toFixed(1)} s`;
    const d = (await site.kube.get(`/apis/apps/v1/namespaces/${NS}/deployments/inference-server`)) as {
      spec: {
        template: {
          spec: { containers: { livenessProbe: { periodSeconds: number; failureThreshold: number } }[] };
        };
      };
    };
    // Restarts after 3 failed liveness probes are the kubelet's job, which kwok does not simulate: the settings are asserted instead.
    assert.deepEqual(d.spec.template.spec.containers[0].livenessProbe.failureThreshold, 3);
  });

  it("a changed inference-config rolls the Deployment by itself, with no spare GPU slice", async () => {
    assert.equal((await createPod(slicePod("slice-5"))).status, 201);
    await until(
      "every slice to be held",
      async () => (await pods(BATCH_NS, "drill=true")).filter(running).length === 1,
    );
    const before = (await inferencePods()).map((p) => p.metadata.name);
    const cfg = JSON.parse(site.config.inference.value) as { settings: Record<string, string> };
    cfg.settings.MAX_BATCH_SIZE = "16";
    await es.stack.setConfig(`${PROJECT}:inference`, { value: JSON.stringify(cfg) });
    const t = Date.now();
    const res = await es.stack.up();
    MEASURED["config-rollout"] =
      `pulumi up rolled the Deployment in ${((Date.now() - t) / 1000).toFixed(1)} s with both slices in use`;
    assert.equal(res.summary.result, "succeeded");
    const after = (await inferencePods()).filter(running);
    assert.equal(after.length, 1);
    assert.ok(!before.includes(after[0].metadata.name), "the inference pod was replaced");
    const cm = (await site.kube.get(`/api/v1/namespaces/${NS}/configmaps/inference-config`)) as {
      data: Record<string, string>;
    };
    assert.equal(cm.data.MAX_BATCH_SIZE, "16");
  });
});
