import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startControlPlane, type ControlPlane } from "../../harness/controlPlane";
import { KubeClient } from "../../harness/kubeClient";
import { waitFor } from "../../harness/proc";
import { nodeToolchain, SIMULATED_NODE_NET } from "../../harness/realNode";
import {
  makeAirgapBundle,
  makeKeyPair,
  nodeProcesses,
  sshRun,
  startSshHost,
  type GpuSpec,
  type SshHost,
} from "../../harness/sshHost";

const P40: GpuSpec = {
  name: "Tesla P40",
  memoryMiB: 24576,
  driver: "580.95.05",
  computeCap: "6.1",
  count: 1,
};
const THOR: GpuSpec = {
  name: "NVIDIA Thor",
  memoryMiB: 125772,
  driver: "580.00",
  computeCap: "11.0",
  count: 1,
};

/** PIDs of processes whose command line mentions s. */
function pidsMentioning(s: string): number[] {
  const r = spawnSync("pgrep", ["-f", s], { encoding: "utf8" });
  return r.stdout
    .split("\n")
    .filter((l) => l !== "")
    .map(Number)
    .filter((p) => p !== process.pid);
}

function mountsMentioning(s: string): string[] {
  const out = execFileSync("findmnt", ["-rn", "-o", "TARGET,SOURCE"], { encoding: "utf8" });
  return out.split("\n").filter((l) => l.includes(s));
}

function assertNoLeftovers(dir: string): void {
  assert.deepEqual(pidsMentioning(dir), [], `processes left running that mention ${dir}`);
  assert.deepEqual(mountsMentioning(dir), [], `mounts left that mention ${dir}`);
  for (const m of ["/etc/rancher", "/var/lib/rancher", "/var/lib/forge-edge", "/usr/local/bin"]) {
    assert.ok(!mountsMentioning(m).some((l) => l.split(" ")[0] === m), `${m} is mounted on the real machine`);
  }
}

