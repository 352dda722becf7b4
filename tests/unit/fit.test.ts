/**
 * The fit rules (config/fit.ts) on their own: pure functions from parsed values to problem messages, without a
 * stack file. The per-node capacity and Thor's unified-memory budget have their own files (capacity.test.ts,
 * memoryBudget.test.ts); the messages as a user sees them are in tests/badConfigs.ts.
 */
import * as assert from "node:assert/strict";

import {
  inferenceFitProblems,
  memoryBudgetProblems,
  nodeGpuProblems,
  quotaCoverProblems,
  workloadFitProblems,
  WorkloadFitInput,
} from "../../config/fit";
import { INFERENCE_KEYS, InferenceConfig } from "../../config/sections/inference";
import { SKUS } from "../../config/skus";
import { parseStackConfig } from "../../config/stack";
import { stackSource } from "./support";

/** The committed RTX PRO 4000 stack's workload: 2 replicas at most, 8Gi/16Gi memory, a 5 GiB model. */
const { inference } = parseStackConfig("rtx4000", stackSource("rtx4000"));

/** An RTX PRO 4000 site of one 1-GPU node with 4 slices, every inference key set. */
function site(patch: Partial<WorkloadFitInput> = {}, inf: Partial<InferenceConfig> = {}): WorkloadFitInput {
  return {
    sku: SKUS.rtx4000,
    nodes: [{ gpus: 1 }],
    timeSlicingReplicas: 4,
    inference: { ...inference, ...inf },
    given: new Set(INFERENCE_KEYS),
    ...patch,
  };
}

describe("fit rules: the inference workload", () => {
  it("accepts a workload that fits", () => {
    assert.deepEqual(workloadFitProblems(site()), []);
  });

  it("refuses more than one slice per pod", () => {
    assert.deepEqual(inferenceFitProblems(site({}, { gpuSlicesPerPod: 2 })), [
      "inference.gpuSlicesPerPod = 2 is invalid: only 1 is allowed: a time-sliced request for more than one slice gives no extra compute, and the device plugin runs with failRequestsGreaterThanOne",
    ]);
  });

  it("checks the CUDA major against the SKU, only when the stack set it and names a known SKU", () => {
    const wrong = site({}, { cudaMajor: 11 });
    assert.match(
      inferenceFitProblems(wrong)[0],
      /^inference\.cudaMajor = 11 is invalid: .*CUDA 12 or 13 only$/,
    );
    assert.deepEqual(inferenceFitProblems({ ...wrong, given: new Set() }), []);
    assert.deepEqual(inferenceFitProblems({ ...wrong, sku: undefined }), []);
  });

  it("keeps maxReplicas between replicas and the site's GPU slices", () => {
    assert.deepEqual(inferenceFitProblems(site({}, { replicas: 3 })), [
      "inference.maxReplicas = 2 is invalid: must be at least inference.replicas (3)",
    ]);
    assert.deepEqual(inferenceFitProblems(site({ nodes: [{ gpus: 1 }, { gpus: 2 }] }, { maxReplicas: 13 })), [
      "inference.maxReplicas = 13 is invalid: the nodes advertise 12 GPU slice(s) (3 GPU(s) × timeSlicingReplicas 4); at most 12 inference pods fit",
    ]);
  });

  it("keeps limits at least the requests, comparing quantities, not strings", () => {
    assert.deepEqual(inferenceFitProblems(site({}, { memoryRequest: "2048Mi", memoryLimit: "2Gi" })), []);
    assert.deepEqual(inferenceFitProblems(site({}, { memoryRequest: "17Gi", cpuRequest: "4500m" })), [
      'inference.memoryLimit = "16Gi" is invalid: must be at least inference.memoryRequest (17Gi)',
      "inference.cpuLimit = 4 is invalid: must be at least inference.cpuRequest (4500m)",
    ]);
  });
});

