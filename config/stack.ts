/**
 * Stack configuration: read once, validated in full, and turned into plain typed values. Nothing downstream
 * touches raw config, and nothing reaches a node unless every key is valid.
 *
 * This file composes the section parsers (config/sections/, one per concern) and the fit rules (config/fit.ts) in
 * the order their problems are reported; config/checker.ts holds what they share.
 */
import { Checker, ConfigSource, keysOf } from "./checker";
import { capacityProblems, quotaCoverProblems, workloadFitProblems } from "./fit";
import { stackImageRefs } from "./images";
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
  PROBE_KEYS,
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
import { fleetProblems, nodesKeyOf, parseSites, SITE_KEYS, SiteConfig } from "./sections/sites";
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
export { SiteConfig } from "./sections/sites";

/**
 * Everything a node's bootstrap scripts need from the stack, as one value: it travels unchanged from here through
 * the site and the cluster to each node (components/edgeNode.ts), so a new setting that reaches the node is a field
 * here and a line where the node's script parameters are computed, and nothing in between.
 */
export interface NodeBootstrap {
  readonly sku: SkuProfile;
  readonly k3sVersion: string;
  readonly toolkitVersion: string;
  readonly airgap?: AirgapConfig;
  readonly registries?: RegistriesConfig;
  /**
   * Images K3s pulls in the background as soon as it runs (online installs): the inference image, so its multi-GB
   * pull overlaps the device plugin and platform rollout instead of starting when the first pod lands. Empty in an
   * air gap, whose images are staged tarballs.
   */
  readonly prePullImages: readonly string[];
  /**
   * Air gap: the images the stack runs, normalised as containerd lists them (config/images.ts), which the node's
   * import step waits for once K3s imports the stack's tarballs. Empty (or absent) without an air gap.
   */
  readonly airgapImages?: readonly string[];
}

export interface StackConfig extends PlatformConfig {
  readonly stack: string;
  readonly sku: SkuProfile;
  /**
   * `nodes`: the stack is one site, its resources named as before sites existed. `sites`: a fleet, each site its own
   * cluster whose resources are named after the site.
   */
  readonly layout: "nodes" | "sites";
  /** The sites, in config order: the top-level `nodes` form is one site named after the stack. */
  readonly sites: readonly SiteConfig[];
  /** Every node of the stack, site after site. */
  readonly nodes: readonly NodeConfig[];
  readonly inference: InferenceConfig;
  readonly storage: StorageConfig;
  readonly nodePort: number;
  readonly quota: QuotaConfig;
  readonly allowedCidrs: readonly string[];
  readonly airgap?: AirgapConfig;
  readonly registries?: RegistriesConfig;
  readonly rollout: RolloutConfig;
  readonly bootstrap: NodeBootstrap;
  /** Lab opt-out: nodes without a pinned hostKey are dialled without verifying the host key. */
  readonly insecureSkipHostKeyCheck: boolean;
}

/** StackConfig's fields that are derived, not set: no config key names them. */
type DerivedField = "stack" | "layout" | "bootstrap";

/**
 * The stack's top-level config keys, in the order messages list them: every field of StackConfig but the derived
 * ones, and the secret `sshPrivateKey`. A field added to StackConfig (or to PlatformConfig) without its key fails to
 * compile. (`nodePort`, `allowedCidrs`, `storage` and `quota` set for the stack are what each site starts from.)
 */
