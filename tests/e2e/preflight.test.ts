/**
 * `npm run preflight` against simulated boxes (real sshd hosts with a configurable fake GPU): a healthy node passes,
 * and a wrong driver branch, the wrong SKU, a login without sudo, a full disk, a changed host key and a placeholder
 * pin each fail with their fix. Read-only: nothing on a host changes.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { PLACEHOLDER_HOST_KEY } from "../../config/hostKeys";
import { parseStackConfig, StackConfig } from "../../config/stack";
import { SKU_GPUS } from "../../harness/site";
import { KeyPair, makeKeyPair, SshHost, SshHostOptions, startSshHost } from "../../harness/sshHost";
import { formatTable, Row, runPreflight } from "../../tools/preflight";
import { HOST_KEY } from "../badConfigs";
import { stackSource } from "../unit/support";

const IP_BASE = 230;

describe("e2e: preflight checks real SSH hosts read-only, one table with every failure's fix", function () {
  this.timeout(10 * 60_000);
  let dir: string;
  let key: KeyPair;
  const hosts: Record<string, SshHost> = {};
  let rows: Row[] = [];
  const snapshots: Record<string, Record<string, string>> = {};

  const start = async (name: string, i: number, extra: Partial<SshHostOptions>): Promise<void> => {
    hosts[name] = await startSshHost({
      name,
      ip: `127.0.1.${IP_BASE + i}`,
      dir: path.join(dir, name),
      authorizedKey: key.publicKeyLine,
      gpu: { ...SKU_GPUS.rtx4000, count: 1 },
      ...extra,
    });
  };

  /** An rtx4000 stack over the given hosts, pinned, with a model volume small enough for the test machine's disk. */
  const stackOver = (
    stack: string,
    sku: "rtx4000" | "thor",
    nodes: { name: string; user?: string; hostKey?: string }[],
  ): StackConfig =>
    parseStackConfig(
      stack,
      stackSource(sku, {
        nodes: nodes.map((n, i) => ({
          name: n.name,
          host: hosts[n.name].host,
          role: i === 0 ? "server" : "agent",
          user: n.user ?? "root",
          hostKey: n.hostKey ?? hosts[n.name].hostKeyLine,
        })),
        storage: { size: "1Gi", storageClass: "local-path" },
        quota: undefined,
      }),
    );

  const of = (node: string, check: string): Row => {
    const r = rows.find((x) => x.node === node && x.check === check);
    assert.ok(r, `no ${check} row for ${node}:\n${formatTable(rows)}`);
    return r;
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-e2e-preflight-"));
    key = makeKeyPair("forge-edge-preflight");
    await start("full-disk", 0, { rancherDiskMiB: 64 });
    await start("healthy", 1, {});
    await start("old-driver", 2, { gpu: { ...SKU_GPUS.rtx4000, driver: "550.163.01", count: 1 } });
    await start("wrong-sku", 3, { gpu: { ...SKU_GPUS.p40, count: 1 } });
    await start("no-sudo", 4, { loginUsers: ["edge"] });
    await start("thor", 5, {
      gpu: { ...SKU_GPUS.thor, count: 1 },
      etcFiles: {
        nv_tegra_release: "# R38 (release), REVISION: 2.0, GCID: 0, BOARD: generic, EABI: aarch64\n",
      },
    });
    for (const [n, h] of Object.entries(hosts)) snapshots[n] = h.snapshot();
    const config = stackOver("site-7", "rtx4000", [
      { name: "full-disk" },
      { name: "healthy" },
      { name: "old-driver" },
      { name: "wrong-sku" },
      { name: "no-sudo", user: "edge" },
    ]);
    const thor = stackOver("thor-site", "thor", [{ name: "thor" }]);
    rows = [
      ...(await runPreflight(config, key.privateKeyPem)),
      ...(await runPreflight(thor, key.privateKeyPem)),
    ];
    console.log(formatTable(rows));
  });

  after(async () => {
    for (const h of Object.values(hosts)) await h.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** cgroup v1 machines fail the cgroup check for K3s v1.36 (Kubernetes 1.35+ kubelet), rightly. */
  const cgroupV2 = fs.existsSync("/sys/fs/cgroup/cgroup.controllers");

  for (const node of ["healthy", "thor"]) {
    it(`passes a healthy ${node === "thor" ? "Thor (JetPack 7)" : "RTX PRO 4000"} node`, () => {
      const mine = rows.filter((r) => r.node === node);
      for (const check of [
        "ssh",
        "host key",
        "sudo",
        "gpu",
        "driver",
        "toolkit",
        "disk",
        "ports",
        "swap",
        "cgroup",
      ])
        of(node, check);
      if (node === "thor") assert.equal(of(node, "jetpack").status, "ok");
      for (const r of mine) {
        if (r.check === "swap") assert.notEqual(r.status, "fail");
        else if (r.check === "cgroup" && !cgroupV2) {
          assert.equal(r.status, "fail");
          assert.match(r.detail, /cgroup v1: the kubelet of Kubernetes 1\.35\+ refuses/);
          assert.match(r.fix, /systemd\.unified_cgroup_hierarchy=1/);
        } else assert.equal(r.status, "ok", `${r.check}: ${r.detail}`);
      }
    });
  }

  it("fails a driver branch the SKU does not support, with the fix", () => {
    const r = of("old-driver", "driver");
    assert.equal(r.status, "fail");
    assert.match(r.detail, /driver 550\.163\.01 \(below R570\)/);
    assert.match(r.fix, /install the R570 or newer driver branch for rtx4000/);
    assert.equal(of("old-driver", "gpu").status, "ok");
  });

  it("fails a box of another SKU", () => {
    const r = of("wrong-sku", "gpu");
    assert.equal(r.status, "fail");
    assert.match(r.detail, /found 'Tesla P40', not a rtx4000 GPU/);
    assert.match(r.fix, /wrong stack/);
  });

  it("fails a login without passwordless sudo", () => {
    assert.equal(of("no-sudo", "ssh").detail, `logged in as edge@${hosts["no-sudo"].host}:22`);
    const r = of("no-sudo", "sudo");
    assert.equal(r.status, "fail");
    assert.match(r.detail, /user edge (is not root and sudo is not installed|has no passwordless sudo)/);
    assert.match(r.fix, /NOPASSWD/);
  });

  it("fails a disk without room for K3s, its images and the model volume", () => {
    const r = of("full-disk", "disk");
    assert.equal(r.status, "fail");
    assert.match(r.detail, /^\d+ MiB free on \/var\/lib\/rancher .*, 21 GiB needed$/);
    assert.match(r.fix, /grow the filesystem holding \/var\/lib\/rancher/);
  });

  it("prints one table, every failure with its fix", () => {
    const table = formatTable(rows);
    assert.match(table.split("\n")[0], /^NODE\s+CHECK\s+RESULT\s+DETAIL\s+FIX$/);
    for (const r of rows.filter((x) => x.status === "fail")) {
      assert.ok(r.fix.length > 0, `${r.node} ${r.check} has no fix`);
      assert.ok(table.includes(r.fix));
    }
  });

  it("refuses a host whose key does not match the pin, and a placeholder pin, without running any check", async () => {
    const config = stackOver("site-8", "rtx4000", [{ name: "healthy", hostKey: HOST_KEY }]);
    const wrong = await runPreflight(config, key.privateKeyPem);
    assert.deepEqual(
      wrong.map((r) => [r.check, r.status]),
      [
        ["ssh", "ok"],
        ["host key", "fail"],
      ],
    );
    assert.match(wrong[1].fix, /pin-host-keys -- --stack site-8 --replace/);
    const placeholder = stackOver("site-9", "rtx4000", [{ name: "healthy", hostKey: PLACEHOLDER_HOST_KEY }]);
    const p = await runPreflight(placeholder, key.privateKeyPem);
    assert.deepEqual(
      p.map((r) => [r.check, r.status]),
      [["host key", "fail"]],
    );
    assert.match(p[0].fix, /npm run pin-host-keys -- --stack site-9/);
  });

  it("changes nothing on the hosts and never shows the SSH key", () => {
    for (const [n, h] of Object.entries(hosts)) assert.deepEqual(h.snapshot(), snapshots[n], n);
    const keyLine = key.privateKeyPem.split("\n")[1];
    assert.ok(!formatTable(rows).includes(keyLine));
    assert.deepEqual(
      fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("forge-preflight-")),
      [],
    );
  });

  it("lists every node of both stacks, in stack order", () => {
    const nodes = [...new Set(rows.map((r) => r.node))];
    assert.deepEqual(nodes, ["full-disk", "healthy", "old-driver", "wrong-sku", "no-sudo", "thor"]);
  });
});
