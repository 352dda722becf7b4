/**
 * bench-results.json and the README's performance section rendered from it (pure). `npm run bench` writes the
 * file; `npm run bench:readme` (harness/benchReadme.ts) rewrites the README between the markers below; a unit test
 * fails when the two disagree, so the README's figures are always one real run's.
 */
import { CriticalPathReport } from "./criticalPath";
import { formatMarkdown, ReadmeSection } from "./readmeSection";
import type { FleetBenchResults } from "./fleetBench";
import type { TimeToServingResults } from "./timeToServing";
import type { TimeToServingSimResults } from "./ttsSim";
import type { PeersBenchResults } from "./peers/peerBench";

export const PERFORMANCE_SECTION = new ReadmeSection("bench");
export const README_BEGIN = PERFORMANCE_SECTION.begin;
export const README_END = PERFORMANCE_SECTION.end;

/** One step of the critical path, seconds from the start of the `up`. */
export interface PathStepSummary {
  name: string;
  type: string;
  op: string;
  start: number;
  end: number;
  duration: number;
  /** Start minus the end of what it waited for (the first step: the engine's start). */
  gap: number;
  waitedFor: string | null;
  floor: { script: number; api: number; readiness: number };
}

export interface CriticalPathSummary {
  operation: "up_1_node";
  totalS: number;
  engineStartS: number;
  engineFinishS: number;
  /** After the CLI exited, before `up()` returned (the Automation API's reads); absent where not measured apart. */
  afterCliS?: number;
  pathStepsS: number;
  pathGapsS: number;
  apiRoundTripMs: number;
  floor: { scriptS: number; apiS: number; readinessS: number; totalS: number };
  ratio: number;
  ratioWithoutEngine: number;
  path: PathStepSummary[];
}

export interface BenchResults {
  date: string;
  machine: {
    cores: number;
    cpuModel: string;
    memoryGiB: number;
    /** Cores' worth of other processes' work, sampled for 2 s before and after the run. */
    busyCoresAtStart: number;
    busyCoresAtEnd: number;
    /** Above this, `npm run bench` refuses to run unless given `--busy-ok`. */
    busyLimitCores: number;
    busyOk: boolean;
  };
  versions: {
    node: string;
    pulumiCli: string;
    pulumiSdk: string;
    commandProvider: string;
    kubernetesProvider: string;
    randomProvider: string;
    k3sDefault: string;
    kubernetes: string;
    etcd: string;
    kwok: string;
  };
  /** Seconds, one decimal. */
  results: Record<string, number>;
  criticalPath?: CriticalPathSummary;
  /** The critical path this one is compared with (before a change). */
  baseline?: { date: string; note: string; criticalPath: CriticalPathSummary };
  /** `npm run bench -- --fleet` (harness/fleetBench.ts): previews, up and no-op previews of fleets of sites. */
  fleet?: FleetBenchResults;
  /** `npm run bench -- --time-to-serving` (harness/timeToServing.ts): one node's modelled time to serving. */
  timeToServing?: TimeToServingResults;
  /** `npm run bench -- --time-to-serving-sim` (harness/ttsSimBench.ts): before vs after on slow doubles. */
  timeToServingSim?: TimeToServingSimResults;
  /** `npm run bench -- --peers` (harness/peers/peerBench.ts): ours vs k3s-ansible on the same simulated hosts. */
  peers?: PeersBenchResults;
}

/** Sections of bench-results.json that other runs write (`--fleet`, `--peers`, `--time-to-serving[-sim]`). */
const OTHER_RUNS = ["fleet", "peers", "timeToServing", "timeToServingSim"] as const;

/** What a run of the main bench keeps of the previous results: every other run's section, unchanged. */
export function otherRuns(prev: BenchResults | undefined): Partial<BenchResults> {
  return Object.fromEntries(OTHER_RUNS.filter((k) => prev?.[k] !== undefined).map((k) => [k, prev![k]]));
}

const sec = (ms: number): number => Math.round(ms) / 1000;
const round2 = (x: number): number => Math.round(x * 100) / 100;

export function benchSummary(r: CriticalPathReport, apiRttMs: number): CriticalPathSummary {
  const names = new Map(r.steps.map((s) => [s.urn, s.name]));
  return {
    operation: "up_1_node",
    totalS: sec(r.totalMs),
    engineStartS: sec(r.engineStartMs),
    engineFinishS: sec(r.engineFinishMs),
    ...(r.afterCliMs !== undefined ? { afterCliS: sec(r.afterCliMs) } : {}),
    pathStepsS: sec(r.pathStepsMs),
    pathGapsS: sec(r.pathGapsMs),
    apiRoundTripMs: Math.round(apiRttMs * 10) / 10,
    floor: {
      scriptS: sec(r.floor.script),
      apiS: sec(r.floor.api),
      readinessS: sec(r.floor.readiness),
      totalS: sec(r.floor.total),
    },
    ratio: round2(r.ratio),
    ratioWithoutEngine: round2(r.ratioWithoutEngine),
    path: r.path.map((p) => ({
      name: p.name,
      type: p.type,
      op: p.op,
      start: sec(p.start),
      end: sec(p.end),
      duration: sec(p.duration),
      gap: sec(p.gap),
      waitedFor: p.waitedFor ? (names.get(p.waitedFor) ?? p.waitedFor) : null,
      floor: { script: sec(p.floor.script), api: sec(p.floor.api), readiness: sec(p.floor.readiness) },
    })),
  };
}

