/**
 * The fleet bench (issue 10, "Measured"): `npm run bench -- --fleet [--busy-ok] [--out F] [--fleet-default-100]`.
 * One run, one machine, every stack run through the Node language host the way `pulumi preview`/`up` runs it (a
 * copy of the project):
 *   - `pulumi preview` of a fresh stack of 1, 10 and 100 single-node sites tuned (TUNED_PREVIEW_ENV), and of 1 and
 *     10 as is (100 with --fleet-default-100: the CLI's per-step snapshot makes it quadratic): wall time, resources
 *     per site, the marginal time per site (1→10, 10→100), and where the CPU went (engine, language host +
 *     program, providers), sampled from /proc with the processes' memory. The sites' SSH endpoints are listening
 *     sockets that count connections: a fresh preview must dial none.
 *   - `pulumi up` of 1 site, then of 4 sites in one wave (rollout.canarySites = 4), each on simulated sites;
 *   - a no-op `pulumi preview --expect-no-changes` of the deployed 1-site and 4-site stacks, as is, with
 *     PULUMI_PARALLEL_DIFF and tuned, and the time each further site adds.
 * Memory: the sum of RSS over the CLI, the language host, the program and every provider process (every
 * descendant of the `pulumi` CLI), sampled every 100 ms. Figures go to bench-results.json's `fleet` key (the other
 * figures are kept); `npm run bench:readme` renders the README's Fleets table from it (renderFleet).
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace } from "@pulumi/pulumi/automation";

import { EngineStack, openStack, projectCopy } from "./engine";
import { startFleet } from "./fleetSites";
import { machineLoad } from "./processes";
import { formatMarkdown, ReadmeSection } from "./readmeSection";
import { ConfigEntry } from "./site";

// ---------------------------------------------------------------------------------------------------------------
// Processes: what the CLI started, its memory and CPU (the sampling reads /proc; the accounting is pure).
// ---------------------------------------------------------------------------------------------------------------

/** What a process of an engine run is: the CLI (the engine), the language host, the program, or a provider. */
export type ProcessClass = "cli" | "languageHost" | "program" | `provider:${string}` | "other";

/** One process as a sample sees it. */
export interface ProcSample {
  pid: number;
  /** The process's start time (clock ticks since boot): with the pid, its identity. */
  start: number;
  cls: ProcessClass;
  rssKiB: number;
  /** utime + stime, clock ticks. */
  cpuTicks: number;
}

/** Classifies a process by its executable's name and the class of its parent. */
export function classify(argv0: string, parent: ProcessClass | undefined): ProcessClass {
  const base = path.basename(argv0);
  if (base === "pulumi") return "cli";
  if (base === "pulumi-language-nodejs") return "languageHost";
  const provider = /^pulumi-resource-([a-z0-9-]+)$/.exec(base);
  if (provider) return `provider:${provider[1]}`;
  if (parent === "languageHost" || (parent === "program" && base === "node")) return "program";
  return "other";
}

export interface Footprint {
  /** The highest sum of RSS over the run's processes in one sample, MiB. */
  peakRssMiB: number;
  /** That sample's RSS by class, MiB. */
  peakByClass: Record<string, number>;
  /** The most processes of each class alive in one sample. */
  maxAlive: Record<string, number>;
  /** Distinct processes of each class seen over the run. */
  started: Record<string, number>;
  /** CPU seconds by class (each process's last sampled utime + stime: at most one interval short). */
  cpuS: Record<string, number>;
  samples: number;
}

const USER_HZ = 100;
const mib = (kib: number): number => Math.round((kib / 1024) * 10) / 10;
const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Accumulates samples into a Footprint (pure: the sampler below feeds it from /proc). */
export class FootprintAccumulator {
  private peak = -1;
  private peakByClass: Record<string, number> = {};
  private maxAlive: Record<string, number> = {};
  private lastTicks = new Map<string, { cls: ProcessClass; ticks: number }>();
  private samples = 0;

