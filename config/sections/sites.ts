/**
 * `sites`: the stack as a fleet. Each site is its own K3s cluster at its own location (one server, now and then three
 * for HA), with its own nodes; everything that makes the SKU what it is (inference, releases, time-slicing, quota,
 * rollout, air gap, registries) stays at stack level. A site may set again only what differs between locations:
 *
 * - `nodePort`: the port a plant's firewall and clients already use; another service may hold 30080 there.
 * - `allowedCidrs`: every plant has its own client networks.
 * - `storage`: the StorageClass a site's boxes offer, and how much disk they give each replica's model volume.
 *
 * The top-level `nodes` form is a fleet of one site named after the stack (config/stack.ts).
 */
import { Checker, ConfigSource, keysOf, readJson } from "../checker";
import { StorageConfig, storageAt } from "./inference";
import { allowedCidrsAt, nodePortAt } from "./network";
import { NodeConfig, nodesAt, sshEndpoint } from "./nodes";
import { QuotaConfig } from "./quota";
import { PinPolicy } from "./security";

export interface SiteConfig {
  /** A DNS label, unique in the stack; the stack's name for the top-level `nodes` form. */
  readonly name: string;
  /** The site's path in messages, `sites[3]`; undefined for the top-level `nodes` form. */
  readonly key?: string;
  readonly nodes: readonly NodeConfig[];
  readonly nodePort: number;
  readonly allowedCidrs: readonly string[];
  readonly storage: StorageConfig;
  /** Derived: the stack's `quota`, each key it leaves unset scaled to this site's GPUs (config/sections/quota.ts). */
  readonly quota: QuotaConfig;
}

/** A site as its own keys give it, before the values derived from the rest of the stack. */
export type ParsedSite = Omit<SiteConfig, "quota">;

/** The keys a site may set: its name, its nodes and the overrides (see above). */
export const SITE_KEYS = keysOf<Exclude<keyof SiteConfig, "key" | "quota">>({
  name: true,
  nodes: true,
  nodePort: true,
  allowedCidrs: true,
  storage: true,
});

/** What a site starts from: the stack's own values of the keys a site may override. */
export type SiteDefaults = Pick<SiteConfig, "nodePort" | "allowedCidrs" | "storage">;

/** The `nodes` key of a site (`sites[3].nodes`), or the top-level `nodes`. */
export function nodesKeyOf(site: Pick<SiteConfig, "key">): string {
  return site.key === undefined ? "nodes" : `${site.key}.nodes`;
}

/**
 * `sites`, each site checked on its own (its nodes as `nodes` would be), then across the fleet: site names are unique
 * and no SSH endpoint is used twice in the stack.
 */
export function parseSites(
  c: Checker,
  src: ConfigSource,
  ctx: PinPolicy,
  defaults: SiteDefaults,
): ParsedSite[] {
  const raw = readJson(src, "sites");
  if (!Array.isArray(raw) || raw.length === 0) {
    c.problems.push(
      `sites = ${JSON.stringify(raw)} is invalid: a non-empty list of {name, nodes: [...], nodePort?, allowedCidrs?, storage?}`,
    );
    return [];
  }
  const sites = raw.map((s, i) => parseSite(c, `sites[${i}]`, s, ctx, defaults));
  const names = new Map<string, number>();
  sites.forEach((s, i) => {
    if (s.name && names.has(s.name))
      c.problems.push(
        `sites[${i}].name = "${s.name}" duplicates sites[${names.get(s.name)}].name: site names must be unique`,
      );
    names.set(s.name, i);
  });
  // A site's resources are named `<site>-...`: with sites `plant-b` and `plant-b-east`, node `east-01` of the one
  // and node `01` of the other would both be `plant-b-east-01`, and `--target '**::plant-b-*'` would pick both.
  sites.forEach((s, i) => {
    const j = sites.findIndex((o) => o.name && s.name.startsWith(`${o.name}-`));
    if (j >= 0)
      c.fail(
        `sites[${i}].name`,
        s.name,
        `starts with sites[${j}].name "${sites[j].name}" and a dash: the two sites' resource names (and --target patterns) would overlap`,
      );
  });
  const endpoints = new Map<string, { site: number; node: number }>();
  sites.forEach((s, i) =>
    s.nodes.forEach((n, j) => {
      const at = endpoints.get(sshEndpoint(n));
      if (n.host && at && at.site !== i)
        c.problems.push(
          `sites[${i}].nodes[${j}].host = "${sshEndpoint(n)}" duplicates sites[${at.site}].nodes[${at.node}]: one node per SSH endpoint in the whole stack`,
        );
      if (!at) endpoints.set(sshEndpoint(n), { site: i, node: j });
    }),
  );
  return sites;
}

function parseSite(
  c: Checker,
  key: string,
  raw: unknown,
  ctx: PinPolicy,
  defaults: SiteDefaults,
): ParsedSite {
  const o = c.section(key, raw, SITE_KEYS);
  return {
    name: c.name(`${key}.name`, o.name),
    key,
    nodes: nodesAt(c, `${key}.nodes`, o.nodes, ctx),
    nodePort: nodePortAt(c, `${key}.nodePort`, o.nodePort, defaults.nodePort),
    allowedCidrs: allowedCidrsAt(c, `${key}.allowedCidrs`, o.allowedCidrs, defaults.allowedCidrs),
    storage: storageAt(c, `${key}.storage`, o.storage, defaults.storage),
  };
}

/**
 * Problems of the fit rules, computed per site, as the user should read them. A problem every site has is a problem
 * of the stack's own values and is reported once, as is; one that only some sites have names the site:
 * `sites[2] (plant-c): inference.replicas = 2 does not fit when node c-02 is drained: ...`. A top-level `nodes`
 * stack's problems are reported as they always were.
 */
export function fleetProblems(
  sites: readonly Pick<SiteConfig, "name" | "key">[],
  perSite: string[][],
): string[] {
  if (sites.length === 1 && sites[0].key === undefined) return perSite[0] ?? [];
  const everywhere = (p: string) => sites.length > 1 && perSite.every((ps) => ps.includes(p));
  const out: string[] = [];
  const seen = new Set<string>();
  perSite.forEach((problems, i) => {
    const { key, name } = sites[i];
    for (const p of problems) {
      const shown = everywhere(p) || p.startsWith(`${key}.`) ? p : `${key} (${name}): ${p}`;
      if (!seen.has(shown)) out.push(shown);
      seen.add(shown);
    }
  });
  return out;
}
