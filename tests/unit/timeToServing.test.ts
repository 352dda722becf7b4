/**
 * Issue 12.3: the time-to-serving model (harness/timeToServing.ts) and the bootstrap order it models: the K3s
 * download beside the toolkit install, K3s's background pull of the stack's images right after K3s runs, and in an
 * air gap K3s's start on its own artefacts while the stack's tarballs are copied, then imported by K3s's watcher.
 */
import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";

import { EdgeNode } from "../../components/edgeNode";
import { run } from "../../program";
import { SKUS } from "../../config/skus";
import {
  bootstrapSteps,
  criticalPath,
  currentTimeToServingSection,
  defaultInputs,
  DEFAULTS,
  formattedTimeToServing,
  renderTimeToServing,
  simulate,
  Step,
  timeToServing,
  timeToServingResults,
  WATCHER_DELAY_SECONDS,
} from "../../harness/timeToServing";
import { BenchResults } from "../../harness/benchReport";
import { parseSets } from "../../harness/timeToServingBench";
import { evaluate, evaluateStack, ROOT } from "./support";

const LINKS = { uplinkMbps: 8, lanMbps: 80 }; // 1 MB/s and 10 MB/s: byte counts read as seconds
const MB = 1e6;

describe("time to serving: the model", () => {
  it("a step starts when the last of its dependencies ends; local parts overlap freely", () => {
    const steps: Step[] = [
      { id: "a", what: "", after: [], localSeconds: 3 },
      { id: "b", what: "", after: [], localSeconds: 5 },
      { id: "c", what: "", after: ["a", "b"], localSeconds: 2 },
    ];
    const t = simulate(steps, LINKS);
    assert.deepEqual(
      t.map((x) => [x.id, x.start, x.end]),
      [
        ["a", 0, 3],
        ["b", 0, 5],
        ["c", 5, 7],
      ],
    );
    assert.deepEqual(criticalPath(steps, t), ["b", "c"]);
  });

  it("downloads that overlap share the link: two in parallel end no sooner than one after the other", () => {
    const steps: Step[] = [
      { id: "x", what: "", after: [], bytes: 10 * MB, link: "uplink", localSeconds: 0 },
      { id: "y", what: "", after: [], bytes: 30 * MB, link: "uplink", localSeconds: 1 },
      { id: "z", what: "", after: [], bytes: 10 * MB, link: "lan", localSeconds: 0 },
    ];
    const t = new Map(simulate(steps, LINKS).map((x) => [x.id, x]));
    // x and y share 1 MB/s: x ends at 20 s, y has 20 MB left alone: 40 s, then 1 s local. z has its own link.
    assert.equal(t.get("x")!.end, 20);
    assert.equal(t.get("y")!.end, 41);
    assert.equal(t.get("z")!.end, 1);
  });

  it("refuses an unknown dependency and a cycle", () => {
    assert.throws(
      () => simulate([{ id: "a", what: "", after: ["nope"], localSeconds: 1 }], LINKS),
      /unknown step nope/,
    );
    assert.throws(
      () =>
        simulate(
          [
            { id: "a", what: "", after: ["b"], localSeconds: 1 },
            { id: "b", what: "", after: ["a"], localSeconds: 1 },
          ],
          LINKS,
        ),
      /cycle/,
    );
  });

  it("online, restructured: the K3s download runs beside the toolkit and the image pull starts when K3s runs", () => {
    const i = defaultInputs();
    const steps = bootstrapSteps("online", "restructured", i);
    const t = new Map(simulate(steps, i).map((x) => [x.id, x]));
    assert.equal(t.get("k3s-fetch")!.start, t.get("toolkit")!.start);
    assert.ok(t.get("k3s-fetch")!.end < t.get("toolkit")!.end);
    assert.equal(t.get("image-pull")!.start, t.get("k3s")!.end);
    assert.ok(t.get("image-pull")!.start < t.get("platform")!.end);

    const before = bootstrapSteps("online", "current", i);
    const tb = new Map(simulate(before, i).map((x) => [x.id, x]));
    assert.equal(tb.get("k3s")!.start, tb.get("toolkit")!.end);
    assert.equal(tb.get("image-pull")!.start, tb.get("platform")!.end);
  });

  it("air gap, current: K3s's start (its kubelet) waits for every copy and every import; restructured, only K3s's own", () => {
    const i = defaultInputs();
    const cur = new Map(simulate(bootstrapSteps("airgap", "current", i), i).map((x) => [x.id, x]));
    assert.equal(cur.get("k3s")!.start, cur.get("copy-stack-images")!.end);
    const re = new Map(simulate(bootstrapSteps("airgap", "restructured", i), i).map((x) => [x.id, x]));
    assert.ok(re.get("k3s")!.start < re.get("copy-stack-images")!.end);
    assert.ok(re.get("k3s")!.end < cur.get("k3s")!.end);
  });

  it("air gap, restructured: the program's order — K3s on its own artefacts, the import after K3s and the copies, only the GPU and inference pods after it", () => {
    const i = defaultInputs();
    const steps = bootstrapSteps("airgap", "restructured", i);
    const after = new Map(steps.map((s) => [s.id, [...s.after].sort()]));
    assert.deepEqual(after.get("k3s"), ["copy-k3s", "toolkit"]);
    assert.deepEqual(after.get("copy-stack-images"), ["stage"]);
    assert.deepEqual(after.get("image-import"), ["copy-stack-images", "k3s"]);
    assert.deepEqual(after.get("platform"), ["k3s"], "the platform's objects do not wait for the import");
    assert.deepEqual(after.get("device-plugin"), ["image-import", "platform"]);
    assert.deepEqual(after.get("model-load"), ["device-plugin", "platform"]);
    const t = new Map(simulate(steps, i).map((x) => [x.id, x]));
    // The copies run beside the runtime step and K3s; the platform's objects are applied while K3s imports.
    assert.ok(t.get("copy-stack-images")!.start < t.get("k3s")!.end);
    assert.ok(t.get("platform")!.end < t.get("image-import")!.end);
    assert.equal(t.get("device-plugin")!.start, t.get("image-import")!.end);
    // The import: K3s's watcher delay, then the stack's tarballs at the import rate.
    const importS = (i.inferenceImageGB * 1000 + i.devicePluginImageMB) / i.importMBps;
    const imp = t.get("image-import")!;
    assert.ok(Math.abs(imp.end - imp.start - (WATCHER_DELAY_SECONDS + importS)) < 1e-6);
  });

  it("the restructure never makes serving later, and every step ends on the critical path's last step", () => {
    for (const uplinkMbps of [20, 100, 1000]) {
      for (const inferenceImageGB of [2, 10, 30]) {
        const r = timeToServing({ ...defaultInputs(), uplinkMbps, inferenceImageGB });
        for (const mode of ["online", "airgap"] as const) {
          const [cur, re] = (["current", "restructured"] as const).map(
            (o) => r.scenarios.find((s) => s.mode === mode && s.order === o)!,
          );
          assert.ok(
            re.seconds <= cur.seconds + 1e-6,
            `${mode} at ${uplinkMbps} Mbit/s, ${inferenceImageGB} GB`,
          );
          assert.equal(cur.criticalPath.at(-1), "model-load");
          assert.equal(re.criticalPath.at(-1), "model-load");
        }
      }
    }
  });

  it("names the source of every default and marks assumptions", () => {
    for (const [k, d] of Object.entries(DEFAULTS)) {
      assert.ok(d.source.length > 10, k);
      assert.equal(typeof d.assumed, "boolean", k);
    }
    assert.equal(DEFAULTS.modelLoadSeconds.assumed, false);
  });
});

