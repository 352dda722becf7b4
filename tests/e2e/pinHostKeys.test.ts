/**
 * The host-key flow a user follows on real boxes, through the real Pulumi CLI and real sshd hosts on loopback:
 * `npm run pin-host-keys` fills the pins from ssh-keyscan into the stack config (`pulumi config set --path`), never
 * overwrites a changed key without --replace, and `npm run preflight` then dials the nodes with those pins.
 */
import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { PLACEHOLDER_HOST_KEY } from "../../config/hostKeys";
import { engineEnv, projectCopy } from "../../harness/engine";
import { SKU_GPUS, stackFileValues } from "../../harness/site";
import { KeyPair, makeKeyPair, SshHost, startSshHost } from "../../harness/sshHost";
import { loadToolchain } from "../../harness/toolchain";
import { HOST_KEY } from "../badConfigs";

const ROOT = path.resolve(__dirname, "../..");
const STACK = "pins";

describe("e2e: pin-host-keys and preflight through the Pulumi CLI", function () {
  this.timeout(10 * 60_000);
  let dir: string;
  let project: string;
  let key: KeyPair;
  let env: NodeJS.ProcessEnv;
  const hosts: SshHost[] = [];

  const pulumi = (args: string[], input?: string): string =>
    execFileSync(env.PULUMI!, [...args, "--stack", STACK], { cwd: project, env, input, encoding: "utf8" });
  const tool = (name: string, ...args: string[]) =>
    spawnSync("npx", ["ts-node", `tools/${name}.ts`, "--stack", STACK, "--cwd", project, ...args], {
      cwd: ROOT,
      env,
      encoding: "utf8",
    });
  const pins = (): (string | undefined)[] => {
    const cfg = JSON.parse(pulumi(["config", "--json"])) as Record<string, { objectValue?: unknown }>;
    return (cfg["forge-edge:nodes"].objectValue as { hostKey?: string }[]).map((n) => n.hostKey);
  };

  before(async () => {
    const tc = loadToolchain(["pulumi"]);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-e2e-pins-"));
    key = makeKeyPair("forge-edge-pins");
    for (const i of [0, 1]) {
      hosts.push(
        await startSshHost({
          name: `pin-${i}`,
          ip: `127.0.1.${245 + i}`,
          dir: path.join(dir, `host-${i}`),
          authorizedKey: key.publicKeyLine,
          gpu: { ...SKU_GPUS.rtx4000, count: 1 },
        }),
      );
    }
    env = { ...process.env, ...engineEnv(path.join(dir, "state")), PULUMI: tc.bin.pulumi };
    fs.mkdirSync(path.join(dir, "state"));
    project = projectCopy(dir);
    execFileSync(tc.bin.pulumi, ["stack", "init", STACK], { cwd: project, env, stdio: "ignore" });
    // The committed rtx4000 stack with two nodes: one without a pin, one with the stack file's placeholder.
    const file = path.join(project, `Pulumi.${STACK}.yaml`);
    const doc = (yaml.load(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
    const values = stackFileValues("rtx4000");
    values.nodes = [
      { name: "pin-0", host: hosts[0].host, role: "server" },
      { name: "pin-1", host: hosts[1].host, role: "agent", hostKey: PLACEHOLDER_HOST_KEY },
    ];
    values.storage = { size: "1Gi", storageClass: "local-path" };
    doc.config = Object.fromEntries(Object.entries(values).map(([k, v]) => [`forge-edge:${k}`, v]));
    fs.writeFileSync(file, yaml.dump(doc));
    pulumi(["config", "set", "--secret", "sshPrivateKey"], key.privateKeyPem);
  });

  after(async () => {
    for (const h of hosts) await h.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("fills every node's pin from ssh-keyscan with `pulumi config set --path`, ed25519 first", () => {
    const r = tool("pinHostKeys");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /nodes\[0\] pin-0 \(127\.0\.1\.245:22\): pinned ssh-ed25519 SHA256:\S+/);
    assert.match(r.stdout, /nodes\[1\] pin-1 \(127\.0\.1\.246:22\): pinned ssh-ed25519 SHA256:\S+/);
    assert.deepEqual(pins(), [hosts[0].hostKeyLine, hosts[1].hostKeyLine]);
  });

  it("is idempotent", () => {
    const r = tool("pinHostKeys");
    assert.equal(r.status, 0, r.stderr);
    assert.equal((r.stdout.match(/already pinned/g) ?? []).length, 2);
  });

  it("never overwrites a pin the host no longer matches without --replace", () => {
    pulumi(["config", "set", "--path", "nodes[0].hostKey", HOST_KEY]);
    const r = tool("pinHostKeys");
    assert.equal(r.status, 1);
    assert.match(r.stderr, /pin-0 .*the stack pins SHA256:\S+\. .*rerun with --replace/);
    assert.equal(pins()[0], HOST_KEY);
    const again = tool("pinHostKeys", "--replace");
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /pin-0 .*pinned ssh-ed25519 .*replaced the old pin/);
    assert.deepEqual(pins(), [hosts[0].hostKeyLine, hosts[1].hostKeyLine]);
  });

  it("`npm run preflight` reads the stack through the CLI and dials the nodes with their pins", () => {
    const r = tool("preflight");
    assert.ok(r.status === 0 || r.status === 1, `${r.status}: ${r.stderr}`);
    for (const n of ["pin-0", "pin-1"]) {
      assert.match(r.stdout, new RegExp(`^${n}\\s+ssh\\s+OK\\s+logged in as root@`, "m"));
      assert.match(r.stdout, new RegExp(`^${n}\\s+host key\\s+OK\\s+matches the pin`, "m"));
      assert.match(r.stdout, new RegExp(`^${n}\\s+gpu\\s+OK\\s+1 × NVIDIA RTX PRO 4000 Blackwell`, "m"));
    }
    assert.match(
      r.stdout,
      r.status === 0 ? /preflight passed on 2 node\(s\)/ : /check\(s\) failed on stack "pins"/,
    );
    assert.ok(!(r.stdout + r.stderr).includes(key.privateKeyPem.split("\n")[1]), "the SSH key leaked");
  });
});
