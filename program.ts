/**
 * The forge-edge program: stack config → SKU profile → sites → nodes over SSH → cluster provider → GPU sharing →
 * inference stack. index.ts only calls it, so tests and the Automation API run exactly this code.
 */
import * as pulumi from "@pulumi/pulumi";

import { deploySite, Site, SiteOutputs, siteWaves, stackRootLayout } from "./components/site";
import { loadConfig } from "./config/pulumi";
import { SKIP_SITES_ENV, skippedSites } from "./config/fleetRun";
import { StackConfig } from "./config/stack";

export { SKIP_SITES_ENV, skippedSites };

/**
 * The stack's outputs. A stack with one site (top-level `nodes`, or a `sites` list of one) exports that site's
 * outputs at the top level, as every stack did before sites existed; a fleet exports `sites`, one entry per site.
 */
export interface ForgeEdgeOutputs extends Partial<SiteOutputs> {
  sku: string;
  autoscaling: { metric: string; reason: string };
  /** Per site, by name: set when the stack lists `sites`. */
  sites?: Record<string, SiteOutputs>;
  /** Site names per wave, in order (`rollout.canarySites`, `rollout.siteBatchSize`): set when the stack lists `sites`. */
  siteWaves?: string[][];
  /** Sites left out of this run as unreachable (tools/fleet.ts): set when there are any. */
  skippedSites?: string[];
}

/**
 * `skip`: sites this run leaves out (tools/fleet.ts excludes their resources from the operation, so they keep their
 * state). The waves are planned over the other sites: a skipped site gates no wave, and the canary wave is made of
 * sites that are really rolled. A skipped site is still declared, with the names it always has, so nothing of it is
 * planned for deletion.
 */
export function forgeEdge(
  config: StackConfig,
  sshPrivateKey: pulumi.Input<string>,
  skip: readonly string[] = [],
): ForgeEdgeOutputs {
  const common = {
    sku: config.sku.name,
    autoscaling: { metric: config.sku.hpa.metric, reason: config.sku.hpa.reason },
  };
  const unknown = skip.filter(
    (s) => config.layout === "nodes" || !config.sites.some((site) => site.name === s),
  );
  if (unknown.length > 0)
    throw new pulumi.RunError(`${SKIP_SITES_ENV} names no site of this fleet stack: ${unknown.join(", ")}`);
  if (config.layout === "nodes") {
    const [site] = config.sites;
    const { outputs } = deploySite(stackRootLayout(config.stack, site), {
      site,
      fleet: config,
      sshPrivateKey,
    });
    return { ...common, ...outputs };
  }
  const byName = new Map(config.sites.map((s) => [s.name, s]));
  const skipped = new Set(skip);
  const waves = siteWaves(
    config.sites.map((s) => s.name).filter((n) => !skipped.has(n)),
    config.rollout.canarySites,
    config.rollout.siteBatchSize,
  );
  const built = new Map<string, Site>();
  let gate: pulumi.Resource[] = [];
  for (const wave of waves) {
    const current = wave.map((name) => {
      const site = new Site(name, { site: byName.get(name)!, fleet: config, sshPrivateKey, after: gate });
      built.set(name, site);
      return site;
    });
    gate = current.map((s) => s.health);
  }
  for (const name of skipped)
    built.set(name, new Site(name, { site: byName.get(name)!, fleet: config, sshPrivateKey }));
  const sites = Object.fromEntries(config.sites.map((s) => [s.name, built.get(s.name)!.outputs]));
  const single = config.sites.length === 1 ? sites[config.sites[0].name] : {};
  return {
    ...common,
    ...single,
    sites,
    siteWaves: waves,
    ...(skip.length > 0 ? { skippedSites: [...skip] } : {}),
  };
}

/** Entry point for the CLI and for Automation API inline programs. */
export function run(): ForgeEdgeOutputs {
  const { config, sshPrivateKey } = loadConfig();
  return forgeEdge(config, sshPrivateKey, skippedSites(process.env[SKIP_SITES_ENV]));
}
