/** Every validation rule: bad input is refused with the stack, the key, the value and what is allowed. */
import * as assert from "node:assert/strict";

import { SKUS, usableGpuMemoryGiB } from "../../config/skus";
import { isCidr, parseCpu, parseMemory } from "../../config/checker";
import { isFile } from "../../config/pulumi";
import { ConfigError, parseStackConfig } from "../../config/stack";
import { HOST_KEY, BAD_CONFIGS as CASES, server } from "../badConfigs";
import { isPlaceholderHostKey, parseHostKey, PLACEHOLDER_HOST_KEY } from "../../config/hostKeys";
import { stackSource } from "./support";

function problems(stack: string, overrides: Record<string, unknown>, secret = true): string[] {
  try {
    // The file check of the engine's config source (config/pulumi.ts), as a preview runs it.
    parseStackConfig(stack, { ...stackSource(stack, overrides, secret), isFile });
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.match(e.message, new RegExp(`^stack "${stack}" has ${e.problems.length} invalid`));
    return [...e.problems];
  }
  return [];
}

describe("stack configuration validation", () => {
  for (const c of CASES) {
    it(`refuses: ${c.name}`, () => {
      const found = problems(c.stack ?? "p40", c.overrides, c.secret ?? true);
      assert.ok(
        found.some((p) => c.expect.test(p)),
        `expected a problem matching ${c.expect}, got:\n${found.join("\n")}`,
      );
    });
  }

  it("reports every problem at once", () => {
    const found = problems("p40", { sku: "a100", nodePort: 1, allowedCidrs: ["x"] });
    assert.ok(found.length >= 3, found.join("\n"));
  });

  it("names the stack in the error", () => {
    assert.throws(
      () => parseStackConfig("edge-7", stackSource("p40", { nodePort: 1 })),
      /^ConfigError: stack "edge-7"/,
    );
  });

  for (const stack of ["thor", "rtx4000", "p40"]) {
    it(`accepts the committed Pulumi.${stack}.yaml`, () => {
      const cfg = parseStackConfig(stack, stackSource(stack));
      assert.equal(cfg.sku.name, stack);
      assert.equal(cfg.nodes[0].user, "root");
    });
  }

  it("accepts a 3-server HA cluster with agents", () => {
    const nodes = [0, 1, 2].map((i) => ({
      name: `s${i}`,
      host: `192.0.2.${10 + i}`,
      role: "server",
      hostKey: HOST_KEY,
    }));
    nodes.push({ name: "a1", host: "192.0.2.20", role: "agent", hostKey: HOST_KEY });
    const cfg = parseStackConfig("p40", stackSource("p40", { nodes }));
    assert.equal(cfg.nodes.length, 4);
    assert.equal(cfg.quota.gpu, 2, "the stack file pins quota.gpu");
  });

  it("derives the quota from the nodes when it is not set", () => {
    const nodes = [server, { name: "a1", host: "192.0.2.20", role: "agent", gpus: 2, hostKey: HOST_KEY }];
    const cfg = parseStackConfig("rtx4000", stackSource("rtx4000", { nodes, quota: undefined }));
    assert.deepEqual(cfg.quota, { gpu: 12, requestsMemory: "96Gi", limitsMemory: "192Gi", pods: 18 });
  });
});

describe("SSH host key pins", () => {
  const ECDSA =
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOoRCdRK8TMahjUMyFBa0IBR4sG7pC0RUfrJAtwzbxFv4VM1EjOy4yTMRuAxVYOF8wP7I/cpU50PNfU9KyxoEJs=";

  it("pins ed25519 and ECDSA keys, without the comment", () => {
    const cfg = parseStackConfig(
      "p40",
      stackSource("p40", { nodes: [{ ...server, hostKey: `${ECDSA} root@box` }] }),
    );
    assert.equal(cfg.nodes[0].hostKey, ECDSA);
    assert.equal(cfg.insecureSkipHostKeyCheck, false);
    const ed = parseHostKey(`${HOST_KEY} comment with spaces`);
    assert.ok(ed.ok && ed.value.line === HOST_KEY);
  });

  it("dials unpinned nodes only on a stack that opts out, and still pins the nodes that have a key", () => {
    const nodes = [
      { name: "n1", host: "192.0.2.10", role: "server", hostKey: HOST_KEY },
      { name: "n2", host: "192.0.2.11", role: "agent" },
    ];
    assert.throws(
      () => parseStackConfig("p40", stackSource("p40", { nodes })),
      /nodes\[1\]\.hostKey is required/,
    );
    const cfg = parseStackConfig("p40", stackSource("p40", { nodes, insecureSkipHostKeyCheck: true }));
    assert.equal(cfg.insecureSkipHostKeyCheck, true);
    assert.equal(cfg.nodes[0].hostKey, HOST_KEY);
    assert.equal(cfg.nodes[1].hostKey, undefined);
  });

  it("the committed stack files carry a documented placeholder pin that no host has", () => {
    for (const stack of ["thor", "rtx4000", "p40"]) {
      const cfg = parseStackConfig(stack, stackSource(stack));
      assert.ok(isPlaceholderHostKey(cfg.nodes[0].hostKey), stack);
    }
    const p = parseHostKey(PLACEHOLDER_HOST_KEY);
    assert.ok(p.ok);
    assert.equal(
      Buffer.from(p.value.key, "base64").subarray(-32).toString(),
      "forge-edge placeholder: pin me!!",
    );
  });
});

describe("quantities and SKU memory arithmetic", () => {
  it("parses Kubernetes quantities", () => {
    assert.equal(parseMemory("16Gi"), 16 * 2 ** 30);
    assert.equal(parseMemory("500M"), 5e8);
    assert.equal(parseMemory("-1Gi"), undefined);
    assert.equal(parseCpu("500m"), 500);
    assert.equal(parseCpu("2"), 2000);
    assert.equal(parseCpu("two"), undefined);
  });

  it("validates CIDRs", () => {
    for (const ok of ["192.0.2.0/24", "0.0.0.0/0", "2001:db8::/32"]) assert.ok(isCidr(ok), ok);
    for (const bad of ["192.0.2.0", "300.0.0.0/8", "192.0.2.0/33", "x/8"]) assert.ok(!isCidr(bad), bad);
  });

  it("usable memory never exceeds the physical memory and shrinks with every slice", () => {
    for (const sku of Object.values(SKUS)) {
      for (let slices = sku.timeSlicing.min; slices <= sku.timeSlicing.max; slices++) {
        const usable = usableGpuMemoryGiB(sku, slices);
        assert.ok(usable < sku.gpu.memoryGiB);
        assert.ok(usableGpuMemoryGiB(sku, slices + 1) < usable);
        // Whatever a stack passes validation with, the model copies fit.
        const maxModel = Math.floor((usable / slices) * 10) / 10;
        assert.ok(slices * maxModel <= usable);
      }
    }
  });

  it("models the SKU differences as data", () => {
    assert.equal(SKUS.thor.deviceDiscovery, "tegra");
    assert.equal(SKUS.thor.metrics.dcgm, false);
    assert.equal(SKUS.thor.gpu.unifiedMemory, true);
    assert.equal(SKUS.rtx4000.gpu.memoryGiB, 24, "RTX PRO 4000 Blackwell has 24 GB, not the Ada card's 20");
    assert.equal(SKUS.p40.driver.maxBranch, 580);
    assert.deepEqual(SKUS.p40.cudaMajors, [11, 12]);
    assert.equal(SKUS.p40.metrics.dcgmProfiling, false);
  });
});
