/** `inference` (the LLM server's Deployment) and `storage` (each replica's model volume). */
import { Checker, ConfigSource, DNS_LABEL_RE, IMAGE_RE, keysOf, readJson } from "../checker";

export interface InferenceConfig {
  readonly image: string;
  readonly replicas: number;
  readonly maxReplicas: number;
  readonly cpuRequest: string;
  readonly cpuLimit: string;
  readonly memoryRequest: string;
  readonly memoryLimit: string;
  readonly gpuSlicesPerPod: number;
  readonly modelMemoryGiB: number;
  readonly cudaMajor: number;
  readonly modelLoadSeconds: number;
  readonly port: number;
  readonly shmSize: string;
  readonly readOnlyRootFilesystem: boolean;
  readonly settings: Readonly<Record<string, string>>;
  readonly probes: ProbeConfig;
}

/**
 * The server's probe timings. The startup probe's failureThreshold is derived, not set: enough startup periods to
 * cover `modelLoadSeconds`, never fewer than `minStartupFailureThreshold`, so the startup budget always covers the
 * model's load (components/inferenceStack.ts startupFailureThreshold).
 */
export interface ProbeConfig {
  readonly startupPeriodSeconds: number;
  readonly minStartupFailureThreshold: number;
  readonly livenessPeriodSeconds: number;
  readonly livenessFailureThreshold: number;
  readonly readinessPeriodSeconds: number;
  readonly readinessFailureThreshold: number;
}

/**
 * The design's probes (k3s-deployment-design.md, "Failover & Health Checks"): startup 30 x 10 s (the 5-minute
 * floor), liveness 3 x 30 s, readiness 3 x 10 s. Operators on slow boxes tune them; tests scale them down.
 */
export const DEFAULT_PROBES: ProbeConfig = {
  startupPeriodSeconds: 10,
  minStartupFailureThreshold: 30,
  livenessPeriodSeconds: 30,
  livenessFailureThreshold: 3,
  readinessPeriodSeconds: 10,
  readinessFailureThreshold: 3,
};

/** What each probe setting accepts: [min, max]. */
const PROBE_RANGES: Record<keyof ProbeConfig, [number, number]> = {
  startupPeriodSeconds: [1, 60],
  minStartupFailureThreshold: [1, 720],
  livenessPeriodSeconds: [1, 300],
  livenessFailureThreshold: [1, 10],
  readinessPeriodSeconds: [1, 300],
  readinessFailureThreshold: [1, 10],
};

export const PROBE_KEYS = Object.keys(PROBE_RANGES) as readonly (keyof ProbeConfig)[];

export const INFERENCE_KEYS = keysOf<keyof InferenceConfig>({
  image: true,
  replicas: true,
  maxReplicas: true,
  cpuRequest: true,
  cpuLimit: true,
  memoryRequest: true,
  memoryLimit: true,
  gpuSlicesPerPod: true,
  modelMemoryGiB: true,
  cudaMajor: true,
  modelLoadSeconds: true,
  port: true,
  shmSize: true,
  readOnlyRootFilesystem: true,
  settings: true,
  probes: true,
});

export interface StorageConfig {
  readonly size: string;
  readonly storageClass: string;
}

export const STORAGE_KEYS = keysOf<keyof StorageConfig>({ size: true, storageClass: true });

const SETTING_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The inference section, each key checked on its own; `given` holds the keys the stack set, so that the fit rules
 * (config/fit.ts) skip a key whose absence is already reported as required.
 */
