/** `rollout`: how node changes are rolled out over the site, and how long a node removal may drain. */
import { Checker, ConfigSource, keysOf, readJson } from "../checker";

export interface RolloutConfig {
  /** Nodes bootstrapped or upgraded together after the canary; 0 means all of the rest at once. */
  readonly batchSize: number;
  /** How long removing a node may wait for its pods to be evicted. */
  readonly drainTimeoutSeconds: number;
}

export const ROLLOUT_KEYS = keysOf<keyof RolloutConfig>({ batchSize: true, drainTimeoutSeconds: true });

export function parseRollout(c: Checker, src: ConfigSource): RolloutConfig {
  const ro = c.section("rollout", readJson(src, "rollout"), ROLLOUT_KEYS);
  return {
    batchSize: c.int("rollout.batchSize", ro.batchSize, 0, 0, 1000),
    drainTimeoutSeconds: c.int("rollout.drainTimeoutSeconds", ro.drainTimeoutSeconds, 300, 30, 3600),
  };
}
