/**
 * Faults on a two-node P40 site (server + agent): an unreachable host, a bootstrap step failing halfway, a killed
 * `pulumi up`, a wrong host key, and destroying with a host gone. Each ends with the stack converged or cleanly
 * removed, and with no secret in the node-side logs.
 */
import * as assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";

import { EngineStack, PROJECT, projectCopy } from "../../harness/engine";
import { useSite } from "../../harness/fixture";
import { killSession, processCpu, sessionMembers } from "../../harness/processes";
import { loadToolchain } from "../../harness/toolchain";
import { Site, SiteNode } from "../../harness/site";

const NODES: SiteNode[] = [
  { name: "p40-01", role: "server" },
  { name: "p40-02", role: "agent" },
];
export const MEASURED: Record<string, string> = {};

interface StateResource {
  urn: string;
  type: string;
}

async function resources(es: EngineStack): Promise<StateResource[]> {
  const d = (await es.stack.exportStack()).deployment as { resources?: StateResource[] };
  return d.resources ?? [];
}

describe("e2e: faults and secrets on a two-node P40 site", function () {
  this.timeout(25 * 60_000);
  let site: Site;
  let es: EngineStack;
  let dir: string;
  const [server, agent] = [0, 1];

  useSite(this, {
    name: "faults",
    sku: "p40",
    nodes: NODES,
    ipBase: 80,
    ready: (f) => {
      ({ site, es, dir } = f);
    },
    beforeStop: () => {
      console.log("\n  fault measurements:");
      for (const [k, v] of Object.entries(MEASURED)) console.log(`    ${k}: ${v}`);
    },
  });

  it("an unreachable host fails only its own steps, in bounded time, and the rest of the site serves", async () => {
    await site.hosts[agent].stop();
    const t = Date.now();
    await assert.rejects(es.stack.up(), /p40-02/);
    const took = (Date.now() - t) / 1000;
    MEASURED["unreachable-host"] =
      `up failed after ${took.toFixed(1)} s (dialErrorLimit 4 × perDialTimeout 15 s bound)`;
    assert.ok(took < 240, `took ${took}s`);
    const urns = (await resources(es)).map((r) => r.urn);
    assert.ok(
      urns.some((u) => u.endsWith("::p40-01-k3s")),
      "the server was bootstrapped",
    );
    assert.ok(!urns.some((u) => u.includes("p40-02-k3s")), "nothing is recorded for the unreachable node");
    const node = (await site.kube.get("/api/v1/nodes/p40-01")) as {
      status: { conditions: { type: string; status: string }[] };
    };
    assert.equal(node.status.conditions.find((c) => c.type === "Ready")?.status, "True");
  });

  it("a host that accepts TCP but never speaks SSH fails its node within the probe's bound, naming the node", async () => {
    // What the real provider would hang on forever: its perDialTimeout bounds only the TCP connect.
    const silent = net.createServer(() => undefined); // accepts, then says nothing
    const held: net.Socket[] = [];
    silent.on("connection", (s) => held.push(s));
    await new Promise<void>((r) => silent.listen(site.hosts[agent].port, site.hosts[agent].host, r));
    try {
      const t = Date.now();
      await assert.rejects(es.stack.up(), (e: Error) => {
        assert.match(e.message, /node p40-02 \(127\.[0-9.]+:22\) accepted no SSH session within 20s/);
        assert.match(e.message, /accepted TCP but sent no SSH version line/);
        return true;
      });
      MEASURED["silent-ssh-host"] =
        `up failed after ${((Date.now() - t) / 1000).toFixed(1)} s (probe bound 20 s)`;
      assert.ok(held.length > 0, "the probe reached the silent host");
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it("a bootstrap step failing halfway leaves the node re-runnable, and a rerun converges", async () => {
    await site.hosts[agent].restart();
    site.hosts[agent].fault("install.sh", "[ERROR]  simulated: download of the K3s images failed");
    await assert.rejects(es.stack.up(), /simulated: download of the K3s images failed/);
    const calls = site.hosts[agent].calls().join("\n");
    assert.match(calls, /nvidia-smi --query-gpu/, "the runtime step ran before the failure");
    site.hosts[agent].fault("install.sh", undefined);
    const res = await es.stack.up();
    assert.equal(res.summary.result, "succeeded");
    const node = (await site.kube.get("/api/v1/nodes/p40-02")) as {
      status: { allocatable: Record<string, string> };
    };
    assert.ok(node, "the agent joined");
    await es.stack.preview({ expectNoChanges: true });
  });

  it("a killed pulumi up leaves state that refresh + up repair", async () => {
    // The user's path: `pulumi up` from the CLI on the project (through the Node language host), killed with
    // SIGKILL while it upgrades K3s — server first, then the agent — in the middle of the agent's install.
    await es.stack.setConfig(`${PROJECT}:k3sVersion`, { value: "v1.36.5+k3s1" });
    const project = projectCopy(dir);
    fs.copyFileSync(
      path.join(es.stack.workspace.workDir, "Pulumi.faults.yaml"),
      path.join(project, "Pulumi.faults.yaml"),
    );
    const before = site.hosts[agent].calls().length;
    const tc = loadToolchain(["pulumi"]);
    const cli = spawn(
      tc.bin.pulumi,
      ["up", "--yes", "--skip-preview", "--non-interactive", "--stack", "faults"],
      {
        cwd: project,
        env: { ...process.env, ...es.env, PATH: `${path.dirname(tc.bin.pulumi)}:${process.env.PATH}` },
        detached: true,
        stdio: "ignore",
      },
    );
    const exited = new Promise<number | null>((r) => cli.on("exit", (code) => r(code)));
    const end = Date.now() + 180_000;
    while (
      !site.hosts[agent]
        .calls()
        .slice(before)
        .some((l) => l.includes("install.sh")) &&
      Date.now() < end
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(Date.now() < end, "the CLI never reached the agent's install");
    // SIGKILL reaches the CLI's process group only: the CLI starts every plugin (language host, providers) in a
    // group of its own, so they outlive it. They all stay in the CLI's session (it was started with setsid), which
    // is how the drill finds and reaps them — and the cleanup a user needs after `kill -9` (see the README).
    process.kill(-cli.pid!, "SIGKILL");
    assert.notEqual(await exited, 0);
    // What the orphans do once their engine is gone (the issue saw the program spin and grow): measured, then reaped.
    const usage = await processCpu(sessionMembers(cli.pid!));
    const orphans = await killSession(cli.pid!);
    assert.deepEqual(
      sessionMembers(cli.pid!).map((p) => p.command),
      [],
      "every process the killed CLI started was reaped",
    );
    MEASURED["killed-up orphans"] =
      `${orphans.length} process(es) outlived the killed CLI (cores used over 3 s): ${usage
        .map((u) => `${path.basename(u.info.command.split(" ")[0])} ${u.cores.toFixed(2)}`)
        .join(", ")}`;
    assert.match(
      site.hosts[server].calls().join("\n"),
      /INSTALL_K3S_VERSION=v1\.36\.5\+k3s1/,
      "the server was upgraded first",
    );
    // Repair: release the backend's lock, refresh (dropping pending creates), then up.
    await es.stack.cancel().catch(() => undefined);
    await es.stack.refresh({ clearPendingCreates: true });
    const res = await es.stack.up();
    assert.equal(res.summary.result, "succeeded");
    await es.stack.preview({ expectNoChanges: true });
    assert.match(site.hosts[agent].calls().join("\n"), /INSTALL_K3S_VERSION=v1\.36\.5\+k3s1/);
    MEASURED["killed-up"] =
      "CLI `pulumi up` SIGKILLed during the agent's K3s upgrade; cancel + refresh --clear-pending-creates + up converged";
  });

  it("refuses a node whose SSH host key does not match the pinned one, running nothing", async () => {
    const cfg = JSON.parse(site.config.nodes.value) as Record<string, unknown>[];
    const wrong = { ...cfg[1], hostKey: site.hosts[server].hostKeyLine };
    await es.stack.setConfig(`${PROJECT}:nodes`, { value: JSON.stringify([cfg[0], wrong]) });
    const before = site.hosts[agent].calls().length;
    // Changing the pinned key changes the connection, so the agent's steps run again and must be refused.
    await assert.rejects(es.stack.up(), /host key|handshake/i);
    assert.equal(site.hosts[agent].calls().length, before, "a command ran despite the wrong host key");
    await es.stack.setConfig(`${PROJECT}:nodes`, { value: JSON.stringify(cfg) });
    const res = await es.stack.up();
    assert.equal(res.summary.result, "succeeded");
  });

  it("keeps the SSH key and the K3s token out of node-side logs", () => {
    const token = fs
      .readFileSync(path.join(site.hosts[server].rootDirs["/etc/rancher"], "k3s", "token"), "utf8")
      .trim();
    const keyLine = site.key.privateKeyPem.split("\n")[1];
    for (const h of site.hosts) {
      const logs = [
        h.calls().join("\n"),
        fs.readFileSync(path.join(dir, "hosts", h.name, "sshd.log"), "utf8"),
      ].join("\n");
      assert.ok(!logs.includes(token), `${h.name}: the K3s token is in a node-side log`);
      assert.ok(!logs.includes(keyLine), `${h.name}: the SSH key is in a node-side log`);
    }
  });

  it("destroy with a host gone: continue-on-error, then `pulumi state delete` of that node, leaves an empty stack", async () => {
    await site.hosts[agent].stop();
    await assert.rejects(es.stack.destroy({ continueOnError: true }));
    const left = await resources(es);
    assert.ok(
      left.some((r) => r.urn.includes("p40-02")),
      "the dead node's steps stay in the state",
    );
    assert.deepEqual(
      left.filter((r) => r.type.startsWith("kubernetes:")).map((r) => r.urn),
      [],
      "every Kubernetes object was deleted",
    );
    // The documented path: drop the dead node's resources from the state (children first), then destroy the rest.
    const tc = loadToolchain(["pulumi"]);
    const dead = left.filter((r) => r.urn.includes("p40-02")).reverse();
    for (const r of dead) {
      execFileSync(
        tc.bin.pulumi,
        ["state", "delete", r.urn, "--target-dependents", "--yes", "--non-interactive", "--stack", "faults"],
        {
          cwd: es.stack.workspace.workDir,
          env: { ...process.env, ...es.env },
          stdio: "pipe",
        },
      );
    }
    const res = await es.stack.destroy();
    assert.equal(res.summary.result, "succeeded");
    assert.equal((await resources(es)).length, 0);
    assert.match(
      site.hosts[server].calls().join("\n"),
      /k3s-uninstall\.sh/,
      "the live server was uninstalled",
    );
    MEASURED["destroy-host-gone"] =
      "destroy --continue-on-error, state delete --target-dependents <dead node>, destroy: empty stack";
  });
});