/** The figures bench.ts measures, in the order shown; any other figure follows under its own name. */
const FIGURES: [string, string][] = [
  ["preview_1_nodes_s", "`pulumi preview`, fresh stack, 1 node"],
  ["preview_10_nodes_s", "`pulumi preview`, fresh stack, 10 nodes"],
  ["preview_50_nodes_s", "`pulumi preview`, fresh stack, 50 nodes"],
  ["up_1_node_s", "`pulumi up`, 1 node (bootstrap to serving)"],
  ["destroy_1_node_s", "`pulumi destroy`, 1 node"],
  ["up_10_nodes_s", "`pulumi up`, 10 nodes (server, canary agent, then 8 agents in parallel)"],
  ["noop_up_10_nodes_s", "no-change `pulumi up`, 10 nodes"],
  ["destroy_10_nodes_s", "`pulumi destroy`, 10 nodes"],
];

const f1 = (x: number): string => x.toFixed(1);
const f3 = (x: number): string => x.toFixed(3);
const shortType = (t: string): string => t.replace(/^kubernetes:|^command:|^pulumi:providers:/, "");

function pathTable(cp: CriticalPathSummary): string[] {
  const rows = [
    "| step | type | start | end | duration | gap before | waited for | floor: script + API + readiness |",
    "| ---- | ---- | ----: | --: | -------: | ---------: | ---------- | ------------------------------: |",
    ...cp.path.map(
      (p) =>
        `| ${p.name} | ${shortType(p.type)} | ${f3(p.start)} | ${f3(p.end)} | ${f3(p.duration)} | ${f3(p.gap)} | ` +
        `${p.waitedFor ?? "(engine start)"} | ${f3(p.floor.script)} + ${f3(p.floor.api)} + ${f3(p.floor.readiness)} |`,
    ),
  ];
  return [
    ...rows,
    "",
    `Engine start ${f3(cp.engineStartS)} s + steps ${f3(cp.pathStepsS)} s + hand-overs between them ` +
      `${f3(cp.pathGapsS)} s + engine finish ${f3(cp.engineFinishS)} s = ${f3(cp.totalS)} s` +
      (cp.afterCliS !== undefined
        ? ` to the CLI's exit (the Automation API's own reads of outputs and history afterwards, ${f3(cp.afterCliS)} s, ` +
          `are the harness's, not \`pulumi up\`'s). `
        : ` to \`up()\`'s return (the engine finish includes the Automation API's own reads of outputs and history). `) +
      `Floor ${f3(cp.floor.totalS)} s (node scripts ${f3(cp.floor.scriptS)} s + API round trips ${f3(cp.floor.apiS)} s ` +
      `at ${cp.apiRoundTripMs} ms each + readiness ${f3(cp.floor.readinessS)} s): ours is **${cp.ratio.toFixed(2)}×** ` +
      `the floor, ${cp.ratioWithoutEngine.toFixed(2)}× without the engine's own start and finish.`,
  ];
}

/** The README's performance section (between the markers), from one bench-results.json. */
export function renderPerformance(doc: BenchResults): string {
  const m = doc.machine;
  const v = doc.versions;
  const lines: string[] = [
    `Measured ${doc.date.slice(0, 16).replace("T", " ")} UTC on ${m.cores} cores (${m.cpuModel}, ${m.memoryGiB} GiB), ` +
      `Node ${v.node}; Pulumi CLI ${v.pulumiCli}, SDK ${v.pulumiSdk}, providers command ${v.commandProvider}, ` +
      `kubernetes ${v.kubernetesProvider}, random ${v.randomProvider}; K3s default ${v.k3sDefault}; simulated site: ` +
      `Kubernetes ${v.kubernetes}, etcd ${v.etcd}, kwok ${v.kwok}.` +
      (Math.max(m.busyCoresAtStart, m.busyCoresAtEnd) > m.busyLimitCores
        ? ` The machine was not idle: other processes used ${m.busyCoresAtStart} cores' worth before the run and ` +
          `${m.busyCoresAtEnd} after it (the bench's limit is ${m.busyLimitCores}${m.busyOk ? "; run with `--busy-ok`" : ""}): ` +
          `read the figures as upper bounds.`
        : ` Other processes used ${m.busyCoresAtStart} cores' worth before the run and ${m.busyCoresAtEnd} after it.`),
    "",
    "| figure | seconds |",
    "| ------ | ------: |",
  ];
  const known = new Set(FIGURES.map(([k]) => k));
  for (const [key, label] of FIGURES)
    if (key in doc.results) lines.push(`| ${label} | ${f1(doc.results[key])} |`);
  for (const [key, value] of Object.entries(doc.results))
    if (!known.has(key)) lines.push(`| \`${key}\` | ${f1(value)} |`);
  if (doc.criticalPath) {
    lines.push(
      "",
      "Critical path of the one-node `up` (seconds from its start; each step waited for the latest-finishing of " +
        "its dependencies; the floor is the node script's own run time on the host, one API round trip per " +
        "Kubernetes object, and the readiness the simulation imposes, watched from outside the engine):",
      "",
      ...pathTable(doc.criticalPath),
    );
  }
  if (doc.baseline) {
    lines.push(
      "",
      `Before (${doc.baseline.date.slice(0, 10)}, ${doc.baseline.note}):`,
      "",
      ...pathTable(doc.baseline.criticalPath),
    );
  }
  return lines.join("\n");
}

/** The README with the performance section replaced; throws when its markers are missing. */
export const replaceSection = (readme: string, body: string): string =>
  PERFORMANCE_SECTION.replace(readme, body);

/** The performance section's text, trimmed. */
export const currentSection = (readme: string): string => PERFORMANCE_SECTION.current(readme);

/** The section as it must stand in README.md: rendered, then laid out by Prettier (as `npm run lint` checks it). */
export const formattedPerformance = (doc: BenchResults, readmePath: string): Promise<string> =>
  formatMarkdown(renderPerformance(doc), readmePath);
