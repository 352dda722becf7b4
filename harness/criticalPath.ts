/**
 * Where the wall time of a `pulumi up` goes, from the engine's own event stream (pure: no I/O, no clock).
 *
 * Input: the Automation API's engine events, each stamped with the time the bench received it (the events' own
 * `timestamp` is whole seconds), and the stack's resources as `exportStack` records them (dependencies, property
 * dependencies, provider, parent). Output, per resource step: start (its `resourcePreEvent`), end (its
 * `resOutputsEvent`), duration, and what it waited for: the latest-finishing of the resources it depends on: its
 * own dependencies, its provider, and its ancestors' dependencies (a component's children are registered only once
 * the component's `dependsOn` have finished). Component resources do no work and are left out; so is the stack.
 *
 * The critical path is the chain that set the end: from the step that finished last, back through what each step
 * waited for. Its floor is what no program could avoid on this site: the node scripts' own run time, one
 * Kubernetes API round trip per object, and the readiness the simulation imposes (pods scheduled and marked
 * ready, endpoints published), measured outside the engine and passed in.
 */

/** An engine event as the Automation API delivers it (only the fields read here). */
export interface EngineEventLike {
  resourcePreEvent?: { metadata: StepMetadata };
  resOutputsEvent?: { metadata: StepMetadata };
  resOpFailedEvent?: { metadata: StepMetadata };
}

export interface StepMetadata {
  op: string;
  urn: string;
  type: string;
}

/** An engine event and the time it arrived, in milliseconds (any origin; the same as `t0`/`tEnd`). */
export interface TimedEvent {
  t: number;
  event: EngineEventLike;
}

/** A resource as `exportStack` records it (only the fields read here). */
export interface StateResource {
  urn: string;
  type: string;
  custom?: boolean;
  parent?: string;
  provider?: string;
  dependencies?: string[];
  propertyDependencies?: Record<string, string[]>;
}

export interface Step {
  urn: string;
  /** The resource's name (the URN's last part). */
  name: string;
  type: string;
  op: string;
  /** Milliseconds since the start of the operation. */
  start: number;
  end: number;
  duration: number;
  failed: boolean;
  /** The URN of the latest-finishing resource this step depended on, if any. */
  waitedFor?: string;
  /** Start minus the end of what it waited for (or minus the operation's start): the engine's hand-over. */
  gap: number;
}

/** What no program could shave off one step on this site, milliseconds. */
export interface StepFloor {
  script: number;
  api: number;
  readiness: number;
}

export interface FloorInputs {
  /** Run time of the node scripts each step ran on its host (by URN). */
  scriptMs: Record<string, number>;
  /** Readiness the simulation imposed on an object (by URN): created → ready, as watched from outside. */
  readinessMs: Record<string, number>;
  /** One Kubernetes API round trip on this site. */
  apiRttMs: number;
}

export interface PathEntry extends Step {
  floor: StepFloor;
}

export interface CriticalPathReport {
  /** The whole operation, as the caller timed it: from its start to the CLI's exit. */
  totalMs: number;
  /** Operation start → the first step on the path: CLI, language host, program, plugins. */
  engineStartMs: number;
  /** The last step's end → the CLI exited: the last checkpoint, the summary, the plugins' shutdown. */
  engineFinishMs: number;
  /**
   * What the caller spent after the CLI exited, outside `totalMs`: the Automation API reads the stack's outputs and
   * history with two more CLI runs before `up()` returns. A user's `pulumi up` has no such reads.
   */
  afterCliMs?: number;
  steps: Step[];
  path: PathEntry[];
  /** Sums over the path. */
  pathStepsMs: number;
  pathGapsMs: number;
  floor: StepFloor & { total: number };
  /** totalMs / floor.total, and (totalMs − engine start and finish) / floor.total. */
  ratio: number;
  ratioWithoutEngine: number;
}

const urnName = (urn: string): string => urn.slice(urn.lastIndexOf("::") + 2);
/** A provider reference is `<urn>::<id>`. */
const providerUrn = (ref: string): string => ref.slice(0, ref.lastIndexOf("::"));
/** Component resources (and the stack) do no work of their own: their children do. */
const isComponent = (r: StateResource): boolean => r.custom !== true;

/**
 * Each resource step's start and end from the event stream (a step without an end ends at `tEnd`, failed). One
 * step per URN: a replacement's later steps (create-replacement, delete-replaced) extend the first one's end.
 */