describe("fit rules: GPU memory", () => {
  it("counts a model copy in every slice of a GPU (no memory isolation under time-slicing)", () => {
    // RTX PRO 4000: 24 GiB − 1 GiB reserve − 4 × 0.5 GiB contexts = 21 GiB for 4 copies.
    assert.deepEqual(memoryBudgetProblems(site({}, { modelMemoryGiB: 5.25 })), []);
    const [p] = memoryBudgetProblems(site({}, { modelMemoryGiB: 6 }));
    assert.match(
      p,
      /^inference\.modelMemoryGiB = 6 over-subscribes GPU memory: .* = 24 GiB, .* 21 GiB usable/,
    );
    assert.match(p, /over by 3 GiB: lower modelMemoryGiB to 5\.2 or timeSlicingReplicas$/);
  });

  it("skips the budget when the model size is unset or the SKU unknown", () => {
    const over = site({}, { modelMemoryGiB: 100 });
    assert.deepEqual(memoryBudgetProblems({ ...over, given: new Set(["image"]) }), []);
    assert.deepEqual(memoryBudgetProblems({ ...over, sku: undefined }), []);
  });

  it("the model size it suggests always fits, on every SKU and slice count", () => {
    for (const sku of Object.values(SKUS)) {
      for (let slices = sku.timeSlicing.min; slices <= sku.timeSlicing.max; slices++) {
        const w = site(
          { sku, timeSlicingReplicas: slices },
          { modelMemoryGiB: 1024, maxReplicas: 1, memoryLimit: "1Gi" },
        );
        const gpu = memoryBudgetProblems(w).find((p) => p.includes("over-subscribes GPU memory"));
        const suggested = Number(/lower modelMemoryGiB to ([\d.]+)/.exec(gpu ?? "")?.[1]);
        assert.ok(suggested > 0, `${sku.name} × ${slices}: ${gpu}`);
        const again = memoryBudgetProblems({
          ...w,
          inference: { ...w.inference, modelMemoryGiB: suggested },
        });
        assert.ok(
          !again.some((p) => p.includes("over-subscribes")),
          `${sku.name} × ${slices}: ${again.join("\n")}`,
        );
      }
    }
  });

  it("on Thor, the maxReplicas it suggests fits the unified-memory pool", () => {
    for (const memoryLimit of ["8Gi", "16Gi", "30Gi"]) {
      const w = site(
        { sku: SKUS.thor, timeSlicingReplicas: 8 },
        { modelMemoryGiB: 10, maxReplicas: 8, memoryLimit, cudaMajor: 13 },
      );
      const [oom] = memoryBudgetProblems(w);
      const room = Number(/lower inference\.maxReplicas to (\d+)/.exec(oom)?.[1]);
      assert.ok(room >= 1, oom);
      assert.deepEqual(memoryBudgetProblems({ ...w, inference: { ...w.inference, maxReplicas: room } }), []);
    }
  });
});

describe("fit rules: nodes and quota", () => {
  it("holds each node to the GPUs the SKU's chassis can take", () => {
    assert.deepEqual(nodeGpuProblems({ sku: SKUS.thor, nodes: [{ gpus: 1 }, { gpus: 2 }] }), [
      "nodes[1].gpus = 2 is invalid: NVIDIA Jetson AGX Thor nodes hold at most 1 GPU(s)",
    ]);
    assert.deepEqual(nodeGpuProblems({ sku: undefined, nodes: [{ gpus: 64 }] }), []);
  });

  it("requires the quota to cover the workload at maxReplicas", () => {
    const inf = { ...inference, maxReplicas: 4 };
    const enough = { gpu: 4, requestsMemory: "32Gi", limitsMemory: "64Gi", pods: 4 };
    assert.deepEqual(quotaCoverProblems(enough, inf), []);
    assert.deepEqual(
      quotaCoverProblems({ gpu: 3, requestsMemory: "31Gi", limitsMemory: "63Gi", pods: 3 }, inf),
      [
        "quota.gpu = 3 is invalid: must cover inference.maxReplicas × gpuSlicesPerPod (4)",
        'quota.requestsMemory = "31Gi" is invalid: must cover inference.maxReplicas × memoryRequest (4 × 8Gi)',
        'quota.limitsMemory = "63Gi" is invalid: must cover inference.maxReplicas × memoryLimit (4 × 16Gi)',
        "quota.pods = 3 is invalid: must be at least inference.maxReplicas (4)",
      ],
    );
  });
});
