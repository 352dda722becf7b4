/**
 * Hardware SKU profiles. Everything that differs between the boxes we support lives here as data, so a new SKU
 * is a new entry rather than a new branch in the components. This table is the only list of SKUs: the SKU names,
 * their type and every per-SKU loop (config validation, the policy pack, tests, the harness) come from its keys.
 *
 * Adding a SKU: its entry in PROFILES, its stack file Pulumi.<sku>.yaml, its entries in the pipeline matrices
 * (pipelines/github/*.yml, pipelines/gitlab/.gitlab-ci.yml) and what its GPU reports to the test harness
 * (SKU_GPUS in harness/site.ts). tests/unit/skus.test.ts fails while any of them is missing.
 */

/** How the NVIDIA device plugin finds the GPU (its `deviceDiscoveryStrategy`). */
export type DeviceDiscovery = "nvml" | "tegra";

/** Where the NVIDIA Container Toolkit comes from on that SKU. */
export type ToolkitSource = "apt" | "jetpack";

/** Resource metric the HorizontalPodAutoscaler scales the inference server on. */
export type HpaMetric = "cpu" | "memory";

/** A SKU's profile as written in the table; its name is its key there. */
export interface SkuSpec {
  readonly displayName: string;
  /** CPU architecture of the host, which picks the K3s binary and air-gap image tarball. */
  readonly arch: "amd64" | "arm64";
  readonly gpu: {
    readonly architecture: string;
    readonly computeCapability: string;
    /** Physical GPU memory per GPU, in GiB. */
    readonly memoryGiB: number;
    /** True when GPU memory is the host's RAM (Tegra): the OS and K3s eat from the same pool. */
    readonly unifiedMemory: boolean;
    /** Memory kept back from models: the host's share on unified memory, driver/ECC overhead on discrete GPUs. */
    readonly reservedGiB: number;
    /** CUDA context cost each time-sliced process pays on top of its model. */
    readonly contextOverheadGiB: number;
    /** Substring of the `nvidia-smi` product name that identifies this SKU on the node. */
    readonly productMatch: string;
    /** The most GPUs one node of this SKU can hold. */
    readonly maxGpusPerNode: number;
  };
  readonly deviceDiscovery: DeviceDiscovery;
  readonly driver: {
    /** Lowest driver branch that supports the GPU (0: no lower bound). */
    readonly minBranch: number;
    /** Highest driver branch that still supports the GPU (0: no upper bound). */
    readonly maxBranch: number;
    readonly note: string;
  };
  /** CUDA major versions an inference image may be built for. */
  readonly cudaMajors: readonly number[];
  readonly toolkitSource: ToolkitSource;
  readonly metrics: {
    /** DCGM runs on this GPU at all. */
    readonly dcgm: boolean;
    /** DCGM profiling (DCP, `DCGM_FI_PROF_*`) fields are available. */
    readonly dcgmProfiling: boolean;
    readonly note: string;
  };
  readonly timeSlicing: { readonly min: number; readonly max: number; readonly default: number };
  /**
   * Host memory kept from pods, handed to the kubelet through K3s's config.yaml (`kubelet-arg`). `system-reserved`
   * keeps room for the OS, K3s and containerd; `eviction-hard memory.available<…` makes the kubelet evict pods before
   * the kernel's OOM killer picks a victim. On unified memory their sum is the host's share of the pool
   * (`gpu.reservedGiB`), and the whole budget is checked by `unifiedMemoryBudget` (config/fit.ts).
   */
  readonly hostMemory: {
    /** Host RAM of one node in GiB when the SKU fixes it (unified memory: the same pool as the GPU); 0: unknown. */
    readonly totalGiB: number;
    readonly systemReservedGiB: number;
    readonly evictionHardGiB: number;
  };
  readonly hpa: { readonly metric: HpaMetric; readonly targetUtilization: number; readonly reason: string };
}

const GPU_UTIL_PER_POD =
  "GPU utilisation is per physical GPU and cannot be attributed to a pod under time-slicing, so it cannot drive a per-pod HPA";

