/**
 * An offline site (issue 10, item 3), through the real engine and the fleet driver (tools/fleet.ts): three
 * single-node P40 sites are deployed, the canary site's SSH host and its Kubernetes API go away, and the driver's
 * preview and `up` report it unreachable and skip it while the other two converge on a changed setting; its state is
 * left as it was, and once it is back the next run converges it.
 */
import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { FleetReport, fleetMain } from "../../tools/fleet";
import { EngineStack, engineEnv, openStack, PROJECT, projectCopy } from "../../harness/engine";
import { SimulatedFleet, startFleet } from "../../harness/fleetSites";
import { canConnect, waitFor } from "../../harness/proc";
import { loadToolchain } from "../../harness/toolchain";

const STACK = "offline";
const SITES = ["site-a", "site-b", "site-c"];
const OFFLINE = "site-a"; // the canary: a skipped canary must not let the rest start unproven
const LIVE = SITES.filter((s) => s !== OFFLINE);
const SETTING = { FORGE_LOG_LEVEL: "debug" };
/** Keeps the captured `--json` outputs (the fixtures of tests/unit/previewSummary.test.ts came from here). */
const capture = (name: string, text: string) => {
  const to = process.env.FORGE_EDGE_CAPTURE_DIR;
  if (to) fs.writeFileSync(path.join(to, name), text);
};

interface StateResource {
  urn: string;
  inputs?: unknown;
  outputs?: unknown;
}

const nameOf = (urn: string) => urn.split("::")[3];
const ofSite = (site: string, urn: string) => nameOf(urn) === site || nameOf(urn).startsWith(`${site}-`);

