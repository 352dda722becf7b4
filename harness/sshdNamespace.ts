/**
 * A test host's sshd in a mount + UTS namespace of its own (`unshare` running the host's namespace-setup.sh, which
 * makes the host's private mounts and then execs sshd), and the ending of everything inside that namespace.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { canConnect, sleep, spawnLogged, waitFor, WaitAbort, type Managed } from "./proc";

/** One process 'exit' listener for every live host (a fleet of hosts would otherwise trip MaxListeners). */
const exitHooks = new Set<() => void>();
process.on("exit", () => {
  for (const hook of exitHooks) hook();
});

function mountNsOf(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

function pidsInMountNs(ns: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (mountNsOf(pid) === ns) out.push(pid);
  }
  return out;
}

/**
 * A host's sshd, started by namespace-setup.sh under `unshare` in a mount + UTS namespace of its own. Stopping it
 * kills every process in that namespace (sshd, sessions, setsid'd forwarders), so the namespace and its mounts go
 * away; a process 'exit' hook does the same if the test runner dies without stop().
 */
export class NamespacedSshd {
  private sshd: Managed;
  /** The host's mount namespace, known once sshd is up. */
  private ns: string | undefined;
  private stopped: Promise<number> | undefined;
  private readonly ownNs = mountNsOf(process.pid);

  constructor(
    private readonly name: string,
    private readonly ip: string,
    private readonly dir: string,
    private readonly setupScript: string,
  ) {
    this.sshd = this.spawn();
  }

  /** Waits until sshd accepts connections and runs in a namespace of its own; stops it and throws otherwise. */
  async boot(): Promise<void> {
    exitHooks.add(this.onExit);
    try {
      await waitFor(
        `sshd of ${this.name} on ${this.ip}:22`,
        30000,
        async () => {
          const info = this.sshd.exitInfo();
          if (info !== undefined)
            throw new WaitAbort(`${info}\n${fs.readFileSync(path.join(this.dir, "sshd.log"), "utf8")}`);
          return (await canConnect(this.ip, 22, 500)) ? true : undefined;
        },
        100,
      );
      this.ns = mountNsOf(this.sshd.pid);
      if (this.ns === undefined || this.ns === this.ownNs)
        throw new Error(`sshd of ${this.name} is not in its own mount namespace`);
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Kills every process in the namespace; idempotent. Resolves with the milliseconds it took. */
  stop(): Promise<number> {
    this.stopped ??= this.killNamespace();
    return this.stopped;
  }

  /** Stops, then starts sshd again on the same files: a reboot. */
  async restart(): Promise<void> {
    await this.stop();
    this.ns = undefined;
    this.stopped = undefined;
    this.sshd = this.spawn();
    await this.boot();
  }

  private spawn(): Managed {
    return spawnLogged(
      `sshd(${this.name})`,
      "/usr/bin/unshare",
      ["--mount", "--uts", "--propagation", "private", "/bin/bash", this.setupScript],
      path.join(this.dir, "sshd.log"),
    );
  }

  /** The host's mount namespace, or undefined when unknown or the runner's own (sshd not yet unshared). */
  private foreignNs(): string | undefined {
    const target = this.ns ?? mountNsOf(this.sshd.pid);
    return target !== undefined && target !== this.ownNs ? target : undefined;
  }

  private readonly onExit = (): void => {
    const target = this.foreignNs();
    if (target === undefined) return;
    for (const pid of pidsInMountNs(target)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  };

  private async killNamespace(): Promise<number> {
    exitHooks.delete(this.onExit);
    const s = Date.now();
    const target = this.foreignNs();
    const killAll = (sig: NodeJS.Signals): number => {
      const pids = target !== undefined ? pidsInMountNs(target) : [this.sshd.pid];
      for (const pid of pids) {
        try {
          process.kill(pid, sig);
        } catch {
          /* gone */
        }
      }
      return pids.length;
    };
    killAll("SIGTERM");
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && (target !== undefined ? pidsInMountNs(target).length : 0) > 0) {
      await sleep(50);
    }
    if (target !== undefined) {
      const hardDeadline = Date.now() + 5000;
      while (killAll("SIGKILL") > 0) {
        if (Date.now() > hardDeadline)
          throw new Error(`sshHost ${this.name}: processes in ${target} survive SIGKILL`);
        await sleep(50);
      }
    }
    await Promise.race([this.sshd.exited, sleep(2000)]);
    exitHooks.delete(this.onExit);
    return Date.now() - s;
  }
}
