/**
 * Times the node scripts a `pulumi up` runs on the simulated hosts, from the host side: the bench's measure of a
 * script's own run time (the floor of a remote step), without the SSH dial, the provider or the engine around it.
 *
 * How: every remote step runs `bash -c "<script>" forge-<script name>` (scripts/render.ts), under the host's sshd.
 * The timer polls the process tree below the given sshd processes (`/proc/<pid>/task/<pid>/children`, a few reads
 * per poll), and for each process whose last argument is `forge-<name>`, takes the start from the kernel
 * (`/proc/<pid>/stat` starttime, 10 ms ticks) and the end from the first poll that no longer sees it.
 * Resolution: the poll interval (default 5 ms) at the end, one tick at the start.
 */
import * as fs from "node:fs";

export interface ScriptRun {
  /** The script's name, e.g. `k3s-install`. */
  script: string;
  pid: number;
  /** Epoch milliseconds. */
  start: number;
  end: number;
}

const CLK_TCK = 100;

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  const s = read(`/proc/${pid}/task/${pid}/children`);
  return s ? s.trim().split(/\s+/).filter(Boolean).map(Number) : [];
}

/** Kernel start time of a process, epoch milliseconds (undefined once it is gone). */
function startOf(pid: number, bootMs: number): number | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return bootMs + (Number(fields[19]) * 1000) / CLK_TCK; // field 22 (starttime), counted from field 3
}

/** Epoch milliseconds of the boot, as the kernel's start times count from it. */
function bootEpochMs(): number {
  const uptime = Number((read("/proc/uptime") ?? "0").split(" ")[0]);
  return Date.now() - uptime * 1000;
}

/** The sshd processes this process started (the site's hosts), each with the host address it serves. */
export function ownSshds(parent = process.pid): { pid: number; hostIp: string | undefined }[] {
  return childrenOf(parent)
    .filter((pid) => read(`/proc/${pid}/comm`)?.trim() === "sshd")
    .map((pid) => ({
      pid,
      hostIp: /^FORGE_HOST_IP='?([^'\n]*)'?$/m.exec(
        read(`/proc/${pid}/root/opt/forge-harness/env`) ?? "",
      )?.[1],
    }));
}

export class ScriptTimer {
  private readonly bootMs = bootEpochMs();
  private readonly live = new Map<number, { script: string; start: number; lastSeen: number }>();
  private readonly done: ScriptRun[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sshdPids: number[],
    private readonly intervalMs = 5,
  ) {}

  start(): this {
    this.timer = setInterval(() => this.poll(), this.intervalMs);
    return this;
  }

  /** Stops polling; every script run seen, in start order (one still running ends now). */
  stop(): ScriptRun[] {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const now = Date.now();
    for (const [pid, r] of this.live) this.done.push({ script: r.script, pid, start: r.start, end: now });
    this.live.clear();
    return [...this.done].sort((a, b) => a.start - b.start);
  }

  private poll(): void {
    const now = Date.now();
    const seen = new Set<number>();
    const stack = [...this.sshdPids];
    while (stack.length) {
      const pid = stack.pop()!;
      for (const child of childrenOf(pid)) {
        // A script's own children (its subshells carry the same command line) are part of its run.
        const known = this.live.get(child);
        if (known) {
          known.lastSeen = now;
          seen.add(child);
          continue;
        }
        const argv = (read(`/proc/${child}/cmdline`) ?? "").split("\0").filter(Boolean);
        const script = /^forge-([a-z0-9-]+)$/.exec(argv[argv.length - 1] ?? "")?.[1];
        const start = script && argv.includes("-c") ? startOf(child, this.bootMs) : undefined;
        if (script && start !== undefined) {
          this.live.set(child, { script, start, lastSeen: now });
          seen.add(child);
        } else stack.push(child);
      }
    }
    for (const [pid, r] of this.live) {
      if (seen.has(pid)) continue;
      // Gone between the last poll that saw it and this one: the midpoint, within half an interval.
      this.done.push({ script: r.script, pid, start: r.start, end: (r.lastSeen + now) / 2 });
      this.live.delete(pid);
    }
  }
}
