/**
 * `rollout`: how changes are rolled out: over the nodes of a site (node waves), over the sites of a fleet (site
 * waves), and how long a node removal may drain.
 */
import { Checker, ConfigSource, keysOf, readJson } from "../checker";

/** Sites per wave after the canary wave: a count (0: all the rest at once) or a share of the fleet's sites. */
export type SiteBatch = { readonly count: number } | { readonly percent: number };

export interface RolloutConfig {
  /** Nodes bootstrapped or upgraded together after the canary; 0 means all of the rest at once. */
  readonly batchSize: number;
  /** How long removing a node may wait for its pods to be evicted. */
  readonly drainTimeoutSeconds: number;
  /** Sites of the first wave (config order); the next wave starts only when each of them is healthy. */
  readonly canarySites: number;
  readonly siteBatchSize: SiteBatch;
}

export const ROLLOUT_KEYS = keysOf<keyof RolloutConfig>({
  batchSize: true,
  drainTimeoutSeconds: true,
  canarySites: true,
  siteBatchSize: true,
});

const PERCENT_RE = /^(\d{1,3})%$/;

export function parseRollout(c: Checker, src: ConfigSource): RolloutConfig {
  const ro = c.section("rollout", readJson(src, "rollout"), ROLLOUT_KEYS);
  return {
    batchSize: c.int("rollout.batchSize", ro.batchSize, 0, 0, 1000),
    drainTimeoutSeconds: c.int("rollout.drainTimeoutSeconds", ro.drainTimeoutSeconds, 300, 30, 3600),
    canarySites: c.int("rollout.canarySites", ro.canarySites, 1, 0, 1000),
    siteBatchSize: parseSiteBatch(c, ro.siteBatchSize),
  };
}

function parseSiteBatch(c: Checker, raw: unknown): SiteBatch {
  const pct = typeof raw === "string" ? PERCENT_RE.exec(raw) : null;
  if (pct) {
    const percent = Number(pct[1]);
    if (percent >= 1 && percent <= 100) return { percent };
  }
  if (typeof raw === "string" && raw.endsWith("%")) {
    c.fail(
      "rollout.siteBatchSize",
      raw,
      'an integer from 0 to 1000, or a share of the sites from "1%" to "100%"',
    );
    return { count: 0 };
  }
  return {
    count: c.int("rollout.siteBatchSize", raw, 0, 0, 1000, ', or a share of the sites from "1%" to "100%"'),
  };
}
