/**
 * `npm run fleet -- preview|up|drift --stack thor [--report FILE] [--probe-seconds N] [-- <pulumi args>]`: runs the
 * engine on a fleet stack with the sites that do not answer left out, instead of failing the run on them.
 *
 * Why a driver and not the Kubernetes provider's `skipUpdateUnreachable` (pulumi-kubernetes v4.25.0,
 * provider/pkg/provider/provider.go): that option only covers the Kubernetes objects, and hides them. Its Check
 * returns the old inputs when the cluster is unreachable, so a preview shows no change for anything pending on that
 * site (a warning aside), and its Read returns the old state, so the drift check passes on a site nobody could read.
 * The node steps are not covered at all: a remote Command dials during `up` (not during preview) and fails after
 * `dialErrorLimit` attempts (pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go), which stops the site
 * waves behind it. So the driver decides per site, before the engine starts, and says so:
 *
 * 1. Probes every site, all at once, each endpoint within `--probe-seconds` (default 5): each node's SSH port must
 *    send its SSH version line (a site is skipped when one does not), and the first server's 6443 is tried too (its
 *    failure alone is reported, not skipped: see siteReachability).
 * 2. Prints one table per site (reachable / unreachable, and which endpoint failed why) on stderr.
 * 3. Runs `pulumi preview|up` with `--exclude` URN globs for every unreachable site. The engine then emits a "same"
 *    step for each of that site's resources (pkg/resource/deploy/step_generator.go: an existing resource not in the
 *    operation keeps its state and outputs, without a Check, Diff or Read), so its state is untouched and the next run
 *    that reaches it converges it. Its Kubernetes provider is still configured (the engine always includes providers)
 *    and does not fail on an unreachable cluster: it only marks it unreachable.
 * 4. Tells the program which sites are skipped (`FORGE_EDGE_SKIP_SITES`): the site waves are planned over the sites
 *    that answered, so a skipped site holds up no wave and the canary of this run is a site that is really rolled
 *    (were it only excluded, a skipped canary would let every later wave start unproven).
 *
 * Secrets never reach the output: the configuration is read without `--show-secrets` (only hosts and ports are used).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";

import { K3S_API_PORT, SKIP_SITES_ENV } from "../config/fleetRun";
import { ConfigError, parseStackConfig, StackConfig } from "../config/stack";
import { ConfigEntryJson, configSource, PROJECT, pulumiBin, runMain } from "./stackConfig";

const USAGE =
  "usage: npm run fleet -- preview|up|drift --stack <stack> [--cwd <project dir>] [--report <file>] [--probe-seconds <n>] [-- <pulumi args>]";

export type FleetOp = "preview" | "up" | "drift";

export interface FleetArgs {
  op: FleetOp;
  stack: string;
  cwd: string;
  report?: string;
  probeSeconds: number;
  /** Passed to pulumi after ours (`--json`, `--diff`, `--target ...`). */
  pulumiArgs: string[];
}

export function parseFleetArgs(argv: readonly string[], cwd = process.cwd()): FleetArgs {
  const [op, ...rest] = argv;
  if (op !== "preview" && op !== "up" && op !== "drift")
    throw new Error(`unknown operation "${op}"\n${USAGE}`);
  const args: FleetArgs = { op, stack: "", cwd, probeSeconds: 5, pulumiArgs: [] };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const value = () => {
      const v = rest[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === "--") {
      args.pulumiArgs = rest.slice(i + 1);
      break;
    } else if (a === "--stack" || a === "-s") args.stack = value();
    else if (a === "--cwd") args.cwd = value();
    else if (a === "--report") args.report = value();
    else if (a === "--probe-seconds") {
      args.probeSeconds = Number(value());
      if (!(args.probeSeconds > 0 && args.probeSeconds <= 120))
        throw new Error(`--probe-seconds must be a number from 1 to 120\n${USAGE}`);
    } else throw new Error(`unknown argument "${a}"\n${USAGE}`);
  }
  if (!/^[A-Za-z0-9_./-]+$/.test(args.stack)) throw new Error(`--stack is required\n${USAGE}`);
  return args;
}

export interface Endpoint {
  /** What it is, for the table: `ssh <node>` or `api`. */
  what: string;
  host: string;
  port: number;
  /** ssh: the server must send its SSH version line; tcp: a connection is enough. */
  kind: "ssh" | "tcp";
}

/** What must answer for a site to be rolled: every node's SSH, and the first server's Kubernetes API. */
export function siteEndpoints(config: StackConfig): { site: string; endpoints: Endpoint[] }[] {
  return config.sites.map((s) => ({
    site: s.name,
    endpoints: [
      ...s.nodes.map((n) => ({ what: `ssh ${n.name}`, host: n.host, port: n.port, kind: "ssh" as const })),
      { what: "api", host: s.nodes[0].host, port: K3S_API_PORT, kind: "tcp" as const },
    ],
  }));
}

