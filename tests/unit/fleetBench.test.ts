/** The fleet bench's pure parts (issue 10, "Measured"): process accounting, figure maths, the README's table. */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { BenchResults } from "../../harness/benchReport";
import {
  classify,
  currentFleetSection,
  deriveFleet,
  FLEET_BEGIN,
  FLEET_END,
  FleetBenchResults,
  Footprint,
  FootprintAccumulator,
  formattedFleet,
  PreviewRun,
  renderFleet,
  replaceFleetSection,
  sampleEngineProcesses,
  sitesWithin,
} from "../../harness/fleetBench";
import { ROOT } from "./support";

const footprint = (cli: number, program: number, k8s: number, peak = 100): Footprint => ({
  peakRssMiB: peak,
  peakByClass: { cli: peak },
  maxAlive: { cli: 1, "provider:kubernetes": k8s },
  started: { cli: 1, "provider:kubernetes": k8s },
  cpuS: { cli, program, languageHost: 0, "provider:kubernetes": k8s * 0.1 },
  samples: 10,
});

/** 1, 10, 100 sites: 39, 381, 3801 resources; the default series grows faster per site at 100 than at 10. */
function results(): FleetBenchResults {
  const run = (sites: number, tuned: boolean, wallS: number, cli: number): PreviewRun => ({
    sites,
    tuned,
    wallS,
    resources: 1 + 38 * sites,
    footprint: footprint(cli, 8, sites, 100 * sites),
  });
  return {
    date: "2026-11-30T13:00:00.000Z",
    busyCoresAtStart: 1.5,
    busyCoresAtEnd: 0.1,
    busyOk: true,
    preview: [
      run(1, false, 10, 1),
      run(10, false, 19, 10),
      run(100, false, 289, 280),
      run(1, true, 4, 0.5),
      run(10, true, 8.5, 2),
      run(100, true, 53.5, 20),
    ],
    previewConnections: 0,
    up: { oneSiteS: 20, fourSitesS: 26, fourSites: footprint(3, 9, 4) },
    noop: {
      oneSiteS: 6,
      fourSitesS: 9,
      parallelDiffOneSiteS: 6,
      parallelDiffFourSitesS: 8.4,
      tunedOneSiteS: 3,
      tunedFourSitesS: 4.5,
      fourSites: footprint(1, 8, 4),
    },
  };
}

describe("fleet bench: which process is what", () => {
  it("classifies the CLI, the language host, the program and each provider by executable name", () => {
    assert.equal(classify("/opt/pulumi/bin/pulumi", undefined), "cli");
    assert.equal(classify("/opt/pulumi/bin/pulumi-language-nodejs", "cli"), "languageHost");
    assert.equal(classify("/usr/bin/node", "languageHost"), "program");
    assert.equal(classify("node", "program"), "program", "a node the program starts is the program's");
    assert.equal(classify("/x/pulumi-resource-kubernetes", "cli"), "provider:kubernetes");
    assert.equal(classify("pulumi-resource-command", "cli"), "provider:command");
    assert.equal(classify("/bin/bash", "provider:command"), "other");
    assert.equal(
      classify("/usr/bin/node", "cli"),
      "other",
      "a node the CLI starts itself is not the program",
    );
  });
});

