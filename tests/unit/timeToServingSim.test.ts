import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { withPodReadyDelay } from "../../harness/controlPlane";
import { defaultInputs, timeToServing } from "../../harness/timeToServing";
import {
  containerdName,
  formattedTimeToServingSim,
  lanShaping,
  modelAirgapSeconds,
  recordedDelays,
  renderTimeToServingSim,
  SIM_SCALE,
  simPlan,
  simSummary,
  TimeToServingSimResults,
  TTS_SIM_SECTION,
} from "../../harness/ttsSim";

const ROOT = path.resolve(__dirname, "../..");

describe("time to serving, simulated: durations derived from the model's inputs", () => {
  it("scales the model's seconds and sizes by one factor; byte rates stay the model's", () => {
    const i = defaultInputs();
    const p = simPlan(i, 0.05);
    assert.equal(p.scale, 0.05);
    assert.deepEqual(p.durations.delays["k3s-start"], { seconds: i.k3sStartSeconds * 0.05 });
    assert.deepEqual(p.durations.delays["image-import"], { bytesPerSecond: i.importMBps * 1e6 });
    assert.equal(p.modelLoadMs, i.modelLoadSeconds * 0.05 * 1000);
    assert.deepEqual(p.files, {
      k3sImages: i.k3sImagesMB * 1e6 * 0.05,
      inferenceImage: i.inferenceImageGB * 1e9 * 0.05,
      devicePluginImage: i.devicePluginImageMB * 1e6 * 0.05,
    });
    const half = simPlan(i, 0.025);
    assert.equal(half.durations.delays["k3s-start"].seconds! * 2, p.durations.delays["k3s-start"].seconds);
    assert.equal(half.modelLoadMs * 2, p.modelLoadMs);
  });

  it("the k3s double's import of the staged files takes the model's import time, scaled", () => {
    const i = defaultInputs();
    const p = simPlan(i, SIM_SCALE);
    const staged = p.files.k3sImages + p.files.inferenceImage + p.files.devicePluginImage;
    const modelImportS = (i.k3sImagesMB + i.inferenceImageGB * 1000 + i.devicePluginImageMB) / i.importMBps;
    const doubleImportS = staged / p.durations.delays["image-import"].bytesPerSecond!;
    assert.ok(
      Math.abs(doubleImportS - modelImportS * SIM_SCALE) < 1e-9,
      `${doubleImportS} vs ${modelImportS}`,
    );
  });

  it("predicts with the toolkit already installed, which is off the air gap's critical path", () => {
    const i = defaultInputs();
    const p = simPlan(i, 0.05);
    assert.equal(p.inputs.toolkitDownloadMB, 0);
    assert.equal(p.inputs.toolkitLocalSeconds, 0);
    const full = timeToServing(i).scenarios.filter((s) => s.mode === "airgap");
    for (const order of ["current", "restructured"] as const) {
      const model = full.find((s) => s.order === order)!.seconds;
      assert.ok(Math.abs(p.predicted[order] - model * 0.05) < 1e-3, `${order}: ${p.predicted[order]}`);
      assert.equal(modelAirgapSeconds(i, order), model);
    }
  });

  it("refuses a scale outside (0, 1]", () => {
    assert.throws(() => simPlan(defaultInputs(), 0), /scale/);
    assert.throws(() => simPlan(defaultInputs(), 2), /scale/);
  });
});

describe("time to serving, simulated: image names as containerd lists them", () => {
  const CASES: [string, string][] = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["vllm/vllm-openai:v0.11.0", "docker.io/vllm/vllm-openai:v0.11.0"],
    ["nvcr.io/nvidia/k8s-device-plugin:v0.17.4", "nvcr.io/nvidia/k8s-device-plugin:v0.17.4"],
    ["localhost:5000/app:1", "localhost:5000/app:1"],
    ["index.docker.io/library/redis:7", "docker.io/library/redis:7"],
    ["registry.site/inference@sha256:" + "a".repeat(64), "registry.site/inference@sha256:" + "a".repeat(64)],
  ];

  it("containerdName normalises as distribution/reference's ParseDockerRef", () => {
    for (const [ref, want] of CASES) assert.equal(containerdName(ref), want, ref);
  });

  it("the k3s double's docker_ref (what its image watcher records) agrees, and refuses an invalid name", () => {
    const lib = path.join(ROOT, "harness", "doubles", "lib.sh");
    for (const [ref, want] of CASES) {
      const r = spawnSync("bash", ["-c", `set -euo pipefail; . "$0"; docker_ref "$1"`, lib, ref], {
        encoding: "utf8",
        env: { ...process.env, FORGE_HARNESS_DIR: "/nonexistent" },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), want, ref);
    }
    const bad = spawnSync("bash", ["-c", `. "$0"; docker_ref "$1"`, lib, "Bad//Name:x"], {
      encoding: "utf8",
    });
    assert.notEqual(bad.status, 0);
  });
});

describe("time to serving, simulated: the SFTP link", () => {
  it("shapes only the traffic to the host's sshd, at the model's LAN rate, and only on loopback", () => {
    const p = simPlan(defaultInputs(), 0.05);
    assert.equal(p.lanMbps, defaultInputs().lanMbps);
    const { add, remove } = lanShaping("127.0.1.200", p.lanMbps);
    assert.ok(add.every((a) => a.join(" ").includes("dev lo")));
    assert.match(add[0].join(" "), /^qdisc add dev lo root handle 1: htb default 10$/);
    assert.match(add[2].join(" "), /classid 1:20 htb rate 1000mbit /);
    assert.match(add[3].join(" "), /match ip dst 127\.0\.1\.200\/32 match ip dport 22 0xffff flowid 1:20$/);
    assert.deepEqual(remove, ["qdisc", "del", "dev", "lo", "root"]);
    assert.throws(() => lanShaping("10.0.0.1", 1000), /loopback/);
  });
});

