/** Node scripts: declared parameters, quoting, byte-exact transport over SSH, and which step a change re-runs. */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

import { run } from "../../program";
import { declaredParams, remoteCommand, renderScript, ScriptName, shellQuote } from "../../scripts/render";
import {
  airgapFiles,
  airgapImportParams,
  fetchParams,
  k3sParams,
  prePullParams,
  runtimeParams,
} from "../../components/edgeNode";
import { SKUS } from "../../config/skus";
import { NodeConfig, parseStackConfig } from "../../config/stack";
import { evaluateStack, ROOT, stackFileConfig, stackSource } from "./support";
import { preflightParams } from "../../tools/preflight";
import { HOST_KEY } from "../badConfigs";

const node: NodeConfig = { name: "n1", host: "192.0.2.10", port: 22, user: "root", role: "server", gpus: 1 };
const SCRIPTS: Record<ScriptName, Record<string, string | number | boolean>> = {
  "nvidia-runtime": runtimeParams(node, {
    sku: SKUS.p40,
    toolkitVersion: "1.20.0",
    k3sVersion: "v1.36.4+k3s1",
  }),
  "nvidia-runtime-revert": {},
  "k3s-install": k3sParams(
    node,
    { sku: SKUS.p40, k3sVersion: "v1.36.4+k3s1" },
    { serverUrl: "", clusterInit: false },
  ),
  "k3s-uninstall": { ROLE: "server" },
  "read-kubeconfig": {},
  "drain-node": { NODE_NAME: "n2", DRAIN_TIMEOUT: 300 },
  "site-health": { NAMESPACE: "forge-cognition", DEPLOYMENT: "inference-server", TIMEOUT: 600 },
  preflight: preflightParams(parseStackConfig("p40", stackSource("p40")), { ...node, hostKey: HOST_KEY }),
  "airgap-stage": { OWNER: "ubuntu" },
  "airgap-unstage": {},
  registries: {},
  "registries-remove": {},
  "k3s-fetch": fetchParams({ sku: SKUS.p40, k3sVersion: "v1.36.4+k3s1" }),
  "k3s-fetch-remove": {},
  "image-prepull": prePullParams(["nvcr.io/nvidia/tritonserver:25.01-py3"], { k3sVersion: "v1.36.4+k3s1" }),
  "image-prepull-remove": {},
  "airgap-import": airgapImportParams(
    airgapFiles(
      {
        k3sBinary: "/s/k3s",
        installScript: "/s/i.sh",
        imagesTarball: "/s/k.tar",
        stackImageTarballs: ["/s/inf.tar"],
      },
      SKUS.p40,
    ).filter((f) => f.stack),
    [10e9],
    ["docker.io/library/inference:1"],
  ),
  "airgap-import-remove": {},
};

