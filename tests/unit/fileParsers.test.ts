/**
 * Every file a committed stack writes for another program, read by that program's own parser (through
 * forge-edge-checker, built in the toolchain: harness/toolchain/checker):
 * - the device plugin's time-slicing config (the ConfigMap the stack declares) -> NVIDIA k8s-device-plugin
 *   v0.20.0's api/config/v1, as the plugin loads its --config-file;
 * - the containerd template scripts/nvidia-runtime.sh writes (run for real in a sandbox, for the stack's K3s and
 *   for a pre-containerd-2 K3s) -> rendered as that K3s release renders it (template file, base template, data
 *   fields), with and without K3s having found the nvidia runtime itself -> loaded by containerd 2's own config
 *   loader and CRI plugin, which must configure the `nvidia` runtime with the toolkit's binary.
 * No checker means no test: this suite fails, saying how to build it (`npm test` builds the toolchain first).
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

import { runtimeParams } from "../../components/edgeNode";
import { SKU_NAMES, SkuName } from "../../config/skus";
import { parseStackConfig, StackConfig } from "../../config/stack";
import { checkerPath } from "../../harness/toolchain";
import { SKU_GPUS } from "../../harness/site";
import { run } from "../../program";
import { renderScript } from "../../scripts/render";
import { NodeSandbox, sandboxSupported } from "./nodeSandbox";
import { evaluateStack, stackSource } from "./support";

const TMPL_DIR = "/var/lib/rancher/k3s/agent/etc/containerd";
const TEMPLATE_FILES = ["config-v3.toml.tmpl", "config.toml.tmpl"] as const;
/** A K3s release that still bundles containerd 1.7 (config.toml.tmpl, version 2 schema only). */
const PRE_CONTAINERD2_K3S = "v1.31.5+k3s1";
const TOOLKIT_RUNTIME = "/usr/bin/nvidia-container-runtime";

interface Ran {
  status: number | null;
  out: string;
}

