/**
 * Issue 12 item 3 on the simulated site: an air gap with the stack's image tarballs. The real engine runs the
 * program; K3s's step no longer waits for the stack tarballs, the airgap-import step places them in agent/images once
 * K3s runs, the K3s double's image watcher imports them (harness/doubles/k3s), and the step returns once
 * `k3s ctr images ls` lists every image the stack runs. A second up changes nothing; destroy leaves the host as it was.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { EngineEvent } from "@pulumi/pulumi/automation";

import { stackImageRefs } from "../../config/images";
import { parseStackConfig } from "../../config/stack";
import { EngineStack } from "../../harness/engine";
import { useSite } from "../../harness/fixture";
import { ConfigEntry, Site } from "../../harness/site";
import { writeImageTarball } from "../../harness/ttsSimBench";

const SKU = "p40";

describe("e2e: air-gapped stack images imported once K3s runs (issue 12.3)", function () {
  this.timeout(15 * 60_000);
  let tarDir: string | undefined;
  let site: Site;
  let es: EngineStack;
  let pristine: Record<string, string>;
  let refs: string[] = [];

  /** The site's config plus one tarball per image the stack runs (each holding that image under its name). */
  const withStackTarballs = (s: Site): Record<string, ConfigEntry> => {
    const cfg = parseStackConfig(SKU, {
      get: (k) => (k === "airgap" ? undefined : s.config[k]?.value),
      isSecret: (k) => s.config[k]?.secret === true,
    });
    refs = stackImageRefs(cfg, cfg.inference.image);
    const dir = (tarDir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-airgap-import-")));
    const stackImageTarballs = refs.map((ref, i) =>
      writeImageTarball(path.join(dir, `stack-image-${i}.tar`), [ref], 256 * 1024),
    );
    const airgap = { ...(JSON.parse(s.config.airgap.value) as object), stackImageTarballs };
    return { ...s.config, airgap: { value: JSON.stringify(airgap) } };
  };

  useSite(this, {
    name: "airgapimport",
    sku: SKU,
    config: withStackTarballs,
    destroy: true,
    ready: (f) => {
      ({ site, es } = f);
      pristine = site.hosts[0].snapshot();
    },
    beforeStop: () => {
      if (tarDir) fs.rmSync(tarDir, { recursive: true, force: true });
    },
  });

  it("up: K3s starts without the stack tarballs; the import step, after it, returns once containerd lists them", async () => {
    const t0 = Date.now();
    const at: Record<string, { start?: number; end?: number }> = {};
    const onEvent = (e: EngineEvent) => {
      const m = e.resourcePreEvent?.metadata ?? e.resOutputsEvent?.metadata;
      if (!m) return;
      const name = m.urn.split("::").pop()!;
      at[name] ??= {};
      if (e.resourcePreEvent) at[name].start = Date.now() - t0;
      else at[name].end = Date.now() - t0;
    };
    const res = await es.stack.up({ onOutput: () => undefined, onEvent });
    assert.equal(res.summary.result, "succeeded");
    const node = site.hosts[0].name;
    const k3s = at[`${node}-k3s`];
    const imp = at[`${node}-airgap-import`];
    assert.ok(
      k3s?.end !== undefined && imp?.start !== undefined && imp.end !== undefined,
      JSON.stringify(at),
    );
    assert.ok(imp.start >= k3s.end, `the import started before K3s ran: ${JSON.stringify({ k3s, imp })}`);
    console.log(`      steps (ms from up): ${JSON.stringify({ k3s, import: imp })}`);

    // K3s's watcher imported each placed tarball (its log line), and the step recorded what it placed.
    const journal = fs.readFileSync(
      path.join(site.hosts[0].rootDirs["/var/log/forge-edge"], "systemd-state", "k3s.journal"),
      "utf8",
    );
    for (let i = 0; i < refs.length; i++)
      assert.match(
        journal,
        new RegExp(`Imported images from /var/lib/rancher/k3s/agent/images/stack-image-${i}\\.tar`),
      );
    const record = fs.readFileSync(
      path.join(site.hosts[0].rootDirs["/var/lib/forge-edge"], "airgap-import"),
      "utf8",
    );
    assert.deepEqual(
      record
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ")[0]),
      refs.map((_, i) => `stack-image-${i}.tar`),
    );
  });

  it("a second up changes nothing", async () => {
    await es.stack.preview({ onOutput: () => undefined, expectNoChanges: true });
    const res = await es.stack.up({ onOutput: () => undefined });
    const changes = Object.entries(res.summary.resourceChanges ?? {}).filter(([op]) => op !== "same");
    assert.deepEqual(changes, []);
  });

  it("destroy: the placed tarballs, the record and K3s are gone, the host is as before", async () => {
    const res = await es.stack.destroy({ onOutput: () => undefined });
    assert.equal(res.summary.result, "succeeded");
    assert.deepEqual(site.hosts[0].snapshot(), pristine);
  });
});
