/**
 * The Kubernetes side on first contact with real clusters: await budgets, the disruption budget, K3s's own
 * RuntimeClass, node labels that converge, the HPA owning the replica count, and per-replica model storage.
 * Resource options (ignoreChanges, retainOnDelete, dependencies) are read from the register requests the mock
 * monitor receives, since the mocks' newResource only sees inputs.
 */
import * as assert from "node:assert/strict";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";

import { run } from "../../program";
import {
  deploymentAwaitSeconds,
  PROBES,
  replicaRolloutSeconds,
  ROLLOUT,
  startupBudgetSeconds,
} from "../../components/inferenceStack";
import { daemonSetAwaitSeconds } from "../../components/gpuSharing";
import { nodeLabelPatch } from "../../components/k3sCluster";
import { nodeLabels } from "../../components/edgeNode";
import { SKUS } from "../../config/skus";
import { skusDeclared } from "../../policy/policies";
import { evaluateStack, Recorded, stackFileConfig } from "./support";

/* eslint-disable @typescript-eslint/no-explicit-any */
interface Registered {
  urn: string;
  ignoreChanges: string[];
  retainOnDelete: boolean;
  aliases: string;
  dependencies: string[];
}

/** Register requests by resource name, captured while the program runs under mocks. */
const registered = new Map<string, Registered>();
const original = MockMonitor.prototype.registerResource;
before(() => {
  MockMonitor.prototype.registerResource = function (req: any, callback: any) {
    registered.set(req.getName(), {
      urn: `${req.getType()}::${req.getName()}`,
      ignoreChanges: req.getIgnorechangesList(),
      retainOnDelete: req.getRetainondelete() === true,
      aliases: JSON.stringify(req.getAliasesList().map((a: any) => a.toObject())),
      dependencies: req.getDependenciesList(),
    });
    return original.call(this, req, callback);
  };
});
after(() => {
  MockMonitor.prototype.registerResource = original;
});

const meta = (r: Recorded) => r.inputs.metadata as any;
const spec = (r: Recorded) => r.inputs.spec as any;
const named = (rs: Recorded[], name: string) => {
  const r = rs.find((x) => meta(x).name === name);
  assert.ok(r, `${name} not declared`);
  return r;
};
const DEPLOY = "kubernetes:apps/v1:Deployment";
const DS = "kubernetes:apps/v1:DaemonSet";
const TIMEOUT = "pulumi.com/timeoutSeconds";
/** pulumi-kubernetes 4.25.0 waits this long for a Deployment or DaemonSet unless told otherwise. */
const PROVIDER_DEFAULT_S = 600;
/** A well-formed pin (the committed stack's placeholder): nodes are only dialled with their host key pinned. */
const HOST_KEY = (JSON.parse(stackFileConfig("rtx4000")["forge-edge:nodes"]) as { hostKey?: string }[])[0]
  .hostKey;
const NODE = { name: "n1", host: "192.0.2.10", port: 22, user: "root", role: "server" as const, gpus: 1 };
const inferenceOf = (stack: string) =>
  JSON.parse(stackFileConfig(stack)["forge-edge:inference"]) as { maxReplicas: number; replicas: number };

