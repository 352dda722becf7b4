/**
 * Realistic durations for the simulated site (issue 12), derived from the time-to-serving model's Inputs (pure: no
 * I/O, no clock). One source: harness/timeToServing.ts defaultInputs(), times a scale factor so a run takes tens of
 * seconds instead of minutes.
 *
 * What takes time, and how the simulation makes it take that time:
 *   - K3s's start: the k3s double sleeps `k3sStartSeconds × scale` (`k3s-start`; harness/doubles/lib.sh forge_delay);
 *   - each import of a file of agent/images, by K3s at its start (before the kubelet) or by its image watcher while
 *     it runs (2 s after the file appears): the double sleeps the file's bytes at `importMBps` (`image-import`);
 *   - the images' bytes: the staged tarballs are real OCI image tarballs of `size × scale` bytes under the names the
 *     stack runs (the watcher records those names; the program's import step waits for them), so byte rates stay
 *     unscaled (a file 0.05× the size at the same rate takes 0.05× the time);
 *   - the model load: kwok makes the inference pods Ready `modelLoadSeconds × scale` after it first sees them
 *     (harness/controlPlane.ts podReadyDelay);
 *   - the SFTP copies of the bundle: real copies of the scaled files to the host's sshd, the traffic to its port 22
 *     shaped to `lanMbps` by an HTB class on the private network namespace's loopback (`lanShaping`; only inside
 *     harness/netns-run.sh, never on the machine's own loopback).
 * Not simulated: the online install (the toolkit's apt install would write the machine's /usr/share/keyrings and
 * /etc/apt, which a test host shares, and curl has no double), so the sim hosts have the toolkit installed and the
 * model's prediction for them is computed with the toolkit step at zero (it is off the air gap's critical path).
 */
import { formatMarkdown, ReadmeSection } from "./readmeSection";
import { bootstrapSteps, defaultInputs, Inputs, Order, simulate } from "./timeToServing";

/** The default time scale: the model's 494 s air-gap install becomes about 25 s, plus the engine's own time. */
export const SIM_SCALE = 0.05;

/** What lib.sh's forge_delay reads from FORGE_EDGE_DURATIONS. */
export interface DoublesDurations {
  scale: number;
  delays: Record<string, { seconds?: number; bytesPerSecond?: number }>;
}

export interface SimPlan {
  scale: number;
  /** The model's inputs for what the simulated host does (toolkit already installed). */
  inputs: Inputs;
  /** FORGE_EDGE_DURATIONS for every host of the site. */
  durations: DoublesDurations;
  /** kwok's readiness delay of the inference pods: the model load, scaled. */
  modelLoadMs: number;
  /** Sizes in bytes of the tarballs the simulation stages: the model's, scaled. */
  files: { k3sImages: number; inferenceImage: number; devicePluginImage: number };
  /** The rate of traffic to the host's sshd (the SFTP copies), Mbit/s: the model's LAN, unscaled (files are). */
  lanMbps: number;
  /** The model's air-gap time to serving for `inputs`, scaled, per order. */
  predicted: Record<Order, number>;
}

const MB = 1e6;

/** The model's seconds from `up` to serving, air gap, for the given inputs. */
export function modelAirgapSeconds(inputs: Inputs, order: Order): number {
  return Math.max(...simulate(bootstrapSteps("airgap", order, inputs), inputs).map((t) => t.end));
}

export function simPlan(inputs: Inputs = defaultInputs(), scale = SIM_SCALE): SimPlan {
  if (!(scale > 0 && scale <= 1)) throw new Error(`scale must be in (0, 1], got ${scale}`);
  // The sim hosts have the toolkit (nothing can be installed on them): the model of what they do has no toolkit step.
  const sim: Inputs = { ...inputs, toolkitDownloadMB: 0, toolkitLocalSeconds: 0 };
  const bytes = (mb: number): number => Math.round(mb * MB * scale);
  return {
    scale,
    inputs: sim,
    durations: {
      scale,
      delays: {
        "k3s-start": { seconds: round3(inputs.k3sStartSeconds * scale) },
        "image-import": { bytesPerSecond: inputs.importMBps * MB },
      },
    },
    modelLoadMs: Math.round(inputs.modelLoadSeconds * scale * 1000),
    lanMbps: inputs.lanMbps,
    files: {
      k3sImages: bytes(inputs.k3sImagesMB),
      inferenceImage: bytes(inputs.inferenceImageGB * 1000),
      devicePluginImage: bytes(inputs.devicePluginImageMB),
    },
    predicted: {
      current: round3(modelAirgapSeconds(sim, "current") * scale),
      restructured: round3(modelAirgapSeconds(sim, "restructured") * scale),
    },
  };
}