describe("node scripts", () => {
  it("every .sh file is strict, declares its parameters and is rendered by name", () => {
    const files = readdirSync(path.join(ROOT, "scripts")).filter((f) => f.endsWith(".sh"));
    assert.deepEqual(files.map((f) => f.replace(/\.sh$/, "")).sort(), Object.keys(SCRIPTS).sort());
    for (const f of files) {
      const src = readFileSync(path.join(ROOT, "scripts", f), "utf8");
      assert.match(src, /^#!\/usr\/bin\/env bash\n/, f);
      assert.match(src, /\nset -euo pipefail\n/, f);
      for (const p of declaredParams(src))
        assert.match(src, new RegExp(`\\$\\{${p}[:?}]`), `${f} must check ${p}`);
    }
  });

  for (const [name, params] of Object.entries(SCRIPTS) as [ScriptName, Record<string, string>][]) {
    it(`${name}.sh renders to valid bash with every parameter bound`, () => {
      const text = renderScript(name, params);
      for (const p of Object.keys(params)) assert.match(text, new RegExp(`^${p}=`, "m"));
      execFileSync("bash", ["-n"], { input: text });
    });
  }

  it("refuses missing and undeclared parameters", () => {
    assert.throws(() => renderScript("k3s-uninstall", {}), /missing parameter\(s\) ROLE/);
    assert.throws(
      () => renderScript("k3s-uninstall", { ROLE: "agent", EXTRA: 1 }),
      /undeclared parameter\(s\) EXTRA/,
    );
  });

  it("quotes any value safely", () => {
    for (const v of ["plain", "it's", "$(rm -rf /)", "a\nb", "`x`", "\\", "'"]) {
      assert.equal(execFileSync("bash", ["-c", `printf %s ${shellQuote(v)}`]).toString(), v);
    }
  });

  it("delivers the rendered script byte-exact through a POSIX login shell, with sudo for non-root users", () => {
    // A stand-in `bash` on PATH prints the script it was handed instead of running it.
    const dir = mkdtempSync(path.join(tmpdir(), "forge-render-"));
    writeFileSync(path.join(dir, "bash"), '#!/bin/sh\nprintf "%s" "$2"\n');
    writeFileSync(path.join(dir, "sudo"), '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n');
    chmodSync(path.join(dir, "bash"), 0o755);
    chmodSync(path.join(dir, "sudo"), 0o755);
    for (const user of ["root", "ubuntu"]) {
      const cmd = remoteCommand("k3s-install", SCRIPTS["k3s-install"], user);
      assert.equal(cmd.startsWith("sudo -n "), user !== "root");
      const out = execFileSync("/bin/sh", ["-c", cmd], { env: { PATH: `${dir}:/usr/bin:/bin` } }).toString();
      assert.equal(out, renderScript("k3s-install", SCRIPTS["k3s-install"]).replace(/\n+$/, ""));
    }
  });
});

describe("what a change re-runs", () => {
  const commands = async (overrides: Record<string, unknown>) => {
    const ev = await evaluateStack("p40", run, overrides);
    return Object.fromEntries(ev.ofType("command:remote:Command").map((r) => [r.name, r.inputs]));
  };

  it("a K3s version bump changes the K3s step (and the runtime step, which picks K3s's containerd template) and re-reads the kubeconfig", async () => {
    const before = await commands({});
    const after = await commands({ k3sVersion: "v1.36.5+k3s1" });
    assert.deepEqual(Object.keys(after).sort(), Object.keys(before).sort());
    assert.match(String(after["p40-01-nvidia-runtime"].create), /K3S_VERSION='v1\.36\.5\+k3s1'/);
    assert.notEqual(after["p40-01-k3s"].create, before["p40-01-k3s"].create);
    assert.match(String(after["p40-01-k3s"].create), /K3S_VERSION='v1\.36\.5\+k3s1'/);
    assert.notDeepEqual(after["edge-kubeconfig"].triggers, before["edge-kubeconfig"].triggers);
  });

  it("a toolkit version change re-runs only the runtime step", async () => {
    const before = await commands({});
    const after = await commands({ toolkitVersion: "1.19.1" });
    assert.notEqual(after["p40-01-nvidia-runtime"].create, before["p40-01-nvidia-runtime"].create);
    assert.equal(after["p40-01-k3s"].create, before["p40-01-k3s"].create);
    assert.deepEqual(after["edge-kubeconfig"].triggers, before["edge-kubeconfig"].triggers);
  });

  it("a time-slicing change touches no node at all", async () => {
    const before = await commands({});
    const after = await commands({
      timeSlicingReplicas: 3,
      inference: { ...inferenceOf("p40"), modelMemoryGiB: 6 },
    });
    for (const name of Object.keys(before)) assert.deepEqual(after[name].create, before[name].create, name);
  });

  it("each rendered script carries the hash of its source, so editing a script re-runs its step", () => {
    const text = renderScript("nvidia-runtime", SCRIPTS["nvidia-runtime"]);
    assert.match(text, /^# forge-edge nvidia-runtime\.sh sha256:[0-9a-f]{16}\n/);
  });
});

function inferenceOf(stack: string): Record<string, unknown> {
  return JSON.parse(stackFileConfig(stack)["forge-edge:inference"]) as Record<string, unknown>;
}
