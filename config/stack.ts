/**
 * Stack configuration: read once, validated in full, and turned into plain typed values. Nothing downstream
 * touches raw config, and nothing reaches a node unless every key is valid.
 *
 * This file composes the section parsers (config/sections/, one per concern) and the fit rules (config/fit.ts) in
 * the order their problems are reported; config/checker.ts holds what they share.
 */
import { Checker, ConfigSource, keysOf } from "./checker";
import { capacityProblems, quotaCoverProblems, workloadFitProblems } from "./fit";
import {
  AIRGAP_KEYS,
  AirgapConfig,
  parseAirgap,
  parseRegistries,
  REGISTRIES_KEYS,
  RegistriesConfig,
} from "./sections/airgap";
import {
  INFERENCE_KEYS,
  InferenceConfig,
  parseInference,
  parseStorage,
  STORAGE_KEYS,
  StorageConfig,
} from "./sections/inference";
import { parseAllowedCidrs, parseNodePort } from "./sections/network";
import { gpuTotals, NODE_KEYS, NodeConfig, parseNodes } from "./sections/nodes";
import { parsePlatform, parseSku, PLATFORM_KEYS, PlatformConfig } from "./sections/platform";
import { parseQuota, QUOTA_KEYS, QuotaConfig } from "./sections/quota";
import { parseRollout, ROLLOUT_KEYS, RolloutConfig } from "./sections/rollout";
import { parseSecurity } from "./sections/security";
import { SkuProfile } from "./skus";

export { ConfigSource, isCidr, parseCpu, parseMemory } from "./checker";
export { AirgapConfig, RegistriesConfig } from "./sections/airgap";
export { InferenceConfig, StorageConfig } from "./sections/inference";
export { NODE_PORT_RANGE } from "./sections/network";
export { NodeConfig, NodeRole } from "./sections/nodes";
export {
  DEFAULT_DCGM_EXPORTER_IMAGE,
  DEFAULT_DEVICE_PLUGIN_VERSION,
  DEFAULT_K3S_VERSION,
  DEFAULT_TOOLKIT_VERSION,
  MIN_K3S_MINOR,
} from "./sections/platform";
export { QuotaConfig } from "./sections/quota";
export { RolloutConfig } from "./sections/rollout";

export interface StackConfig extends PlatformConfig {
  readonly stack: string;
  readonly sku: SkuProfile;
  readonly nodes: readonly NodeConfig[];
  readonly inference: InferenceConfig;
  readonly storage: StorageConfig;
  readonly nodePort: number;
  readonly quota: QuotaConfig;
  readonly allowedCidrs: readonly string[];
  readonly airgap?: AirgapConfig;
  readonly registries?: RegistriesConfig;
  readonly rollout: RolloutConfig;
  /** Lab opt-out: nodes without a pinned hostKey are dialled without verifying the host key. */
  readonly insecureSkipHostKeyCheck: boolean;
}

/**
 * The stack's top-level config keys, in the order messages list them: every field of StackConfig but `stack`, and
 * the secret `sshPrivateKey`. A field added to StackConfig (or to PlatformConfig) without its key fails to compile.
 */
export const STACK_KEYS: readonly (Exclude<keyof StackConfig, "stack"> | "sshPrivateKey")[] = [
  ...keysOf<"sku" | "nodes" | "sshPrivateKey">({ sku: true, nodes: true, sshPrivateKey: true }),
  ...PLATFORM_KEYS,
  ...keysOf<Exclude<keyof StackConfig, "stack" | "sku" | "nodes" | keyof PlatformConfig>>({
    inference: true,
    storage: true,
    nodePort: true,
    quota: true,
    allowedCidrs: true,
    airgap: true,
    registries: true,
    rollout: true,
    insecureSkipHostKeyCheck: true,
  }),
];

/** The keys of the top-level keys that hold an object (`nodes`: a list of them). */
export const SECTION_KEYS = {
  nodes: NODE_KEYS,
  inference: INFERENCE_KEYS,
  storage: STORAGE_KEYS,
  quota: QUOTA_KEYS,
  airgap: AIRGAP_KEYS,
  registries: REGISTRIES_KEYS,
  rollout: ROLLOUT_KEYS,
} as const satisfies Partial<Record<(typeof STACK_KEYS)[number], readonly string[]>>;

/**
 * Every key a stack file may set, as `pulumi config set --path` names it: `k3sVersion`, `inference.modelMemoryGiB`,
 * `nodes[].hostKey`. A key of a section is listed instead of its section.
 */
export function configKeyPaths(): string[] {
  return STACK_KEYS.flatMap((k) => {
    if (!Object.hasOwn(SECTION_KEYS, k)) return [k];
    const prefix = k === "nodes" ? "nodes[]" : k;
    return SECTION_KEYS[k as keyof typeof SECTION_KEYS].map((sub) => `${prefix}.${sub}`);
  });
}

export class ConfigError extends Error {
  constructor(
    readonly stack: string,
    readonly problems: readonly string[],
  ) {
    super(
      `stack "${stack}" has ${problems.length} invalid configuration value(s); nothing was changed on any node:\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** Parses and validates the whole stack configuration, throwing one ConfigError that lists every problem. */
export function parseStackConfig(stack: string, src: ConfigSource): StackConfig {
  const c = new Checker();
  const { sku, known: skuKnown } = parseSku(c, src);
  const { insecureSkipHostKeyCheck } = parseSecurity(c, src);
  const nodes = parseNodes(c, src, { stack, insecureSkipHostKeyCheck });
  const platform = parsePlatform(c, src, sku, skuKnown);
  const { timeSlicingReplicas } = platform;

  const { inference, given } = parseInference(c, src);
  c.problems.push(
    ...workloadFitProblems({ sku: skuKnown ? sku : undefined, nodes, timeSlicingReplicas, inference, given }),
  );
  const storage = parseStorage(c, src);
  const { replicas, maxReplicas } = inference;
  c.problems.push(
    ...capacityProblems({ nodes, timeSlicingReplicas, replicas, maxReplicas, storageSize: storage.size }),
  );

  const nodePort = parseNodePort(c, src);
  const quota = parseQuota(c, src, gpuTotals(nodes, timeSlicingReplicas));
  c.problems.push(...quotaCoverProblems(quota, inference));
  const allowedCidrs = parseAllowedCidrs(c, src);
  const airgap = parseAirgap(c, src);
  const registries = parseRegistries(c, src);
  const rollout = parseRollout(c, src);

  // Keys that are not ours are almost always typos of ours.
  for (const k of unknownTopLevel(src)) c.unknownKey(k, STACK_KEYS);

  if (c.problems.length > 0) throw new ConfigError(stack, c.problems);
  return {
    stack,
    sku,
    nodes,
    ...platform,
    inference,
    storage,
    nodePort,
    quota,
    allowedCidrs,
    airgap,
    registries,
    rollout,
    insecureSkipHostKeyCheck,
  };
}

/** Sources that can enumerate their keys report unknown ones; others skip the check. */
function unknownTopLevel(src: ConfigSource): string[] {
  const keys = (src as Partial<{ keys(): string[] }>).keys?.() ?? [];
  return keys.filter((k) => !(STACK_KEYS as readonly string[]).includes(k));
}
