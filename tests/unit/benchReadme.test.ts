/** The README's performance section is bench-results.json rendered, never typed by hand (issue 12.4). */
import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";

import {
  BenchResults,
  currentSection,
  formattedPerformance,
  otherRuns,
  README_BEGIN,
  README_END,
  renderPerformance,
  replaceSection,
} from "../../harness/benchReport";
import { ROOT } from "./support";

const README = path.join(ROOT, "README.md");
const results = (): BenchResults =>
  JSON.parse(readFileSync(path.join(ROOT, "bench-results.json"), "utf8")) as BenchResults;

describe("the README's performance section", () => {
  it("is what `npm run bench:readme` renders from bench-results.json", async () => {
    const readme = readFileSync(README, "utf8");
    assert.equal(
      currentSection(readme),
      await formattedPerformance(results(), README),
      "README.md's bench section differs from bench-results.json: run `npm run bench:readme`",
    );
  });

  it("bench-results.json holds the date, the machine, the versions, every figure and the critical path", () => {
    const doc = results();
    assert.ok(!Number.isNaN(Date.parse(doc.date)), "date");
    assert.ok(
      doc.machine.cores > 0 && doc.machine.memoryGiB > 0 && doc.machine.cpuModel.length > 0,
      "machine",
    );
    for (const [k, v] of Object.entries(doc.versions)) assert.ok(typeof v === "string" && v.length > 0, k);
    for (const k of [
      "preview_1_nodes_s",
      "preview_10_nodes_s",
      "preview_50_nodes_s",
      "up_1_node_s",
      "destroy_1_node_s",
      "up_10_nodes_s",
      "noop_up_10_nodes_s",
      "destroy_10_nodes_s",
    ])
      assert.equal(typeof doc.results[k], "number", k);
    const cp = doc.criticalPath!;
    assert.ok(cp.path.length > 0 && cp.floor.totalS > 0, "critical path with a floor");
    const sum = cp.engineStartS + cp.pathStepsS + cp.pathGapsS + cp.engineFinishS;
    assert.ok(Math.abs(sum - cp.totalS) < 0.01, `the breakdown adds up: ${sum} vs ${cp.totalS}`);
  });

  it("renders every figure, the critical path with its floor, and the baseline", () => {
    const doc = results();
    const text = renderPerformance({ ...doc, results: { ...doc.results, extra_figure_s: 1.25 } });
    for (const v of Object.values(doc.versions)) assert.ok(text.includes(v), v);
    assert.match(text, /\| `extra_figure_s` \| 1\.3 \|/, "a figure without a label still gets a row");
    for (const p of doc.criticalPath!.path) assert.ok(text.includes(`| ${p.name} |`), p.name);
    assert.ok(text.includes(`**${doc.criticalPath!.ratio.toFixed(2)}×**`));
    if (doc.baseline) assert.ok(text.includes(`Before (${doc.baseline.date.slice(0, 10)}`));
  });

  it("replaces only the text between the markers, and refuses a README without them", () => {
    const readme = `intro\n${README_BEGIN}\nold\n${README_END}\noutro\n`;
    assert.equal(replaceSection(readme, "new"), `intro\n${README_BEGIN}\n\nnew\n\n${README_END}\noutro\n`);
    assert.equal(currentSection(replaceSection(readme, "new")), "new");
    assert.throws(() => replaceSection("no markers", "x"), /no "<!-- bench:begin/);
  });
});

describe("bench-results.json: a run of the main bench keeps the other runs' figures", () => {
  it("keeps every section the main bench does not write, unchanged (the simulated time to serving was dropped)", () => {
    const doc = results();
    const own = ["date", "machine", "versions", "results", "criticalPath", "baseline"];
    const others = Object.keys(doc).filter((k) => !own.includes(k));
    assert.ok(
      others.includes("timeToServingSim"),
      `bench-results.json sections: ${Object.keys(doc).join(", ")}`,
    );
    const kept = otherRuns(doc) as Record<string, unknown>;
    assert.deepEqual(Object.keys(kept).sort(), others.sort());
    for (const k of others) assert.equal(kept[k], (doc as unknown as Record<string, unknown>)[k]);
    assert.deepEqual(otherRuns(undefined), {});
  });
});