describe("time to serving, simulated: kwok's model-load delay", () => {
  const STAGES = [
    "kind: Stage\napiVersion: kwok.x-k8s.io/v1alpha1\nmetadata:\n  name: pod-ready\nspec:\n  resourceRef:\n    apiGroup: v1\n" +
      "    kind: Pod\n  selector:\n    matchExpressions:\n    - key: '.status.phase'\n      operator: 'In'\n      values:\n" +
      "      - 'Pending'\n  next:\n    statusTemplate: |\n      phase: Running\n",
    "kind: Stage\napiVersion: kwok.x-k8s.io/v1alpha1\nmetadata:\n  name: pod-delete\nspec:\n  resourceRef:\n" +
      "    apiGroup: v1\n    kind: Pod\n  next:\n    delete: true\n",
  ].join("---\n");
  type Doc = {
    metadata: { name: string };
    spec: {
      selector?: { matchExpressions: { key: string; operator: string; values?: string[] }[] };
      delay?: { durationMilliseconds: number };
      next: unknown;
    };
  };

  it("adds a delayed pod-ready for the labelled pods and narrows pod-ready to the others", () => {
    const out = withPodReadyDelay(STAGES, {
      label: { key: "app", value: "inference-server" },
      milliseconds: 15000,
    });
    const docs = yaml.loadAll(out) as Doc[];
    assert.deepEqual(
      docs.map((d) => d.metadata.name),
      ["pod-ready", "pod-delete", "pod-ready-delayed"],
    );
    const [ready, , delayed] = docs;
    const label = { key: '.metadata.labels["app"]', values: ["inference-server"] };
    assert.deepEqual(ready.spec.selector!.matchExpressions.at(-1), { ...label, operator: "NotIn" });
    assert.deepEqual(delayed.spec.selector!.matchExpressions.at(-1), { ...label, operator: "In" });
    assert.deepEqual(delayed.spec.selector!.matchExpressions[0], ready.spec.selector!.matchExpressions[0]);
    assert.deepEqual(delayed.spec.delay, { durationMilliseconds: 15000 });
    assert.equal(ready.spec.delay, undefined);
    assert.deepEqual(delayed.spec.next, ready.spec.next);
  });

  it("refuses stages without pod-ready", () => {
    assert.throws(
      () =>
        withPodReadyDelay(STAGES.split("---\n")[1], { label: { key: "app", value: "x" }, milliseconds: 1 }),
      /pod-ready/,
    );
  });
});

describe("time to serving, simulated: results and the README", () => {
  it("sums the delays the doubles recorded per name", () => {
    assert.deepEqual(
      recordedDelays([
        "1796052861 delay k3s-start 1.25 bytes=0",
        "1796052862 k3s server --disable traefik",
        "1796052863 delay k3s-start 4.7 bytes=515000000",
      ]),
      { "k3s-start": 5.95 },
    );
  });

  it("the README's measured table is what the bench rendered from bench-results.json", async () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const doc = JSON.parse(readFileSync(path.join(ROOT, "bench-results.json"), "utf8")) as {
      timeToServingSim?: TimeToServingSimResults;
    };
    assert.ok(
      doc.timeToServingSim,
      "bench-results.json has no timeToServingSim: run `npm run bench -- --time-to-serving-sim`",
    );
    assert.equal(
      TTS_SIM_SECTION.current(readme),
      await formattedTimeToServingSim(doc.timeToServingSim, path.join(ROOT, "README.md")),
      "README.md's measured time-to-serving table differs from bench-results.json",
    );
    // The predictions stored are the model's for the stored scale: nothing typed by hand.
    assert.deepEqual(
      doc.timeToServingSim.plan.predicted,
      simPlan(defaultInputs(), doc.timeToServingSim.scale).predicted,
    );
  });

  it("renders medians, the saving and the model's prediction side by side", () => {
    const run = (program: "before" | "after", servingS: number) => ({
      program,
      servingS,
      fromProbeS: servingS - 10,
      upS: servingS,
      k3sStartS: 1,
      k3sEndS: 2,
      doublesDelayS: {},
    });
    const plan = simPlan(defaultInputs(), 0.05);
    const r: TimeToServingSimResults = {
      date: "2026-11-30T16:00:00.000Z",
      machine: { cores: 2, memoryGiB: 24, loadavg1: 0.5 },
      scale: 0.05,
      before: { commit: "b91ca91^", note: "" },
      mode: "airgap",
      plan,
      runs: [run("before", 40), run("before", 44), run("before", 60), run("after", 39), run("after", 41)],
    };
    assert.deepEqual(simSummary(r), {
      before: 44,
      after: 40,
      saved: 4,
      beforeFromProbe: 34,
      afterFromProbe: 30,
      savedFromProbe: 4,
    });
    const md = renderTimeToServingSim(r);
    const saved = (plan.predicted.current - plan.predicted.restructured).toFixed(1);
    assert.match(md, new RegExp(`\\| saved \\| 4\\.0 \\| 4\\.0 \\| ${saved.replace(".", "\\.")} \\|`));
    assert.match(
      md,
      new RegExp(
        `\\| today \\| 40\\.0 \\| 30\\.0 \\| ${plan.predicted.restructured.toFixed(1).replace(".", "\\.")} \\|`,
      ),
    );
    assert.match(md, /K3s start 1\.25 s and imported at 150 MB\/s the tarballs of/);
    assert.match(md, /before 20\.0 s, today 2\.0 s\. Each run: before 40\.0 \(30\.0; K3s step 1\.0–2\.0\)/);
  });
});
