/**
 * The K3s double does what K3s v1.36 does where our program depends on it (each test fails on the old double):
 * containerd's config.toml rendered from K3s's template files as the installed release renders them, with the
 * nvidia runtime K3s detects; a template error fails the start; RuntimeClass `nvidia` from the packaged
 * runtimes manifest at every server start; --node-label re-applied at start (added or changed, never removed),
 * taints only at registration.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { SIMULATED_NODE_NET } from "../../harness/realNode";
import { makeAirgapBundle, sshRun, type SshHost } from "../../harness/sshHost";
import { checkerPath } from "../../harness/toolchain";
import { useControlPlaneHosts } from "./controlPlaneHosts";

const TMPL_DIR = "/var/lib/rancher/k3s/agent/etc/containerd";
const RUNTIME = "/usr/local/bin/nvidia-container-runtime";

interface NodeObj {
  metadata: { labels: Record<string, string> };
  spec: { taints?: { key: string; value?: string; effect: string }[] };
}
interface RuntimeClassObj {
  handler: string;
  metadata: { annotations?: Record<string, string> };
}

describe("harness/doubles/k3s: K3s-faithful behaviour (control plane)", function () {
  this.timeout(600_000);
  let checker = "";
  before(() => {
    checker = checkerPath();
  });
  const f = useControlPlaneHosts(this, {
    tmpPrefix: "forge-k3sdouble-",
    hostIps: ["127.0.1.41", "127.0.1.42", "127.0.1.43"],
  });

  async function host(name: string, ip: string, toolkitInstalled: boolean): Promise<SshHost> {
    const h = await f.startHost(name, ip, { toolkitInstalled });
    const bundle = makeAirgapBundle(path.join(f.tmp, `${name}-airgap`));
    const r = sshRun(
      h,
      f.keyFile,
      "mkdir -p /var/lib/forge-edge/airgap && cat > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s",
      fs.readFileSync(path.join(bundle, "k3s"), "utf8"),
    );
    assert.equal(r.status, 0, r.stderr);
    const r2 = sshRun(
      h,
      f.keyFile,
      "cat > /var/lib/forge-edge/airgap/install.sh",
      fs.readFileSync(path.join(bundle, "install.sh"), "utf8"),
    );
    assert.equal(r2.status, 0, r2.stderr);
    return h;
  }

  function sh(h: SshHost, script: string): { status: number; stdout: string; stderr: string } {
    return sshRun(h, f.keyFile, "bash -s", `set -euo pipefail\n${script}\n`);
  }

  /** Writes config.yaml (+ templates) and runs install.sh for a server of this K3s version. */
  function installServer(
    h: SshHost,
    version: string,
    config: string,
    templates: Record<string, string> = {},
  ): { status: number; stdout: string; stderr: string } {
    const tmpl = Object.entries(templates)
      .map(([f, c]) => `cat > ${TMPL_DIR}/${f} <<'TMPL'\n${c}\nTMPL`)
      .join("\n");
    return sh(
      h,
      [
        `mkdir -p /etc/rancher/k3s ${TMPL_DIR}`,
        `cat > /etc/rancher/k3s/config.yaml <<'YAML'\n${config}\nYAML`,
        tmpl,
        `INSTALL_K3S_EXEC=server INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=${version} sh /var/lib/forge-edge/airgap/install.sh`,
      ].join("\n"),
    );
  }

  function nodeFile(h: SshHost, p: string): string {
    return fs.readFileSync(
      path.join(h.rootDirs["/var/lib/rancher"], path.relative("/var/lib/rancher", p)),
      "utf8",
    );
  }

  function containerdSees(file: string): { status: number | null; out: string } {
    const r = spawnSync(checker, ["check-containerd", file], { encoding: "utf8" });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  it("renders config.toml as K3s does, by the installed version's template, with the runtime it detects", async () => {
    const h = await host("k3sd-gpu", "127.0.1.41", true);
    const v3 = `{{ template "base" . }}\n# forge-test v3`;
    const v2 = `{{ template "base" . }}\n# forge-test v2`;
    let r = installServer(h, "v1.36.4+k3s1", "node-name: k3sd-gpu", {
      "config-v3.toml.tmpl": v3,
      "config.toml.tmpl": v2,
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const rendered = path.join(h.rootDirs["/var/lib/rancher"], "k3s/agent/etc/containerd/config.toml");
    let text = nodeFile(h, `${TMPL_DIR}/config.toml`);
    assert.match(text, /^version = 3$/m);
    assert.match(text, /# forge-test v3/);
    // K3s found the toolkit's runtime itself: ExtraRuntimes -> the base template's nvidia table.
    let seen = containerdSees(rendered);
    assert.equal(seen.status, 0, seen.out);
    assert.match(
      seen.out,
      new RegExp(`runtime nvidia type io\\.containerd\\.runc\\.v2 BinaryName ${RUNTIME}\\b`),
    );

    // The same files on a K3s with containerd 1.7: config.toml.tmpl, version 2, migrated by containerd 2's loader.
    r = installServer(h, "v1.31.5+k3s1", "node-name: k3sd-gpu");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    text = nodeFile(h, `${TMPL_DIR}/config.toml`);
    assert.match(text, /^version = 2$/m);
    assert.match(text, /# forge-test v2/);
    assert.doesNotMatch(text, /forge-test v3/);
    seen = containerdSees(rendered);
    assert.equal(seen.status, 0, seen.out);
    assert.match(seen.out, /config version 2 .*BinaryName \/usr\/local\/bin\/nvidia-container-runtime/);

    // A template that does not parse: K3s panics, the start fails, config.toml stays as it was.
    const before = nodeFile(h, `${TMPL_DIR}/config.toml`);
    r = installServer(h, "v1.36.4+k3s1", "node-name: k3sd-gpu", {
      "config-v3.toml.tmpl": `{{ template "base" . }}\n{{ if .SystemdCgroup }}`,
    });
    assert.notEqual(r.status, 0, "a broken template must fail the K3s start");
    assert.match(`${r.stdout}\n${r.stderr}`, /panic: template: compiled_template/);
    const journal = sh(h, "cat /var/log/forge-edge/systemd-state/k3s.journal").stdout;
    assert.match(journal, /panic: template: compiled_template:\d+: unexpected EOF/);
    assert.equal(sh(h, "systemctl is-active k3s || true").stdout.trim(), "failed");
    assert.equal(nodeFile(h, `${TMPL_DIR}/config.toml`), before);
    // A field K3s does not pass: the start fails with K3s's own error text.
    r = installServer(h, "v1.36.4+k3s1", "node-name: k3sd-gpu", {
      "config-v3.toml.tmpl": `{{ template "base" . }}\n{{ .NodeConfig.NoFlannel }}`,
    });
    assert.notEqual(r.status, 0);
    assert.match(`${r.stdout}\n${r.stderr}`, /can't evaluate field NoFlannel in type \*config\.Node/);
    sh(h, "/usr/local/bin/k3s-uninstall.sh");
  });

  it("creates RuntimeClass nvidia at every server start (K3s's runtimes manifest), even without the toolkit", async () => {
    const h = await host("k3sd-bare", "127.0.1.42", false);
    let r = installServer(
      h,
      "v1.36.4+k3s1",
      "node-name: k3sd-bare\nnode-label:\n  - forge.test/a=1\n  - forge.test/b=1\nnode-taint:\n  - forge.test/t=1:NoSchedule",
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const rc = (await f.kube.get("/apis/node.k8s.io/v1/runtimeclasses/nvidia")) as
      | RuntimeClassObj
      | undefined;
    assert.ok(rc, "no RuntimeClass nvidia");
    assert.equal(rc.handler, "nvidia");
    assert.equal(rc.metadata.annotations?.["objectset.rio.cattle.io/owner-name"], "runtimes");
    assert.match(
      nodeFile(h, "/var/lib/rancher/k3s/server/manifests/runtimes.yaml"),
      /name: nvidia\nhandler: nvidia/,
    );
    // No toolkit: K3s found no nvidia runtime, so containerd has none.
    const seen = containerdSees(
      path.join(h.rootDirs["/var/lib/rancher"], "k3s/agent/etc/containerd/config.toml"),
    );
    assert.notEqual(seen.status, 0);
    assert.match(seen.out, /configures no "nvidia" runtime/);

    // Deleted (e.g. by a destroy): back at the next start.
    await f.kube.send("DELETE", "/apis/node.k8s.io/v1/runtimeclasses/nvidia");
    // Labels changed and one removed, taint changed: the restart re-applies labels, never removes, keeps taints.
    r = installServer(
      h,
      "v1.36.4+k3s1",
      "node-name: k3sd-bare\nnode-label:\n  - forge.test/a=2\nnode-taint:\n  - forge.test/t=2:NoExecute",
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.ok(
      await f.kube.get("/apis/node.k8s.io/v1/runtimeclasses/nvidia"),
      "RuntimeClass nvidia not re-created",
    );
    const node = (await f.kube.get("/api/v1/nodes/k3sd-bare")) as NodeObj;
    assert.equal(node.metadata.labels["forge.test/a"], "2");
    assert.equal(node.metadata.labels["forge.test/b"], "1", "K3s never removes a label it applied");
    assert.deepEqual(
      (node.spec.taints ?? []).filter((t) => t.key.startsWith("forge.test/")),
      [{ key: "forge.test/t", value: "1", effect: "NoSchedule" }],
      "taints are only given at registration",
    );

    // `disable: runtimes`: the manifest is not staged.
    r = installServer(h, "v1.36.4+k3s1", "node-name: k3sd-bare\ndisable:\n  - runtimes");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(
      sh(
        h,
        "test -e /var/lib/rancher/k3s/server/manifests/runtimes.yaml && echo yes || echo no",
      ).stdout.trim(),
      "no",
    );
    sh(h, "/usr/local/bin/k3s-uninstall.sh");
  });

  it("kubelet mode: renders SystemdCgroup = false (no systemd runs a real node here) and names the build command when the node group is missing", async () => {
    const empty = fs.mkdtempSync(path.join(f.tmp, "no-node-group-"));
    const h = await f.startHost("k3s-kub", "127.0.1.43", {
      preloadAirgap: true,
      kubelet: {
        ip: `${SIMULATED_NODE_NET}43`,
        toolchainDir: empty,
        controlPlane: { server: f.cp.server, ...f.cp.pki },
      },
    });
    const r = sh(
      h,
      [
        "install -m 0755 /var/lib/forge-edge/airgap/k3s /usr/local/bin/k3s",
        `mkdir -p /etc/rancher/k3s ${TMPL_DIR}`,
        "echo 'node-label: [\"forge.ai/sku=p40\"]' > /etc/rancher/k3s/config.yaml",
        "k3s server",
      ].join("\n"),
    );
    assert.notEqual(r.status, 0);
    assert.match(
      r.stderr,
      /level=fatal .*no kubelet in \/opt\/forge-harness\/node\/bin \(build it: bash harness\/build-toolchain\.sh node\)/,
    );
    const rendered = nodeFile(h, `${TMPL_DIR}/config.toml`);
    assert.match(rendered, /SystemdCgroup = false/);
    assert.doesNotMatch(rendered, /SystemdCgroup = true/);
    // No kwok Node was registered in its place.
    assert.equal(await f.kube.get("/api/v1/nodes/k3s-kub"), undefined);
  });
});
