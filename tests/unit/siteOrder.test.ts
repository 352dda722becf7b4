/**
 * The order a site's objects are applied in (issue 12, the critical path of `up`): each waits for what it uses. Every
 * Kubernetes object waits for the nodes' K3s steps (a component's `dependsOn` holds back all its children); only the
 * pods' owners wait for node labels, priority classes and advertised GPU slices.
 */
import * as assert from "node:assert/strict";

import { run } from "../../program";
import { existingFiles } from "./airgapFiles";
import { evaluateStack } from "./support";

const K3S = "rtx-01-k3s";
const LABELS = "edge-labels-rtx-01";
const PRIORITY = [
  "platform-forge-llm-critical",
  "platform-forge-high",
  "platform-forge-normal",
  "platform-forge-low",
];

describe("site order: objects wait for what they use", () => {
  it("GPU sharing waits for the nodes' K3s only; its DaemonSets also for labels and priority classes", async () => {
    const ev = await evaluateStack("rtx4000", run);
    assert.deepEqual(ev.dependencies("gpu"), [K3S]);
    assert.deepEqual(ev.dependencies("gpu-namespace"), []);
    assert.ok(!ev.dependencies("gpu-time-slicing").includes(LABELS));
    for (const ds of ["gpu-device-plugin", "gpu-dcgm-exporter"]) {
      const deps = ev.dependencies(ds);
      for (const d of [LABELS, ...PRIORITY, "gpu-namespace", "gpu-runtime-class"])
        assert.ok(deps.includes(d), `${ds} must wait for ${d}: ${deps.join(", ")}`);
    }
  });

  it("the inference objects wait for the platform; only the Deployment waits for the device plugin and labels", async () => {
    const ev = await evaluateStack("rtx4000", run);
    const platform = ["platform-namespace", ...PRIORITY, "platform-quota", "platform-limits"];
    assert.deepEqual(ev.dependencies("inference"), [K3S, ...platform]);
    assert.deepEqual(ev.dependencies("inference-config"), []);
    const deployment = ev.dependencies("inference-deployment");
    for (const d of ["inference-config", "gpu-device-plugin", LABELS])
      assert.ok(deployment.includes(d), `the Deployment must wait for ${d}: ${deployment.join(", ")}`);
    assert.ok(!deployment.includes("gpu-dcgm-exporter"), "metrics are not a precondition of serving");
  });

  it("the platform waits for the nodes' K3s steps, not their labels", async () => {
    const ev = await evaluateStack("rtx4000", run);
    assert.deepEqual(ev.dependencies("platform"), [K3S]);
  });

  it("in an air gap, only the pods' owners wait for the nodes' image imports", async () => {
    const airgap = existingFiles({
      k3sBinary: "k3s",
      installScript: "install.sh",
      imagesTarball: "k3s-airgap-images-amd64.tar.zst",
      stackImageTarballs: ["images/device-plugin.tar", "images/inference.tar"],
    });
    const ev = await evaluateStack("p40", run, { airgap });
    const IMPORT = "p40-01-airgap-import";
    for (const owner of ["gpu-device-plugin", "gpu-dcgm-exporter", "inference-deployment"])
      assert.ok(ev.dependencies(owner).includes(IMPORT), `${owner}: ${ev.dependencies(owner).join(", ")}`);
    for (const other of [
      "gpu",
      "platform",
      "inference",
      "gpu-namespace",
      "inference-config",
      "inference-service",
    ])
      assert.ok(!ev.dependencies(other).includes(IMPORT), `${other} waits for the import`);
  });
});