  add(procs: readonly ProcSample[]): void {
    this.samples++;
    const total = procs.reduce((a, p) => a + p.rssKiB, 0);
    const alive: Record<string, number> = {};
    for (const p of procs) {
      alive[p.cls] = (alive[p.cls] ?? 0) + 1;
      // An exiting process's cmdline reads empty ("other"): it keeps the class it was last seen with.
      const key = `${p.pid}@${p.start}`;
      const known = this.lastTicks.get(key)?.cls;
      this.lastTicks.set(key, { cls: p.cls === "other" && known ? known : p.cls, ticks: p.cpuTicks });
    }
    for (const [cls, n] of Object.entries(alive)) this.maxAlive[cls] = Math.max(this.maxAlive[cls] ?? 0, n);
    if (total > this.peak) {
      this.peak = total;
      this.peakByClass = {};
      for (const p of procs) this.peakByClass[p.cls] = (this.peakByClass[p.cls] ?? 0) + p.rssKiB;
    }
  }

  result(): Footprint {
    const started: Record<string, number> = {};
    const cpu: Record<string, number> = {};
    for (const { cls, ticks } of this.lastTicks.values()) {
      started[cls] = (started[cls] ?? 0) + 1;
      cpu[cls] = (cpu[cls] ?? 0) + ticks;
    }
    return {
      peakRssMiB: mib(Math.max(0, this.peak)),
      peakByClass: Object.fromEntries(Object.entries(this.peakByClass).map(([k, v]) => [k, mib(v)])),
      maxAlive: { ...this.maxAlive },
      started,
      cpuS: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, r2(v / USER_HZ)])),
      samples: this.samples,
    };
  }
}

interface ProcStat {
  pid: number;
  ppid: number;
  start: number;
  rssKiB: number;
  cpuTicks: number;
}

const PAGE_KIB = 4; // x86-64 and arm64 Linux default page size

function readStat(pid: number): ProcStat | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (f[0] === "Z") return undefined;
    return {
      pid,
      ppid: Number(f[1]),
      cpuTicks: Number(f[11]) + Number(f[12]),
      start: Number(f[19]),
      rssKiB: Number(f[21]) * PAGE_KIB,
    };
  } catch {
    return undefined;
  }
}

/**
 * Samples every `intervalMs` the descendants of this process's `pulumi` CLIs (the CLI, language host, program and
 * providers; not the simulated sites, which are this process's children too) into a FootprintAccumulator.
 */
export function sampleEngineProcesses(intervalMs = 100): { stop(): Footprint } {
  const acc = new FootprintAccumulator();
  const tick = () => {
    const stats = new Map<number, ProcStat>();
    for (const d of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      const s = readStat(Number(d));
      if (s) stats.set(s.pid, s);
    }
    const children = new Map<number, number[]>();
    for (const s of stats.values()) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s.pid]);
    // Read every time: a process keeps its pid and start time across exec (a plugin is a forked CLI first).
    const nameOf = (s: ProcStat): string => {
      try {
        return fs.readFileSync(`/proc/${s.pid}/cmdline`, "utf8").split("\0")[0];
      } catch {
        return "";
      }
    };
    const out: ProcSample[] = [];
    const visit = (pid: number, parent: ProcessClass | undefined, inEngine: boolean): void => {
      const s = stats.get(pid);
      if (!s) return;
      const cls = classify(nameOf(s), parent);
      const engine = inEngine || cls === "cli";
      if (engine) out.push({ pid, start: s.start, cls, rssKiB: s.rssKiB, cpuTicks: s.cpuTicks });
      for (const c of children.get(pid) ?? []) visit(c, engine ? cls : undefined, engine);
    };
    for (const c of children.get(process.pid) ?? []) visit(c, undefined, false);
    acc.add(out);
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      tick();
      return acc.result();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Figures (pure).
// ---------------------------------------------------------------------------------------------------------------

/**
 * The engine settings a preview can run with. `tuned`: PULUMI_SKIP_CHECKPOINTS=true (a preview persists nothing,
 * yet by default the CLI serialises and verifies the whole snapshot after every step) and
 * PULUMI_NODEJS_TRANSPILE_ONLY=true (ts-node skips type-checking the program on every run; `npm run lint` does it).
 */
export const TUNED_PREVIEW_ENV: Readonly<Record<string, string>> = {
  PULUMI_SKIP_CHECKPOINTS: "true",
  PULUMI_NODEJS_TRANSPILE_ONLY: "true",
};

export interface PreviewRun {
  sites: number;
  /** Run with TUNED_PREVIEW_ENV. */
  tuned: boolean;
  wallS: number;
  /** Resources the preview would create (the stack and components included). */
  resources: number;
  footprint: Footprint;
}