export function stepTimes(
  events: TimedEvent[],
  t0: number,
  tEnd: number,
): Map<string, Omit<Step, "waitedFor" | "gap">> {
  const steps = new Map<string, Omit<Step, "waitedFor" | "gap">>();
  for (const { t, event } of events) {
    const pre = event.resourcePreEvent?.metadata;
    const done = event.resOutputsEvent?.metadata ?? event.resOpFailedEvent?.metadata;
    if (pre && !steps.has(pre.urn)) {
      steps.set(pre.urn, {
        urn: pre.urn,
        name: urnName(pre.urn),
        type: pre.type,
        op: pre.op,
        start: t - t0,
        end: tEnd - t0,
        duration: tEnd - t,
        failed: true,
      });
    } else if (done) {
      const s = steps.get(done.urn);
      if (!s) continue;
      s.end = t - t0;
      s.duration = s.end - s.start;
      s.failed = event.resOpFailedEvent !== undefined;
    }
  }
  return steps;
}

/**
 * What each resource waits for before its step can start: its dependencies, property dependencies and provider,
 * and its ancestors' (a component's `dependsOn` holds back the registration of everything inside it).
 */
export function dependencyMap(resources: StateResource[]): Map<string, Set<string>> {
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  const own = (r: StateResource): string[] => [
    ...(r.dependencies ?? []),
    ...Object.values(r.propertyDependencies ?? {}).flat(),
    ...(r.provider ? [providerUrn(r.provider)] : []),
  ];
  const memo = new Map<string, Set<string>>();
  const deps = (urn: string, seen: Set<string>): Set<string> => {
    const cached = memo.get(urn);
    if (cached) return cached;
    const r = byUrn.get(urn);
    const out = new Set<string>();
    if (r && !seen.has(urn)) {
      seen.add(urn);
      for (const d of own(r)) out.add(d);
      if (r.parent) for (const d of deps(r.parent, seen)) out.add(d);
    }
    memo.set(urn, out);
    return out;
  };
  return new Map(resources.map((r) => [r.urn, deps(r.urn, new Set())]));
}

/** Every step with what it waited for, in start order. Components and the stack are left out. */
export function resourceSteps(
  events: TimedEvent[],
  resources: StateResource[],
  t0: number,
  tEnd: number,
): Step[] {
  const times = stepTimes(events, t0, tEnd);
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  const deps = dependencyMap(resources);
  const steps: Step[] = [];
  for (const s of times.values()) {
    const r = byUrn.get(s.urn);
    // A step missing from the state (a failed create) is kept: only components and the stack do no work.
    if (s.type === "pulumi:pulumi:Stack" || (r && isComponent(r))) continue;
    let waitedFor: string | undefined;
    let readyAt = 0;
    for (const d of deps.get(s.urn) ?? []) {
      const dt = times.get(d);
      const dr = byUrn.get(d);
      if (!dt || (dr && isComponent(dr))) continue;
      // A dependency that ended after this step started was not waited for (it cannot happen in the engine).
      if (dt.end <= s.start + 1 && (waitedFor === undefined || dt.end > readyAt)) {
        waitedFor = d;
        readyAt = dt.end;
      }
    }
    steps.push({ ...s, waitedFor, gap: s.start - readyAt });
  }
  return steps.sort((a, b) => a.start - b.start || a.end - b.end);
}

/** The chain that set the end: the last step to finish, back through what each step waited for. */
export function criticalPath(steps: Step[]): Step[] {
  if (steps.length === 0) return [];
  const byUrn = new Map(steps.map((s) => [s.urn, s]));
  let cur: Step | undefined = steps.reduce((a, b) => (b.end > a.end ? b : a));
  const path: Step[] = [];
  const seen = new Set<string>();
  while (cur && !seen.has(cur.urn)) {
    seen.add(cur.urn);
    path.unshift(cur);
    cur = cur.waitedFor ? byUrn.get(cur.waitedFor) : undefined;
  }
  return path;
}

/** Kubernetes objects cost one API round trip (the provider's server-side apply); its provider one (discovery). */
export function apiRoundTrips(type: string): number {
  return type.startsWith("kubernetes:") || type === "pulumi:providers:kubernetes" ? 1 : 0;
}

