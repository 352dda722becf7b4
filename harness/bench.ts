/**
 * Scale figures, measured on the simulated site in one run (a benchmark, not a test):
 *   - `pulumi preview` wall time of a fresh stack with 1, 10 and 50 nodes (nothing is dialled in a preview);
 *   - bootstrap (`pulumi up`) wall time for 1 node and for 10 nodes (1 server + 9 agents joining in parallel);
 *   - a no-op `pulumi up` on the 10-node stack;
 *   - the critical path of the one-node `up` (harness/criticalPath.ts): per resource start, end and what it waited
 *     for, the chain that set the end, and its floor (node scripts' own run time, timed on the host; one Kubernetes
 *     API round trip per object; readiness the simulation imposes, watched from outside the engine).
 * Output: one line per measurement, `<name>\t<seconds>`, the critical path as a table, and everything as JSON in
 * bench-results.json (or the path given with --out): date, machine, versions, figures, critical path, and the
 * baseline critical path it is compared with (carried over from the previous file, or taken from --baseline FILE).
 * The README's performance section is rendered from that file: npm run bench:readme.
 *
 * Run: npm run bench [-- --out results.json] [--critical-path] [--baseline FILE] [--busy-ok]
 *   --fleet          the fleet figures instead (harness/fleetBench.ts), into the file's `fleet` key.
 *   --time-to-serving  the modelled time to serving of one node (harness/timeToServing.ts), into `timeToServing`.
 *   --time-to-serving-sim  [--scale S] [--runs N]  the same MEASURED on the simulated site with realistic durations,
 *                    the program before the restructure vs today (harness/ttsSimBench.ts), into `timeToServingSim`.
 *   --peers          `pulumi up` vs k3s-ansible's site.yml on fresh sites, 1 and 10 nodes (harness/peers/), into `peers`.
 *   --critical-path  only the one-node `up` (after a warm-up preview), every resource's step printed; writes JSON
 *                    only when --out is given.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EngineEvent, PulumiCommand } from "@pulumi/pulumi/automation";

import { run } from "../program";
import { DEFAULT_K3S_VERSION } from "../config/stack";
import { benchSummary, BenchResults, CriticalPathSummary, otherRuns } from "./benchReport";
import { analyse, formatPath, formatSteps, StateResource, TimedEvent } from "./criticalPath";
import { EngineStack, openStack } from "./engine";
import { fleetBench } from "./fleetBench";
import { timeToServingBench } from "./timeToServingBench";
import { ttsSimBench } from "./ttsSimBench";
import { peersBench } from "./peers/peerBench";
import { machineLoad } from "./processes";
import { apiRoundTripMs, watchReadiness } from "./readinessWatch";
import { ownSshds, ScriptRun, ScriptTimer } from "./scriptTimer";
import { nodeEntry, Site, SiteNode, startSite } from "./site";

const ROOT = path.resolve(__dirname, "..");

async function time(name: string, results: Record<string, number>, f: () => Promise<unknown>): Promise<void> {
  const t = Date.now();
  await f();
  results[name] = Math.round((Date.now() - t) / 100) / 10;
  console.log(`${name}\t${results[name]}`);
}

function fleet(n: number): SiteNode[] {
  return [
    { name: "node-00", role: "server" },
    ...Array.from({ length: n - 1 }, (_, i) => ({
      name: `node-${String(i + 1).padStart(2, "0")}`,
      role: "agent" as const,
    })),
  ];
}

/** The site's config with the fleet's nodes; hosts beyond the site's are fake loopback addresses never dialled. */
function fleetConfig(site: Site, nodes: SiteNode[]) {
  const entries = nodes.map((n, i) =>
    site.hosts[i]
      ? nodeEntry(n, site.hosts[i])
      : {
          name: n.name,
          host: `127.0.2.${i + 1}`,
          port: 22,
          user: "root",
          role: n.role,
          gpus: 1,
          hostKey: site.hosts[0].hostKeyLine, // a pin is required; these nodes are never dialled
        },
  );
  const config = { ...site.config, nodes: { value: JSON.stringify(entries) } };
  delete (config as Record<string, unknown>).quota; // derived from the fleet's slices
  return config;
}

/** Above this many cores' worth of other work, figures would measure the neighbours, not forge-edge. */
const MAX_BACKGROUND_CORES = 0.25;

async function refuseBusyMachine(): Promise<number> {
  const load = await machineLoad();
  if (load.busyCores <= MAX_BACKGROUND_CORES || process.argv.includes("--busy-ok")) return load.busyCores;
  throw new Error(
    `the machine is busy (${load.busyCores.toFixed(2)} of ${os.cpus().length} cores used by other processes; ` +
      `the limit is ${MAX_BACKGROUND_CORES}): figures taken now would not be comparable. Busiest:\n` +
      load.top
        .map((t) => `  ${t.cores.toFixed(2)} cores  pid ${t.info.pid}  ${t.info.command.slice(0, 120)}`)
        .join("\n") +
      "\nStop them (or pass --busy-ok to measure anyway) and rerun.",
  );
}

