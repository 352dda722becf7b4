/**
 * A stack as a fleet of sites (issue 10), through the real engine: three single-node P40 sites, each its own
 * simulated control plane and SSH host, rolled out in site waves (a canary site, then the rest at once).
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EngineEvent } from "@pulumi/pulumi/automation";

import { run } from "../../program";
import { EngineStack, openStack, PROJECT } from "../../harness/engine";
import { SimulatedFleet, startFleet } from "../../harness/fleetSites";
import { Site } from "../../harness/site";

const SITES = ["site-a", "site-b", "site-c"];
const [CANARY, ...REST] = SITES;

interface Step {
  phase: "start" | "done";
  op: string;
  urn: string;
}

/** The URN's resource name and its own type (the last of the parent chain). */
const nameOf = (urn: string) => urn.split("::")[3];
const typeOf = (urn: string) => urn.split("::")[2].split("$").pop()!;
/** A step of a resource the engine acts on: not the stack, not one of the program's components. */
const isResourceStep = (urn: string) =>
  typeOf(urn) !== "pulumi:pulumi:Stack" && !typeOf(urn).startsWith("forge:");
/** Resources the engine computes itself, reaching no host and no cluster. */
const isLocalOnly = (urn: string) => typeOf(urn).startsWith("random:");
const ofSite = (site: string, urn: string) => nameOf(urn) === site || nameOf(urn).startsWith(`${site}-`);

function recorder(): { steps: Step[]; onEvent: (e: EngineEvent) => void } {
  const steps: Step[] = [];
  return {
    steps,
    onEvent: (e) => {
      const pre = e.resourcePreEvent?.metadata;
      const done = e.resOutputsEvent?.metadata;
      if (pre) steps.push({ phase: "start", op: pre.op, urn: pre.urn });
      if (done) steps.push({ phase: "done", op: done.op, urn: done.urn });
    },
  };
}

async function nodeNames(site: Site): Promise<string[]> {
  const list = (await site.kube.get("/api/v1/nodes")) as { items: { metadata: { name: string } }[] };
  return list.items.map((n) => n.metadata.name).sort();
}