export interface FleetBenchResults {
  date: string;
  busyCoresAtStart: number;
  busyCoresAtEnd: number;
  busyOk: boolean;
  /** Fresh-stack previews: 1, 10 and 100 sites tuned; 1, 10 (and with --fleet-default-100, 100) by default. */
  preview: PreviewRun[];
  /** TCP connections the fresh previews made to the sites' SSH endpoints (0: nothing dialled). */
  previewConnections: number;
  up: { oneSiteS: number; fourSitesS: number; fourSites: Footprint };
  noop: {
    oneSiteS: number;
    fourSitesS: number;
    /** The same previews with PULUMI_PARALLEL_DIFF=true, and with TUNED_PREVIEW_ENV. */
    parallelDiffOneSiteS: number;
    parallelDiffFourSitesS: number;
    tunedOneSiteS: number;
    tunedFourSitesS: number;
    fourSites: Footprint;
  };
}

export interface SeriesDerived {
  /** Seconds each further site adds to a fresh preview: from 1 to 10 sites, and from 10 to 100 (null: not run). */
  marginalS: { to10: number; to100: number | null };
  /** Engine (CLI) CPU seconds each further site adds, 1→10 and 10→100: the engine's own growth. */
  engineCpuPerSiteS: { to10: number; to100: number | null };
  /** Of the CPU the series' largest preview used: the engine's (CLI's), the language host + program's, the providers'. */
  largest: number;
  engineCpuShare: number;
  programCpuShare: number;
  providersCpuShare: number;
}

export interface FleetDerived {
  /** Resources each further site adds, and the stack's own (the Stack resource and whatever no site owns). */
  resourcesPerSite: number;
  stackResources: number;
  default: SeriesDerived;
  tuned: SeriesDerived;
  upRatio: number;
  noopAddedPerSiteS: number;
  /** Peak memory per site at the largest preview (MiB), from the peak over its site count. */
  peakMiBPerSite: number;
  /** CPU seconds (every process of the run) of the tuned 1-site preview, and what each further site adds (1→100). */
  tunedCpuOneSiteS: number;
  tunedCpuPerSiteS: number;
  /**
   * Sites past which a tuned fresh preview's CPU time exceeds PREVIEW_BUDGET_S, extrapolated linearly: where a stack
   * is worth sharding. CPU time, not wall time: it is what the preview takes on an idle runner (the program is one
   * thread and the engine mostly waits on it), and a shared machine's load does not move it.
   */
  shardAtSites: number;
}

/** What a pull request's preview may take before a stack is worth sharding (the goal for 100 sites). */
export const PREVIEW_BUDGET_S = 30;

const share = (cpu: Record<string, number>, pick: (cls: string) => boolean): number => {
  const total = Object.values(cpu).reduce((a, b) => a + b, 0);
  const part = Object.entries(cpu)
    .filter(([k]) => pick(k))
    .reduce((a, [, v]) => a + v, 0);
  return total > 0 ? r2(part / total) : 0;
};

/** Sites where `t(1) + (n - 1) * perSite` first exceeds the budget; Infinity when a site adds nothing. */
export function sitesWithin(budgetS: number, oneSiteS: number, perSiteS: number): number {
  if (perSiteS <= 0) return Infinity;
  return Math.max(1, Math.floor((budgetS - oneSiteS) / perSiteS) + 1);
}

const cpuTotal = (p: PreviewRun): number => Object.values(p.footprint.cpuS).reduce((a, b) => a + b, 0);

/** A series' previews of 1, 10 and (when run) 100 sites. */
function series(r: FleetBenchResults, tuned: boolean): [PreviewRun, PreviewRun, PreviewRun | undefined] {
  const find = (n: number) => r.preview.find((x) => x.sites === n && x.tuned === tuned);
  const at = (n: number): PreviewRun => {
    const p = find(n);
    if (!p) throw new Error(`no ${tuned ? "tuned " : ""}preview of ${n} sites`);
    return p;
  };
  return [at(1), at(10), find(100)];
}