describe("fleet bench: footprint accounting", () => {
  it("keeps the peak sum of RSS with its split, the most alive per class, distinct processes and last CPU", () => {
    const acc = new FootprintAccumulator();
    acc.add([
      { pid: 10, start: 1, cls: "cli", rssKiB: 100 * 1024, cpuTicks: 50 },
      { pid: 11, start: 2, cls: "provider:kubernetes", rssKiB: 90 * 1024, cpuTicks: 10 },
    ]);
    acc.add([
      { pid: 10, start: 1, cls: "cli", rssKiB: 120 * 1024, cpuTicks: 150 },
      { pid: 11, start: 2, cls: "provider:kubernetes", rssKiB: 90 * 1024, cpuTicks: 20 },
      { pid: 12, start: 3, cls: "provider:kubernetes", rssKiB: 90 * 1024, cpuTicks: 30 },
    ]);
    // pid 11 exited and its number was reused by another provider: two processes, not one.
    acc.add([
      { pid: 10, start: 1, cls: "cli", rssKiB: 110 * 1024, cpuTicks: 200 },
      { pid: 11, start: 9, cls: "provider:kubernetes", rssKiB: 10 * 1024, cpuTicks: 5 },
    ]);
    const r = acc.result();
    assert.equal(r.peakRssMiB, 300);
    assert.deepEqual(r.peakByClass, { cli: 120, "provider:kubernetes": 180 });
    assert.deepEqual(r.maxAlive, { cli: 1, "provider:kubernetes": 2 });
    assert.deepEqual(r.started, { cli: 1, "provider:kubernetes": 3 });
    assert.deepEqual(r.cpuS, { cli: 2, "provider:kubernetes": 0.55 });
    assert.equal(r.samples, 3);
  });

  it("keeps an exiting process in its class when its cmdline reads empty (seen as 'other' on its last sample)", () => {
    const acc = new FootprintAccumulator();
    acc.add([{ pid: 11, start: 2, cls: "provider:kubernetes", rssKiB: 90 * 1024, cpuTicks: 10 }]);
    acc.add([{ pid: 11, start: 2, cls: "other", rssKiB: 0, cpuTicks: 12 }]);
    const r = acc.result();
    assert.deepEqual(r.started, { "provider:kubernetes": 1 });
    assert.deepEqual(r.cpuS, { "provider:kubernetes": 0.12 });
  });

  it("classifies a process by what it runs now, after an exec, not by what it ran when first seen", async function () {
    this.timeout(20_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-bench-test-"));
    fs.copyFileSync("/bin/bash", path.join(dir, "pulumi"));
    fs.copyFileSync("/bin/sleep", path.join(dir, "pulumi-resource-kubernetes"));
    fs.chmodSync(path.join(dir, "pulumi"), 0o755);
    fs.chmodSync(path.join(dir, "pulumi-resource-kubernetes"), 0o755);
    // The CLI's child is first a shell, then (same pid, same start time) the provider.
    const cli = spawn(
      path.join(dir, "pulumi"),
      ["-c", "/bin/sh -c 'sleep 0.4; exec pulumi-resource-kubernetes 2' & wait"],
      {
        env: { PATH: `${dir}:/usr/bin:/bin` },
      },
    );
    try {
      const sampler = sampleEngineProcesses(50);
      await new Promise((r) => setTimeout(r, 1200));
      const fp = sampler.stop();
      assert.equal(fp.maxAlive["provider:kubernetes"], 1, JSON.stringify(fp));
    } finally {
      cli.kill("SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("finds a `pulumi` process this process started and the provider it started, not other children", async function () {
    this.timeout(20_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-bench-test-"));
    // Stand-ins named like the CLI (a shell) and a provider (sleep), found by name as the real ones are.
    fs.copyFileSync("/bin/bash", path.join(dir, "pulumi"));
    fs.copyFileSync("/bin/sleep", path.join(dir, "pulumi-resource-kubernetes"));
    fs.chmodSync(path.join(dir, "pulumi"), 0o755);
    fs.chmodSync(path.join(dir, "pulumi-resource-kubernetes"), 0o755);
    const bystander = spawn("/bin/sleep", ["3"]);
    // Killing the shell leaves its `sleep 3` to end by itself.
    const cli = spawn(path.join(dir, "pulumi"), ["-c", "pulumi-resource-kubernetes 3 & wait"], {
      env: { PATH: `${dir}:/usr/bin:/bin` },
    });
    try {
      const sampler = sampleEngineProcesses(50);
      await new Promise((r) => setTimeout(r, 600));
      const fp = sampler.stop();
      assert.equal(fp.maxAlive.cli, 1);
      assert.equal(fp.maxAlive["provider:kubernetes"], 1);
      assert.equal(fp.maxAlive.other, undefined, "the bystander (not under the CLI) is not counted");
      assert.ok(fp.peakRssMiB > 0, "RSS is read");
    } finally {
      cli.kill("SIGKILL");
      bystander.kill("SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("fleet bench: figures", () => {
  it("counts the sites a budget allows on a linear cost", () => {
    assert.equal(sitesWithin(30, 4, 0.5), 53); // 4 + 52 * 0.5 = 30
    assert.equal(sitesWithin(30, 4, 0.51), 51);
    assert.equal(sitesWithin(30, 40, 1), 1, "over budget already: one site per stack");
    assert.equal(sitesWithin(30, 4, 0), Infinity);
  });

  it("derives resources per site, marginal cost per site, CPU shares, the up ratio and the shard point", () => {
    const d = deriveFleet(results());
    assert.equal(d.resourcesPerSite, 38);
    assert.equal(d.stackResources, 1);
    assert.deepEqual(d.default.marginalS, { to10: 1, to100: 3 });
    assert.equal(d.default.largest, 100);
    assert.deepEqual(d.default.engineCpuPerSiteS, { to10: 1, to100: 3 });
    assert.deepEqual(d.tuned.marginalS, { to10: 0.5, to100: 0.5 });
    assert.equal(d.default.engineCpuShare, r2(280 / (280 + 8 + 10)));
    assert.equal(d.default.programCpuShare, r2(8 / 298));
    assert.equal(d.default.providersCpuShare, r2(10 / 298));
    assert.equal(d.upRatio, 1.3);
    assert.equal(d.noopAddedPerSiteS, 1);
    assert.equal(d.peakMiBPerSite, 100);
    // Tuned CPU: 0.5 + 8 + 0.1 = 8.6 s at 1 site, 20 + 8 + 10 = 38 s at 100: 0.297 s per site; 8.6 + 72 * 0.297 <= 30.
    assert.equal(d.tunedCpuOneSiteS, 8.6);
    assert.equal(d.tunedCpuPerSiteS, 0.297);
    assert.equal(d.shardAtSites, 73);
  });

  it("leaves the default 10→100 cost unset when the default 100-site preview was not run", () => {
    const r = results();
    r.preview = r.preview.filter((p) => p.tuned || p.sites !== 100);
    const d = deriveFleet(r);
    assert.deepEqual(d.default.marginalS, { to10: 1, to100: null });
    assert.equal(d.default.largest, 10);
    assert.equal(d.default.engineCpuShare, r2(10 / (10 + 8 + 1)));
    const md = renderFleet(r);
    assert.doesNotMatch(md, /fresh stack, 100 sites \|/);
    assert.match(
      md,
      /A fresh preview costs 1\.000 s per further site from 1 to 10 sites \(engine CPU 1\.000 s/,
    );
  });

  it("refuses results that lack a series", () => {
    const r = results();
    r.preview = r.preview.filter((p) => !(p.tuned && p.sites === 100));
    assert.throws(() => deriveFleet(r), /no tuned preview of 100 sites/);
  });
});

const r2 = (x: number): number => Math.round(x * 100) / 100;

describe("fleet bench: the README's Fleets table", () => {
  it("renders every run with its seconds, resources, CPU split, memory and provider count", () => {
    const md = renderFleet(results());
    assert.match(
      md,
      /\| `preview`, fresh stack, 100 sites \| 289\.0 \| 3801 \| 2\.890 \| 280\.0 \/ 8\.0 \/ 10\.0 \| 10000\.0 \| 100 \|/,
    );
    assert.match(md, /\| `preview`, fresh stack, 100 sites, tuned \| 53\.5 \| 3801 \| 0\.535 \|/);
    assert.match(md, /\| `up`, 4 sites in one wave \| 26\.0 \|/);
    assert.match(md, /\| the same, 4 sites, `PULUMI_PARALLEL_DIFF=true` \| 8\.4 \|/);
    assert.match(md, /took 1\.30× the 1-site `up`/);
    assert.match(md, /opened 0 connections/);
    assert.match(md, /The machine was shared/, "a busy machine is said");
    assert.match(md, /past about \*\*73 sites per stack\*\*/);
  });

  it("replaces only the text between the fleet markers", () => {
    const readme = `# x\n\nprose\n\n${FLEET_BEGIN}\n\nold\n\n${FLEET_END}\n\nmore prose\n`;
    const next = replaceFleetSection(readme, "new table");
    assert.equal(next, `# x\n\nprose\n\n${FLEET_BEGIN}\n\nnew table\n\n${FLEET_END}\n\nmore prose\n`);
    assert.equal(currentFleetSection(next), "new table");
    assert.throws(() => replaceFleetSection("# no markers\n", "t"), /no "<!-- bench-fleet:begin/);
  });

  it("README.md's Fleets table is what `npm run bench:readme` renders from bench-results.json", async () => {
    const doc = JSON.parse(fs.readFileSync(path.join(ROOT, "bench-results.json"), "utf8")) as BenchResults;
    assert.ok(doc.fleet, "bench-results.json has no `fleet` figures: run `npm run bench -- --fleet`");
    const readmePath = path.join(ROOT, "README.md");
    assert.equal(
      currentFleetSection(fs.readFileSync(readmePath, "utf8")),
      await formattedFleet(doc.fleet, readmePath),
      "README.md's Fleets bench table differs from bench-results.json: run `npm run bench:readme`",
    );
  });
});