export interface ProbeResult extends Endpoint {
  ok: boolean;
  /** Why it failed, or how long it took. */
  detail: string;
}

export interface SiteReachability {
  site: string;
  reachable: boolean;
  probes: ProbeResult[];
}

/**
 * A site is reachable when every node answers SSH: an offline site (power, WAN) answers nothing. The API alone down
 * does not skip the site: a site not yet deployed has no API, and a K3s that is down on a box that answers is a fault
 * the run must show, not hide.
 */
export function siteReachability(site: string, probes: ProbeResult[]): SiteReachability {
  return { site, reachable: probes.every((p) => p.ok || p.kind !== "ssh"), probes };
}

/**
 * The `--exclude` globs that leave a site out. In the engine's globs `*` matches within one URN segment (no `:`)
 * and `**` anything (pkg/resource/deploy/deployment.go, UrnTargets.getMatcher). A site's component is
 * `forge:site:Site::<site>`; everything in it has that type first in its type chain and a name `<site>-...`
 * (config/sections/sites.ts refuses a site name that starts with another's name and a dash, so these never match
 * another site's resources).
 */
export function siteExcludes(stack: string, site: string, project = PROJECT): string[] {
  const base = `urn:pulumi:${stack}::${project}::forge:site:Site`;
  return [`${base}::${site}`, `${base}$**::${site}-*`];
}

/** Whether the pulumi arguments pick resources with `--target` (which the CLI refuses together with `--exclude`). */
export function hasTarget(pulumiArgs: readonly string[]): boolean {
  return pulumiArgs.some((a) => a === "--target" || a === "-t" || a.startsWith("--target="));
}

/**
 * The pulumi command line of an operation with these sites left out. With `--target` the user picks the sites
 * (the CLI refuses `--target` with `--exclude`, pkg/cmd/pulumi/operations/up.go), so nothing is excluded.
 */
/**
 * The engine's environment for an operation. A preview (and the drift check, a preview with --refresh) persists
 * nothing, yet the CLI's snapshot manager re-serialises and verifies the whole snapshot after every step
 * (pulumi/pulumi pkg/backend/snapshot.go, v3.274.1): its cost grows with the square of the fleet (58 % of the CLI's
 * CPU at 10 sites in the fleet bench). PULUMI_SKIP_CHECKPOINTS saves once at the end instead, which changes nothing
 * for a preview. Not for `up`: there the checkpoints are what a run interrupted part-way leaves behind. A value the
 * caller set wins.
 */
export function engineEnv(
  op: FleetOp,
  env: NodeJS.ProcessEnv,
  skipped: readonly string[],
): NodeJS.ProcessEnv {
  const previewOnly = op === "up" ? {} : { PULUMI_SKIP_CHECKPOINTS: "true" };
  return { ...previewOnly, ...env, [SKIP_SITES_ENV]: skipped.join(",") };
}

export function pulumiCommandLine(args: FleetArgs, skipped: readonly string[]): string[] {
  const op =
    args.op === "up"
      ? ["up", "--yes", "--skip-preview"]
      : args.op === "drift"
        ? ["preview", "--refresh", "--expect-no-changes"]
        : ["preview"];
  const excludes = hasTarget(args.pulumiArgs)
    ? []
    : skipped.flatMap((s) => siteExcludes(args.stack, s)).flatMap((g) => ["--exclude", g]);
  return [...op, "--stack", args.stack, "--non-interactive", ...excludes, ...args.pulumiArgs];
}

/** The per-site table printed before the engine runs. */
export function formatReachability(stack: string, sites: readonly SiteReachability[]): string {
  const rows = sites.map((s) => {
    const failed = s.probes.filter((p) => !p.ok).map((p) => `${p.what} ${p.host}:${p.port} ${p.detail}`);
    const detail = !s.reachable
      ? failed.join("; ")
      : failed.length === 0
        ? `${s.probes.length} endpoint(s) answered`
        : `SSH answered; ${failed.join("; ")} (not deployed yet, or K3s down)`;
    return [s.site, s.reachable ? "reachable" : "UNREACHABLE: skipped", detail];
  });
  const head = ["site", "status", "detail"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  const skipped = sites.filter((s) => !s.reachable).length;
  return [
    `stack ${stack}: ${sites.length - skipped} of ${sites.length} site(s) reachable`,
    line(head),
    ...rows.map(line),
  ].join("\n");
}

/** What `--report` writes: the input of tools/previewSummary.ts and of a pipeline's own checks. */
export interface FleetReport {
  stack: string;
  op: FleetOp;
  sites: SiteReachability[];
  skipped: string[];
  excludes: string[];
  /** The engine's exit code; null when it did not run (no site reachable). */
  exitCode: number | null;
}

/** Probes one endpoint within `seconds`. */
export function probe(e: Endpoint, seconds: number): Promise<ProbeResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let done = false;
    const sock = net.connect({ host: e.host, port: e.port });
    const finish = (ok: boolean, detail: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...e, ok, detail: ok ? `${Date.now() - started} ms` : detail });
    };
    const timer = setTimeout(
      () => finish(false, `no ${e.kind === "ssh" ? "SSH version line" : "connection"} within ${seconds}s`),
      seconds * 1000,
    );
    let buf = "";
    sock.on("connect", () => {
      if (e.kind === "tcp") finish(true, "");
    });
    sock.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      if (/^SSH-/m.test(buf)) finish(true, "");
      else if (buf.length > 8192) finish(false, "answered, but not with SSH");
    });
    sock.on("error", (err: NodeJS.ErrnoException) => finish(false, err.code ?? err.message));
    sock.on("close", () => finish(false, "closed the connection"));
  });
}