describe("harness/sshHost (no control plane)", function () {
  this.timeout(120000);
  let tmp = "";
  let host: SshHost | undefined;
  const key = makeKeyPair();
  const wrong = makeKeyPair("wrong");
  let keyFile = "";
  let wrongFile = "";

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-ssh-"));
    keyFile = path.join(tmp, "id_test");
    wrongFile = path.join(tmp, "id_wrong");
    fs.writeFileSync(keyFile, key.privateKeyPem, { mode: 0o600 });
    fs.writeFileSync(wrongFile, wrong.privateKeyPem, { mode: 0o600 });
    host = await startSshHost({
      name: "edge-a",
      ip: "127.0.1.21",
      dir: path.join(tmp, "edge-a"),
      authorizedKey: key.publicKeyLine,
      gpu: P40,
      toolkitInstalled: false,
    });
  });
  after(async () => {
    await host?.stop();
    if (tmp !== "") {
      assertNoLeftovers(tmp);
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("makes OpenSSH ed25519 key pairs", () => {
    assert.match(key.privateKeyPem, /^-----BEGIN OPENSSH PRIVATE KEY-----/);
    assert.match(key.publicKeyLine, /^ssh-ed25519 AAAA\S+$/);
    assert.match(host?.hostKeyLine ?? "", /^ssh-ed25519 AAAA\S+$/);
  });

  it("accepts the test key with strict host key checking, as root, in its own namespace", () => {
    const h = host as SshHost;
    const r = sshRun(
      h,
      keyFile,
      "id -u; hostname; findmnt -rn -o TARGET /etc/rancher; test -w /opt/forge-harness && echo rw || echo ro",
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["0", "edge-a", "/etc/rancher", "ro"]);
  });

  it("refuses a wrong key", () => {
    const r = sshRun(host as SshHost, wrongFile, "true");
    assert.equal(r.status, 255);
    assert.match(r.stderr, /Permission denied/);
  });

  it("refuses a host key that does not match hostKeyLine", () => {
    const r = sshRun({ host: (host as SshHost).host, hostKeyLine: wrong.publicKeyLine }, keyFile, "true");
    assert.equal(r.status, 255);
    assert.match(r.stderr, /HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it("serves the driver double from the gpu file and keeps writes private", () => {
    const h = host as SshHost;
    const r = sshRun(
      h,
      keyFile,
      [
        "nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader,nounits",
        "nvidia-smi -L",
        "command -v nvidia-ctk || echo no-toolkit",
        "echo hello > /etc/rancher/probe",
      ].join("; "),
    );
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "Tesla P40, 24576, 580.95.05, 6.1");
    assert.match(lines[1], /^GPU 0: Tesla P40 \(UUID: GPU-[0-9a-f-]{36}\)$/);
    assert.equal(lines[2], "no-toolkit");
    assert.ok(!fs.existsSync("/etc/rancher/probe"), "write leaked to the real /etc/rancher");
    assert.equal(fs.readFileSync(path.join(h.rootDirs["/etc/rancher"], "probe"), "utf8"), "hello\n");
    assert.ok(h.snapshot()["/etc/rancher/probe"]?.startsWith("file:644:"));
    const calls = h.calls();
    assert.match(
      calls[0],
      /^\d+ nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader,nounits$/,
    );
    assert.match(calls[1], /^\d+ nvidia-smi -L$/);
  });

  it("refuses package changes on a test host and answers toolkit queries from the doubles", () => {
    const r = sshRun(
      host as SshHost,
      keyFile,
      "dpkg -s nvidia-container-toolkit; echo rc=$?; apt-get install -y curl; echo rc=$?",
    );
    assert.match(r.stdout, /rc=1\nrc=100/);
    assert.match(r.stderr, /package changes would touch the real machine/);
  });

  it("reboots with the same address, host key and disks; driver changes take effect", async () => {
    const h = host!;
    assert.equal(
      sshRun(h, keyFile, "mkdir -p /var/lib/forge-edge && echo kept > /var/lib/forge-edge/probe").status,
      0,
    );
    h.setGpu({ driverLoaded: false });
    assert.match(sshRun(h, keyFile, "nvidia-smi; echo rc=$?").stdout, /rc=9/);
    h.setGpu({ driverLoaded: true });
    await h.stop();
    assert.notEqual(
      sshRun(h, keyFile, "true", undefined, 5000).status,
      0,
      "a stopped host must be unreachable",
    );
    await h.restart();
    const r = sshRun(h, keyFile, "cat /var/lib/forge-edge/probe && rm -r /var/lib/forge-edge/probe");
    assert.equal(r.stdout.trim(), "kept", "the host kept its disk and its host key across the reboot");
  });

  it("fails nvidia-smi with exit 9 when the driver is absent", async () => {
    const k = makeKeyPair();
    const kf = path.join(tmp, "id_nodrv");
    fs.writeFileSync(kf, k.privateKeyPem, { mode: 0o600 });
    const h = await startSshHost({
      name: "edge-nodrv",
      ip: "127.0.1.22",
      dir: path.join(tmp, "edge-nodrv"),
      authorizedKey: k.publicKeyLine,
      gpu: { ...THOR, driver: "" },
    });
    try {
      const r = sshRun(h, kf, "nvidia-smi; echo rc=$?; nvidia-ctk --version");
      assert.match(r.stdout, /NVIDIA-SMI has failed/);
      assert.match(r.stdout, /rc=9/);
      assert.match(r.stdout, /NVIDIA Container Toolkit CLI version 1\.20\.0/);
    } finally {
      await h.stop();
    }
    assert.equal(await h.stop(), await h.stop(), "stop() is idempotent");
  });
});

describe("harness/sshHost + install doubles (control plane)", function () {
  this.timeout(600000);
  let tmp = "";
  let cp: ControlPlane | undefined;
  let server: SshHost | undefined;
  let agent: SshHost | undefined;
  let kube: KubeClient;
  let keyFile = "";
  const key = makeKeyPair();
  const SERVER_IP = "127.0.1.31";
  const AGENT_IP = "127.0.1.32";

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-k3s-"));
    keyFile = path.join(tmp, "id_test");
    fs.writeFileSync(keyFile, key.privateKeyPem, { mode: 0o600 });
    cp = await startControlPlane({ dir: path.join(tmp, "cp"), hostIps: [SERVER_IP, AGENT_IP] });
    kube = KubeClient.fromKubeconfig(cp.kubeconfigPath);
    const controlPlane = { kubeconfigPath: cp.kubeconfigPath, apiPort: cp.apiPort };
    server = await startSshHost({
      name: "edge-srv",
      ip: SERVER_IP,
      dir: path.join(tmp, "srv"),
      authorizedKey: key.publicKeyLine,
      gpu: P40,
      controlPlane,
    });
    agent = await startSshHost({
      name: "edge-agt",
      ip: AGENT_IP,
      dir: path.join(tmp, "agt"),
      authorizedKey: key.publicKeyLine,
      gpu: THOR,
      controlPlane,
    });
  });
  after(async () => {
    await agent?.stop();
    await server?.stop();
    await cp?.stop();
    if (tmp !== "") {
      assertNoLeftovers(tmp);
      assert.deepEqual(pidsMentioning(`bind=${SERVER_IP}`), [], "forwarder left running");
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  /** What the node script does: upload the air-gap bundle, write config.yaml, install k3s, run install.sh. */
  function upload(h: SshHost): void {
    const bundle = makeAirgapBundle(path.join(tmp, "airgap"));
    for (const f of ["k3s", "install.sh"]) {
      const r = sshRun(
        h,
        keyFile,
        `mkdir -p /var/lib/forge-edge/airgap && cat > /var/lib/forge-edge/airgap/${f} && chmod 755 /var/lib/forge-edge/airgap/${f}`,
        fs.readFileSync(path.join(bundle, f), "utf8"),
      );
      assert.equal(r.status, 0, r.stderr);
    }
  }
  function install(
    h: SshHost,
    config: string,
    env: string,
    tokenFile?: string,
  ): { status: number; stdout: string; stderr: string } {
    const script = [
      "set -euo pipefail",
      "mkdir -p /etc/rancher/k3s /var/lib/forge-edge",
      ...(tokenFile !== undefined
        ? [`printf '%s\\n' '${tokenFile}' > /var/lib/forge-edge/token && chmod 600 /var/lib/forge-edge/token`]
        : []),
      `cat > /etc/rancher/k3s/config.yaml <<'YAML'\n${config}\nYAML`,
      "install -m 0755 /var/lib/forge-edge/airgap/k3s /usr/local/bin/k3s",
      `${env} INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=v1.36.4+k3s1 sh /var/lib/forge-edge/airgap/install.sh`,
    ].join("\n");
    return sshRun(h, keyFile, "bash -s", script);
  }
  async function getNode(name: string): Promise<Record<string, unknown> | undefined> {
    return (await kube.get(`/api/v1/nodes/${name}`)) as Record<string, unknown> | undefined;
  }

  it("installs a K3s server: forwarder, k3s.yaml, Node registered and Ready; uninstall restores the host", async () => {
    const h = server as SshHost;
    upload(h);
    const before = h.snapshot();
    const config = [
      "node-name: edge-srv",
      `node-ip: ${SERVER_IP}`,
      "token-file: /var/lib/forge-edge/token",
      'write-kubeconfig-mode: "0644"',
      "cluster-init: true",
      'node-label: ["forge.ai/sku=p40", "forge.ai/role=inference"]',
      "disable:",
      "  - traefik",
      "  - servicelb",
    ].join("\n");
    let r = install(h, config, "INSTALL_K3S_EXEC='server'", "s3cret-token");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);

    r = sshRun(
      h,
      keyFile,
      "k3s --version; systemctl is-active k3s; stat -c %a /etc/rancher/k3s/k3s.yaml; grep server: /etc/rancher/k3s/k3s.yaml; k3s kubectl get node edge-srv -o name; ls /usr/local/bin",
    );
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout.split("\n");
    assert.equal(out[0], "k3s version v1.36.4+k3s1 (forge-double)");
    assert.equal(out[2], "active");
    assert.equal(out[3], "644");
    assert.match(out[4], /server: https:\/\/127\.0\.0\.1:6443$/);
    assert.equal(out[5], "node/edge-srv");
    assert.ok(r.stdout.includes("k3s-uninstall.sh") && r.stdout.includes("k3s-killall.sh"));

    // The program's view: k3s.yaml with 127.0.0.1 rewritten to the node address, through the forwarder.
    const kc = path.join(tmp, "srv.kubeconfig");
    fs.writeFileSync(
      kc,
      fs
        .readFileSync(path.join(h.rootDirs["/etc/rancher"], "k3s", "k3s.yaml"), "utf8")
        .replace("127.0.0.1:6443", `${SERVER_IP}:6443`),
    );
    const viaNode = KubeClient.fromKubeconfig(kc);
    const ready = await waitFor("edge-srv Ready", 60000, async () => {
      const n = (await viaNode.get("/api/v1/nodes/edge-srv")) as
        | {
            metadata: { labels: Record<string, string>; annotations: Record<string, string> };
            status: { conditions?: { type: string; status: string }[]; allocatable: Record<string, string> };
          }
        | undefined;
      return n?.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? n : undefined;
    });
    assert.equal(ready.metadata.labels["forge.ai/sku"], "p40");
    assert.equal(ready.metadata.labels["forge.ai/role"], "inference");
    assert.equal(ready.metadata.labels["node-role.kubernetes.io/control-plane"], "true");
    assert.equal(ready.metadata.labels["kubernetes.io/hostname"], "edge-srv");
    assert.equal(ready.metadata.annotations["kwok.x-k8s.io/node"], "fake");
    assert.equal(ready.status.allocatable.cpu, "16");
    assert.equal(ready.status.allocatable["nvidia.com/gpu"], undefined);

    // Idempotent re-run.
    r = install(h, config, "INSTALL_K3S_EXEC='server'", "s3cret-token");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.ok(await getNode("edge-srv"));

    // An agent with the wrong token is refused; with the right one it joins.
    const a = agent as SshHost;
    upload(a);
    const agentBefore = a.snapshot();
    const agentConfig = [
      "node-name: edge-agt",
      `node-ip: ${AGENT_IP}`,
      "token-file: /var/lib/forge-edge/token",
      'node-label: ["forge.ai/sku=thor"]',
    ].join("\n");
    r = install(
      a,
      agentConfig,
      `INSTALL_K3S_EXEC='agent' K3S_URL=https://${SERVER_IP}:6443`,
      "not-the-token",
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /token is not valid/);
    r = install(a, agentConfig, `INSTALL_K3S_EXEC='agent' K3S_URL=https://${SERVER_IP}:6443`, "s3cret-token");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const an = (await getNode("edge-agt")) as { metadata: { labels: Record<string, string> } };
    assert.equal(an.metadata.labels["forge.ai/sku"], "thor");
    assert.equal(an.metadata.labels["node-role.kubernetes.io/control-plane"], undefined);
    assert.ok(
      a
        .calls()
        .some((l) => / install\.sh .*INSTALL_K3S_EXEC=agent .*K3S_URL=https:\/\/127\.0\.1\.31:6443$/.test(l)),
      a.calls().join("\n"),
    );

    r = sshRun(a, keyFile, "/usr/local/bin/k3s-agent-uninstall.sh && rm -f /var/lib/forge-edge/token");
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(a.snapshot(), agentBefore);
    await waitFor("edge-agt deleted", 30000, async () =>
      (await getNode("edge-agt")) === undefined ? true : undefined,
    );

    r = sshRun(h, keyFile, "/usr/local/bin/k3s-uninstall.sh && systemctl is-active k3s || true");
    assert.equal(r.status, 0, r.stderr);
    await waitFor("edge-srv deleted", 30000, async () =>
      (await getNode("edge-srv")) === undefined ? true : undefined,
    );
    // The node script wrote its own token file into /var/lib/forge-edge; remove it like its reset step would.
    sshRun(h, keyFile, "rm -f /var/lib/forge-edge/token");
    assert.deepEqual(h.snapshot(), before);
    assert.deepEqual(pidsMentioning(`bind=${SERVER_IP}`), [], "forwarder still running after uninstall");
    const calls = h.calls().map((l) => l.split(" ")[1]);
    for (const c of ["install.sh", "systemctl", "k3s", "k3s-uninstall.sh", "k3s-killall.sh"])
      assert.ok(calls.includes(c), `no ${c} call logged`);
  });
});

describe("harness/sshHost kubelet mode: a real node below the API (control plane)", function () {
  this.timeout(600000);
  const NAME = "edge-kub";
  const IP = "127.0.1.51";
  const NODE_IP = `${SIMULATED_NODE_NET}51`;
  let tmp = "";
  let cp: ControlPlane | undefined;
  let h: SshHost | undefined;
  let kube: KubeClient;
  let keyFile = "";
  const key = makeKeyPair();

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-kub-"));
    keyFile = path.join(tmp, "id_test");
    fs.writeFileSync(keyFile, key.privateKeyPem, { mode: 0o600 });
    cp = await startControlPlane({ dir: path.join(tmp, "cp"), hostIps: [IP] });
    kube = KubeClient.fromKubeconfig(cp.kubeconfigPath);
    h = await startSshHost({
      name: NAME,
      ip: IP,
      dir: path.join(tmp, "host"),
      authorizedKey: key.publicKeyLine,
      gpu: P40,
      controlPlane: { kubeconfigPath: cp.kubeconfigPath, apiPort: cp.apiPort },
      preloadAirgap: true,
      kubelet: {
        ip: NODE_IP,
        controlPlane: { server: cp.server, ...cp.pki },
      },
    });
  });
  after(async () => {
    await h?.stop();
    await cp?.stop();
    if (tmp !== "") {
      assertNoLeftovers(tmp);
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  /** Installs a K3s server from the preloaded air-gap doubles, with the pause image in K3s's images dir. */
  function installServer(host: SshHost): void {
    const images = path.join(host.rootDirs["/var/lib/rancher"], "k3s/agent/images");
    fs.mkdirSync(images, { recursive: true });
    fs.copyFileSync(nodeToolchain().images.pause, path.join(images, "k3s-airgap-images-amd64.tar"));
    const config = [
      "node-label:",
      '  - "forge.ai/sku=p40"',
      "node-taint:",
      '  - "forge.ai/drill=true:NoSchedule"',
    ].join("\n");
    const r = sshRun(
      host,
      keyFile,
      "bash -s",
      [
        "set -euo pipefail",
        "mkdir -p /etc/rancher/k3s",
        `cat > /etc/rancher/k3s/config.yaml <<'YAML'\n${config}\nYAML`,
        "install -m 0755 /var/lib/forge-edge/airgap/k3s /usr/local/bin/k3s",
        "INSTALL_K3S_EXEC=server INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=v1.36.4+k3s1 sh /var/lib/forge-edge/airgap/install.sh",
      ].join("\n"),
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  }

  async function runPause(name: string): Promise<void> {
    await kube.send("POST", "/api/v1/namespaces/default/pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: "default" },
      spec: {
        nodeName: NAME,
        tolerations: [{ key: "forge.ai/drill", operator: "Exists" }],
        containers: [{ name: "pause", image: nodeToolchain().pauseImage, imagePullPolicy: "Never" }],
      },
    });
    await waitFor(`pod ${name} Running`, 180000, async () => {
      const p = (await kube.get(`/api/v1/namespaces/default/pods/${name}`)) as
        | { status?: { phase?: string } }
        | undefined;
      return p?.status?.phase === "Running" ? true : undefined;
    });
  }

  it("gives the host the node's private dirs, the node group read-only, its kubeconfigs and a non-loopback node IP", () => {
    const r = sshRun(
      h as SshHost,
      keyFile,
      [
        "findmnt -rn -o TARGET | grep -cxE '/var/lib/kubelet|/run/k3s|/run/containerd|/run/netns|/var/log/pods|/var/log/containers'",
        "findmnt -rn -o OPTIONS /opt/forge-harness/node/bin | tr , '\\n' | grep -x ro",
        "test -x /opt/forge-harness/node/bin/kubelet && echo kubelet",
        "grep -o 'client-certificate-data: .*' /opt/forge-harness/node/kubelet.kubeconfig | cut -d' ' -f2 | base64 -d | openssl x509 -noout -subject",
        "grep -o 'client-certificate-data: .*' /opt/forge-harness/node/kubeproxy.kubeconfig | cut -d' ' -f2 | base64 -d | openssl x509 -noout -subject",
        `ip -4 -o addr show | grep -c ' inet ${NODE_IP}/32'`,
        ". /opt/forge-harness/env && echo $FORGE_NODE_MODE",
      ].join("; "),
    );
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout.trim().split("\n");
    assert.equal(out[0], "6");
    assert.equal(out[1], "ro");
    assert.equal(out[2], "kubelet");
    assert.match(out[3], /O\s*=\s*system:nodes, CN\s*=\s*system:node:edge-kub/);
    assert.match(out[4], /CN\s*=\s*system:kube-proxy/);
    assert.equal(out[5], "1");
    assert.equal(out[6], "kubelet");
  });

  it("K3s starts a real node (labels, taints through the kubelet); uninstall leaves the host as before, nothing running", async () => {
    const host = h as SshHost;
    const before = host.snapshot();
    installServer(host);
    const node = await waitFor(`Node ${NAME} Ready`, 180000, async () => {
      const n = (await kube.get(`/api/v1/nodes/${NAME}`)) as
        | {
            metadata: { labels: Record<string, string>; annotations: Record<string, string> };
            spec: { taints?: { key: string; effect: string }[] };
            status: { conditions?: { type: string; status: string }[]; nodeInfo: { kubeletVersion: string } };
          }
        | undefined;
      return n?.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? n : undefined;
    });
    assert.equal(node.metadata.annotations["kwok.x-k8s.io/node"], undefined);
    assert.equal(node.metadata.labels["forge.ai/sku"], "p40");
    assert.ok(node.spec.taints?.some((t) => t.key === "forge.ai/drill" && t.effect === "NoSchedule"));
    assert.equal(node.status.nodeInfo.kubeletVersion, "v1.37.2");
    await runPause("pause-uninstall");

    const r = sshRun(host, keyFile, "/usr/local/bin/k3s-uninstall.sh");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.deepEqual(host.snapshot(), before);
    assert.deepEqual(nodeProcesses(host, nodeToolchain().dir), []);
  });

  it("stop() stops the node's containers first: they live in mount namespaces of their own", async () => {
    const host = h as SshHost;
    installServer(host);
    await runPause("pause-stop");
    const running = host.processes();
    assert.notDeepEqual(nodeProcesses(host, nodeToolchain().dir, running), []);
    await host.stop();
    // The namespace is gone with the host: what ran in it, and every container of the node, must be gone too.
    const alive = running.filter((p) => fs.existsSync(`/proc/${p.split(" ")[0]}`));
    assert.deepEqual(nodeProcesses(host, nodeToolchain().dir, alive), []);
  });
});
