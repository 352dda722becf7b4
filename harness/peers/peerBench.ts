/**
 * `npm run bench -- --peers`: our `pulumi up` and k3s-ansible 1.2.2's `site.yml` side by side, for 1 and 10 nodes,
 * each on a fresh simulated site (same SSH hosts, same doubles, same air-gap artefacts, same host options):
 *   ours:        `pulumi up`, a no-change `pulumi up`, then `pulumi preview`;
 *   k3s-ansible: `ansible-playbook site.yml`, a no-change rerun, then `ansible-playbook --check`.
 * The dry runs are taken on the bootstrapped site: on fresh hosts k3s-ansible's `--check` fails at every agent.
 * Goals (issue 12): `up` ≤ 0.5× k3s-ansible's at 10 nodes, the no-change rerun ≤ 0.25× of its rerun.
 * Writes `peers` into bench-results.json (other keys kept); `npm run bench:readme` renders the table.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { run } from "../../program";
import { openStack } from "../engine";
import { machineLoad } from "../processes";
import { formatMarkdown, ReadmeSection } from "../readmeSection";
import { ConfigEntry, Site, SiteNode, startSite } from "../site";
import { pinnedVersions } from "../toolchain";
import { K3sAnsible, peerHostOptions } from "./k3sAnsible";

export const PEERS_SECTION = new ReadmeSection("bench-peers");
export const PEERS_BEGIN = PEERS_SECTION.begin;
export const PEERS_END = PEERS_SECTION.end;

export interface PeerRun {
  nodes: number;
  /** Seconds, one decimal. */
  ours: { previewS: number; upS: number; noopUpS: number };
  k3sAnsible: {
    checkS: number;
    upS: number;
    rerunS: number;
    /** Tasks that ran in the first run, and the changed count of the first run and of the rerun (all hosts). */
    tasks: number;
    changed: number;
    rerunChanged: number;
  };
  /** ours / k3s-ansible. */
  ratio: { preview: number; up: number; rerun: number };
}

export interface PeersBenchResults {
  date: string;
  machine: { cores: number; memoryGiB: number; busyCoresAtStart: number; busyCoresAtEnd: number };
  versions: { ansibleCore: string; k3sAnsible: string; forks: string };
  runs: PeerRun[];
}

const r1 = (ms: number): number => Math.round(ms / 100) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;

export function fleetNodes(n: number): SiteNode[] {
  return [
    { name: "node-00", role: "server" },
    ...Array.from({ length: n - 1 }, (_, i) => ({
      name: `node-${String(i + 1).padStart(2, "0")}`,
      role: "agent" as const,
    })),
  ];
}

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = Date.now();
  const v = await f();
  return [Date.now() - t, v];
}

