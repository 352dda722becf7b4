/**
 * Thor's unified memory: the models, their CUDA contexts and the containers' memory all come out of the same RAM
 * as the OS and K3s. The budget rule is pure; the reservation reaches K3s's config.yaml as `kubelet-arg` entries.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { k3sParams } from "../../components/edgeNode";
import { unifiedMemoryBudget } from "../../config/fit";
import { kubeletMemoryArgs, SKUS } from "../../config/skus";
import { parseStackConfig } from "../../config/stack";
import { renderScript } from "../../scripts/render";
import { stackSource } from "./support";
import { requireSandbox } from "./nodeSandbox";

describe("unified memory budget (Thor)", () => {
  const committed = { maxReplicas: 3, slicesPerNode: 4, modelMemoryGiB: 24, memoryLimitGiB: 12 };

  it("counts every pod's model, CUDA context and memory limit plus the host reserve", () => {
    const b = unifiedMemoryBudget(SKUS.thor, committed);
    assert.deepEqual(b, {
      podsPerNode: 3,
      perPodGiB: 36.5,
      hostReserveGiB: 16,
      neededGiB: 125.5,
      totalGiB: 128,
      fits: true,
    });
  });

  it("refuses what the GPU-only check let through: 4 × (24 + 0.5 + 16) + 16 = 178 GiB of 128", () => {
    const b = unifiedMemoryBudget(SKUS.thor, { ...committed, maxReplicas: 4, memoryLimitGiB: 16 });
    assert.equal(b?.neededGiB, 178);
    assert.equal(b?.fits, false);
  });

  it("counts at most the pods one node's slices can hold", () => {
    const b = unifiedMemoryBudget(SKUS.thor, { ...committed, maxReplicas: 16, slicesPerNode: 2 });
    assert.equal(b?.podsPerNode, 2);
  });

  it("does not apply to GPUs with their own memory", () => {
    assert.equal(unifiedMemoryBudget(SKUS.rtx4000, committed), undefined);
    assert.equal(unifiedMemoryBudget(SKUS.p40, committed), undefined);
  });

  it("keeps the host's share of the pool for the host: system-reserved + eviction margin = gpu.reservedGiB", () => {
    for (const sku of Object.values(SKUS).filter((s) => s.gpu.unifiedMemory)) {
      const h = sku.hostMemory;
      assert.equal(h.systemReservedGiB + h.evictionHardGiB, sku.gpu.reservedGiB, sku.name);
      assert.equal(h.totalGiB, sku.gpu.memoryGiB, sku.name);
    }
  });

  it("refuses at preview, with the figures, a Thor stack that can reach the OOM killer", () => {
    const base = JSON.parse(stackSource("thor").get("inference")!) as Record<string, unknown>;
    assert.throws(
      () =>
        parseStackConfig(
          "thor",
          stackSource("thor", { inference: { ...base, maxReplicas: 4, memoryLimit: "16Gi" } }),
        ),
      (e: Error) => {
        assert.match(e.message, /^stack "thor" has \d+ invalid configuration value/);
        assert.match(
          e.message,
          /inference\.maxReplicas = 4 can drive NVIDIA Jetson AGX Thor into the OOM killer: .*4 pod\(s\) per node × \(modelMemoryGiB 24 \+ 0\.5 GiB CUDA context \+ memoryLimit 16Gi = 40\.5 GiB\) \+ 16 GiB host reserve \(kubelet system-reserved 14 GiB \+ eviction margin 2 GiB\) = 178 GiB; over by 50 GiB: lower inference\.maxReplicas to 2,/,
        );
        return true;
      },
    );
  });
});

describe("the host's memory reservation reaches the kubelet", () => {
  it("renders system-reserved and eviction-hard, keeping K3s's disk thresholds", () => {
    assert.deepEqual(kubeletMemoryArgs(SKUS.thor), [
      "system-reserved=memory=14336Mi",
      "eviction-hard=memory.available<2048Mi,imagefs.available<5%,nodefs.available<5%",
    ]);
    assert.deepEqual(kubeletMemoryArgs(SKUS.p40), [
      "system-reserved=memory=2048Mi",
      "eviction-hard=memory.available<1024Mi,imagefs.available<5%,nodefs.available<5%",
    ]);
  });

  it("k3s-install.sh writes them into config.yaml as a kubelet-arg list", () => {
    requireSandbox(); // a private mount namespace: fails loudly, never skips
    const node = {
      name: "thor-01",
      host: "192.0.2.10",
      port: 22,
      user: "root",
      role: "server" as const,
      gpus: 1,
    };
    const params = k3sParams(
      node,
      {
        sku: SKUS.thor,
        k3sVersion: "v1.36.4+k3s1",
        // Air-gapped without artifacts: the script writes config.yaml, then stops before installing anything.
        airgap: {
          k3sBinary: "/none",
          installScript: "/none",
          imagesTarball: "/none.tar",
          stackImageTarballs: [],
        },
      },
      { serverUrl: "", clusterInit: false },
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-kubelet-args-"));
    try {
      // Everything the script may write is a private mount: the real machine is never touched.
      const mounts: Record<string, string> = {
        "/etc/rancher": "etc-rancher",
        "/var/lib/rancher": "var-lib-rancher",
        "/var/lib/forge-edge": "forge",
        "/usr/local/bin": "usr-local-bin",
      };
      for (const [mnt, d] of Object.entries(mounts)) {
        fs.mkdirSync(path.join(dir, d));
        fs.mkdirSync(mnt, { recursive: true });
      }
      fs.writeFileSync(path.join(dir, "script.sh"), renderScript("k3s-install", params));
      const inner = [
        ...Object.entries(mounts).map(([mnt, d]) => `mount --bind ${dir}/${d} ${mnt}`),
        `bash ${dir}/script.sh || true`,
      ].join(" && ");
      execFileSync("unshare", ["--mount", "--propagation", "private", "bash", "-c", inner], {
        input: "token-for-the-test\n",
        stdio: ["pipe", "ignore", "ignore"],
      });
      const cfg = yaml.load(fs.readFileSync(path.join(dir, "etc-rancher", "k3s", "config.yaml"), "utf8")) as {
        "kubelet-arg": string[];
        "node-label": string[];
      };
      assert.deepEqual(cfg["kubelet-arg"], kubeletMemoryArgs(SKUS.thor));
      assert.ok(cfg["node-label"].includes("forge-edge.io/sku=thor"));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