/**
 * `tc` argument lists that shape the traffic to `ip`:22 on loopback to `mbps` and leave the rest unshaped (HTB; the
 * sandbox kernel has htb and u32, not prio or netem), and the one that removes it.
 */
export function lanShaping(ip: string, mbps: number): { add: string[][]; remove: string[] } {
  if (!/^127\.\d+\.\d+\.\d+$/.test(ip)) throw new Error(`only a loopback address is shaped, got ${ip}`);
  const dev = ["dev", "lo"];
  return {
    add: [
      ["qdisc", "add", ...dev, "root", "handle", "1:", "htb", "default", "10"],
      [
        "class",
        "add",
        ...dev,
        "parent",
        "1:",
        "classid",
        "1:10",
        "htb",
        "rate",
        "100gbit",
        "quantum",
        "65536",
      ],
      [
        "class",
        "add",
        ...dev,
        "parent",
        "1:",
        "classid",
        "1:20",
        "htb",
        "rate",
        `${mbps}mbit`,
        "burst",
        "1mb",
      ].concat(["cburst", "1mb", "quantum", "65536"]),
      [
        "filter",
        "add",
        ...dev,
        "parent",
        "1:",
        "protocol",
        "ip",
        "prio",
        "1",
        "u32",
        "match",
        "ip",
        "dst",
        `${ip}/32`,
      ].concat(["match", "ip", "dport", "22", "0xffff", "flowid", "1:20"]),
    ],
    remove: ["qdisc", "del", ...dev, "root"],
  };
}

/**
 * An image reference as containerd names it after an import (distribution/reference ParseDockerRef, as the k3s
 * double's docker_ref): no registry host -> docker.io, one path component -> library/, no tag or digest -> :latest.
 */