describe("time to serving: the bootstrap order in the program", () => {
  it("online: k3s-fetch waits only for the SSH probe, beside the runtime step; the K3s step waits for both", async () => {
    const ev = await evaluateStack("p40", run, {});
    const fetch = ev.byName("p40-01-k3s-fetch");
    assert.match(String(fetch.inputs.create), /forge-edge k3s-fetch\.sh/);
    assert.match(String(fetch.inputs.create), /K3S_VERSION='v1\.\d+\.\d+\+k3s\d+'/);
    assert.match(String(fetch.inputs.create), /ARCH='amd64'/);
    assert.match(String(fetch.inputs.delete), /forge-edge k3s-fetch-remove\.sh/);
    assert.deepEqual(ev.dependencies("p40-01-k3s-fetch"), ["p40-01-ssh-probe"]);
    assert.ok(!ev.dependencies("p40-01-nvidia-runtime").includes("p40-01-k3s-fetch"));
    assert.deepEqual(
      ev
        .dependencies("p40-01-k3s")
        .filter((d) => /runtime|fetch/.test(d))
        .sort(),
      ["p40-01-k3s-fetch", "p40-01-nvidia-runtime"],
    );
    // The K3s step downloads nothing itself any more.
    assert.doesNotMatch(String(ev.byName("p40-01-k3s").inputs.create), /\bcurl\b/);
  });

  it("air gap: no download step (the binary is staged)", async () => {
    const ev = await evaluateStack("p40", run, {});
    const names = ev.resources.map((r) => r.name);
    assert.ok(names.includes("p40-01-k3s-fetch"));
    const bootstrap = {
      sku: SKUS.p40,
      k3sVersion: "v1.36.4+k3s1",
      toolkitVersion: "1.20.0",
      airgap: {
        k3sBinary: "/srv/k3s",
        installScript: "/srv/install.sh",
        imagesTarball: "/srv/images.tar.zst",
        stackImageTarballs: [],
      },
    };
    const gapped = await evaluate("p40", {}, () => edge(bootstrap, ["registry.site/inference:1"]));
    assert.ok(!gapped.resources.some((r) => /k3s-fetch|image-prepull/.test(r.name)));
  });

  it("prePullImages: a list step right after the K3s step, undone by its delete", async () => {
    const ev = await evaluate("p40", {}, () =>
      edge({ sku: SKUS.p40, k3sVersion: "v1.36.4+k3s1", toolkitVersion: "1.20.0" }, [
        "nvcr.io/nvidia/tritonserver:25.01-py3",
        "registry.site/dp:0.17",
      ]),
    );
    const pre = ev.byName("n1-image-prepull");
    assert.match(
      String(pre.inputs.create),
      /IMAGES='nvcr\.io\/nvidia\/tritonserver:25\.01-py3\nregistry\.site\/dp:0\.17'/,
    );
    assert.match(String(pre.inputs.delete), /forge-edge image-prepull-remove\.sh/);
    assert.deepEqual(ev.dependencies("n1-image-prepull"), ["n1-k3s"]);
    // A changed list re-proves SSH first, like every step's change does.
    assert.ok((ev.byName("n1-ssh-probe").inputs.triggers as unknown[]).includes(pre.inputs.create));
    const none = await evaluate("p40", {}, () =>
      edge({ sku: SKUS.p40, k3sVersion: "v1.36.4+k3s1", toolkitVersion: "1.20.0" }, []),
    );
    assert.ok(!none.resources.some((r) => r.name.endsWith("image-prepull")));
  });
});

