/**
 * Hardware SKU profiles. Everything that differs between the boxes we support lives here as data, so a new SKU
 * is a new entry rather than a new branch in the components.
 */

export type SkuName = "thor" | "rtx4000" | "p40";
export const SKU_NAMES: readonly SkuName[] = ["thor", "rtx4000", "p40"];

/** How the NVIDIA device plugin finds the GPU (its `deviceDiscoveryStrategy`). */
export type DeviceDiscovery = "nvml" | "tegra";

/** Where the NVIDIA Container Toolkit comes from on that SKU. */
export type ToolkitSource = "apt" | "jetpack";

/** Resource metric the HorizontalPodAutoscaler scales the inference server on. */
export type HpaMetric = "cpu" | "memory";

export interface SkuProfile {
  readonly name: SkuName;
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
  readonly hpa: { readonly metric: HpaMetric; readonly targetUtilization: number; readonly reason: string };
}

const GPU_UTIL_PER_POD =
  "GPU utilisation is per physical GPU and cannot be attributed to a pod under time-slicing, so it cannot drive a per-pod HPA";

export const SKUS: Readonly<Record<SkuName, SkuProfile>> = {
  thor: {
    name: "thor",
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
    hpa: {
      metric: "cpu",
      targetUtilization: 70,
      reason: `no DCGM on Tegra, and ${GPU_UTIL_PER_POD}; CPU (tokenisation, sampling, HTTP) is the per-pod metric metrics-server provides`,
    },
  },
  rtx4000: {
    name: "rtx4000",
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
    hpa: {
      metric: "cpu",
      targetUtilization: 70,
      reason: `${GPU_UTIL_PER_POD}; DCGM exporter still reports GPU utilisation for dashboards`,
    },
  },
  p40: {
    name: "p40",
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
    hpa: {
      metric: "cpu",
      targetUtilization: 70,
      reason: `${GPU_UTIL_PER_POD}; Pascal has no DCGM profiling metrics either`,
    },
  },
};

/** GPU memory (GiB, per GPU) that models may use after the reserve and the per-slice CUDA contexts. */
export function usableGpuMemoryGiB(sku: SkuProfile, slices: number): number {
  return sku.gpu.memoryGiB - sku.gpu.reservedGiB - slices * sku.gpu.contextOverheadGiB;
}
