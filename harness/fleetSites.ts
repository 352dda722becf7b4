/**
 * A simulated fleet: N independent sites (site.ts), each its own control plane (etcd, apiserver, controller-manager,
 * scheduler, kwok) and SSH hosts on its own addresses, all authorizing one SSH key, and the stack configuration of a
 * `sites` fleet pointed at them. Sites start one after another (each control plane's start is the memory and CPU
 * peak); three single-node sites fit a small machine.
 */
import * as path from "node:path";

import { SkuName } from "../config/skus";
import { ConfigEntry, nodeEntry, Site, SiteNode, startSite } from "./site";
import { KeyPair, makeKeyPair } from "./sshHost";

export interface FleetSiteSpec {
  /** The site's name in the stack (`sites[i].name`), a DNS label. */
  name: string;
  /** Default: one server `<sku>-01`. */
  nodes?: SiteNode[];
}

export interface SimulatedFleet {
  sku: SkuName;
  key: KeyPair;
  /** Started sites by name, in start order. */
  sites: Map<string, Site>;
  /** Starts one more site (distinct addresses); it is stopped with the fleet. */
  addSite(spec: FleetSiteSpec): Promise<Site>;
  /** Stack configuration with `sites` listing the named sites (default: all started, in start order). */
  config(names?: string[]): Record<string, ConfigEntry>;
  /** The `sites` value alone, for `stack.setConfig(`${PROJECT}:sites`, …)`. */
  sitesEntry(names?: string[]): ConfigEntry;
  stop(): Promise<void>;
}

export interface FleetOptions {
  sku: SkuName;
  dir: string;
  sites: FleetSiteSpec[];
  /** Site i's hosts are 127.0.1.<ipBase + i * ipStride + j>. Default 200, stride 10. */
  ipBase?: number;
  ipStride?: number;
}

/** Starts the sites one by one; if one fails to start, those already started are stopped. */
export async function startFleet(opts: FleetOptions): Promise<SimulatedFleet> {
  const base = opts.ipBase ?? 200;
  const stride = opts.ipStride ?? 10;
  const key = makeKeyPair("forge-edge-fleet-e2e");
  const sites = new Map<string, Site>();
  const specs = new Map<string, FleetSiteSpec>();
  let next = 0;

  const addSite = async (spec: FleetSiteSpec): Promise<Site> => {
    if (sites.has(spec.name)) throw new Error(`site ${spec.name} is already started`);
    const ipBase = base + next * stride;
    const nodes = spec.nodes ?? [{ name: `${opts.sku}-01`, role: "server" }];
    if (ipBase + nodes.length + 1 > 254) throw new Error(`no addresses left for site ${spec.name}`);
    next++;
    const site = await startSite({
      sku: opts.sku,
      dir: path.join(opts.dir, "sites", spec.name),
      nodes,
      ipBase,
      spareIps: Math.max(0, stride - nodes.length),
      key,
    });
    sites.set(spec.name, site);
    specs.set(spec.name, { ...spec, nodes });
    return site;
  };

  const sitesValue = (names?: string[]) =>
    (names ?? [...sites.keys()]).map((name) => {
      const site = sites.get(name);
      if (!site) throw new Error(`site ${name} is not started`);
      return { name, nodes: specs.get(name)!.nodes!.map((n, i) => nodeEntry(n, site.hosts[i])) };
    });

  const stop = async () => {
    for (const s of [...sites.values()].reverse()) await s.stop().catch(() => undefined);
    sites.clear();
  };

  try {
    for (const spec of opts.sites) await addSite(spec);
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    sku: opts.sku,
    key,
    sites,
    addSite,
    sitesEntry: (names) => ({ value: JSON.stringify(sitesValue(names)) }),
    config: (names) => {
      const first = sites.values().next().value;
      if (!first) throw new Error("the fleet has no site");
      const rest = Object.fromEntries(Object.entries(first.config).filter(([k]) => k !== "nodes"));
      return { ...rest, sites: { value: JSON.stringify(sitesValue(names)) } };
    },
    stop,
  };
}