function edge(
  bootstrap: Omit<ConstructorParameters<typeof EdgeNode>[1]["bootstrap"], "prePullImages">,
  prePullImages: string[],
): EdgeNode {
  return new EdgeNode("n1", {
    node: { name: "n1", host: "192.0.2.10", port: 22, user: "root", role: "server", gpus: 1 },
    bootstrap: { ...bootstrap, prePullImages },
    join: { serverUrl: "", clusterInit: false },
    sshPrivateKey: "key",
    token: "token",
  });
}

describe("time to serving: the bench figures and the README", () => {
  it("the README's Time to serving table is what `npm run bench:readme` renders from bench-results.json", async () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const doc = JSON.parse(readFileSync(path.join(ROOT, "bench-results.json"), "utf8")) as BenchResults;
    assert.ok(
      doc.timeToServing,
      "bench-results.json has no timeToServing: run `npm run bench -- --time-to-serving`",
    );
    assert.equal(
      currentTimeToServingSection(readme),
      await formattedTimeToServing(doc.timeToServing, path.join(ROOT, "README.md")),
      "README.md's Time to serving table differs from bench-results.json: run `npm run bench:readme`",
    );
    // The stored figures are the model's for the stored inputs: nothing typed by hand.
    const again = timeToServingResults(doc.timeToServing.inputs, new Date(doc.timeToServing.date));
    assert.deepEqual(again.scenarios, doc.timeToServing.scenarios);
  });

  it("--set replaces a default with a measured figure and refuses unknown keys", () => {
    assert.equal(parseSets(["--set", "uplinkMbps=50"]).uplinkMbps, 50);
    assert.equal(parseSets([]).uplinkMbps, DEFAULTS.uplinkMbps.value);
    assert.throws(() => parseSets(["--set", "bogus=1"]), /key one of/);
    const r = timeToServingResults({ ...defaultInputs(), uplinkMbps: 50 }, new Date(0));
    assert.ok(!r.assumed.includes("uplinkMbps"), "a figure the user set is not an assumption");
    assert.match(renderTimeToServing(r), /uplink 50 Mbit\/s,/);
  });
});