describe("await budgets (pulumi.com/timeoutSeconds)", () => {
  it("covers replicas × (grace + startup budget) plus the image pull, as a pure function", () => {
    const thor = { modelLoadSeconds: 420, maxReplicas: 4 };
    const perReplica =
      ROLLOUT.terminationGraceSeconds + startupBudgetSeconds(420) + PROBES.readinessPeriodSeconds;
    assert.equal(startupBudgetSeconds(420), 420);
    assert.equal(startupBudgetSeconds(100), 300, "never below the seed's 5-minute startup budget");
    assert.equal(deploymentAwaitSeconds(thor, 1), 4 * perReplica + ROLLOUT.imagePullSeconds);
    // The image is pulled once per node the replicas spread over, never more often than there are replicas.
    assert.equal(deploymentAwaitSeconds(thor, 3), 4 * perReplica + 3 * ROLLOUT.imagePullSeconds);
    assert.equal(deploymentAwaitSeconds(thor, 10), 4 * perReplica + 4 * ROLLOUT.imagePullSeconds);
    assert.ok(
      deploymentAwaitSeconds({ modelLoadSeconds: 900, maxReplicas: 4 }, 1) > deploymentAwaitSeconds(thor, 1),
    );
    assert.equal(replicaRolloutSeconds(thor), perReplica + ROLLOUT.imagePullSeconds);
    assert.equal(daemonSetAwaitSeconds(1), PROVIDER_DEFAULT_S + 30);
    assert.equal(daemonSetAwaitSeconds(10), 10 * daemonSetAwaitSeconds(1));
  });

  it("thor: the Deployment waits for a rollout of 2 replicas × 420 s model load, beyond the 10-minute default", async () => {
    const ev = await evaluateStack("thor", run);
    const d = named(ev.ofType(DEPLOY), "inference-server");
    const budget = Number(meta(d).annotations?.[TIMEOUT]);
    // The issue's figure: 2 replicas one at a time with a 420 s model load take about 16 minutes.
    assert.ok(budget >= 2 * (60 + 420), `timeoutSeconds ${budget} below a healthy 2-replica rollout`);
    assert.ok(budget > PROVIDER_DEFAULT_S);
    assert.equal(budget, deploymentAwaitSeconds({ modelLoadSeconds: 420, ...inferenceOf("thor") }, 1));
    // Each replica that becomes available is progress: one healthy replacement never exceeds the deadline.
    assert.ok(spec(d).progressDeadlineSeconds >= replicaRolloutSeconds({ modelLoadSeconds: 420 }));
    for (const ds of ev.ofType(DS)) {
      assert.ok(Number(meta(ds).annotations?.[TIMEOUT]) > PROVIDER_DEFAULT_S, meta(ds).name);
    }
  });
});

describe("disruption budget", () => {
  for (const stack of ["rtx4000", "thor"] as const) {
    it(`${stack}: a drain evicts one replica at a time and never waits on an unhealthy one`, async () => {
      const ev = await evaluateStack(stack, run);
      const pdb = named(ev.ofType("kubernetes:policy/v1:PodDisruptionBudget"), "inference-server");
      // With one replica (rtx4000), minAvailable 1 would refuse every eviction: every drain would hang.
      assert.equal(spec(pdb).minAvailable, undefined);
      assert.equal(spec(pdb).maxUnavailable, 1);
      assert.equal(spec(pdb).unhealthyPodEvictionPolicy, "AlwaysAllow");
    });
  }
});

describe("K3s's own nvidia RuntimeClass", () => {
  it("is adopted as a patch on every provider version and never deleted", async () => {
    const ev = await evaluateStack("p40", run);
    assert.equal(ev.ofType("kubernetes:node.k8s.io/v1:RuntimeClass").length, 0);
    const rc = named(ev.ofType("kubernetes:node.k8s.io/v1:RuntimeClassPatch"), "nvidia");
    assert.equal(rc.inputs.handler, "nvidia");
    const opts = registered.get(rc.name)!;
    assert.equal(opts.retainOnDelete, true, "pulumi destroy must not delete K3s's object");
    assert.match(
      opts.aliases,
      /kubernetes:node\.k8s\.io\/v1:RuntimeClass"/,
      "state of the plain resource adopted",
    );
  });
});

