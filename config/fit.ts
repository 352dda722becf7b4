/**
 * Fit rules: whether the values, each valid on its own, fit together and fit the hardware. These are the rules that
 * bite on real boxes (a model that does not fit beside its neighbours, a replica with nowhere to go when a node
 * drains, a quota that starves the autoscaler). Each is a pure function from parsed config to problem messages.
 */
import { invalid, parseCpu, parseMemory } from "./checker";
import { InferenceConfig } from "./sections/inference";
import { gpuTotals, NodeConfig } from "./sections/nodes";
import { QuotaConfig } from "./sections/quota";
import { SkuProfile, usableGpuMemoryGiB } from "./skus";

export interface WorkloadFitInput {
  /** Undefined when the stack names no known SKU: the rules about the hardware are then skipped. */
  readonly sku: SkuProfile | undefined;
  readonly nodes: readonly Pick<NodeConfig, "gpus">[];
  /** Where the nodes were configured, as messages name it: `nodes` (the default) or a site's `sites[i].nodes`. */
  readonly nodesKey?: string;
  readonly timeSlicingReplicas: number;
  readonly inference: InferenceConfig;
  /** The inference keys the stack set: a rule about a key left unset is skipped (it is reported as required). */
  readonly given: ReadonlySet<string>;
}

/** The inference workload against itself, the SKU, the site's GPU slices and GPU memory, and the nodes' GPUs. */
export function workloadFitProblems(w: WorkloadFitInput): string[] {
  return [...inferenceFitProblems(w), ...memoryBudgetProblems(w), ...nodeGpuProblems(w)];
}

export function inferenceFitProblems(w: WorkloadFitInput): string[] {
  const { sku, inference: inf } = w;
  const problems: string[] = [];
  if (inf.gpuSlicesPerPod !== 1) {
    problems.push(
      invalid(
        "inference.gpuSlicesPerPod",
        inf.gpuSlicesPerPod,
        "only 1 is allowed: a time-sliced request for more than one slice gives no extra compute, and the device plugin runs with failRequestsGreaterThanOne",
      ),
    );
  }
  if (sku && w.given.has("cudaMajor") && !sku.cudaMajors.includes(inf.cudaMajor)) {
    problems.push(
      invalid(
        "inference.cudaMajor",
        inf.cudaMajor,
        `${sku.displayName} (${sku.gpu.architecture}, compute ${sku.gpu.computeCapability}) runs images built for CUDA ${sku.cudaMajors.join(" or ")} only`,
      ),
    );
  }
  if (inf.maxReplicas < inf.replicas) {
    problems.push(
      invalid(
        "inference.maxReplicas",
        inf.maxReplicas,
        `must be at least inference.replicas (${inf.replicas})`,
      ),
    );
  }
  const site = gpuTotals(w.nodes, w.timeSlicingReplicas);
  if (inf.maxReplicas * inf.gpuSlicesPerPod > site.slices) {
    problems.push(
      invalid(
        "inference.maxReplicas",
        inf.maxReplicas,
        `the nodes advertise ${site.slices} GPU slice(s) (${site.gpus} GPU(s) × timeSlicingReplicas ${w.timeSlicingReplicas}); at most ${site.slices} inference pods fit`,
      ),
    );
  }
  problems.push(
    ...limitCoversRequest("memoryLimit", inf.memoryLimit, "memoryRequest", inf.memoryRequest, parseMemory),
    ...limitCoversRequest("cpuLimit", inf.cpuLimit, "cpuRequest", inf.cpuRequest, parseCpu),
  );
  return problems;
}

function limitCoversRequest(
  limitKey: string,
  limit: string,
  requestKey: string,
  request: string,
  parse: (q: string) => number | undefined,
): string[] {
  const req = parse(request);
  const lim = parse(limit);
  if (req === undefined || lim === undefined || lim >= req) return [];
  return [invalid(`inference.${limitKey}`, limit, `must be at least inference.${requestKey} (${request})`)];
}

/**
 * GPU memory. Time-slicing has no memory isolation: every slice on a GPU may hold a model copy at once. On unified
 * memory (Thor) the models, their CUDA contexts and the containers' memory all come out of the host's RAM too.
 */