export const STACK_KEYS: readonly (Exclude<keyof StackConfig, DerivedField> | "sshPrivateKey")[] = [
  ...keysOf<"sku" | "nodes" | "sites" | "sshPrivateKey">({
    sku: true,
    nodes: true,
    sites: true,
    sshPrivateKey: true,
  }),
  ...PLATFORM_KEYS,
  ...keysOf<Exclude<keyof StackConfig, DerivedField | "sku" | "nodes" | "sites" | keyof PlatformConfig>>({
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

/** The keys of the top-level keys that hold an object (`nodes`, `sites`: a list of them). */
export const SECTION_KEYS = {
  nodes: NODE_KEYS,
  sites: SITE_KEYS,
  inference: INFERENCE_KEYS,
  storage: STORAGE_KEYS,
  quota: QUOTA_KEYS,
  airgap: AIRGAP_KEYS,
  registries: REGISTRIES_KEYS,
  rollout: ROLLOUT_KEYS,
} as const satisfies Partial<Record<(typeof STACK_KEYS)[number], readonly string[]>>;

/**
 * Every key a stack file may set, as `pulumi config set --path` names it: `k3sVersion`, `inference.modelMemoryGiB`,
 * `nodes[].hostKey`, `sites[].nodes[].host`. A key of a section is listed instead of its section.
 */
export function configKeyPaths(): string[] {
  // Objects inside a section (`inference.probes`) are listed by their keys too.
  const sections: Record<string, readonly string[]> = { ...SECTION_KEYS, probes: PROBE_KEYS };
  const paths = (k: string, prefix: string): string[] => {
    if (!Object.hasOwn(sections, k)) return [prefix];
    const list = k === "nodes" || k === "sites" ? `${prefix}[]` : prefix;
    return sections[k].flatMap((sub) => paths(sub, `${list}.${sub}`));
  };
  return STACK_KEYS.flatMap((k) => paths(k, k));
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
  const pins = { stack, insecureSkipHostKeyCheck };
  const nodePort = parseNodePort(c, src);
  const allowedCidrs = parseAllowedCidrs(c, src);
  const storage = parseStorage(c, src);
  const layout = src.get("sites") === undefined ? "nodes" : "sites";
  if (layout === "sites" && src.get("nodes") !== undefined) {
    c.problems.push(
      "nodes and sites are both set: a stack lists its nodes (one site) or its sites (each with its own nodes); move the nodes into a site",
    );
  }
  const siteConfigs =
    layout === "sites"
      ? parseSites(c, src, pins, { nodePort, allowedCidrs, storage })
      : [{ name: stack, nodes: parseNodes(c, src, pins), nodePort, allowedCidrs, storage }];
  const platform = parsePlatform(c, src, sku, skuKnown);
  const { timeSlicingReplicas } = platform;

  const { inference, given } = parseInference(c, src);
  const { replicas, maxReplicas } = inference;
  // The quota's values are checked once; where one is unset, each site's default scales to that site's GPUs.
  const quotas = (siteConfigs.length > 0 ? siteConfigs : [{ nodes: [] }]).map((s, i) =>
    parseQuota(i === 0 ? c : new Checker(), src, gpuTotals(s.nodes, timeSlicingReplicas)),
  );
  const sites: SiteConfig[] = siteConfigs.map((s, i) => ({ ...s, quota: quotas[i] }));
  // Every site against its own capacity: its nodes, its storage, its quota.
  const perSite = sites.map((s) => [
    ...workloadFitProblems({
      sku: skuKnown ? sku : undefined,
      nodes: s.nodes,
      nodesKey: nodesKeyOf(s),
      timeSlicingReplicas,
      inference,
      given,
    }),
    ...capacityProblems({
      nodes: s.nodes,
      timeSlicingReplicas,
      replicas,
      maxReplicas,
      storageSize: s.storage.size,
    }),
    ...quotaCoverProblems(s.quota, inference),
  ]);
  c.problems.push(...fleetProblems(sites, perSite));
  if (sites.length === 0) c.problems.push(...quotaCoverProblems(quotas[0], inference));

  const airgap = parseAirgap(c, src);
  const registries = parseRegistries(c, src);
  const rollout = parseRollout(c, src);

  // Keys that are not ours are almost always typos of ours.
  for (const k of unknownTopLevel(src)) c.unknownKey(k, STACK_KEYS);

  if (c.problems.length > 0) throw new ConfigError(stack, c.problems);
  const { k3sVersion, toolkitVersion } = platform;
  return {
    stack,
    sku,
    layout,
    sites,
    nodes: sites.flatMap((s) => s.nodes),
    ...platform,
    inference,
    storage,
    nodePort,
    quota: quotas[0],
    allowedCidrs,
    airgap,
    registries,
    rollout,
    bootstrap: {
      sku,
      k3sVersion,
      toolkitVersion,
      airgap,
      registries,
      prePullImages: airgap ? [] : [inference.image],
      airgapImages: airgap ? stackImageRefs(platform, inference.image) : [],
    },
    insecureSkipHostKeyCheck,
  };
}

/** Sources that can enumerate their keys report unknown ones; others skip the check. */
function unknownTopLevel(src: ConfigSource): string[] {
  const keys = (src as Partial<{ keys(): string[] }>).keys?.() ?? [];
  return keys.filter((k) => !(STACK_KEYS as readonly string[]).includes(k));
}