function deriveSeries([p1, p10, p100]: [PreviewRun, PreviewRun, PreviewRun | undefined]): SeriesDerived {
  const largest = p100 ?? p10;
  const cpu = largest.footprint.cpuS;
  const cli = (p: PreviewRun): number => p.footprint.cpuS.cli ?? 0;
  return {
    marginalS: {
      to10: r3((p10.wallS - p1.wallS) / 9),
      to100: p100 ? r3((p100.wallS - p10.wallS) / 90) : null,
    },
    engineCpuPerSiteS: {
      to10: r3((cli(p10) - cli(p1)) / 9),
      to100: p100 ? r3((cli(p100) - cli(p10)) / 90) : null,
    },
    largest: largest.sites,
    engineCpuShare: share(cpu, (k) => k === "cli"),
    programCpuShare: share(cpu, (k) => k === "languageHost" || k === "program"),
    providersCpuShare: share(cpu, (k) => k.startsWith("provider:")),
  };
}

export function deriveFleet(r: FleetBenchResults): FleetDerived {
  const tuned = series(r, true);
  const [t1, , t100] = tuned;
  if (!t100) throw new Error("no tuned preview of 100 sites");
  const resourcesPerSite = r2((t100.resources - t1.resources) / 99);
  const noopAdded = r3((r.noop.fourSitesS - r.noop.oneSiteS) / 3);
  const t = deriveSeries(tuned);
  const cpuPerSite = r3((cpuTotal(t100) - cpuTotal(t1)) / 99);
  return {
    resourcesPerSite,
    stackResources: r2(t1.resources - resourcesPerSite),
    default: deriveSeries(series(r, false)),
    tuned: t,
    upRatio: r2(r.up.fourSitesS / r.up.oneSiteS),
    noopAddedPerSiteS: noopAdded,
    peakMiBPerSite: r1(t100.footprint.peakRssMiB / t100.sites),
    tunedCpuOneSiteS: r2(cpuTotal(t1)),
    tunedCpuPerSiteS: cpuPerSite,
    shardAtSites: sitesWithin(PREVIEW_BUDGET_S, cpuTotal(t1), cpuPerSite),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The README's Fleets table (pure).
// ---------------------------------------------------------------------------------------------------------------

export const FLEET_SECTION = new ReadmeSection("bench-fleet");
export const FLEET_BEGIN = FLEET_SECTION.begin;
export const FLEET_END = FLEET_SECTION.end;

const k8s = (m: Record<string, number>): number => m["provider:kubernetes"] ?? 0;

export function renderFleet(r: FleetBenchResults): string {
  const d = deriveFleet(r);
  const f1 = (x: number): string => x.toFixed(1);
  const f2 = (x: number): string => x.toFixed(2);
  const f3 = (x: number): string => x.toFixed(3);
  const pct = (x: number): string => `${Math.round(x * 100)}%`;
  const busy = Math.max(r.busyCoresAtStart, r.busyCoresAtEnd);
  const providersCpu = (fp: Footprint): number =>
    Object.entries(fp.cpuS)
      .filter(([k]) => k.startsWith("provider:"))
      .reduce((a, [, v]) => a + v, 0);
  const cpu = (fp: Footprint): string =>
    `${f1(fp.cpuS.cli ?? 0)} / ${f1((fp.cpuS.languageHost ?? 0) + (fp.cpuS.program ?? 0))} / ${f1(providersCpu(fp))}`;
  const row = (label: string, s: number, fp?: Footprint, resources?: number, sites?: number): string =>
    `| ${label} | ${f1(s)} | ${resources ?? ""} | ${sites ? f3(s / sites) : ""} | ${fp ? cpu(fp) : ""} | ` +
    `${fp ? f1(fp.peakRssMiB) : ""} | ${fp ? k8s(fp.started) : ""} |`;
  const previews = [...r.preview].sort((a, b) => Number(a.tuned) - Number(b.tuned) || a.sites - b.sites);
  const last = previews[previews.length - 1];
  const slope = (x: SeriesDerived): string =>
    `${f3(x.marginalS.to10)} s per further site from 1 to 10 sites` +
    (x.marginalS.to100 === null ? "" : ` and ${f3(x.marginalS.to100)} s from 10 to 100`) +
    ` (engine CPU ${f3(x.engineCpuPerSiteS.to10)}` +
    (x.engineCpuPerSiteS.to100 === null ? "" : ` and ${f3(x.engineCpuPerSiteS.to100)}`) +
    ` s per site); at ${x.largest} sites the engine used ${pct(x.engineCpuShare)} of the CPU, the language ` +
    `host and program ${pct(x.programCpuShare)}, the providers ${pct(x.providersCpuShare)}`;
  return [
    `Fleet bench (\`npm run bench -- --fleet\`), ${r.date.slice(0, 16).replace("T", " ")} UTC, same machine and ` +
      `versions as above; every stack runs through the Node language host (a copy of the project, as ` +
      `\`pulumi preview\` runs it), single-node sites. Tuned: \`PULUMI_SKIP_CHECKPOINTS=true\` and ` +
      `\`PULUMI_NODEJS_TRANSPILE_ONLY=true\`. ` +
      (busy > 0.25
        ? `The machine was shared: other processes used ${r.busyCoresAtStart} cores' worth before the run and ` +
          `${r.busyCoresAtEnd} after it, so read the wall times as upper bounds (the CPU seconds hold better).`
        : `Other processes used ${r.busyCoresAtStart} cores' worth before the run and ${r.busyCoresAtEnd} after it.`),
    "",
    "| run | seconds | resources | seconds per site | CPU s: engine / language host + program / providers | peak RSS MiB | Kubernetes provider processes |",
    "| --- | ------: | --------: | ---------------: | --------------------------------------------------: | -----------: | ----------------------------: |",
    ...previews.map((p) =>
      row(
        `\`preview\`, fresh stack, ${p.sites} site${p.sites > 1 ? "s" : ""}${p.tuned ? ", tuned" : ""}`,
        p.wallS,
        p.footprint,
        p.resources,
        p.sites,
      ),
    ),
    row("`up`, 1 site", r.up.oneSiteS),
    row("`up`, 4 sites in one wave", r.up.fourSitesS, r.up.fourSites),
    row("no-op `preview --expect-no-changes`, 1 deployed site", r.noop.oneSiteS),
    row("no-op `preview --expect-no-changes`, 4 deployed sites", r.noop.fourSitesS, r.noop.fourSites),
    row("the same, 1 site, `PULUMI_PARALLEL_DIFF=true`", r.noop.parallelDiffOneSiteS),
    row("the same, 4 sites, `PULUMI_PARALLEL_DIFF=true`", r.noop.parallelDiffFourSitesS),
    row("the same, 1 site, tuned", r.noop.tunedOneSiteS),
    row("the same, 4 sites, tuned", r.noop.tunedFourSitesS),
    "",
    `Each site adds ${f1(d.resourcesPerSite)} resources (the stack's own: ${f1(d.stackResources)}). A fresh ` +
      `preview costs ${slope(d.default)}. Tuned: ${slope(d.tuned)}. The fresh previews opened ` +
      `${r.previewConnections} connections to the sites' SSH endpoints. \`up\` of 4 sites in one wave took ` +
      `${f2(d.upRatio)}× the 1-site \`up\`; a no-op preview adds ${f3(d.noopAddedPerSiteS)} s per deployed site. ` +
      `Peak memory at 100 sites: ${f1(last.footprint.peakRssMiB)} MiB (${f1(d.peakMiBPerSite)} MiB per site), ` +
      `${k8s(last.footprint.started)} Kubernetes provider processes seen by the 100 ms sampling (the engine starts ` +
      `one per site's provider, its kubeconfig unknown in a fresh preview or not).`,
    "",
    `**Where sharding pays:** a tuned fresh preview costs ${f2(d.tunedCpuOneSiteS)} CPU seconds for one site and ` +
      `${f3(d.tunedCpuPerSiteS)} for each further site (all processes; CPU time is what it takes on an idle ` +
      `runner, and this machine's load does not move it), so past about **${d.shardAtSites} sites per stack** a ` +
      `pull request's preview passes ${PREVIEW_BUDGET_S} s, and each site adds ${f1(d.peakMiBPerSite)} MiB to its ` +
      `peak memory: shard the SKU's stack there (by region).`,
  ].join("\n");
}

export const replaceFleetSection = (readme: string, body: string): string =>
  FLEET_SECTION.replace(readme, body);
export const currentFleetSection = (readme: string): string => FLEET_SECTION.current(readme);
/** The fleet table as README.md must hold it: rendered, then laid out by Prettier. */
export const formattedFleet = (r: FleetBenchResults, readmePath: string): Promise<string> =>
  formatMarkdown(renderFleet(r), readmePath);

// ---------------------------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------------------------

const ROOT = path.resolve(__dirname, "..");
const FAKE_SSH_PORT = 2222;

/** Site i of a preview-only fleet: an address that no simulated site uses, with a listener counting connections. */
const fakeHost = (i: number): string => `127.3.${Math.floor(i / 250)}.${(i % 250) + 1}`;

async function listeners(n: number): Promise<{ connections(): number; close(): Promise<void> }> {
  let count = 0;
  const servers = await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer((sock) => {
            count++;
            sock.destroy();
          });
          s.once("error", reject);
          s.listen(FAKE_SSH_PORT, fakeHost(i), () => resolve(s));
        }),
    ),
  );
  return {
    connections: () => count,
    close: async () => {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}

/** The fleet's configuration with `n` preview-only single-node sites on the fake addresses. */
function previewConfig(base: Record<string, ConfigEntry>, n: number, hostKey: string) {
  const sites = Array.from({ length: n }, (_, i) => ({
    name: `site-${String(i).padStart(3, "0")}`,
    nodes: [
      {
        name: "edge-01",
        host: fakeHost(i),
        port: FAKE_SSH_PORT,
        user: "root",
        role: "server",
        gpus: 1,
        hostKey,
      },
    ],
  }));
  return { ...base, sites: { value: JSON.stringify(sites) } };
}

/** Runs `f` with `env` added to the stack's workspace environment (the CLI's), then takes it away. */
async function withEnv<T>(es: EngineStack, env: Record<string, string>, f: () => Promise<T>): Promise<T> {
  const vars = (es.stack.workspace as LocalWorkspace).envVars;
  Object.assign(vars, env);
  try {
    return await f();
  } finally {
    for (const k of Object.keys(env)) delete vars[k];
  }
}

const ONE_WAVE = { value: JSON.stringify({ canarySites: 4, siteBatchSize: 0 }) };

async function timed<T>(f: () => Promise<T>): Promise<{ s: number; value: T; footprint: Footprint }> {
  const sampler = sampleEngineProcesses();
  const t = Date.now();
  try {
    const value = await f();
    const s = r1((Date.now() - t) / 1000);
    return { s, value, footprint: sampler.stop() };
  } catch (e) {
    sampler.stop();
    throw e;
  }
}

export async function fleetBench(opts: {
  out: string;
  busyOk: boolean;
  maxBusyCores: number;
  /** Also the 100-site preview with the default settings (quadratic in the CLI: minutes on an idle machine). */
  default100: boolean;
}): Promise<void> {
  const busyAtStart = (await machineLoad()).busyCores;
  if (busyAtStart > opts.maxBusyCores && !opts.busyOk)
    throw new Error(
      `the machine is busy (${busyAtStart.toFixed(2)} cores used by other processes; the limit is ` +
        `${opts.maxBusyCores}): pass --busy-ok to measure anyway`,
    );
  // The default runs get the CLI's and ts-node's defaults whatever the caller's shell set (the CLI, the language
  // host and the program inherit this process's environment; ts-node reads TS_NODE_* itself).
  for (const k of [...Object.keys(TUNED_PREVIEW_ENV), "PULUMI_PARALLEL_DIFF", "TS_NODE_TRANSPILE_ONLY"])
    delete process.env[k];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-fleet-bench-"));
  const project = projectCopy(dir);
  const names = ["site-a", "site-b", "site-c", "site-d"];
  const fleet = await startFleet({ sku: "p40", dir, sites: [{ name: names[0] }], ipBase: 120 });
  const log = (name: string, s: number) => console.log(`${name}\t${s}`);
  try {
    // 1. up of 1 site, its no-op previews, destroy; then the same for 4 sites in one wave.
    const noopPreviews = async (es: EngineStack, sites: number) => {
      const run = (env: Record<string, string>) =>
        withEnv(es, env, () => timed(() => es.stack.preview({ expectNoChanges: true })));
      const plain = await run({});
      const parallel = await run({ PULUMI_PARALLEL_DIFF: "true" });
      const tuned = await run(TUNED_PREVIEW_ENV);
      log(`noop_preview_${sites}_sites_s`, plain.s);
      log(`noop_preview_${sites}_sites_parallel_diff_s`, parallel.s);
      log(`noop_preview_${sites}_sites_tuned_s`, tuned.s);
      return { plain, parallel, tuned };
    };
    const one = await openStack({
      stackName: "fleet-up-1",
      dir,
      config: { ...fleet.config([names[0]]), rollout: ONE_WAVE },
      projectDir: project,
    });
    const up1 = await timed(() => one.stack.up());
    log("up_1_site_s", up1.s);
    const noop1 = await noopPreviews(one, 1);
    const d1 = await timed(() => one.stack.destroy());
    log("destroy_1_site_s", d1.s);
    await one.stack.workspace.removeStack("fleet-up-1");

    for (const name of names.slice(1)) await fleet.addSite({ name });
    const four = await openStack({
      stackName: "fleet-up-4",
      dir,
      config: { ...fleet.config(names), rollout: ONE_WAVE },
      projectDir: project,
    });
    const up4 = await timed(() => four.stack.up());
    log("up_4_sites_s", up4.s);
    const noop4 = await noopPreviews(four, 4);
    console.log(
      `  4 sites: up peak RSS ${up4.footprint.peakRssMiB} MiB ${JSON.stringify(up4.footprint.peakByClass)}; ` +
        `no-op preview peak RSS ${noop4.plain.footprint.peakRssMiB} MiB, started ` +
        JSON.stringify(noop4.plain.footprint.started),
    );
    await four.stack.destroy();
    for (const name of names.slice(1)) await fleet.sites.get(name)!.stop();

    // 2. Fresh previews, tuned first (on a busy machine the default 100-site preview runs for hours): nothing is dialled (counted on listening sockets at the sites' SSH endpoints).
    const base = fleet.config([names[0]]);
    const hostKey = fleet.sites.get(names[0])!.hosts[0].hostKeyLine;
    const ears = await listeners(100);
    const preview: PreviewRun[] = [];
    try {
      const runs: [number, boolean][] = [
        [1, true],
        [10, true],
        [100, true],
        [1, false],
        [10, false],
        ...(opts.default100 ? [[100, false] as [number, boolean]] : []),
      ];
      for (const [n, tuned] of runs) {
        const name = `fleet-preview-${n}${tuned ? "-tuned" : ""}`;
        const es = await openStack({
          stackName: name,
          dir,
          config: previewConfig(base, n, hostKey),
          projectDir: project,
        });
        const r = await withEnv(es, tuned ? TUNED_PREVIEW_ENV : {}, () => timed(() => es.stack.preview()));
        const resources = Object.values(r.value.changeSummary).reduce((a, b) => a + (b ?? 0), 0);
        preview.push({ sites: n, tuned, wallS: r.s, resources, footprint: r.footprint });
        log(`preview_${n}_sites${tuned ? "_tuned" : ""}_s`, r.s);
        console.log(
          `  resources ${resources}, peak RSS ${r.footprint.peakRssMiB} MiB, processes started ` +
            `${JSON.stringify(r.footprint.started)}, CPU s ${JSON.stringify(r.footprint.cpuS)}`,
        );
      }
    } finally {
      await ears.close();
    }
    const previewConnections = ears.connections();

    const results: FleetBenchResults = {
      date: new Date().toISOString(),
      busyCoresAtStart: r2(busyAtStart),
      busyCoresAtEnd: r2((await machineLoad()).busyCores),
      busyOk: opts.busyOk,
      preview,
      previewConnections,
      up: { oneSiteS: up1.s, fourSitesS: up4.s, fourSites: up4.footprint },
      noop: {
        oneSiteS: noop1.plain.s,
        fourSitesS: noop4.plain.s,
        parallelDiffOneSiteS: noop1.parallel.s,
        parallelDiffFourSitesS: noop4.parallel.s,
        tunedOneSiteS: noop1.tuned.s,
        tunedFourSitesS: noop4.tuned.s,
        fourSites: noop4.plain.footprint,
      },
    };
    console.log(JSON.stringify(deriveFleet(results), null, 2));
    const doc = fs.existsSync(opts.out)
      ? (JSON.parse(fs.readFileSync(opts.out, "utf8")) as Record<string, unknown>)
      : {};
    fs.writeFileSync(opts.out, JSON.stringify({ ...doc, fleet: results }, null, 2) + "\n");
    console.log(`wrote the fleet figures to ${path.relative(ROOT, opts.out) || opts.out} (key "fleet")`);
  } finally {
    await fleet.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