export function memoryBudgetProblems(w: WorkloadFitInput): string[] {
  const { sku, inference: inf, timeSlicingReplicas: slices } = w;
  if (!sku || !w.given.has("modelMemoryGiB")) return [];
  const problems: string[] = [];
  const usable = usableGpuMemoryGiB(sku, slices);
  const needed = slices * inf.modelMemoryGiB;
  if (needed > usable) {
    problems.push(
      `inference.modelMemoryGiB = ${inf.modelMemoryGiB} over-subscribes GPU memory: timeSlicingReplicas ${slices} × ${inf.modelMemoryGiB} GiB = ${round(needed)} GiB, ` +
        `but ${sku.displayName} has ${round(usable)} GiB usable per GPU (${sku.gpu.memoryGiB} GiB − ${sku.gpu.reservedGiB} GiB ${sku.gpu.unifiedMemory ? "reserved for the host (unified memory)" : "driver reserve"} − ${slices} × ${sku.gpu.contextOverheadGiB} GiB CUDA contexts); ` +
        `over by ${round(needed - usable)} GiB: lower modelMemoryGiB to ${Math.floor((usable / slices) * 10) / 10} or timeSlicingReplicas`,
    );
  }
  const limMem = parseMemory(inf.memoryLimit);
  if (limMem === undefined) return problems;
  const b = unifiedMemoryBudget(sku, {
    maxReplicas: inf.maxReplicas,
    slicesPerNode: Math.max(1, ...w.nodes.map((n) => n.gpus)) * slices,
    modelMemoryGiB: inf.modelMemoryGiB,
    memoryLimitGiB: limMem / 2 ** 30,
  });
  if (b !== undefined && !b.fits) {
    const room = Math.floor((b.totalGiB - b.hostReserveGiB) / b.perPodGiB);
    problems.push(
      `inference.maxReplicas = ${inf.maxReplicas} can drive ${sku.displayName} into the OOM killer: GPU and container memory share the node's ${b.totalGiB} GiB (unified memory), ` +
        `and ${b.podsPerNode} pod(s) per node × (modelMemoryGiB ${inf.modelMemoryGiB} + ${sku.gpu.contextOverheadGiB} GiB CUDA context + memoryLimit ${inf.memoryLimit} = ${round(b.perPodGiB)} GiB) ` +
        `+ ${b.hostReserveGiB} GiB host reserve (kubelet system-reserved ${sku.hostMemory.systemReservedGiB} GiB + eviction margin ${sku.hostMemory.evictionHardGiB} GiB) = ${round(b.neededGiB)} GiB; ` +
        `over by ${round(b.neededGiB - b.totalGiB)} GiB: ${room >= 1 ? `lower inference.maxReplicas to ${room}, or ` : "lower "}inference.memoryLimit or inference.modelMemoryGiB`,
    );
  }
  return problems;
}

export interface UnifiedMemoryBudget {
  /** Inference pods that can run on one node at once: min(maxReplicas, GPU slices of the largest node). */
  readonly podsPerNode: number;
  /** What one pod can take from the pool: model + its CUDA context on the GPU side, the memory limit on the CPU side. */
  readonly perPodGiB: number;
  /** The host's share: kubelet system-reserved + the hard-eviction margin. */
  readonly hostReserveGiB: number;
  readonly neededGiB: number;
  readonly totalGiB: number;
  readonly fits: boolean;
}

/**
 * The unified-memory budget of one node (Tegra: GPU and container memory come from the same RAM). Time-slicing has
 * no memory isolation and a container's cgroup limit does not cover what the GPU driver allocates for it, so each
 * pod can hold its model, its CUDA context and its container memory limit at the same time. Returns undefined on
 * SKUs whose GPU has its own memory.
 */
export function unifiedMemoryBudget(
  sku: SkuProfile,
  w: { maxReplicas: number; slicesPerNode: number; modelMemoryGiB: number; memoryLimitGiB: number },
): UnifiedMemoryBudget | undefined {
  if (!sku.gpu.unifiedMemory) return undefined;
  const podsPerNode = Math.min(w.maxReplicas, w.slicesPerNode);
  const perPodGiB = w.modelMemoryGiB + sku.gpu.contextOverheadGiB + w.memoryLimitGiB;
  const hostReserveGiB = sku.hostMemory.systemReservedGiB + sku.hostMemory.evictionHardGiB;
  const neededGiB = podsPerNode * perPodGiB + hostReserveGiB;
  const totalGiB = sku.hostMemory.totalGiB;
  return { podsPerNode, perPodGiB, hostReserveGiB, neededGiB, totalGiB, fits: neededGiB <= totalGiB };
}

