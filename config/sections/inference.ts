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
}

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