const PROFILES = {
  thor: {
    displayName: "NVIDIA Jetson AGX Thor",
    arch: "arm64",
    gpu: {
      architecture: "Blackwell (integrated, Tegra)",
      computeCapability: "11.0",
      memoryGiB: 128,
      unifiedMemory: true,
      // 128 GB is shared with Ubuntu, K3s, containerd and every CPU-side process.
      reservedGiB: 16,
      contextOverheadGiB: 0.5,
      productMatch: "Thor",
      maxGpusPerNode: 1,
    },
    deviceDiscovery: "tegra",
    driver: {
      minBranch: 580,
      maxBranch: 0,
      note: "driver ships with JetPack 7 (L4T R38+); the device plugin must use tegra discovery, the toolkit runs in CSV mode",
    },
    // JetPack 7 ships CUDA 13; CUDA 12 images target sm_101 and do not run on Thor's sm_110.
    cudaMajors: [13],
    toolkitSource: "jetpack",
    metrics: {
      dcgm: false,
      dcgmProfiling: false,
      note: "DCGM does not support Jetson; use tegrastats/jtop on the host",
    },
    timeSlicing: { min: 4, max: 8, default: 4 },
    // 128 GB LPDDR5X shared by the CPU and the GPU; the 16 GiB host share (gpu.reservedGiB) is 14 GiB for Ubuntu,
    // K3s (a server with a workload ~1.6 GB) and containerd, plus a 2 GiB eviction margin.
    hostMemory: { totalGiB: 128, systemReservedGiB: 14, evictionHardGiB: 2 },
    hpa: {
      metric: "cpu",
      targetUtilization: 70,
      reason: `no DCGM on Tegra, and ${GPU_UTIL_PER_POD}; CPU (tokenisation, sampling, HTTP) is the per-pod metric metrics-server provides`,
    },
  },
  rtx4000: {
    displayName: "NVIDIA RTX PRO 4000 Blackwell",
    arch: "amd64",
    gpu: {
      architecture: "Blackwell (GB203)",
      computeCapability: "12.0",
      memoryGiB: 24,
      unifiedMemory: false,
      reservedGiB: 1,
      contextOverheadGiB: 0.5,
      productMatch: "RTX PRO 4000",
      maxGpusPerNode: 4,
    },
    deviceDiscovery: "nvml",
    driver: {
      minBranch: 570,
      maxBranch: 0,
      note: "Blackwell needs R570 or newer with the open kernel modules",
    },
    cudaMajors: [12, 13],
    toolkitSource: "apt",
    metrics: {
      dcgm: true,
      dcgmProfiling: false,
      note: "DCGM device fields work; profiling (DCP) fields are limited on workstation GPUs",
    },
    timeSlicing: { min: 2, max: 4, default: 4 },
    // Host RAM is the chassis's, not the SKU's: only the reservation is fixed.
    hostMemory: { totalGiB: 0, systemReservedGiB: 2, evictionHardGiB: 1 },
    hpa: {
      metric: "cpu",
      targetUtilization: 70,
      reason: `${GPU_UTIL_PER_POD}; DCGM exporter still reports GPU utilisation for dashboards`,
    },
  },
  p40: {
    displayName: "NVIDIA Tesla P40",
    arch: "amd64",
    gpu: {
      architecture: "Pascal (GP102)",
      computeCapability: "6.1",
      memoryGiB: 24,
      unifiedMemory: false,
      reservedGiB: 1,
      contextOverheadGiB: 0.5,
      productMatch: "P40",
      maxGpusPerNode: 8,
    },
    deviceDiscovery: "nvml",
    driver: {
      minBranch: 0,
      maxBranch: 580,
      note: "R580 is the last branch that supports Pascal, proprietary kernel modules only",
    },
    // CUDA 13 dropped Pascal (sm_61); vLLM/Triton need CC >= 7.0, so llama.cpp-class servers only.
    cudaMajors: [11, 12],
    toolkitSource: "apt",
    metrics: {
      dcgm: true,
      dcgmProfiling: false,
      note: "DCGM device fields work; DCGM_FI_PROF_* profiling fields are not supported on Pascal",
    },
    timeSlicing: { min: 2, max: 4, default: 4 },
    hostMemory: { totalGiB: 0, systemReservedGiB: 2, evictionHardGiB: 1 },
    hpa: {
      metric: "cpu",
      targetUtilization: 70,
      reason: `${GPU_UTIL_PER_POD}; Pascal has no DCGM profiling metrics either`,
    },
  },
} as const satisfies Record<string, SkuSpec>;

export type SkuName = keyof typeof PROFILES;

export interface SkuProfile extends SkuSpec {
  readonly name: SkuName;
}

/** Every SKU, in the table's order. */
export const SKU_NAMES = Object.keys(PROFILES) as readonly SkuName[];

export const SKUS = Object.fromEntries(
  SKU_NAMES.map((name): [SkuName, SkuProfile] => [name, { name, ...PROFILES[name] }]),
) as Readonly<Record<SkuName, SkuProfile>>;

export function isSkuName(name: string): name is SkuName {
  return Object.hasOwn(PROFILES, name);
}

/** GPU memory (GiB, per GPU) that models may use after the reserve and the per-slice CUDA contexts. */
export function usableGpuMemoryGiB(sku: SkuProfile, slices: number): number {
  return sku.gpu.memoryGiB - sku.gpu.reservedGiB - slices * sku.gpu.contextOverheadGiB;
}

/**
 * The kubelet arguments that keep the SKU's host reserve out of the pods' reach, one `kubelet-arg` entry each in
 * K3s's config.yaml (repeatable flags are YAML lists there). An `eviction-hard` flag replaces the whole threshold map,
 * and the kubelet's `mergeDefaultEvictionSettings` defaults to false, so K3s's own disk thresholds (imagefs and
 * nodefs 5%, set in its kubelet defaults) are repeated.
 */
export function kubeletMemoryArgs(sku: SkuProfile): string[] {
  const mi = (gib: number) => `${Math.round(gib * 1024)}Mi`;
  return [
    `system-reserved=memory=${mi(sku.hostMemory.systemReservedGiB)}`,
    `eviction-hard=memory.available<${mi(sku.hostMemory.evictionHardGiB)},imagefs.available<5%,nodefs.available<5%`,
  ];
}