/** KEY=VALUE lines of harness/versions.env (comments and quotes stripped). */
export function readVersionsEnv(file = path.join(ROOT, "harness", "versions.env")): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return out;
}

function versions(): BenchResults["versions"] {
  const env = readVersionsEnv();
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };
  return {
    node: process.version,
    pulumiCli: env.PULUMI_VERSION,
    pulumiSdk: pkg.dependencies["@pulumi/pulumi"],
    commandProvider: env.COMMAND_PROVIDER_VERSION,
    kubernetesProvider: env.K8S_PROVIDER_VERSION,
    randomProvider: env.RANDOM_PROVIDER_VERSION,
    k3sDefault: DEFAULT_K3S_VERSION,
    kubernetes: env.KUBE_VERSION,
    etcd: env.ETCD_VERSION,
    kwok: env.KWOK_VERSION,
  };
}

function machine(busyAtStart: number, busyAtEnd: number): BenchResults["machine"] {
  const cpus = os.cpus();
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    busyCoresAtStart: r2(busyAtStart),
    busyCoresAtEnd: r2(busyAtEnd),
    busyLimitCores: MAX_BACKGROUND_CORES,
    busyOk: process.argv.includes("--busy-ok"),
  };
}

/** The Automation API's own CLI runner: every CLI run of a stack goes through it (automation/stack.js runPulumiCmd). */
interface CliRunner {
  run(args: string[], ...rest: unknown[]): Promise<unknown>;
}

/**
 * Records when each CLI run of a workspace's command ends (its first argument names it), until restored. `run` is
 * internal to the SDK: without it, nothing is recorded and the caller falls back to its own timing.
 */
function timeCliRuns(command: PulumiCommand): { runs: { command: string; end: number }[]; restore(): void } {
  const runs: { command: string; end: number }[] = [];
  const cmd = command as unknown as CliRunner;
  if (typeof cmd.run !== "function") return { runs, restore: () => undefined };
  const original = cmd.run;
  cmd.run = async function (this: CliRunner, args: string[], ...rest: unknown[]) {
    try {
      return await original.call(this, args, ...rest);
    } finally {
      runs.push({ command: args[0], end: Date.now() });
    }
  };
  return { runs, restore: () => void (cmd.run = original) };
}

/**
 * A one-node `up` with its event stream, the node scripts timed on the host and the objects' readiness watched,
 * then its critical path.
 */
async function profiledUp(site: Site, es: EngineStack) {
  const host = site.hosts[0];
  const sshd = ownSshds()
    .filter((s) => s.hostIp === host.host)
    .map((s) => s.pid);
  if (sshd.length === 0) throw new Error(`no sshd of ${host.name} among this process's children`);
  const watch = await watchReadiness(site.kube.creds);
  const timer = new ScriptTimer(sshd).start();
  const events: TimedEvent[] = [];
  let runs: ScriptRun[] = [];
  // `up()` returns only after two more CLI runs (stack outputs, history): time the `pulumi up` run itself.
  const cli = timeCliRuns(es.stack.workspace.pulumiCommand);
  const t0 = Date.now();
  let tReturned = t0;
  try {
    await es.stack.up({ onEvent: (event: EngineEvent) => events.push({ t: Date.now(), event }) });
    tReturned = Date.now();
  } finally {
    runs = timer.stop();
    watch.stop();
    cli.restore();
  }
  const tEnd = cli.runs.find((r) => r.command === "up")?.end ?? tReturned;
  const resources = ((await es.stack.exportStack()).deployment as { resources: StateResource[] }).resources;
  const apiRttMs = await apiRoundTripMs(site.kube.creds);

  // Each remote step's script: its command ends with `forge-<script>` (scripts/render.ts); its runs on the host
  // inside the step's window are its script time.
  const preEnd = new Map<string, [number, number]>();
  for (const { t, event } of events) {
    const pre = event.resourcePreEvent?.metadata.urn;
    const done = event.resOutputsEvent?.metadata.urn ?? event.resOpFailedEvent?.metadata.urn;
    if (pre) preEnd.set(pre, [t, tEnd]);
    if (done && preEnd.has(done)) preEnd.get(done)![1] = t;
  }
  const scriptMs: Record<string, number> = {};
  const readinessMs: Record<string, number> = {};
  for (const r of resources as (StateResource & {
    inputs?: { create?: unknown };
    outputs?: { kind?: string; metadata?: { name?: string; namespace?: string } };
  })[]) {
    const window = preEnd.get(r.urn);
    const script =
      typeof r.inputs?.create === "string" ? /forge-([a-z0-9-]+)$/.exec(r.inputs.create)?.[1] : undefined;
    if (window && script) {
      scriptMs[r.urn] = runs
        .filter((x) => x.script === script && x.start >= window[0] - 20 && x.end <= window[1] + 20)
        .reduce((a, x) => a + (x.end - x.start), 0);
    }
    const m = r.outputs?.metadata;
    if (r.type.startsWith("kubernetes:") && r.outputs?.kind && m?.name) {
      const ms = watch.readinessMs(r.outputs.kind, m.namespace ?? "", m.name);
      if (ms !== undefined) readinessMs[r.urn] = ms;
    }
  }
  const report = analyse({
    events,
    resources,
    t0,
    tEnd,
    tReturned,
    floor: { scriptMs, readinessMs, apiRttMs },
  });
  return {
    report,
    apiRttMs,
    scriptRuns: runs.map((x) => ({ script: x.script, ms: Math.round(x.end - x.start) })),
  };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/** The baseline to compare with: --baseline FILE's critical path, else the one the previous results carried. */
function baselineFor(out: string): BenchResults["baseline"] {
  const file = arg("--baseline");
  const read = (f: string): BenchResults | undefined =>
    fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, "utf8")) as BenchResults) : undefined;
  if (file) {
    const b = read(file);
    if (!b?.criticalPath) throw new Error(`${file} has no criticalPath to use as the baseline`);
    return {
      date: b.date,
      note: arg("--baseline-note") ?? `from ${path.basename(file)}`,
      criticalPath: b.criticalPath,
    };
  }
  return read(out)?.baseline;
}