function runChecker(checker: string, args: string[]): Ran {
  const r = spawnSync(checker, args, { encoding: "utf8", timeout: 60_000 });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/** What nvidia-runtime.sh writes into K3s's template dir for this stack and K3s release: [file name, content]. */
function templateTheScriptWrites(cfg: StackConfig, k3sVersion: string): [string, string] {
  const sb = new NodeSandbox();
  try {
    const gpu = SKU_GPUS[cfg.sku.name as SkuName];
    const node = cfg.nodes[0];
    const line = `${gpu.name}, ${gpu.memoryMiB}, ${gpu.driver}, ${gpu.computeCap}`;
    sb.stub("nvidia-smi", `for _ in $(seq 1 ${node.gpus}); do echo ${JSON.stringify(line)}; done`);
    // The toolkit is already installed at the pinned version: no apt in this test.
    sb.stub("nvidia-ctk", `echo "NVIDIA Container Toolkit CLI version ${cfg.toolkitVersion}"`);
    sb.put(TOOLKIT_RUNTIME, "#!/bin/sh\n", 0o755);
    sb.stub("apt-get", `echo "apt-get must not run here: $*" >&2; exit 100`);
    sb.stub("systemctl", `[ "$1" != is-active ] && exit 0; exit 3`);
    const script = renderScript("nvidia-runtime", runtimeParams(node, { ...cfg.bootstrap, k3sVersion }));
    const r = sb.run(script);
    assert.equal(r.status, 0, `nvidia-runtime.sh (${cfg.sku.name}, K3s ${k3sVersion}) failed:\n${r.stderr}`);
    const written: [string, string][] = [];
    for (const f of TEMPLATE_FILES) {
      const content = sb.read(`${TMPL_DIR}/${f}`);
      if (content !== undefined) written.push([f, content]);
    }
    assert.equal(
      written.length,
      1,
      `nvidia-runtime.sh should write exactly one template, wrote: ${written.map((w) => w[0]).join(", ") || "none"}`,
    );
    return [written[0][0], written[0][1]];
  } finally {
    sb.dispose();
  }
}

describe("files we write, read by the programs that read them (forge-edge-checker)", function () {
  this.timeout(120_000);
  let checker = "";
  before(() => {
    // Throws CheckerMissingError with the command to run: a missing checker fails this suite, never skips it.
    checker = checkerPath();
  });

  for (const stack of SKU_NAMES) {
    describe(`stack ${stack} (Pulumi.${stack}.yaml)`, () => {
      const cfg = parseStackConfig(stack, stackSource(stack));
      let dir = "";
      beforeEach(() => {
        dir = mkdtempSync(path.join(tmpdir(), "forge-parsers-"));
      });
      afterEach(() => rmSync(dir, { recursive: true, force: true }));

      it("declares a time-slicing ConfigMap that the NVIDIA device plugin v0.20.0 loads with its advertised replicas", async () => {
        const ev = await evaluateStack(stack, run);
        const cm = ev
          .ofType("kubernetes:core/v1:ConfigMap")
          .find((r) => (r.inputs.metadata as { name?: string }).name === "nvidia-device-plugin-config");
        assert.ok(cm, "no nvidia-device-plugin-config ConfigMap declared");
        const data = cm.inputs.data as Record<string, string>;
        const keys = Object.keys(data);
        assert.ok(keys.length > 0, "the ConfigMap holds no config");
        for (const key of keys) {
          const file = path.join(dir, key);
          writeFileSync(file, data[key]);
          const r = runChecker(checker, ["check-timeslicing", file]);
          assert.equal(r.status, 0, `the device plugin refuses ${key}:\n${r.out}`);
          assert.match(
            r.out,
            new RegExp(`sharing time-slicing: nvidia\\.com/gpu replicas=${cfg.timeSlicingReplicas}\\b`),
            r.out,
          );
        }
      });

      for (const k3s of [...new Set([cfg.k3sVersion, PRE_CONTAINERD2_K3S])]) {
        it(`writes a containerd template that K3s ${k3s} renders and containerd loads with the nvidia runtime`, function () {
          if (!sandboxSupported())
            throw new Error("this test runs nvidia-runtime.sh in a sandbox: it needs root and unshare");
          const [file, tmpl] = templateTheScriptWrites(cfg, k3s);
          const tmplDir = path.join(dir, "containerd");
          rmSync(tmplDir, { recursive: true, force: true });
          spawnSync("mkdir", ["-p", tmplDir]);
          writeFileSync(path.join(tmplDir, file), tmpl);
          // K3s found the runtime itself (on its PATH) or did not (then the template's own block adds it).
          for (const found of [true, false]) {
            const out = path.join(dir, `config-${found ? "found" : "not-found"}.toml`);
            const args = [
              "render-containerd",
              "--k3s-version",
              k3s,
              "--tmpl-dir",
              tmplDir,
              "--out",
              out,
              "--no-detect",
            ];
            const rendered = runChecker(
              checker,
              found ? [...args, "--nvidia-runtime", TOOLKIT_RUNTIME] : args,
            );
            assert.equal(
              rendered.status,
              0,
              `K3s ${k3s} cannot render ${file}:\n${rendered.out}\n--- ${file}:\n${tmpl}`,
            );
            assert.match(
              rendered.out,
              new RegExp(`template ${path.join(tmplDir, file).replace(/[.]/g, "\\.")}`),
            );
            const loaded = runChecker(checker, ["check-containerd", out]);
            assert.equal(
              loaded.status,
              0,
              `containerd refuses what K3s ${k3s} renders (runtime found: ${found}):\n${loaded.out}`,
            );
            assert.match(
              loaded.out,
              new RegExp(`runtime nvidia type io\\.containerd\\.runc\\.v2 BinaryName ${TOOLKIT_RUNTIME}\\b`),
            );
          }
        });
      }
    });
  }
});