describe("e2e: an offline site is reported and skipped while the others roll out", function () {
  this.timeout(30 * 60_000);
  let dir: string;
  let project: string;
  let fleet: SimulatedFleet | undefined;
  let es: EngineStack;
  let env: NodeJS.ProcessEnv;

  /** Runs the fleet driver in this process; its table, pulumi's output and its report. */
  const driver = async (op: "preview" | "up" | "drift", pulumiArgs: string[] = []) => {
    const report = path.join(dir, `report-${op}-${Date.now()}.json`);
    const log: string[] = [];
    let out = "";
    let err = "";
    const code = await fleetMain(
      [op, "--stack", STACK, "--cwd", project, "--report", report, "--", ...pulumiArgs],
      { log: (l) => log.push(l), out: (c) => (out += c), err: (c) => (err += c), env },
    );
    return {
      code,
      log: log.join("\n"),
      out,
      err,
      report: JSON.parse(fs.readFileSync(report, "utf8")) as FleetReport,
    };
  };

  /** Every resource of a site in the stack's state, secrets decrypted, by URN. */
  const siteState = (site: string): Record<string, { inputs: unknown; outputs: unknown }> => {
    const exported = JSON.parse(
      execFileSync(env.PULUMI!, ["stack", "export", "--show-secrets", "--stack", STACK], {
        cwd: project,
        env,
        encoding: "utf8",
        maxBuffer: 256 * 1024 * 1024,
      }),
    ) as { deployment: { resources: StateResource[] } };
    return Object.fromEntries(
      exported.deployment.resources
        .filter((r) => ofSite(site, r.urn))
        .map((r) => [r.urn, { inputs: r.inputs, outputs: r.outputs }]),
    );
  };

  const configMapData = async (site: string) =>
    (
      (await fleet!.sites
        .get(site)!
        .kube.get("/api/v1/namespaces/forge-cognition/configmaps/inference-config")) as {
        data: Record<string, string>;
      }
    ).data;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-e2e-offline-"));
    fleet = await startFleet({ sku: "p40", dir, sites: SITES.map((name) => ({ name })), ipBase: 120 });
    project = projectCopy(dir);
    // A snapshot of the program (the copy links to the working tree): an edit of the tree during the run is no change.
    for (const f of ["index.ts", "program.ts", "config", "components", "scripts"]) {
      const at = path.join(project, f);
      const target = fs.realpathSync(at);
      fs.rmSync(at);
      fs.cpSync(target, at, { recursive: true });
    }
    es = await openStack({ stackName: STACK, dir, config: fleet.config(), projectDir: project });
    await es.stack.setConfig(`${PROJECT}:rollout`, {
      value: JSON.stringify({ canarySites: 1, siteBatchSize: 0 }),
    });
    env = { ...process.env, ...engineEnv(es.stateDir), PULUMI: loadToolchain(["pulumi"]).bin.pulumi };
  });

  after(async () => {
    await fleet?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("deploys the three sites through the driver, every site reachable", async () => {
    const r = await driver("up");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.report.skipped, []);
    assert.match(r.log, /stack offline: 3 of 3 site\(s\) reachable/);
    for (const s of SITES) assert.ok((await configMapData(s)) !== undefined);
  });

  let offlineState: Record<string, { inputs: unknown; outputs: unknown }>;

  it("a preview with the canary site's SSH and API down does not fail, and reports the site unreachable", async () => {
    offlineState = siteState(OFFLINE);
    assert.ok(Object.keys(offlineState).length > 10, "the site's resources are in the state");
    for (const h of fleet!.sites.get(OFFLINE)!.hosts) await h.stop();
    const r = await driver("preview");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.report.skipped, [OFFLINE]);
    assert.match(
      r.log,
      new RegExp(`${OFFLINE}\\s+UNREACHABLE: skipped\\s+ssh p40-01 127\\.0\\.1\\.\\d+:22 ECONNREFUSED`),
    );
    assert.match(r.log, /api 127\.0\.1\.\d+:6443 ECONNREFUSED/);
    for (const s of LIVE) assert.match(r.log, new RegExp(`${s}\\s+reachable`));
    assert.ok(!r.out.includes(fleet!.key.privateKeyPem.split("\n")[1]), "the SSH key reached the output");
  });

  it("up after a config change converges the live sites, skips the offline one and leaves its state unchanged", async () => {
    const inference = JSON.parse((await es.stack.getConfig(`${PROJECT}:inference`)).value) as Record<
      string,
      unknown
    >;
    await es.stack.setConfig(`${PROJECT}:inference`, {
      value: JSON.stringify({ ...inference, settings: SETTING }),
    });
    const preview = await driver("preview", ["--json"]);
    assert.equal(preview.code, 0, preview.err);
    capture("preview.json", preview.out);
    const steps = (JSON.parse(preview.out) as { steps: { op: string; urn: string }[] }).steps;
    const changing = (site: string) => steps.filter((s) => s.op !== "same" && ofSite(site, s.urn));
    for (const s of LIVE)
      assert.ok(
        changing(s).some((st) => nameOf(st.urn) === `${s}-inference-config`),
        `${s} plans no inference-config update`,
      );
    assert.deepEqual(changing(OFFLINE), [], "the offline site has planned steps");

    const up = await driver("up");
    assert.equal(up.code, 0, up.err);
    assert.deepEqual(up.report.skipped, [OFFLINE]);
    for (const s of LIVE) assert.equal((await configMapData(s)).FORGE_LOG_LEVEL, "debug", s);
    assert.equal((await configMapData(OFFLINE)).FORGE_LOG_LEVEL, undefined, "the offline site changed");
    assert.deepEqual(siteState(OFFLINE), offlineState, "the offline site's state changed");
    const outputs = await es.stack.outputs();
    assert.deepEqual(outputs.skippedSites?.value, [OFFLINE]);
    assert.deepEqual(outputs.siteWaves?.value, [["site-b"], ["site-c"]]);
  });

  it("once the site is back, the next run converges it and the drift check is clean", async () => {
    for (const h of fleet!.sites.get(OFFLINE)!.hosts) {
      await h.restart();
      // A booting box starts K3s (an enabled unit): the double's forwarder serves the API on <host>:6443 again.
      const key = path.join(dir, "id_fleet");
      fs.writeFileSync(key, fleet!.key.privateKeyPem, { mode: 0o600 });
      const ssh = spawnSync(
        "ssh",
        [
          ...["-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
          ...["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", `root@${h.host}`, "systemctl restart k3s"],
        ],
        { encoding: "utf8" },
      );
      assert.equal(ssh.status, 0, `systemctl restart k3s: ${ssh.stdout}${ssh.stderr}`);
      await waitFor(`${h.host}:6443`, 30_000, async () =>
        (await canConnect(h.host, 6443, 500)) ? true : undefined,
      );
    }
    const up = await driver("up");
    assert.equal(up.code, 0, up.err);
    assert.deepEqual(up.report.skipped, []);
    for (const s of SITES) assert.equal((await configMapData(s)).FORGE_LOG_LEVEL, "debug", s);
    const outputs = await es.stack.outputs();
    assert.equal(outputs.skippedSites, undefined);
    assert.deepEqual(outputs.siteWaves?.value, [["site-a"], ["site-b", "site-c"]]);

    const drift = await driver("drift", ["--json"]);
    capture("drift.json", drift.out);
    assert.equal(drift.code, 0, drift.err + drift.out.slice(-4000));
  });
});