export function containerdName(ref: string): string {
  const at = ref.indexOf("@");
  const digest = at >= 0 ? ref.slice(at) : "";
  let name = at >= 0 ? ref.slice(0, at) : ref;
  let tag = "";
  const last = name.slice(name.lastIndexOf("/") + 1);
  if (last.includes(":")) {
    tag = last.slice(last.indexOf(":"));
    name = name.slice(0, name.length - tag.length);
  }
  const slash = name.indexOf("/");
  const first = slash >= 0 ? name.slice(0, slash) : "";
  let domain = "docker.io";
  let rest = name;
  if (slash >= 0 && (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase())) {
    domain = first === "index.docker.io" ? "docker.io" : first;
    rest = name.slice(slash + 1);
  }
  if (domain === "docker.io" && !rest.includes("/")) rest = `library/${rest}`;
  return digest ? `${domain}/${rest}${digest}` : `${domain}/${rest}${tag || ":latest"}`;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Sums the doubles' recorded delays ("<epoch> delay NAME SECONDS bytes=N") per NAME. */
export function recordedDelays(calls: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of calls) {
    const m = /^\d+ delay (\S+) ([0-9.]+) bytes=\d+$/.exec(line);
    if (m) out[m[1]] = Math.round(((out[m[1]] ?? 0) + Number(m[2])) * 1000) / 1000;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// bench-results.json's `timeToServingSim` key and the README table between the `bench-tts-sim` markers.
// ---------------------------------------------------------------------------------------------------------------

/** One measured `up` of the simulated site. */
export interface SimRun {
  /** "before": the program of `before.commit` (ahead of the restructure); "after": the program today. */
  program: "before" | "after";
  /** Seconds from `up`'s start to the first ready endpoint of the inference Service. */
  servingS: number;
  /**
   * The same from the node's first step (the SSH probe), where the model's clock starts: without the program's
   * compile and the engine's start, which vary most with the machine's load.
   */
  fromProbeS: number;
  /** Seconds the `up` took. */
  upS: number;
  /** Seconds from `up`'s start to the K3s step's start and to its end (engine events). */
  k3sStartS: number;
  k3sEndS: number;
  /** What the doubles recorded they slept ("delay NAME seconds bytes=n" lines of doubles.log), summed per NAME. */
  doublesDelayS: Record<string, number>;
}

export interface TimeToServingSimResults {
  date: string;
  machine: { cores: number; memoryGiB: number; loadavg1: number };
  scale: number;
  before: { commit: string; note: string };
  mode: "airgap";
  plan: Pick<SimPlan, "durations" | "modelLoadMs" | "files" | "lanMbps" | "predicted">;
  runs: SimRun[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export interface SimSummary {
  before: number;
  after: number;
  saved: number;
  beforeFromProbe: number;
  afterFromProbe: number;
  savedFromProbe: number;
}

/** Medians of the runs per program, and the savings, from `up`'s start and from the probe. */
export function simSummary(r: TimeToServingSimResults): SimSummary {
  const of = (p: SimRun["program"], k: "servingS" | "fromProbeS"): number => {
    const xs = r.runs.filter((x) => x.program === p).map((x) => x[k]);
    if (!xs.length) throw new Error(`no ${p} run in the results`);
    return median(xs);
  };
  const before = of("before", "servingS");
  const after = of("after", "servingS");
  const beforeFromProbe = of("before", "fromProbeS");
  const afterFromProbe = of("after", "fromProbeS");
  return {
    before,
    after,
    saved: round3(before - after),
    beforeFromProbe,
    afterFromProbe,
    savedFromProbe: round3(beforeFromProbe - afterFromProbe),
  };
}

export const TTS_SIM_SECTION = new ReadmeSection("bench-tts-sim");

/** The README table (Markdown, before Prettier lays it out). */
export function renderTimeToServingSim(r: TimeToServingSimResults): string {
  const s = simSummary(r);
  const p = r.plan.predicted;
  const f = (x: number): string => x.toFixed(1);
  const n = (prog: SimRun["program"]): number => r.runs.filter((x) => x.program === prog).length;
  const mb = (b: number): string => (b / 1e6).toFixed(1);
  const spread = (prog: SimRun["program"]): number => {
    const xs = r.runs.filter((x) => x.program === prog).map((x) => x.fromProbeS);
    return Math.max(...xs) - Math.min(...xs);
  };
  return [
    `Measured ${r.date.slice(0, 16).replace("T", " ")} UTC on ${r.machine.cores} cores / ${r.machine.memoryGiB} GiB ` +
      `(load ${r.machine.loadavg1.toFixed(2)}): one p40 node, air gap, the simulated site with realistic durations ` +
      `at scale ${r.scale} (\`npm run bench -- --time-to-serving-sim\`); seconds from \`up\` to the first ready ` +
      `endpoint of the inference Service, median of ${n("before")} and ${n("after")} run(s). The doubles slept ` +
      `K3s start ${r.plan.durations.delays["k3s-start"]?.seconds ?? 0} s and imported at ` +
      `${((r.plan.durations.delays["image-import"]?.bytesPerSecond ?? r.plan.durations.delays["k3s-start"]?.bytesPerSecond ?? 0) / 1e6).toFixed(0)} MB/s the tarballs of ` +
      `${mb(r.plan.files.k3sImages)} + ${mb(r.plan.files.inferenceImage)} + ${mb(r.plan.files.devicePluginImage)} MB; ` +
      `kwok held the model load ${(r.plan.modelLoadMs / 1000).toFixed(1)} s; the SFTP copies ran at ` +
      `${r.plan.lanMbps} Mbit/s. The measured time includes the ` +
      `engine's own work, which the model does not scale; compare the savings.`,
    "",
    `| program | measured from \`up\` | from the node's first step | model × ${r.scale} |`,
    "| --- | ---: | ---: | ---: |",
    `| before the restructure (${r.before.commit}) | ${f(s.before)} | ${f(s.beforeFromProbe)} | ${f(p.current)} |`,
    `| today | ${f(s.after)} | ${f(s.afterFromProbe)} | ${f(p.restructured)} |`,
    `| saved | ${f(s.saved)} | ${f(s.savedFromProbe)} | ${f(p.current - p.restructured)} |`,
    "",
    `Spread (slowest − fastest run, from the node's first step): before ${f(spread("before"))} s, today ` +
      `${f(spread("after"))} s. Each run: ` +
      r.runs
        .map(
          (x) =>
            `${x.program} ${f(x.servingS)} (${f(x.fromProbeS)}; K3s step ${f(x.k3sStartS)}–${f(x.k3sEndS)})`,
        )
        .join(", ") +
      ".",
  ].join("\n");
}

/** The table as README.md must hold it: rendered, then laid out by Prettier. */
export const formattedTimeToServingSim = (r: TimeToServingSimResults, readmePath: string): Promise<string> =>
  formatMarkdown(renderTimeToServingSim(r), readmePath);
