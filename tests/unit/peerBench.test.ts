/** The side-by-side table with k3s-ansible is bench-results.json rendered (issue 12.1 and 12.4). */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

import { BenchResults } from "../../harness/benchReport";
import {
  currentPeersSection,
  formattedPeers,
  PEERS_BEGIN,
  PEERS_END,
  PeersBenchResults,
  renderPeers,
  replacePeersSection,
} from "../../harness/peers/peerBench";
import { ROOT } from "./support";

const sample: PeersBenchResults = {
  date: "2026-11-30T13:00:00.000Z",
  machine: { cores: 2, memoryGiB: 24, busyCoresAtStart: 0.1, busyCoresAtEnd: 0.2 },
  versions: { ansibleCore: "2.19.11", k3sAnsible: "1.2.2", forks: "max(5, nodes)" },
  runs: [
    {
      nodes: 10,
      ours: { previewS: 2, upS: 20, noopUpS: 4 },
      k3sAnsible: { checkS: 40, upS: 80, rerunS: 60, tasks: 103, changed: 150, rerunChanged: 20 },
      ratio: { preview: 0.05, up: 0.25, rerun: 0.07 },
    },
  ],
};

describe("harness/peers/peerBench.ts: the side-by-side table", () => {
  it("renders both times and the ratio of each run, the versions and the machine", () => {
    const text = renderPeers(sample);
    assert.match(text, /\| 10 \| bootstrap .*\| 20\.0 \| 80\.0 \| 0\.25× \|/);
    assert.match(text, /\| 10 \| no-change rerun \| 4\.0 \| 60\.0 \| 0\.07× \|/);
    assert.match(text, /\| 10 \| dry run.*\| 2\.0 \| 40\.0 \| 0\.05× \|/);
    assert.match(text, /k3s-ansible 1\.2\.2 \(ansible-core 2\.19\.11/);
    assert.match(text, /2 cores, 24 GiB/);
  });

  it("replaces only the text between its markers", () => {
    const readme = `# x\n\n${PEERS_BEGIN}\n\nold\n\n${PEERS_END}\n\nmore\n`;
    const next = replacePeersSection(readme, "new");
    assert.equal(next, `# x\n\n${PEERS_BEGIN}\n\nnew\n\n${PEERS_END}\n\nmore\n`);
    assert.equal(currentPeersSection(next), "new");
  });

  it("README.md's table is what `npm run bench:readme` renders from bench-results.json", async () => {
    const doc = JSON.parse(fs.readFileSync(path.join(ROOT, "bench-results.json"), "utf8")) as BenchResults;
    assert.ok(doc.peers, "bench-results.json has no `peers` figures: run `npm run bench -- --peers`");
    assert.deepEqual(
      doc.peers.runs.map((r) => r.nodes),
      [1, 10],
    );
    const readmePath = path.join(ROOT, "README.md");
    assert.equal(
      currentPeersSection(fs.readFileSync(readmePath, "utf8")),
      await formattedPeers(doc.peers, readmePath),
      "README.md's side-by-side table differs from bench-results.json: run `npm run bench:readme`",
    );
  });
});