describe("node labels", () => {
  it("are patched on every node after its K3s step, forced over the labels K3s set at registration", async () => {
    const nodes = [
      { name: "s1", host: "192.0.2.10", role: "server", hostKey: HOST_KEY },
      { name: "a1", host: "192.0.2.20", role: "agent", gpus: 2, hostKey: HOST_KEY },
    ];
    const ev = await evaluateStack("rtx4000", run, { nodes, quota: undefined });
    const patches = ev.ofType("kubernetes:core/v1:NodePatch");
    assert.deepEqual(patches.map((p) => meta(p).name).sort(), ["a1", "s1"]);
    for (const n of [
      { name: "s1", gpus: 1 },
      { name: "a1", gpus: 2 },
    ]) {
      const p = named(patches, n.name);
      const want = Object.fromEntries(
        nodeLabels({ ...n, host: "", port: 22, user: "root", role: "server" }, SKUS.rtx4000).map((l) =>
          l.split("="),
        ),
      );
      assert.deepEqual(meta(p).labels, want);
      assert.equal(meta(p).labels["forge-edge.io/gpu-count"], String(n.gpus));
      assert.equal(meta(p).annotations["pulumi.com/patchForce"], "true");
      const opts = registered.get(p.name)!;
      assert.ok(
        opts.dependencies.some((u) => u.endsWith(`::${n.name}-k3s`)),
        `${p.name} must wait for ${n.name}'s K3s step: ${opts.dependencies.join(", ")}`,
      );
      assert.equal(opts.retainOnDelete, true);
    }
  });

  it("tell the policy pack the SKU", () => {
    const patch = { type: "kubernetes:core/v1:NodePatch", props: nodeLabelPatch(NODE, SKUS.thor) as any };
    assert.deepEqual(skusDeclared([patch]), ["thor"]);
  });
});

describe("the HPA owns the replica count", () => {
  it("the Deployment sets replicas only at creation and ignores them afterwards", async () => {
    const ev = await evaluateStack("thor", run);
    const d = named(ev.ofType(DEPLOY), "inference-server");
    assert.equal(spec(d).replicas, inferenceOf("thor").replicas);
    assert.deepEqual(registered.get(d.name)!.ignoreChanges, ["spec.replicas"]);
    const hpa = named(ev.ofType("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"), "inference-server");
    assert.equal(
      spec(hpa).minReplicas,
      2,
      "a raised inference.replicas reaches the pods through the HPA floor",
    );
  });
});

describe("model storage on multi-node sites", () => {
  const nodes = [
    { name: "s1", host: "192.0.2.10", role: "server", hostKey: HOST_KEY },
    { name: "a1", host: "192.0.2.20", role: "agent", hostKey: HOST_KEY },
    { name: "a2", host: "192.0.2.21", role: "agent", hostKey: HOST_KEY },
  ];

  it("gives each replica its own volume on its node, so any GPU node can run any replica", async () => {
    const ev = await evaluateStack("rtx4000", run, {
      nodes,
      quota: undefined,
      inference: {
        ...JSON.parse(stackFileConfig("rtx4000")["forge-edge:inference"]),
        replicas: 2,
        maxReplicas: 6,
      },
    });
    assert.equal(
      ev.ofType("kubernetes:core/v1:PersistentVolumeClaim").length,
      0,
      "no claim shared by replicas",
    );
    const pod = spec(named(ev.ofType(DEPLOY), "inference-server")).template.spec;
    const models = pod.volumes.find((v: any) => v.name === "models");
    assert.equal(models.persistentVolumeClaim, undefined);
    assert.deepEqual(models.ephemeral.volumeClaimTemplate.spec, {
      accessModes: ["ReadWriteOnce"],
      storageClassName: "local-path",
      resources: { requests: { storage: "100Gi" } },
    });
    assert.deepEqual(pod.topologySpreadConstraints[0].labelSelector, {
      matchLabels: { app: "inference-server" },
    });
    assert.equal(pod.topologySpreadConstraints[0].whenUnsatisfiable, "ScheduleAnyway");
    const pref = pod.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0];
    assert.deepEqual(pref.preference.matchExpressions[0].values, ["s1"], "the endpoint's node first");
    const svc = named(ev.ofType("kubernetes:core/v1:Service"), "inference-server");
    assert.equal(spec(svc).externalTrafficPolicy, "Local");
  });
});