describe("e2e: a fleet of three single-node sites, rolled out in site waves", function () {
  this.timeout(30 * 60_000);
  let dir: string;
  let fleet: SimulatedFleet | undefined;
  let es: EngineStack;
  const site = (name: string) => fleet!.sites.get(name)!;
  /** Commands each site's hosts ran so far (the doubles' log lines), by site. */
  const callCounts = () =>
    Object.fromEntries(
      [...fleet!.sites].map(([name, s]) => [name, s.hosts.reduce((n, h) => n + h.calls().length, 0)]),
    );

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-e2e-sites-"));
    fleet = await startFleet({ sku: "p40", dir, sites: SITES.map((name) => ({ name })), ipBase: 200 });
    es = await openStack({ stackName: "sites", dir, config: fleet.config(), program: async () => run() });
    await es.stack.setConfig(`${PROJECT}:rollout`, {
      value: JSON.stringify({ canarySites: 1, siteBatchSize: 0 }),
    });
  });

  after(async () => {
    await fleet?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Asserts the canary site's health gate finished before any other site's first step that reaches its site. */
  const assertCanaryFirst = (steps: Step[]) => {
    const canaryGate = steps.findIndex((s) => s.phase === "done" && s.urn.endsWith(`::${CANARY}-health`));
    assert.ok(canaryGate >= 0, `no ${CANARY}-health step finished`);
    for (const name of REST) {
      // Generating the site's join token (random.RandomPassword) is computed by the engine and touches nothing;
      // every other step (SSH commands, the site's Kubernetes provider and objects) reaches the site.
      const reaching = steps.findIndex(
        (s) => s.phase === "start" && isResourceStep(s.urn) && ofSite(name, s.urn) && !isLocalOnly(s.urn),
      );
      assert.ok(reaching >= 0, `${name} had no step that reaches the site`);
      assert.ok(
        reaching > canaryGate,
        `${name}'s step ${nameOf(steps[reaching].urn)} started before ${CANARY}-health finished`,
      );
      assert.ok(
        steps.some((s) => s.phase === "done" && s.urn.endsWith(`::${name}-health`)),
        `${name}-health did not finish`,
      );
    }
  };

  it("up rolls out canary-first: the canary site's health gate finishes before any other site's first step", async () => {
    const rec = recorder();
    const res = await es.stack.up({ onEvent: rec.onEvent });
    assert.equal(res.summary.result, "succeeded");
    assert.deepEqual(res.outputs.siteWaves.value, [[CANARY], REST]);
    assert.deepEqual(Object.keys(res.outputs.sites.value as object).sort(), SITES);
    assertCanaryFirst(rec.steps);
    for (const name of SITES) {
      assert.deepEqual(await nodeNames(site(name)), ["p40-01"], name);
      assert.match(site(name).hosts[0].calls().join("\n"), /install\.sh/, name);
    }
    // Down again, so that the next test starts a fresh stack on uninstalled boxes.
    const down = await es.stack.destroy();
    assert.equal(down.summary.result, "succeeded");
    for (const name of SITES) assert.deepEqual(await nodeNames(site(name)), [], name);
  });

  it("on a fresh stack, a failing canary site stops the other sites before any of their hosts ran anything", async () => {
    es = await openStack({
      stackName: "sites-fresh",
      dir,
      config: fleet!.config(),
      program: async () => run(),
    });
    await es.stack.setConfig(`${PROJECT}:rollout`, {
      value: JSON.stringify({ canarySites: 1, siteBatchSize: 0 }),
    });
    const canaryHost = site(CANARY).hosts[0];
    canaryHost.fault("install.sh", "[ERROR]  simulated: download of the K3s images failed");
    const before = callCounts();
    const rec = recorder();
    await assert.rejects(
      es.stack.up({ onEvent: rec.onEvent }),
      /simulated: download of the K3s images failed/,
    );
    const canaryCalls = canaryHost.calls().slice(before[CANARY]).join("\n");
    assert.match(canaryCalls, /install\.sh/, "the canary site's install did not run");
    for (const name of REST) {
      assert.equal(callCounts()[name], before[name], `${name} ran a command despite the failed canary site`);
      assert.deepEqual(await nodeNames(site(name)), [], `${name} has nodes`);
    }
    assert.ok(
      !rec.steps.some((s) => s.urn.endsWith(`::${CANARY}-health`) && s.phase === "done"),
      "the canary site's health gate passed although its install failed",
    );
    canaryHost.fault("install.sh", undefined);
  });

  it("after clearing the fault, a rerun converges, canary site first", async () => {
    const rec = recorder();
    const res = await es.stack.up({ onEvent: rec.onEvent });
    assert.equal(res.summary.result, "succeeded");
    assertCanaryFirst(rec.steps);
    for (const name of SITES) assert.deepEqual(await nodeNames(site(name)), ["p40-01"], name);
  });

  it("a no-op preview is clean and runs nothing on any host", async () => {
    const before = callCounts();
    await es.stack.preview({ expectNoChanges: true });
    assert.deepEqual(callCounts(), before);
  });

  it("adding a fourth site touches only it", async () => {
    await fleet!.addSite({ name: "site-d" });
    const before = callCounts();
    await es.stack.setConfig(`${PROJECT}:sites`, fleet!.sitesEntry([...SITES, "site-d"]));
    const rec = recorder();
    const res = await es.stack.up({ onEvent: rec.onEvent });
    assert.equal(res.summary.result, "succeeded");
    for (const name of SITES) assert.equal(callCounts()[name], before[name], `${name} ran a command`);
    const changed = rec.steps.filter((s) => s.phase === "start" && s.op !== "same" && isResourceStep(s.urn));
    assert.ok(changed.length > 0, "nothing changed");
    assert.deepEqual(
      changed.filter((s) => !ofSite("site-d", s.urn)).map((s) => `${s.op} ${nameOf(s.urn)}`),
      [],
      "steps outside site-d",
    );
    assert.match(site("site-d").hosts[0].calls().join("\n"), /install\.sh/);
    assert.deepEqual(await nodeNames(site("site-d")), ["p40-01"]);
  });

  it("removing the fourth site uninstalls only it", async () => {
    const before = callCounts();
    const dBefore = site("site-d").hosts[0].calls().length;
    await es.stack.setConfig(`${PROJECT}:sites`, fleet!.sitesEntry(SITES));
    const rec = recorder();
    const res = await es.stack.up({ onEvent: rec.onEvent });
    assert.equal(res.summary.result, "succeeded");
    for (const name of SITES) assert.equal(callCounts()[name], before[name], `${name} ran a command`);
    const changed = rec.steps.filter((s) => s.phase === "start" && s.op !== "same" && isResourceStep(s.urn));
    assert.ok(changed.length > 0, "nothing changed");
    assert.deepEqual(
      changed
        .filter((s) => !(s.op === "delete" && ofSite("site-d", s.urn)))
        .map((s) => `${s.op} ${nameOf(s.urn)}`),
      [],
      "steps other than site-d's deletions",
    );
    assert.match(site("site-d").hosts[0].calls().slice(dBefore).join("\n"), /k3s-uninstall\.sh/);
    await es.stack.preview({ expectNoChanges: true });
  });
});
