/**
 * Knowing every process a test run started, wherever it went. The Pulumi CLI starts each plugin in a process group
 * of its own, and a killed CLI leaves the language host, the program and the providers reparented to init, so
 * neither process groups nor the parent chain find them. A cgroup does: membership is inherited on fork and kept
 * across setsid and reparenting. The test run moves itself into a fresh cgroup once, and at the end everything in
 * it but the runner is a leftover. Where no cgroup hierarchy is writable, sessions are the fallback: a detached
 * spawn is its own session, and plugins stay in the CLI's session.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface ProcessInfo {
  pid: number;
  ppid: number;
  session: number;
  command: string;
}

/** Hierarchies tried in order: cgroup v2, then v1's controller-less `name=systemd` tree and `pids` controller. */
const CGROUP_ROOTS = [
  "/sys/fs/cgroup/unified",
  "/sys/fs/cgroup/systemd",
  "/sys/fs/cgroup/pids",
  "/sys/fs/cgroup",
];

export function processInfo(pid: number): ProcessInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may itself contain spaces or parentheses.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (rest[0] === "Z") return undefined; // a zombie holds nothing; its parent will reap it
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    return { pid, ppid: Number(rest[1]), session: Number(rest[3]), command: cmdline || `[${comm}]` };
  } catch {
    return undefined; // gone while we looked
  }
}

export function allProcesses(): ProcessInfo[] {
  return fs
    .readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map((d) => processInfo(Number(d)))
    .filter((p): p is ProcessInfo => p !== undefined);
}

/** Every live process of session `sid`: what a detached spawn and everything it started without setsid became. */
export function sessionMembers(sid: number): ProcessInfo[] {
  return allProcesses().filter((p) => p.session === sid);
}

/** SIGKILLs every member of a session and waits (bounded) until none is left. */
export async function killSession(sid: number, timeoutMs = 10_000): Promise<ProcessInfo[]> {
  const members = sessionMembers(sid);
  return killAll(members, timeoutMs);
}

async function killAll(procs: ProcessInfo[], timeoutMs: number): Promise<ProcessInfo[]> {
  for (const p of procs) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  const end = Date.now() + timeoutMs;
  while (procs.some((p) => processInfo(p.pid) !== undefined) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return procs;
}

export class ProcessTracker {
  private constructor(
    /** The cgroup directory, or undefined when the session fallback is in use. */
    readonly cgroup: string | undefined,
    private readonly self: number,
  ) {}

  /** Moves this process into a fresh cgroup (children started from now on are tracked). */
  static start(name = `forge-edge-test-${process.pid}`): ProcessTracker {
    for (const root of CGROUP_ROOTS) {
      const dir = path.join(root, name);
      try {
        if (!fs.existsSync(path.join(root, "cgroup.procs"))) continue;
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, "cgroup.procs"), String(process.pid));
        return new ProcessTracker(dir, process.pid);
      } catch {
        try {
          fs.rmdirSync(dir);
        } catch {
          // not created, or not empty
        }
      }
    }
    return new ProcessTracker(undefined, process.pid);
  }

  /** Processes started since `start()` that are still alive, this process excluded. */
  leftovers(): ProcessInfo[] {
    if (this.cgroup === undefined) {
      const sid = processInfo(this.self)?.session ?? this.self;
      return sessionMembers(sid).filter((p) => p.pid !== this.self && !this.isAncestor(p.pid));
    }
    return fs
      .readFileSync(path.join(this.cgroup, "cgroup.procs"), "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map(Number)
      .filter((pid) => pid !== this.self)
      .map((pid) => processInfo(pid))
      .filter((p): p is ProcessInfo => p !== undefined);
  }

  /** Waits up to `graceMs` for leftovers to exit on their own, then kills them; returns what had to be killed. */
  async reap(graceMs = 5_000): Promise<ProcessInfo[]> {
    const end = Date.now() + graceMs;
    while (this.leftovers().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    const left = this.leftovers();
    await killAll(left, 10_000);
    return left;
  }

  /** Moves this process back to the hierarchy's root and removes the (empty) cgroup. */
  close(): void {
    if (this.cgroup === undefined) return;
    try {
      fs.writeFileSync(path.join(path.dirname(this.cgroup), "cgroup.procs"), String(this.self));
      fs.rmdirSync(this.cgroup);
    } catch {
      // something is still inside: leave the cgroup for the next run's start() to reuse
    }
  }

  private isAncestor(pid: number): boolean {
    for (let p = processInfo(this.self)?.ppid ?? 0; p > 1; p = processInfo(p)?.ppid ?? 0) {
      if (p === pid) return true;
    }
    return false;
  }
}

export function describeProcesses(procs: ProcessInfo[]): string {
  return procs
    .map((p) => `  pid ${p.pid} (ppid ${p.ppid}, session ${p.session}): ${p.command.slice(0, 200)}`)
    .join("\n");
}

function cpuTicks(pid?: number): number {
  if (pid === undefined) {
    const [, ...f] = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/);
    const n = f.map(Number);
    return n[0] + n[1] + n[2] + n[5] + n[6] + n[7]; // user nice system irq softirq steal: everything but idle
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(rest[11]) + Number(rest[12]); // utime + stime
  } catch {
    return 0;
  }
}

export interface MachineLoad {
  /** Cores' worth of CPU used by processes other than this one during the sample. */
  busyCores: number;
  /** The busiest other processes in the sample, with the cores' worth each used. */
  top: { info: ProcessInfo; cores: number }[];
}

/** Samples the machine for `ms`: how much CPU everything but this process uses (a benchmark's noise floor). */
export async function machineLoad(ms = 2_000): Promise<MachineLoad> {
  const hz = 100; // USER_HZ: /proc tick unit on Linux
  const before = new Map(allProcesses().map((p) => [p.pid, cpuTicks(p.pid)]));
  const total0 = cpuTicks();
  const self0 = cpuTicks(process.pid);
  await new Promise((r) => setTimeout(r, ms));
  const seconds = ms / 1000;
  const top = allProcesses()
    .filter((p) => p.pid !== process.pid)
    .map((info) => ({ info, cores: (cpuTicks(info.pid) - (before.get(info.pid) ?? 0)) / hz / seconds }))
    .filter((p) => p.cores > 0.02)
    .sort((a, b) => b.cores - a.cores)
    .slice(0, 10);
  const busyCores = (cpuTicks() - total0 - (cpuTicks(process.pid) - self0)) / hz / seconds;
  return { busyCores: Math.max(0, busyCores), top };
}

/** Cores' worth of CPU each process used over `ms` (what an orphan does once its engine is gone). */
export async function processCpu(
  procs: ProcessInfo[],
  ms = 3_000,
): Promise<{ info: ProcessInfo; cores: number }[]> {
  const before = procs.map((p) => cpuTicks(p.pid));
  await new Promise((r) => setTimeout(r, ms));
  return procs.map((info, i) => ({ info, cores: (cpuTicks(info.pid) - before[i]) / 100 / (ms / 1000) }));
}
