/**
 * The forge-edge program: stack config → SKU profile → sites → nodes over SSH → cluster provider → GPU sharing →
 * inference stack. index.ts only calls it, so tests and the Automation API run exactly this code.
 */
import * as pulumi from "@pulumi/pulumi";

import { deploySite, Site, SiteOutputs, siteWaves, stackRootLayout } from "./components/site";
import { loadConfig } from "./config/pulumi";
import { StackConfig } from "./config/stack";

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
}

export function forgeEdge(config: StackConfig, sshPrivateKey: pulumi.Input<string>): ForgeEdgeOutputs {
  const common = {
    sku: config.sku.name,
    autoscaling: { metric: config.sku.hpa.metric, reason: config.sku.hpa.reason },
  };
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
  const waves = siteWaves(
    config.sites.map((s) => s.name),
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
  const sites = Object.fromEntries(config.sites.map((s) => [s.name, built.get(s.name)!.outputs]));
  const single = config.sites.length === 1 ? sites[config.sites[0].name] : {};
  return { ...common, ...single, sites, siteWaves: waves };
}

/** Entry point for the CLI and for Automation API inline programs. */
export function run(): ForgeEdgeOutputs {
  const { config, sshPrivateKey } = loadConfig();
  return forgeEdge(config, sshPrivateKey);
}
