import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";

import { engineEnv } from "../../harness/engine";
import {
  BINARY_NAMES,
  checkerPath,
  CheckerMissingError,
  loadToolchain,
  pinnedVersions,
  ToolchainMissingError,
} from "../../harness/toolchain";

describe("harness/toolchain", () => {
  const saved = process.env.FORGE_EDGE_CACHE;
  let tmp = "";
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-tc-"));
    process.env.FORGE_EDGE_CACHE = tmp;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.FORGE_EDGE_CACHE;
    else process.env.FORGE_EDGE_CACHE = saved;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("says to run npm run build:toolchain when toolchain.json is missing", () => {
    assert.throws(
      () => loadToolchain(),
      (e: unknown) => {
        assert.ok(e instanceof ToolchainMissingError);
        assert.match(e.message, /run `npm run build:toolchain` first/i);
        assert.ok(e.message.includes(path.join(tmp, "toolchain.json")));
        return true;
      },
    );
  });

  it("reads a valid manifest and rejects a non-executable binary", () => {
    const bin: Record<string, string> = {};
    for (const n of BINARY_NAMES) {
      bin[n] = path.join(tmp, n);
      fs.writeFileSync(bin[n], "#!/bin/sh\n", { mode: 0o755 });
    }
    const manifest = {
      pulumiRoot: tmp,
      pulumiHome: tmp,
      bin,
      kwokStages: "kind: Stage\nmetadata: {name: pod-delete}\n",
      versions: { kwok: "v0.8.0" },
    };
    fs.writeFileSync(path.join(tmp, "toolchain.json"), JSON.stringify(manifest));
    const tc = loadToolchain();
    assert.equal(tc.bin.kwok, bin.kwok);
    assert.equal(tc.versions.kwok, "v0.8.0");
    fs.chmodSync(bin.etcd, 0o644);
    assert.throws(() => loadToolchain(), /bin\["etcd"\].*not an executable/);
    assert.doesNotThrow(() => loadToolchain(["kubectl"]));
  });

  it("says how to build forge-edge-checker when the toolchain lacks it", () => {
    const dir = tmp;
    assert.throws(
      () => checkerPath(),
      (e: Error) => e instanceof CheckerMissingError && /--only checker/.test(e.message),
    );
    fs.writeFileSync(
      path.join(dir, "toolchain.json"),
      JSON.stringify({ bin: { "forge-edge-checker": "/nonexistent" } }),
    );
    assert.throws(() => checkerPath(), /\/nonexistent .*not executable/);
  });

  describe("the built toolchain", () => {
    // The real cache, not the outer beforeEach's empty one.
    beforeEach(() => {
      if (saved === undefined) delete process.env.FORGE_EDGE_CACHE;
      else process.env.FORGE_EDGE_CACHE = saved;
    });

    it("runs the real pulumi-command v1.2.1, built from the pinned upstream archive", function () {
      this.timeout(60_000);
      const tc = loadToolchain(["pulumi"]);
      const v = pinnedVersions();
      const out = execFileSync(tc.bin.pulumi, ["plugin", "ls"], {
        env: { ...process.env, ...engineEnv(fs.mkdtempSync(path.join(os.tmpdir(), "forge-tc-state-"))) },
        encoding: "utf8",
      });
      assert.match(
        out,
        new RegExp(`^command\\s+resource\\s+${v.COMMAND_PROVIDER_VERSION.replace(/\./g, "\\.")}\\s`, "m"),
      );
      const plugin = path.join(
        tc.pulumiHome,
        "plugins",
        `resource-command-v${v.COMMAND_PROVIDER_VERSION}`,
        "pulumi-resource-command",
      );
      const binary = fs.readFileSync(plugin);
      // Upstream's own packages are compiled in (a stand-in would carry its own module path instead).
      assert.ok(binary.includes("github.com/pulumi/pulumi-command/provider/pkg/provider/remote"));
      assert.ok(!binary.includes("forge-edge/harness/command-provider"));
      // The archive it was built from is the pristine one pinned in versions.env.
      const archive = path.resolve(
        __dirname,
        "../../..",
        "shared",
        "third_party",
        v.COMMAND_PROVIDER_ARCHIVE,
      );
      const thirdParty = process.env.FORGE_EDGE_THIRD_PARTY;
      const file = thirdParty ? path.join(thirdParty, v.COMMAND_PROVIDER_ARCHIVE) : archive;
      assert.equal(
        createHash("sha256").update(fs.readFileSync(file)).digest("hex"),
        v.COMMAND_PROVIDER_ARCHIVE_SHA256,
      );
    });

    it("has forge-edge-checker, built with the pinned containerd and device plugin", function () {
      this.timeout(60_000);
      const v = pinnedVersions();
      const out = execFileSync(checkerPath(), ["version"], { encoding: "utf8" });
      assert.match(out, new RegExp(`containerd ${v.CHECKER_CONTAINERD_VERSION}\\b`));
      assert.match(out, new RegExp(`k8s-device-plugin ${v.CHECKER_DEVICE_PLUGIN_VERSION}\\b`));
      assert.equal(loadToolchain([]).versions.checkerContainerd, v.CHECKER_CONTAINERD_VERSION);
    });
  });
});