async function main(): Promise<void> {
  if (process.argv.includes("--time-to-serving-sim"))
    return ttsSimBench({
      out: arg("--out") ?? path.join(ROOT, "bench-results.json"),
      scale: arg("--scale") === undefined ? undefined : Number(arg("--scale")),
      runs: arg("--runs") === undefined ? undefined : Number(arg("--runs")),
      readme: arg("--out") === undefined,
    });
  if (process.argv.includes("--time-to-serving"))
    return timeToServingBench({
      out: arg("--out") ?? path.join(ROOT, "bench-results.json"),
      argv: process.argv,
    });
  if (process.argv.includes("--peers")) {
    await peersBench({ out: arg("--out") ?? path.join(ROOT, "bench-results.json") });
    return;
  }
  if (process.argv.includes("--fleet"))
    return fleetBench({
      out: arg("--out") ?? path.join(ROOT, "bench-results.json"),
      busyOk: process.argv.includes("--busy-ok"),
      maxBusyCores: MAX_BACKGROUND_CORES,
      default100: process.argv.includes("--fleet-default-100"),
    });
  const busyCores = await refuseBusyMachine();
  const quick = process.argv.includes("--critical-path");
  const out = arg("--out") ?? (quick ? undefined : path.join(ROOT, "bench-results.json"));
  const baseline = out ? baselineFor(out) : undefined;
  const results: Record<string, number> = {};
  let criticalPath: CriticalPathSummary | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-bench-"));
  const program = async () => run();
  const ten = fleet(10);
  const site = await startSite({ sku: "p40", dir, nodes: quick ? fleet(1) : ten, ipBase: 120 });
  try {
    for (const n of quick ? [1] : [1, 10, 50]) {
      const es = await openStack({
        stackName: `preview-${n}`,
        dir,
        config: fleetConfig(site, fleet(n)),
        program,
      });
      await time(`preview_${n}_nodes_s`, results, () => es.stack.preview());
    }
    const one = await openStack({ stackName: "up-1", dir, config: fleetConfig(site, fleet(1)), program });
    // Timed from the event-stream run itself: the reads of state and the round-trip probe after it do not count.
    const profile = await profiledUp(site, one);
    results.up_1_node_s = Math.round(profile.report.totalMs / 100) / 10;
    console.log(`up_1_node_s\t${results.up_1_node_s}`);
    await time("destroy_1_node_s", results, () => one.stack.destroy());
    if (!quick) {
      const many = await openStack({ stackName: "up-10", dir, config: fleetConfig(site, ten), program });
      await time("up_10_nodes_s", results, () => many.stack.up());
      await time("noop_up_10_nodes_s", results, () => many.stack.up());
      await time("destroy_10_nodes_s", results, () => many.stack.destroy());
    }
    const p = profile;
    if (quick)
      console.log(`\nevery step of the one-node up (seconds from its start):\n${formatSteps(p.report)}`);
    console.log(`\ncritical path of the one-node up (seconds):\n${formatPath(p.report)}`);
    console.log(
      `script runs on the host: ${p.scriptRuns.map((r) => `${r.script} ${r.ms} ms`).join(", ")}; ` +
        `API round trip ${p.apiRttMs.toFixed(1)} ms`,
    );
    criticalPath = benchSummary(p.report, p.apiRttMs);
  } finally {
    await site.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (!out) return;
  const busyAtEnd = (await machineLoad()).busyCores;
  const doc: BenchResults = {
    date: new Date().toISOString(),
    machine: machine(busyCores, busyAtEnd),
    versions: versions(),
    results,
    criticalPath,
    ...(baseline ? { baseline } : {}),
    // The figures of the other runs are kept.
    ...otherRuns(fs.existsSync(out) ? (JSON.parse(fs.readFileSync(out, "utf8")) as BenchResults) : undefined),
  };
  fs.writeFileSync(out, JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote ${out}`);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exitCode = 1;
});
