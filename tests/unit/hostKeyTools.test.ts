/** The pure parts of `npm run pin-host-keys` and `npm run preflight`. */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { parseStackConfig } from "../../config/stack";
import { choosePin, fingerprint } from "../../tools/pinHostKeys";
import { formatTable, parseChecks, preflightParams } from "../../tools/preflight";
import { configSource, parseArgs } from "../../tools/stackConfig";
import { HOST_KEY } from "../badConfigs";
import { stackSource } from "./support";

const ECDSA =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOoRCdRK8TMahjUMyFBa0IBR4sG7pC0RUfrJAtwzbxFv4VM1EjOy4yTMRuAxVYOF8wP7I/cpU50PNfU9KyxoEJs=";
const RSA =
  "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC+tIp6pjN7wXlLIM8Au8Zo8qCow1s0k661p8s2xRV3Gss8ppH7Z0EAmMcglU6BJLH8LXsFainSw5o0h3u/8Z7QQadjccNrVbcJaqFbEXtE/V77rB6KxUI65wPXbvZwUkkJpY3uaM18ewkqFQNMdcNNs7tTGa81seeQDHaBoTRKNw==";

describe("pin-host-keys", () => {
  it("prefers ed25519, then ECDSA, and never pins RSA", () => {
    const scan = (...keys: string[]) =>
      ["# 10.0.0.5:22 SSH-2.0-OpenSSH_9.6", ...keys.map((k) => `10.0.0.5 ${k}`)].join("\n");
    assert.equal(choosePin(scan(RSA, ECDSA, HOST_KEY))?.line, HOST_KEY);
    assert.equal(choosePin(scan(RSA, ECDSA))?.line, ECDSA);
    assert.equal(choosePin(scan(RSA)), undefined);
    assert.equal(choosePin(`[10.0.0.5]:2222 ${HOST_KEY}\n`)?.line, HOST_KEY, "non-default port");
  });

  it("prints the fingerprint OpenSSH prints", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-fp-"));
    try {
      fs.writeFileSync(path.join(dir, "k.pub"), `${HOST_KEY}\n`);
      const want = execFileSync("ssh-keygen", ["-lf", path.join(dir, "k.pub")], { encoding: "utf8" }).split(
        " ",
      )[1];
      assert.equal(fingerprint(HOST_KEY), want);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads `pulumi config --json` output like the engine's config", () => {
    const src = configSource({
      "forge-edge:nodes": { value: '[{"name":"a"}]', objectValue: [{ name: "a" }], secret: false },
      "forge-edge:sshPrivateKey": { value: "k", secret: true },
      "forge-edge:storage": { objectValue: { size: "1Gi" }, secret: false },
      "aws:region": { value: "x", secret: false },
    });
    assert.equal(src.get("nodes"), '[{"name":"a"}]');
    assert.equal(src.get("storage"), '{"size":"1Gi"}');
    assert.equal(src.isSecret("sshPrivateKey"), true);
    assert.deepEqual(src.keys(), ["nodes", "sshPrivateKey", "storage"]);
    assert.deepEqual(
      parseArgs(["--stack", "thor", "--replace"], "u", ["--replace"]).flags,
      new Set(["--replace"]),
    );
    assert.throws(() => parseArgs([], "usage: x"), /--stack is required\nusage: x/);
    assert.throws(() => parseArgs(["--stack", "a", "--force"], "usage: x"), /unknown argument "--force"/);
  });
});

describe("preflight", () => {
  it("derives each node's checks from the stack: ports by role, disk from the model volume, JetPack on Thor", () => {
    const thor = parseStackConfig("thor", stackSource("thor"));
    const p = preflightParams(thor, thor.nodes[0]);
    assert.equal(p.PORTS, "6443 10250 30080");
    assert.equal(p.MIN_FREE_GIB, 220, "20 GiB for K3s and images + the 200Gi local-path model volume");
    assert.equal(p.MIN_L4T_MAJOR, 38);
    assert.equal(p.TOOLKIT_MIN, "1.18.0", "the first toolkit that detects Thor as Tegra");
    assert.equal(p.CGROUP_V2_REQUIRED, true, "v1.36's kubelet refuses cgroup v1");
    const p40 = parseStackConfig("p40", stackSource("p40", { k3sVersion: "v1.33.5+k3s1" }));
    const q = preflightParams(p40, { ...p40.nodes[0], role: "agent" });
    assert.equal(q.PORTS, "10250 30080");
    assert.equal(q.MIN_L4T_MAJOR, 0);
    assert.equal(q.DRIVER_MAX_BRANCH, 580);
    assert.equal(q.TOOLKIT_MIN, "1.20.0", "older toolkits are upgraded to the pin");
    assert.equal(q.CGROUP_V2_REQUIRED, false);
  });

  it("parses the script's lines into one table, failures with their fix", () => {
    const rows = parseChecks(
      "n1",
      "noise\nCHECK\tok\tgpu\t1 × Tesla P40\t\nCHECK\tfail\tdisk\t64 MiB free, 21 GiB needed\tgrow it\n",
    );
    assert.deepEqual(
      rows.map((r) => [r.check, r.status]),
      [
        ["gpu", "ok"],
        ["disk", "fail"],
      ],
    );
    const t = formatTable(rows).split("\n");
    assert.match(t[0], /^NODE\s+CHECK\s+RESULT\s+DETAIL\s+FIX$/);
    assert.match(t[1], /^n1\s+gpu\s+OK\s+1 × Tesla P40$/);
    assert.match(t[2], /^n1\s+disk\s+FAIL\s+64 MiB free, 21 GiB needed\s+grow it$/);
  });
});