export function analyse(opts: {
  events: TimedEvent[];
  resources: StateResource[];
  t0: number;
  /** When the CLI exited. */
  tEnd: number;
  /** When the caller's operation returned, if later (the Automation API's own reads). */
  tReturned?: number;
  floor: FloorInputs;
}): CriticalPathReport {
  const steps = resourceSteps(opts.events, opts.resources, opts.t0, opts.tEnd);
  const path: PathEntry[] = criticalPath(steps).map((s) => ({
    ...s,
    floor: {
      script: opts.floor.scriptMs[s.urn] ?? 0,
      api: apiRoundTrips(s.type) * opts.floor.apiRttMs,
      readiness: opts.floor.readinessMs[s.urn] ?? 0,
    },
  }));
  const totalMs = opts.tEnd - opts.t0;
  const engineStartMs = path.length ? path[0].start : totalMs;
  const engineFinishMs = path.length ? totalMs - path[path.length - 1].end : 0;
  const sum = (f: (p: PathEntry) => number): number => path.reduce((a, p) => a + f(p), 0);
  const floor = {
    script: sum((p) => p.floor.script),
    api: sum((p) => p.floor.api),
    readiness: sum((p) => p.floor.readiness),
  };
  const floorTotal = floor.script + floor.api + floor.readiness;
  return {
    totalMs,
    engineStartMs,
    engineFinishMs,
    ...(opts.tReturned !== undefined ? { afterCliMs: Math.max(0, opts.tReturned - opts.tEnd) } : {}),
    steps,
    path,
    pathStepsMs: sum((p) => p.duration),
    // The first step's gap is the engine's start.
    pathGapsMs: sum((p) => p.gap) - (path.length ? path[0].gap : 0),
    floor: { ...floor, total: floorTotal },
    ratio: floorTotal > 0 ? totalMs / floorTotal : Infinity,
    ratioWithoutEngine: floorTotal > 0 ? (totalMs - engineStartMs - engineFinishMs) / floorTotal : Infinity,
  };
}

const s3 = (ms: number): string => (ms / 1000).toFixed(3);

function table(header: string[], rows: string[][], right: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

const shortType = (type: string): string => type.replace(/^kubernetes:|^command:|^pulumi:providers:/, "");

/** Every step: start, end, duration (seconds) and what it waited for. */
export function formatSteps(report: CriticalPathReport): string {
  const names = new Map(report.steps.map((s) => [s.urn, s.name]));
  return table(
    ["resource", "type", "op", "start", "end", "dur", "waited for", "gap"],
    report.steps.map((s) => [
      s.name + (s.failed ? " (failed)" : ""),
      shortType(s.type),
      s.op,
      s3(s.start),
      s3(s.end),
      s3(s.duration),
      s.waitedFor ? (names.get(s.waitedFor) ?? urnName(s.waitedFor)) : "-",
      s3(s.gap),
    ]),
    [false, false, false, true, true, true, false, true],
  );
}

/** The critical path with each step's floor, then the totals: ours vs. the floor. */
export function formatPath(report: CriticalPathReport): string {
  const rows = report.path.map((p) => [
    p.name,
    shortType(p.type),
    s3(p.start),
    s3(p.end),
    s3(p.duration),
    s3(p.gap),
    s3(p.floor.script),
    s3(p.floor.api),
    s3(p.floor.readiness),
  ]);
  const f = report.floor;
  return [
    table(["critical path", "type", "start", "end", "dur", "gap", "script", "api", "ready"], rows, [
      false,
      false,
      true,
      true,
      true,
      true,
      true,
      true,
      true,
    ]),
    `engine start ${s3(report.engineStartMs)} s, steps ${s3(report.pathStepsMs)} s, hand-overs ${s3(
      report.pathGapsMs,
    )} s, engine finish ${s3(report.engineFinishMs)} s = ${s3(report.totalMs)} s to the CLI's exit` +
      (report.afterCliMs !== undefined
        ? ` (then the Automation API's own reads of outputs and history, ${s3(report.afterCliMs)} s, not counted)`
        : ""),
    `floor ${s3(f.total)} s (scripts ${s3(f.script)} + API round trips ${s3(f.api)} + readiness ${s3(
      f.readiness,
    )}); ours ${s3(report.totalMs)} s = ${report.ratio.toFixed(2)}x the floor, ${report.ratioWithoutEngine.toFixed(
      2,
    )}x without the engine's start and finish`,
  ].join("\n");
}
