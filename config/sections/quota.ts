/** `quota`: the ResourceQuota of the inference namespace. */
import { Checker, ConfigSource, keysOf, readJson } from "../checker";

export interface QuotaConfig {
  readonly gpu: number;
  readonly requestsMemory: string;
  readonly limitsMemory: string;
  readonly pods: number;
}

export const QUOTA_KEYS = keysOf<keyof QuotaConfig>({
  gpu: true,
  requestsMemory: true,
  limitsMemory: true,
  pods: true,
});

/** Defaults scale the seed (4 slices, 32Gi/64Gi, 10 pods) to what this stack's nodes offer. */
export function parseQuota(
  c: Checker,
  src: ConfigSource,
  site: { gpus: number; slices: number },
): QuotaConfig {
  const q = c.section("quota", readJson(src, "quota"), QUOTA_KEYS);
  return {
    gpu: c.int("quota.gpu", q.gpu, site.slices, 1, 1024),
    requestsMemory: c.memory("quota.requestsMemory", q.requestsMemory, `${32 * site.gpus}Gi`),
    limitsMemory: c.memory("quota.limitsMemory", q.limitsMemory, `${64 * site.gpus}Gi`),
    pods: c.int("quota.pods", q.pods, Math.max(10, site.slices + 6), 1, 1000),
  };
}
