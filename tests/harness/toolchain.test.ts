import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BINARY_NAMES, loadToolchain, ToolchainMissingError } from "../../harness/toolchain";

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
});