/** Each node holds no more GPUs than the SKU's chassis can. */
export function nodeGpuProblems(w: Pick<WorkloadFitInput, "sku" | "nodes" | "nodesKey">): string[] {
  const { sku } = w;
  if (!sku) return [];
  return w.nodes.flatMap((n, i) =>
    n.gpus > sku.gpu.maxGpusPerNode
      ? [
          invalid(
            `${w.nodesKey ?? "nodes"}[${i}].gpus`,
            n.gpus,
            `${sku.displayName} nodes hold at most ${sku.gpu.maxGpusPerNode} GPU(s)`,
          ),
        ]
      : [],
  );
}

/*
 * Per-node capacity of a stack. Each inference replica gets its own model volume on the node it runs on (a generic
 * ephemeral volume), so replicas spread over the GPU nodes: the site's slices add up, but every rule that decides
 * whether a replica fits is a rule about one node.
 */

export interface CapacityInput {
  readonly nodes: readonly { readonly name: string; readonly gpus: number }[];
  readonly timeSlicingReplicas: number;
  readonly replicas: number;
  readonly maxReplicas: number;
  /** `storage.size`: one replica's model volume. */
  readonly storageSize: string;
}

export interface NodeCapacity {
  readonly name: string;
  /** `nvidia.com/gpu` the node advertises. */
  readonly slices: number;
  /** The most inference replicas that can land on this node. */
  readonly inferencePods: number;
  /**
   * Disk the node's local-path directory (`/var/lib/rancher/k3s/storage`) must hold for them. local-path has no
   * storage-capacity tracking, so the scheduler cannot check this: preflight or the node step has to.
   */
  readonly modelStorageBytes: number;
}

export function nodeCapacities(input: CapacityInput): NodeCapacity[] {
  const size = parseMemory(input.storageSize) ?? 0;
  return input.nodes.map((n) => {
    const slices = n.gpus * input.timeSlicingReplicas;
    const inferencePods = Math.min(slices, input.maxReplicas);
    return { name: n.name, slices, inferencePods, modelStorageBytes: inferencePods * size };
  });
}

/**
 * Problems with the site's per-node capacity, as config messages (key, value, why). On a multi-node site every node
 * may be drained (node removal, maintenance): the replicas the HPA never goes below must then fit on the other
 * nodes, or the evicted replica stays Pending and the disruption budget stops the drain until it times out. A
 * single-node site has nowhere to move a replica; that trade-off is documented, not refused.
 */
export function capacityProblems(input: CapacityInput): string[] {
  const caps = nodeCapacities(input);
  if (caps.length < 2) return [];
  const total = caps.reduce((s, c) => s + c.slices, 0);
  const problems: string[] = [];
  for (const c of caps) {
    const rest = total - c.slices;
    if (rest < input.replicas) {
      problems.push(
        `inference.replicas = ${input.replicas} does not fit when node ${c.name} is drained: the other nodes advertise ` +
          `${rest} GPU slice(s), so an evicted replica stays Pending and the drain waits on the disruption budget; ` +
          `lower inference.replicas to ${rest} or add GPU capacity`,
      );
    }
  }
  return problems;
}

/** The ResourceQuota covers the inference workload at its ceiling, or the HPA's extra replicas are refused. */
export function quotaCoverProblems(quota: QuotaConfig, inf: InferenceConfig): string[] {
  const problems: string[] = [];
  if (quota.gpu < inf.maxReplicas * inf.gpuSlicesPerPod) {
    problems.push(
      invalid(
        "quota.gpu",
        quota.gpu,
        `must cover inference.maxReplicas × gpuSlicesPerPod (${inf.maxReplicas})`,
      ),
    );
  }
  problems.push(
    ...memoryCover(
      "requestsMemory",
      quota.requestsMemory,
      "memoryRequest",
      inf.memoryRequest,
      inf.maxReplicas,
    ),
    ...memoryCover("limitsMemory", quota.limitsMemory, "memoryLimit", inf.memoryLimit, inf.maxReplicas),
  );
  if (quota.pods < inf.maxReplicas) {
    problems.push(
      invalid("quota.pods", quota.pods, `must be at least inference.maxReplicas (${inf.maxReplicas})`),
    );
  }
  return problems;
}

function memoryCover(
  quotaKey: string,
  quota: string,
  podKey: string,
  perPod: string,
  pods: number,
): string[] {
  const q = parseMemory(quota);
  const p = parseMemory(perPod);
  if (q === undefined || p === undefined || q >= pods * p) return [];
  return [
    invalid(`quota.${quotaKey}`, quota, `must cover inference.maxReplicas × ${podKey} (${pods} × ${perPod})`),
  ];
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
