/**
 * The K3s double does what K3s v1.36 does where our program depends on it (each test fails on the old double):
 * containerd's config.toml rendered from K3s's template files as the installed release renders them, with the
 * nvidia runtime K3s detects; a template error fails the start; RuntimeClass `nvidia` from the packaged
 * runtimes manifest at every server start; --node-label re-applied at start (added or changed, never removed),
 * taints only at registration; K3s's image watcher (pkg/agent/containerd/watcher.go): a tarball placed in agent/images
 * while K3s runs is imported 2 s later (kwok mode: its names recorded; kubelet mode: into the real containerd) and
 * listed by `k3s ctr images ls`, a partial or garbage file logs K3s's failure, an unchanged file is not imported
 * twice, and the watcher stops with the unit.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { SIMULATED_NODE_NET } from "../../harness/realNode";
import { makeAirgapBundle, sshRun, type SshHost } from "../../harness/sshHost";
import { checkerPath } from "../../harness/toolchain";
import { writeImageTarball } from "../../harness/ttsSimBench";
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
    hostIps: ["127.0.1.41", "127.0.1.42", "127.0.1.43", "127.0.1.44", "127.0.1.45", "127.0.1.46"],
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

  const IMAGES = "/var/lib/rancher/k3s/agent/images";
  const JOURNAL = "/var/log/forge-edge/systemd-state/k3s.journal";

  /** Places `src` as agent/images/`name` as a careful writer does: a hidden temp name, then a rename. */
  function place(h: SshHost, src: string, name: string): void {
    const dir = path.join(h.rootDirs["/var/lib/rancher"], "k3s/agent/images");
    fs.copyFileSync(src, path.join(dir, `.${name}.part`));
    fs.renameSync(path.join(dir, `.${name}.part`), path.join(dir, name));
  }

  /** `k3s ctr -n k8s.io images ls -q` on the host, as the program's import step polls it. */
  function listed(h: SshHost): string[] {
    const r = sh(h, "k3s ctr -n k8s.io images ls -q");
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n").filter((l) => l !== "");
  }

  /** Polls (bounded) until the journal matches `re`; returns the journal. */
  async function journalMatches(h: SshHost, re: RegExp): Promise<string> {
    for (let i = 0; i < 120; i++) {
      const j = sh(h, `cat ${JOURNAL} 2>/dev/null || true`).stdout;
      if (re.test(j)) return j;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.fail(`the journal never matched ${re}:\n${sh(h, `cat ${JOURNAL}`).stdout}`);
  }

  const count = (text: string, re: RegExp): number => (text.match(new RegExp(re, "g")) ?? []).length;

  it("kwok mode: K3s's image watcher imports a tarball placed while K3s runs, 2 s later, and `k3s ctr` lists it", async () => {
    const h = await host("k3sd-img", "127.0.1.44", false);
    const local = path.join(f.tmp, "img");
    fs.mkdirSync(local);
    const app = writeImageTarball(path.join(local, "app.tar"), ["docker.io/forge/app:1"], 200_000);
    const pre = writeImageTarball(
      path.join(local, "pre.tar"),
      ["docker.io/rancher/mirrored-pause:3.6"],
      1000,
    );
    fs.mkdirSync(path.join(h.rootDirs["/var/lib/rancher"], "k3s/agent/images"), { recursive: true });
    place(h, pre, "k3s-airgap-images-amd64.tar");
    let r = installServer(h, "v1.36.4+k3s1", "node-name: k3sd-img");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    // The start imported what was there before the node registered.
    assert.ok(listed(h).includes("docker.io/rancher/mirrored-pause:3.6"), listed(h).join("\n"));
    assert.ok(!listed(h).includes("docker.io/forge/app:1"));

    place(h, app, "app.tar");
    // The watcher processes an event 2 s after it: not listed yet right after the rename.
    assert.ok(!listed(h).includes("docker.io/forge/app:1"), "imported before the watcher's 2 s delay");
    let j = await journalMatches(
      h,
      /msg="Imported images from \/var\/lib\/rancher\/k3s\/agent\/images\/app\.tar in /,
    );
    assert.match(
      j,
      /level=info msg="Importing images from \/var\/lib\/rancher\/k3s\/agent\/images\/app\.tar"/,
    );
    const names = listed(h);
    assert.ok(names.includes("docker.io/forge/app:1"), names.join("\n"));
    // K3s's retag: the name at the manifest's digest, too.
    assert.ok(
      names.some((n) => /^docker\.io\/forge\/app@sha256:[0-9a-f]{64}$/.test(n)),
      names.join("\n"),
    );
    // The hidden temp name never was a supported file: nothing was imported from it.
    assert.doesNotMatch(j, /\.app\.tar\.part/);
    // Pinned as K3s pins what it imports.
    const table = sh(h, "k3s ctr images ls").stdout;
    assert.match(table, /^docker\.io\/forge\/app:1\t.*io\.cri-containerd\.pinned=pinned/m);

    // Unchanged (same size, newer mtime): not imported again.
    sh(h, `touch ${IMAGES}/app.tar`);
    // A partial file (a truncated tarball) and a file that is no image tarball: K3s's failure line, nothing listed.
    fs.writeFileSync(
      path.join(h.rootDirs["/var/lib/rancher"], "k3s/agent/images/partial.tar"),
      fs.readFileSync(app).subarray(0, 100_000),
    );
    place(h, path.join(local, "app.tar"), "copy.tar.partial"); // not a supported extension: ignored
    fs.writeFileSync(path.join(local, "junk.tar"), "not a tarball at all\n".repeat(100));
    place(h, path.join(local, "junk.tar"), "junk.tar");
    j = await journalMatches(h, /junk\.tar: unrecognized image format|junk\.tar: unexpected EOF/);
    j = await journalMatches(h, /partial\.tar: failed to import images from \S+partial\.tar: unexpected EOF/);
    assert.match(
      j,
      /level=error msg="Failed to process image event: failed to import \/var\/lib\/rancher\/k3s\/agent\/images\/partial\.tar: /,
    );
    await new Promise((res) => setTimeout(res, 3000));
    j = sh(h, `cat ${JOURNAL}`).stdout;
    assert.equal(
      count(j, /Imported images from \S+\/app\.tar in /),
      1,
      "an unchanged file was imported again",
    );
    assert.doesNotMatch(j, /copy\.tar\.partial/);
    // The partial file completed (size changed, mtime newer): imported.
    place(h, app, "partial.tar");
    j = await journalMatches(h, /Imported images from \S+\/partial\.tar in /);

    // `k3s ctr` answers only what the double emulates, loudly otherwise.
    r = sh(h, "k3s ctr images pull docker.io/library/busybox:1");
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /'k3s ctr images pull docker\.io\/library\/busybox:1' is not emulated/);
    assert.equal(sh(h, "k3s ctr -n default images ls -q").stdout, "", "K3s imports into k8s.io only");

    // The watcher is a process of the unit: `systemctl stop k3s` ends it; a start imports what is there again.
    const pidFile = "/var/log/forge-edge/systemd-state/k3s.image-watcher.pid";
    const pid = sh(h, `cat ${pidFile}`).stdout.trim();
    assert.match(pid, /^\d+$/);
    assert.equal(sh(h, `kill -0 ${pid}`).status, 0);
    assert.equal(sh(h, "systemctl stop k3s").status, 0);
    assert.notEqual(sh(h, `kill -0 ${pid}`).status, 0, "the watcher outlived systemctl stop");
    place(h, writeImageTarball(path.join(local, "late.tar"), ["docker.io/forge/late:2"], 1000), "late.tar");
    await new Promise((res) => setTimeout(res, 2500));
    assert.ok(!listed(h).includes("docker.io/forge/late:2"), "imported while K3s was stopped");
    assert.equal(sh(h, "systemctl start k3s").status, 0);
    assert.ok(listed(h).includes("docker.io/forge/late:2"), "the start imports what is in agent/images");
    j = sh(h, `cat ${JOURNAL}`).stdout;
    assert.equal(
      count(j, /Imported images from \S+\/app\.tar in /),
      2,
      "the cache lives as long as K3s does",
    );
    const pid2 = sh(h, `cat ${pidFile}`).stdout.trim();
    assert.equal(sh(h, `kill -0 ${pid2}`).status, 0);
    // The uninstall ends it too, and takes containerd's images with /var/lib/rancher/k3s.
    assert.equal(sh(h, "/usr/local/bin/k3s-uninstall.sh").status, 0);
    assert.notEqual(sh(h, `kill -0 ${pid2}`).status, 0, "the watcher outlived the uninstall");
    assert.equal(sh(h, "test -e /var/lib/rancher/k3s && echo yes || echo no").stdout.trim(), "no");
  });

  it("kubelet mode: the watcher imports into the node's real containerd as K3s does, and `k3s ctr` is the real ctr", async () => {
    const h = await f.startHost("k3s-kimg", "127.0.1.45", {
      preloadAirgap: true,
      kubelet: { ip: `${SIMULATED_NODE_NET}45`, controlPlane: { server: f.cp.server, ...f.cp.pki } },
    });
    const local = fs.mkdtempSync(path.join(f.tmp, "kimg-"));
    const images = path.join(h.rootDirs["/var/lib/rancher"], "k3s/agent/images");
    fs.mkdirSync(images, { recursive: true });
    fs.copyFileSync(
      writeImageTarball(path.join(local, "pre.tar"), ["docker.io/forge/kpre:1"], 1000),
      path.join(images, "pre.tar"),
    );
    let r = sh(
      h,
      [
        "install -m 0755 /var/lib/forge-edge/airgap/k3s /usr/local/bin/k3s",
        `mkdir -p /etc/rancher/k3s ${TMPL_DIR}`,
        "echo 'node-name: k3s-kimg' > /etc/rancher/k3s/config.yaml",
        "k3s server >/dev/null",
      ].join("\n"),
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const ctrList = (): string[] => {
      const x = sh(h, "k3s ctr -n k8s.io images ls -q");
      assert.equal(x.status, 0, x.stderr);
      return x.stdout.split("\n").filter((l) => l !== "");
    };
    // The start's import, into the real containerd.
    assert.ok(ctrList().includes("docker.io/forge/kpre:1"), ctrList().join("\n"));

    place(h, writeImageTarball(path.join(local, "app.tar"), ["docker.io/forge/kapp:1"], 100_000), "app.tar");
    const j = await journalMatches(h, /Imported images from \S+\/app\.tar in /);
    assert.match(j, /level=info msg="Imported docker\.io\/forge\/kapp:1"/);
    // Each "Imported <image>" / "Tagged <image>" line names an image, nothing containerd's client wrote to stderr.
    for (const [, what, name] of j.matchAll(/msg="(Imported|Tagged) ([^"]*)"/g))
      if (!name.startsWith("images from "))
        assert.match(name, /^[a-z0-9][a-z0-9._/:@-]*$/, `${what} line with no image name: ${name}`);
    const names = ctrList();
    assert.ok(names.includes("docker.io/forge/kapp:1"), names.join("\n"));
    assert.ok(
      names.some((n) => /^docker\.io\/forge\/kapp@sha256:[0-9a-f]{64}$/.test(n)),
      names.join("\n"),
    );
    // K3s's pins, read back from containerd itself.
    r = sh(h, "k3s ctr images ls name==docker.io/forge/kapp:1");
    assert.match(r.stdout, /io\.cattle\.k3s\.pinned=pinned/);
    assert.match(r.stdout, /io\.cri-containerd\.pinned=pinned/);

    // K3s's killall ends the watcher with the node.
    const pid = sh(h, "cat /var/log/forge-edge/systemd-state/k3s.image-watcher.pid").stdout.trim();
    assert.match(pid, /^\d+$/);
    assert.equal(sh(h, "/usr/local/bin/k3s-killall.sh 2>/dev/null || k3s __double-stop k3s").status, 0);
    assert.notEqual(sh(h, `kill -0 ${pid}`).status, 0, "the watcher outlived K3s");
  });

  it("a K3s release without the image watcher imports agent/images only at its start", async () => {
    const h = await host("k3sd-old", "127.0.1.46", false);
    const local = fs.mkdtempSync(path.join(f.tmp, "old-"));
    const r = installServer(h, "v1.31.4+k3s1", "node-name: k3sd-old");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    place(h, writeImageTarball(path.join(local, "app.tar"), ["docker.io/forge/old:1"], 1000), "app.tar");
    await new Promise((res) => setTimeout(res, 3500));
    assert.ok(
      !listed(h).includes("docker.io/forge/old:1"),
      "v1.31.4 predates the watcher's backport (v1.31.5)",
    );
    // The next start imports it.
    assert.equal(sh(h, "systemctl restart k3s").status, 0);
    assert.ok(listed(h).includes("docker.io/forge/old:1"), listed(h).join("\n"));
    sh(h, "/usr/local/bin/k3s-uninstall.sh");
  });
});
