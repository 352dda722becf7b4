/**
 * Process control for the harness: children started in their own process group with their output in a log file,
 * killed group-wide, and killed on the runner's exit if a test leaves them behind; plus the small waiting and
 * port helpers every component of the bench uses.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * n distinct TCP ports that were free on host a moment ago: every listener stays open until all n are picked, so the
 * kernel cannot hand the same port out twice (sequential freePort() calls once gave etcd and the apiserver one port).
 */
export async function freePorts(n: number, host = "127.0.0.1"): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      srv.unref();
      servers.push(srv);
      ports.push(
        await new Promise<number>((resolve, reject) => {
          srv.on("error", reject);
          srv.listen(0, host, () => {
            const addr = srv.address();
            resolve(typeof addr === "object" && addr !== null ? addr.port : 0);
          });
        }),
      );
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(() => r(undefined)))));
  }
}

/** True when something accepts TCP connections on host:port (host must be loopback). */
export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/** Thrown from a waitFor callback to stop waiting at once (e.g. the awaited process died). */
export class WaitAbort extends Error {}

/** Polls fn until it returns a non-undefined value, or throws after timeoutMs with what. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined>,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = "";
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      if (e instanceof WaitAbort) throw e;
      lastErr = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr})` : ""}`,
      );
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Process groups. Every child is started detached (its own process group) so stop() can kill
// the whole group; a process 'exit' hook kills whatever is left if the test runner dies early.

const liveGroups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  });
  // A runner killed by a signal never reaches 'exit' unless someone exits for it; a program with its own
  // handler (the demo cleans up first) keeps that job.
  for (const [sig, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(sig) === 1) process.exit(code);
    };
    process.on(sig, onSignal);
  }
}

export interface Managed {
  name: string;
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
  exitInfo(): string | undefined;
}

/** Spawns cmd in its own process group, stdout+stderr appended to logFile. */
export function spawnLogged(
  name: string,
  cmd: string,
  args: string[],
  logFile: string,
  env?: NodeJS.ProcessEnv,
): Managed {
  installExitHook();
  const fd = fs.openSync(logFile, "a");
  fs.writeSync(fd, `# ${new Date().toISOString()} ${cmd} ${args.join(" ")}\n`);
  const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd], env: env ?? process.env });
  fs.closeSync(fd);
  if (child.pid === undefined) throw new Error(`failed to start ${name} (${cmd})`);
  const pid = child.pid;
  liveGroups.add(pid);
  let info: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      info = `${name} exited (code ${String(code)}, signal ${String(signal)}); see ${logFile}`;
      liveGroups.delete(pid);
      resolve();
    });
    child.once("error", (e) => {
      info = `${name} failed to start: ${e.message}`;
      liveGroups.delete(pid);
      resolve();
    });
  });
  return { name, child, pid, exited, exitInfo: () => info };
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to the process group, SIGKILL after graceMs; waits until the group is gone. */
export async function killGroup(m: Managed, graceMs = 5000): Promise<void> {
  const pgid = m.pid;
  try {
    process.kill(-pgid, "SIGTERM");
  } catch {
    /* gone */
  }
  const deadline = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
  if (groupAlive(pgid)) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      /* gone */
    }
    while (groupAlive(pgid)) await sleep(20);
  }
  await Promise.race([m.exited, sleep(1000)]);
  liveGroups.delete(pgid);
}
