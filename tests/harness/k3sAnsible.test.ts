/**
 * Keeps the k3s-ansible side by side honest: k3s-ansible 1.2.2's site.yml (air-gap role) bootstraps a simulated
 * site of a server and an agent, and the cluster it leaves is real (the Nodes Ready in the simulated API, the k3s
 * unit active per systemctl with its process running, the agent joined with the token and server k3s-ansible gave
 * it, the kubeconfig it merged on the controller works). Then the systemctl double
 * on its own: it answers what exists, not "ok" to everything.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { K3sAnsible, parseRecap, peerHostOptions, peerInventory } from "../../harness/peers/k3sAnsible";
import { startSite, type Site } from "../../harness/site";
import { makeKeyPair, sshRun, startSshHost, type SshHost } from "../../harness/sshHost";
import { loadToolchain } from "../../harness/toolchain";

interface NodeObj {
  status: { conditions?: { type: string; status: string }[] };
}

describe("k3s-ansible 1.2.2 on a simulated site (harness/peers/k3sAnsible.ts)", function () {
  this.timeout(600_000);
  let tmp = "";
  let site: Site | undefined;
  let peer: K3sAnsible;
  let keyFile = "";
  const nodes = [
    { name: "ka-srv", role: "server" as const },
    { name: "ka-agt", role: "agent" as const },
  ];

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-k3sansible-"));
    site = await startSite({
      sku: "p40",
      dir: path.join(tmp, "site"),
      nodes,
      ipBase: 150,
      hostOptions: peerHostOptions,
    });
    peer = new K3sAnsible(site, nodes, path.join(tmp, "peer"));
    keyFile = path.join(tmp, "id");
    fs.writeFileSync(keyFile, site.key.privateKeyPem, { mode: 0o600 });
  });
  after(async () => {
    await site?.stop();
    if (tmp !== "") fs.rmSync(tmp, { recursive: true, force: true });
  });

  const sh = (cmd: string, host = 0) => sshRun(site!.hosts[host], keyFile, cmd);

  it("the host looks like a systemd box to Ansible: PID 1 is systemd in the host's view only", () => {
    assert.equal(sh("cat /proc/1/comm").stdout.trim(), "systemd");
    assert.notEqual(
      fs.readFileSync("/proc/1/comm", "utf8").trim(),
      "systemd",
      "the machine's view is unchanged",
    );
  });

  it("site.yml bootstraps the node, and the cluster it leaves is real", async () => {
    const run = await peer.playbook();
    const recap = run.recap["ka-srv"];
    assert.ok(recap, `a PLAY RECAP line for ka-srv:\n${run.output.slice(-2000)}`);
    assert.equal(recap.failed, 0);
    assert.equal(recap.unreachable, 0);
    assert.ok(recap.changed > 0, "it changed the host");

    assert.equal(run.recap["ka-agt"]?.failed, 0, "the agent's play ran");
    // Both Nodes Ready in the simulated API (kwok marks a registered Node Ready; it may take a heartbeat).
    for (const name of ["ka-srv", "ka-agt"]) {
      let ready: string | undefined;
      for (let i = 0; i < 60 && ready !== "True"; i++) {
        const node = (await site!.kube.get(`/api/v1/nodes/${name}`)) as NodeObj | undefined;
        ready = node?.status.conditions?.find((c) => c.type === "Ready")?.status;
        if (ready !== "True") await new Promise((r) => setTimeout(r, 500));
      }
      assert.equal(ready, "True", `${name} Ready`);
    }
    // The agent joined with the token k3s-ansible put in the unit's EnvironmentFile and the --server of its ExecStart.
    const agent = sh(
      "systemctl is-active k3s-agent; grep -c '^K3S_TOKEN=' /etc/systemd/system/k3s-agent.service.env; " +
        "systemctl show k3s-agent -p ExecStart --value",
      1,
    );
    const [agentActive, tokenLines, execStart] = agent.stdout.trim().split("\n");
    assert.deepEqual([agentActive, tokenLines], ["active", "1"], agent.stdout + agent.stderr);
    assert.match(execStart, new RegExp(`agent --server https://${site!.hosts[0].host}:6443`));
    // The unit: active, enabled, its process (the API forwarder) running, started with the config k3s-ansible wrote.
    const r = sh(
      "systemctl is-active k3s; systemctl is-enabled k3s; systemctl show k3s -p MainPID --value; " +
        "grep -c '^token:' /etc/rancher/k3s/config.yaml",
    );
    const [active, enabled, pid, token] = r.stdout.trim().split("\n");
    assert.deepEqual([active, enabled, token], ["active", "enabled", "1"], r.stdout + r.stderr);
    assert.ok(Number(pid) > 0, `MainPID ${pid}`);
    assert.equal(sh(`kill -0 ${pid} && echo alive`).stdout.trim(), "alive");
    // The kubeconfig k3s-ansible fetched and merged on the controller (context k3s-ansible) works.
    const kubectl = loadToolchain(["kubectl"]).bin.kubectl;
    const out = execFileSync(
      kubectl,
      ["--kubeconfig", peer.kubeconfig, "--context", "k3s-ansible", "get", "node", "ka-srv", "-o", "name"],
      { encoding: "utf8" },
    );
    assert.equal(out.trim(), "node/ka-srv");
    // It went through the air-gap role with our artefacts.
    assert.match(site!.hosts[0].calls().join("\n"), /install\.sh .*INSTALL_K3S_SKIP_DOWNLOAD=true/);
  });

  it("a rerun restarts the unit (k3s-ansible always does) and keeps the same Node", async () => {
    const uid = ((await site!.kube.get("/api/v1/nodes/ka-srv")) as { metadata: { uid: string } }).metadata
      .uid;
    const before = sh("systemctl show k3s -p MainPID --value").stdout.trim();
    const run = await peer.playbook();
    assert.equal(run.recap["ka-srv"].failed, 0);
    assert.equal(run.recap["ka-agt"].failed, 0);
    assert.equal(sh("systemctl is-active k3s-agent", 1).stdout.trim(), "active");
    const after = sh(
      "systemctl is-active k3s; systemctl show k3s -p MainPID --value; kill -0 " +
        before +
        " 2>/dev/null && echo alive || echo gone",
    );
    const [active, pid, old] = after.stdout.trim().split("\n");
    assert.equal(active, "active");
    assert.notEqual(pid, before, "restarted: a new process");
    assert.equal(old, "gone", `the old process was stopped: ${after.stdout}`);
    const node = (await site!.kube.get("/api/v1/nodes/ka-srv")) as { metadata: { uid: string } };
    assert.equal(node.metadata.uid, uid);
  });
});

describe("harness/doubles/systemctl: answers what exists", function () {
  this.timeout(120_000);
  let tmp = "";
  let h: SshHost | undefined;
  let keyFile = "";
  const key = makeKeyPair();

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-systemctl-"));
    keyFile = path.join(tmp, "id");
    fs.writeFileSync(keyFile, key.privateKeyPem, { mode: 0o600 });
    h = await startSshHost({
      name: "sysd",
      ip: "127.0.1.159",
      dir: path.join(tmp, "h"),
      authorizedKey: key.publicKeyLine,
      gpu: { name: "Tesla P40", memoryMiB: 24576, driver: "580.95.05", computeCap: "6.1", count: 1 },
      etcFiles: { hostname: "sysd\n" },
    });
  });
  after(async () => {
    await h?.stop();
    if (tmp !== "") fs.rmSync(tmp, { recursive: true, force: true });
  });

  const sh = (cmd: string) => sshRun(h!, keyFile, cmd);
  // A unit file as a package would install it (the double runs its ExecStart; sleep stands for a daemon).
  const unit = (name: string, execStart: string, envFile = false) =>
    sshRun(
      h!,
      keyFile,
      `mkdir -p /etc/systemd/system && cat >/etc/systemd/system/${name}.service`,
      [
        "[Service]",
        ...(envFile ? [`EnvironmentFile=-/etc/systemd/system/${name}.service.env`] : []),
        `ExecStart=${execStart}`,
        "",
      ].join("\n"),
    );

  it("a unit nobody defined is not found; start, enable and restart fail as systemctl does", () => {
    let r = sh("systemctl show nope -p LoadState --value; systemctl is-active nope; echo rc=$?");
    assert.deepEqual(r.stdout.trim().split("\n"), ["not-found", "inactive", "rc=3"]);
    for (const c of ["start", "restart", "enable"]) {
      r = sh(`systemctl ${c} nope`);
      assert.equal(r.status, 5, `${c}: ${r.stderr}`);
      assert.match(r.stderr, /Unit nope\.service not found/);
    }
  });

  it("a unit that was never started is inactive, and show --value answers the asked property", () => {
    unit("idle", "/bin/sleep 1000");
    const r = sh(
      "systemctl is-active idle; systemctl show idle -p LoadState --value; " +
        "systemctl show idle --property=ActiveState,UnitFileState; systemctl list-units --type service --all --plain",
    );
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "inactive");
    assert.equal(lines[1], "loaded");
    assert.deepEqual(lines.slice(2, 4), ["ActiveState=inactive", "UnitFileState=disabled"]);
    assert.ok(
      lines.includes("idle.service loaded inactive dead idle (forge-edge systemctl double)"),
      r.stdout,
    );
  });

  it("start runs ExecStart with the unit's EnvironmentFile; enable persists; a failing start leaves it failed", () => {
    unit("envd", `/bin/sh -c 'echo "$GREETING" >/root/envd.out'`, true);
    sh("printf 'GREETING=\"hello from the env file\"\\n' >/etc/systemd/system/envd.service.env");
    let r = sh("systemctl enable envd && systemctl start envd; systemctl is-active envd; cat /root/envd.out");
    assert.deepEqual(r.stdout.trim().split("\n"), ["active", "hello from the env file"], r.stderr);
    assert.equal(sh("systemctl is-enabled envd").stdout.trim(), "enabled");
    assert.equal(sh("systemctl disable envd; systemctl is-enabled envd").stdout.trim(), "disabled");
    // systemd's umask for a unit (exec_context_init: 0022), not the caller's (k3s-install.sh runs with 077).
    unit("masked", `/bin/sh -c 'umask >/root/umask.out'`);
    assert.equal(sh("umask 077 && systemctl start masked; cat /root/umask.out").stdout.trim(), "0022");
    unit("broken", "/bin/false");
    r = sh("systemctl start broken; echo rc=$?; systemctl is-active broken");
    assert.deepEqual(r.stdout.trim().split("\n"), ["rc=1", "failed"]);
  });
});

describe("harness/peers/k3sAnsible.ts: pure parts", () => {
  it("parses the PLAY RECAP", () => {
    const out =
      "PLAY RECAP *********\nsrv : ok=70 changed=12 unreachable=0 failed=0 skipped=40 rescued=0 ignored=1\n";
    assert.deepEqual(parseRecap(out).srv, {
      ok: 70,
      changed: 12,
      unreachable: 0,
      failed: 0,
      skipped: 40,
      rescued: 0,
      ignored: 1,
    });
  });

  it("puts the server under server, the agents under agent, and pins host keys", () => {
    const inv = JSON.parse(
      peerInventory({
        nodes: [
          { name: "s", role: "server" },
          { name: "a", role: "agent" },
        ],
        hosts: [
          { name: "s", host: "127.0.1.1" },
          { name: "a", host: "127.0.1.2" },
        ],
        keyFile: "/k",
        knownHostsFile: "/kh",
        airgapDir: "/ag",
        token: "t",
        k3sVersion: "v1.36.4+k3s1",
      }),
    ) as {
      k3s_cluster: {
        children: Record<string, { hosts: Record<string, unknown> }>;
        vars: Record<string, unknown>;
      };
    };
    assert.deepEqual(Object.keys(inv.k3s_cluster.children.server.hosts), ["s"]);
    assert.deepEqual(Object.keys(inv.k3s_cluster.children.agent.hosts), ["a"]);
    assert.equal(inv.k3s_cluster.vars.api_endpoint, "127.0.1.1");
    assert.match(String(inv.k3s_cluster.vars.ansible_ssh_common_args), /StrictHostKeyChecking=yes/);
  });
});