async function withSite<T>(
  n: number,
  ipBase: number,
  f: (site: Site, dir: string) => Promise<T>,
): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-peers-"));
  const site = await startSite({
    sku: "p40",
    dir,
    nodes: fleetNodes(n),
    ipBase,
    hostOptions: peerHostOptions,
  });
  try {
    return await f(site, dir);
  } finally {
    await site.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function ours(n: number): Promise<PeerRun["ours"]> {
  return withSite(n, 170, async (site, dir) => {
    const config: Record<string, ConfigEntry> = { ...site.config };
    delete config.quota; // derived from the fleet's slices, as bench.ts does
    const es = await openStack({ stackName: `peers-${n}`, dir, config, program: async () => run() });
    const [up] = await timed(() => es.stack.up());
    const [noop] = await timed(() => es.stack.up());
    const [preview] = await timed(() => es.stack.preview());
    return { previewS: r1(preview), upS: r1(up), noopUpS: r1(noop) };
  });
}

async function peer(n: number): Promise<PeerRun["k3sAnsible"]> {
  return withSite(n, 170, async (site, dir) => {
    const k = new K3sAnsible(site, fleetNodes(n), path.join(dir, "k3s-ansible"));
    const first = await k.playbook();
    const rerun = await k.playbook();
    // After the bootstrap: on fresh hosts k3s-ansible's --check fails at the agents (its lineinfile on the env file
    // that only the skipped install creates), so both dry runs are taken on the bootstrapped site.
    const check = await k.playbook({ check: true });
    const changed = (r: typeof first) => Object.values(r.recap).reduce((a, h) => a + (h.changed ?? 0), 0);
    return {
      checkS: r1(check.ms),
      upS: r1(first.ms),
      rerunS: r1(rerun.ms),
      tasks: first.tasks,
      changed: changed(first),
      rerunChanged: changed(rerun),
    };
  });
}

export async function peersBench(opts: { out: string; nodes?: number[] }): Promise<PeersBenchResults> {
  const busyAtStart = (await machineLoad()).busyCores;
  const v = pinnedVersions();
  const doc: PeersBenchResults = {
    date: new Date().toISOString(),
    machine: {
      cores: os.cpus().length,
      memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      busyCoresAtStart: r2(busyAtStart),
      busyCoresAtEnd: r2(busyAtStart),
    },
    versions: {
      ansibleCore: v.ANSIBLE_CORE_VERSION,
      k3sAnsible: v.K3S_ANSIBLE_VERSION,
      forks: "max(5, nodes)",
    },
    runs: [],
  };
  for (const n of opts.nodes ?? [1, 10]) {
    const o = await ours(n);
    console.log(`ours ${n} node(s): preview ${o.previewS} s, up ${o.upS} s, no-change up ${o.noopUpS} s`);
    const k = await peer(n);
    console.log(
      `k3s-ansible ${n} node(s): --check ${k.checkS} s, site.yml ${k.upS} s (${k.tasks} tasks, ${k.changed} changed), ` +
        `rerun ${k.rerunS} s (${k.rerunChanged} changed)`,
    );
    const run: PeerRun = {
      nodes: n,
      ours: o,
      k3sAnsible: k,
      ratio: { preview: r2(o.previewS / k.checkS), up: r2(o.upS / k.upS), rerun: r2(o.noopUpS / k.rerunS) },
    };
    console.log(
      `ratio ${n} node(s): preview ${run.ratio.preview}, up ${run.ratio.up}, rerun ${run.ratio.rerun}`,
    );
    doc.runs.push(run);
    // Written after every size, so a later failure keeps the figures taken so far.
    doc.machine.busyCoresAtEnd = r2((await machineLoad()).busyCores);
    const existing = fs.existsSync(opts.out) ? (JSON.parse(fs.readFileSync(opts.out, "utf8")) as object) : {};
    fs.writeFileSync(opts.out, JSON.stringify({ ...existing, peers: doc }, null, 2) + "\n");
    console.log(`wrote peers (${doc.runs.length} size(s)) into ${opts.out}`);
  }
  return doc;
}

/** The side-by-side table (markdown, before Prettier). */
export function renderPeers(p: PeersBenchResults): string {
  const x = (r: number) => `${r.toFixed(2)}×`;
  const rows = p.runs.flatMap((r) => [
    `| ${r.nodes} | bootstrap (\`pulumi up\` / \`site.yml\`) | ${r.ours.upS.toFixed(1)} | ${r.k3sAnsible.upS.toFixed(1)} | ${x(r.ratio.up)} |`,
    `| ${r.nodes} | no-change rerun | ${r.ours.noopUpS.toFixed(1)} | ${r.k3sAnsible.rerunS.toFixed(1)} | ${x(r.ratio.rerun)} |`,
    `| ${r.nodes} | dry run, no change (\`pulumi preview\` / \`--check\`) | ${r.ours.previewS.toFixed(1)} | ${r.k3sAnsible.checkS.toFixed(1)} | ${x(r.ratio.preview)} |`,
  ]);
  const m = p.machine;
  return [
    `Side by side with k3s-ansible ${p.versions.k3sAnsible} (ansible-core ${p.versions.ansibleCore}, forks ` +
      `${p.versions.forks}), measured ${p.date.slice(0, 16).replace("T", " ")} UTC on ${m.cores} cores, ` +
      `${m.memoryGiB} GiB; other processes used ${m.busyCoresAtStart} cores' worth before the run and ` +
      `${m.busyCoresAtEnd} after it. Each row pair ran on fresh simulated sites (same hosts, doubles and air-gap ` +
      `artefacts); the dry runs ran after the bootstrap (on fresh hosts k3s-ansible's \`--check\` fails at every agent: ` +
      `its token \`lineinfile\` needs the env file that only the install it skips creates). Goals: bootstrap ≤ 0.50× ` +
      `at 10 nodes, no-change rerun ≤ 0.25×.`,
    "",
    "| nodes | run | ours (s) | k3s-ansible (s) | ratio |",
    "| ----: | --- | -------: | --------------: | ----: |",
    ...rows,
    "",
    ...p.runs.map(
      (r) =>
        `k3s-ansible at ${r.nodes} node(s): ${r.k3sAnsible.tasks} tasks, ${r.k3sAnsible.changed} changed; ` +
        `its rerun changed ${r.k3sAnsible.rerunChanged} (it always restarts the K3s units).`,
    ),
  ].join("\n");
}

export const formattedPeers = (p: PeersBenchResults, readmePath: string): Promise<string> =>
  formatMarkdown(renderPeers(p), readmePath);
export const replacePeersSection = (readme: string, body: string): string =>
  PEERS_SECTION.replace(readme, body);
export const currentPeersSection = (readme: string): string => PEERS_SECTION.current(readme);
