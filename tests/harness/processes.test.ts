import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";

import {
  killSession,
  machineLoad,
  processInfo,
  ProcessTracker,
  sessionMembers,
} from "../../harness/processes";

async function until(f: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  assert.ok(f(), "condition not reached in time");
}

describe("harness/processes", () => {
  it("a killed process group leaves children started in groups of their own; their session finds and reaps them", async () => {
    // Like the Pulumi CLI: `set -m` puts each background job in its own process group, as the CLI does for plugins.
    const cli = spawn("bash", ["-c", "set -m; sleep 60 & sleep 60 & wait"], {
      detached: true,
      stdio: "ignore",
    });
    const exited = new Promise((r) => cli.on("exit", r));
    await until(() => sessionMembers(cli.pid!).length === 3);
    process.kill(-cli.pid!, "SIGKILL");
    await exited;
    const orphans = sessionMembers(cli.pid!);
    assert.equal(orphans.length, 2, "both children outlived the killed group");
    assert.ok(orphans.every((p) => p.command === "sleep 60"));
    await killSession(cli.pid!);
    assert.deepEqual(sessionMembers(cli.pid!), []);
  });

  it("a tracker sees a process that left its session and parent, and reaps it", async () => {
    const tracker = ProcessTracker.start(`forge-edge-test-nested-${process.pid}`);
    try {
      assert.ok(tracker.cgroup, "a writable cgroup hierarchy (root on this machine kind)");
      const starter = spawn("bash", ["-c", "setsid sleep 61 </dev/null >/dev/null 2>&1 & echo $!"], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      const pid = Number(await new Promise<string>((r) => starter.stdout.on("data", (d) => r(String(d)))));
      await new Promise((r) => starter.on("exit", r));
      // setsid(1) runs after the shell printed the pid: wait until it has left our session and been reparented.
      await until(() => processInfo(pid)?.session === pid && processInfo(pid)?.command === "sleep 61");
      assert.notEqual(processInfo(pid)?.ppid, process.pid);
      assert.deepEqual(
        tracker.leftovers().map((p) => p.pid),
        [pid],
      );
      const reaped = await tracker.reap(100);
      assert.deepEqual(
        reaped.map((p) => p.command),
        ["sleep 61"],
      );
      assert.equal(processInfo(pid), undefined);
      assert.deepEqual(tracker.leftovers(), []);
    } finally {
      tracker.close();
    }
  });

  it("measures the CPU other processes use, naming the busiest (what `npm run bench` refuses to measure beside)", async () => {
    const spinner = spawn("bash", ["-c", "while :; do :; done"], { stdio: "ignore" });
    try {
      const load = await machineLoad(1_000);
      const mine = load.top.find((t) => t.info.pid === spinner.pid);
      assert.ok(mine, `the spinning process is among the busiest: ${JSON.stringify(load.top)}`);
      assert.ok(mine.cores > 0.3, `it used ${mine.cores} cores`);
      assert.ok(
        load.busyCores >= mine.cores * 0.9,
        `machine busy ${load.busyCores} ≥ the spinner's ${mine.cores}`,
      );
    } finally {
      spinner.kill("SIGKILL");
      await new Promise((r) => spinner.on("exit", r));
    }
  });
});