export function parseInference(
  c: Checker,
  src: ConfigSource,
): { inference: InferenceConfig; given: ReadonlySet<string> } {
  const inf = c.section("inference", readJson(src, "inference"), INFERENCE_KEYS);
  const replicas = c.int("inference.replicas", inf.replicas, 1, 1, 64);
  const settings = parseSettings(c, inf.settings);
  const inference: InferenceConfig = {
    image: c.str(
      "inference.image",
      inf.image,
      undefined,
      IMAGE_RE,
      'a container image reference, e.g. "registry/forge/llm:1.2"',
    ),
    replicas,
    maxReplicas: c.int("inference.maxReplicas", inf.maxReplicas, replicas, 1, 64),
    cpuRequest: c.cpu("inference.cpuRequest", inf.cpuRequest, "1"),
    cpuLimit: c.cpu("inference.cpuLimit", inf.cpuLimit, "4"),
    memoryRequest: c.memory("inference.memoryRequest", inf.memoryRequest, "4Gi"),
    memoryLimit: c.memory("inference.memoryLimit", inf.memoryLimit, "8Gi"),
    gpuSlicesPerPod: c.int("inference.gpuSlicesPerPod", inf.gpuSlicesPerPod, 1, 1, 64),
    modelMemoryGiB: c.num("inference.modelMemoryGiB", inf.modelMemoryGiB, undefined, 0.1, 1024),
    cudaMajor: c.int("inference.cudaMajor", inf.cudaMajor, undefined, 9, 20),
    modelLoadSeconds: c.int("inference.modelLoadSeconds", inf.modelLoadSeconds, 300, 10, 7200),
    port: c.int("inference.port", inf.port, 8080, 1024, 65535),
    shmSize: c.memory("inference.shmSize", inf.shmSize, "2Gi"),
    readOnlyRootFilesystem: c.bool("inference.readOnlyRootFilesystem", inf.readOnlyRootFilesystem, true),
    settings,
    probes: parseProbes(c, inf.probes),
  };
  const given = new Set(Object.keys(inf).filter((k) => inf[k] !== undefined));
  return { inference, given };
}

/** `inference.settings`: environment-style keys for the `inference-config` ConfigMap, values as strings. */
function parseSettings(c: Checker, raw: unknown): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.object("inference.settings", raw))) {
    if (!SETTING_KEY_RE.test(k))
      c.fail(`inference.settings.${k}`, k, "keys must be environment variable names");
    else if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      c.fail(`inference.settings.${k}`, v, "a string, number or boolean");
    } else settings[k] = String(v);
  }
  return settings;
}

/**
 * `inference.probes`: each period and threshold in the range the kubelet accepts and an edge box can use; the
 * design's values when unset. Readiness must notice a hung server no later than liveness does, so an unhealthy pod
 * leaves the Service before it is restarted (the design's failover order).
 */
function parseProbes(c: Checker, raw: unknown): ProbeConfig {
  const p = c.section("inference.probes", raw, PROBE_KEYS);
  const d = DEFAULT_PROBES;
  const before = c.problems.length;
  const key = (k: keyof ProbeConfig) => `inference.probes.${k}`;
  const probes = Object.fromEntries(
    PROBE_KEYS.map((k) => [k, c.int(key(k), p[k], d[k], ...PROBE_RANGES[k])]),
  ) as unknown as ProbeConfig;
  const readiness = probes.readinessPeriodSeconds * probes.readinessFailureThreshold;
  const liveness = probes.livenessPeriodSeconds * probes.livenessFailureThreshold;
  // Only between values that are each valid: a refused one is already reported.
  if (c.problems.length === before && readiness > liveness) {
    c.fail(
      key("readinessFailureThreshold"),
      p.readinessFailureThreshold ?? d.readinessFailureThreshold,
      `readiness (${probes.readinessPeriodSeconds} s × ${probes.readinessFailureThreshold} = ${readiness} s) must notice a hung server no later than liveness (${probes.livenessPeriodSeconds} s × ${probes.livenessFailureThreshold} = ${liveness} s), so an unhealthy pod leaves the Service before it is restarted`,
    );
  }
  return probes;
}

export function parseStorage(c: Checker, src: ConfigSource): StorageConfig {
  return storageAt(c, "storage", readJson(src, "storage"), { size: "50Gi", storageClass: "local-path" });
}

/** A storage section under `key` (`storage`, or a site's `sites[i].storage`); each key unset takes `def`'s value. */
export function storageAt(c: Checker, key: string, raw: unknown, def: StorageConfig): StorageConfig {
  const st = c.section(key, raw, STORAGE_KEYS);
  return {
    size: c.memory(`${key}.size`, st.size, def.size),
    storageClass: c.str(
      `${key}.storageClass`,
      st.storageClass,
      def.storageClass,
      DNS_LABEL_RE,
      "a StorageClass name",
    ),
  };
}