export async function probeFleet(config: StackConfig, seconds: number): Promise<SiteReachability[]> {
  return Promise.all(
    siteEndpoints(config).map(async (s) =>
      siteReachability(s.site, await Promise.all(s.endpoints.map((e) => probe(e, seconds)))),
    ),
  );
}

export interface FleetIo {
  /** Where the table and the driver's own lines go (default stderr: pulumi's own output keeps stdout). */
  log(line: string): void;
  /** Where pulumi's stdout goes (default: ours), e.g. `--json` for tools/previewSummary.ts. */
  out?(chunk: string): void;
  /** Where pulumi's stderr goes (default: ours). */
  err?(chunk: string): void;
  env?: NodeJS.ProcessEnv;
}

/** The stack's configuration as `pulumi config --json` shows it, secrets not decrypted. */
function readConfigNoSecrets(args: FleetArgs, env: NodeJS.ProcessEnv): Record<string, ConfigEntryJson> {
  const r = spawnSync(env.PULUMI ?? pulumiBin(), ["config", "--json", "--stack", args.stack], {
    cwd: args.cwd,
    env,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0)
    throw new Error(`\`pulumi config --json --stack ${args.stack}\` failed: ${r.stderr.trim()}`);
  const entries = JSON.parse(r.stdout) as Record<string, ConfigEntryJson>;
  // A secret shows without its value; the parser only checks that the key is set, and set as a secret.
  for (const e of Object.values(entries)) if (e.secret && e.value === undefined) e.value = "[secret]";
  return entries;
}

/** Runs the driver; resolves with its exit code (the engine's, or 0 when no site could be reached). */
export async function fleetMain(
  argv: readonly string[],
  io: FleetIo = { log: (l) => console.error(l) },
): Promise<number> {
  const args = parseFleetArgs(argv);
  const env = io.env ?? process.env;
  let config: StackConfig;
  try {
    // No --show-secrets: the probe needs hosts and ports only, and nothing decrypted can be printed.
    config = parseStackConfig(args.stack, configSource(readConfigNoSecrets(args, env)));
  } catch (e) {
    if (e instanceof ConfigError) {
      io.log(e.message);
      return 2;
    }
    throw e;
  }
  const sites = await probeFleet(config, args.probeSeconds);
  io.log(formatReachability(args.stack, sites));
  const skipped = sites.filter((s) => !s.reachable).map((s) => s.site);
  const report: FleetReport = {
    stack: args.stack,
    op: args.op,
    sites,
    skipped,
    excludes: skipped.flatMap((s) => siteExcludes(args.stack, s)),
    exitCode: null,
  };
  const write = () => {
    if (args.report) fs.writeFileSync(args.report, JSON.stringify(report, null, 2) + "\n");
  };
  if (config.layout === "nodes" && skipped.length > 0) {
    // A one-site stack has no other site to roll: its only site is skipped, the run does nothing.
    io.log(`stack ${args.stack}: its only site is unreachable; nothing to ${args.op}`);
    write();
    return 0;
  }
  if (skipped.length === config.sites.length) {
    io.log(`stack ${args.stack}: no site reachable; nothing to ${args.op}`);
    write();
    return 0;
  }
  if (skipped.length > 0 && hasTarget(args.pulumiArgs))
    io.log(`--target given: nothing is excluded; a targeted site that is unreachable fails the run`);
  else if (skipped.length > 0)
    io.log(`skipped this run (state kept, the next run picks them up): ${skipped.join(", ")}`);
  const cmd = pulumiCommandLine(args, skipped);
  report.exitCode = await new Promise<number>((resolve, reject) => {
    const child = spawn(env.PULUMI ?? pulumiBin(), cmd, {
      cwd: args.cwd,
      env: engineEnv(args.op, env, skipped),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out = io.out ?? ((c: string) => process.stdout.write(c));
    child.stdout.setEncoding("utf8").on("data", out);
    child.stderr
      .setEncoding("utf8")
      .on("data", (c: string) => (io.err ?? ((x: string) => process.stderr.write(x)))(c));
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? 1));
  });
  write();
  return report.exitCode;
}

if (require.main === module) runMain(() => fleetMain(process.argv.slice(2)));
