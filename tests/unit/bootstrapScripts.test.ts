/**
 * Issue 12.3: the node scripts of the overlapped bootstrap, run for real as root in the copy-on-write sandbox:
 * k3s-fetch.sh (release assets over file:// URLs, checked the way get.k3s.io checks them), k3s-install.sh from
 * what the fetch staged, and image-prepull.sh (K3s's pre-pull list).
 */
import * as assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";

import { fetchParams, k3sParams, prePullParams } from "../../components/edgeNode";
import { k3sWatchesImages } from "../../config/images";
import { SKUS } from "../../config/skus";
import { NodeConfig } from "../../config/stack";
import { renderScript } from "../../scripts/render";
import { NodeSandbox, requireSandbox } from "./nodeSandbox";

const V = "v1.36.4+k3s1";
const node: NodeConfig = { name: "n1", host: "192.0.2.10", port: 22, user: "root", role: "server", gpus: 1 };
const LIST = "/var/lib/rancher/k3s/agent/images/forge-edge-prepull.txt";

describe("overlapped bootstrap: node scripts (issue 12.3)", () => {
  let sb: NodeSandbox;
  before(requireSandbox);
  beforeEach(() => {
    sb = new NodeSandbox();
    // Real curl (file:// URLs), every call logged.
    sb.stub("curl", `echo "curl $*" >>"$STATE/curl.log"; exec /usr/bin/curl "$@"`);
  });
  afterEach(() => sb?.dispose());

  /** A release directory as GitHub serves it: <base>/<version>/{k3s, k3s-arm64, sha256sum-<arch>.txt}. */
  function release(binary: string, listed = binary): { base: string; installer: string } {
    const base = path.join(sb.dir, "releases");
    const dir = path.join(base, V);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "k3s"), binary);
    const sum = createHash("sha256").update(listed).digest("hex");
    writeFileSync(
      path.join(dir, "sha256sum-amd64.txt"),
      `${"0".repeat(64)}  k3s-airgap-images-amd64.tar\n${sum}  k3s\n`,
    );
    const installer = path.join(sb.dir, "get.k3s.io");
    writeFileSync(installer, "echo installer\n");
    return { base: `file://${base}`, installer: `file://${installer}` };
  }

  function fetchScript(urls: { base: string; installer: string }): string {
    return renderScript("k3s-fetch", {
      ...fetchParams({ sku: SKUS.p40, k3sVersion: V }),
      RELEASE_URL: urls.base,
      INSTALL_URL: urls.installer,
    });
  }

  it("k3s-fetch stages the checked binary and the installer; a rerun downloads only the checksums and installer", () => {
    const script = fetchScript(release("K3S-BINARY"));
    const r = sb.run(script);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^k3s=v1\.36\.4\+k3s1 asset=k3s sha256=[0-9a-f]{64}\n$/);
    assert.equal(sb.read("/var/lib/forge-edge/fetch/k3s"), "K3S-BINARY");
    assert.equal(sb.read("/var/lib/forge-edge/fetch/install.sh"), "echo installer\n");
    assert.equal(sb.read("/var/lib/forge-edge/fetch/version"), `${V}\n`);
    // The release path escapes '+' as GitHub's download URLs do.
    assert.match(sb.stateFile("curl.log") ?? "", /v1\.36\.4%2Bk3s1\/k3s /);

    const again = sb.run(script);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /already staged/);
    const calls = (sb.stateFile("curl.log") ?? "").trim().split("\n");
    assert.equal(calls.filter((c) => /\/k3s /.test(c)).length, 1, calls.join("\n"));
  });

  it("k3s-fetch refuses a binary whose sha256 the release does not list, and stages nothing", () => {
    const r = sb.run(fetchScript(release("TAMPERED", "K3S-BINARY")));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /sha256 [0-9a-f]{64}, the release lists [0-9a-f]{64}/);
    assert.equal(sb.read("/var/lib/forge-edge/fetch/k3s"), undefined);
  });

  it("k3s-fetch fails in time on a release it cannot reach (bounded download)", () => {
    const r = sb.run(fetchScript({ base: "file:///nonexistent", installer: "file:///nonexistent/x" }));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /cannot download file:\/\/\/nonexistent\/v1\.36\.4%2Bk3s1\/sha256sum-amd64\.txt/);
  });

  it("k3s-fetch-remove removes what was staged, and twice is fine", () => {
    sb.put("/var/lib/forge-edge/fetch/k3s", "x");
    for (let i = 0; i < 2; i++) {
      const r = sb.run(renderScript("k3s-fetch-remove", {}));
      assert.equal(r.status, 0, r.stderr);
    }
    assert.equal(sb.isDir("/var/lib/forge-edge/fetch"), false);
  });

  it("k3s-install (online) installs what k3s-fetch staged, and refuses a staged binary of another release", () => {
    sb.stub(
      "systemctl",
      `case "$1" in is-active) [ -e "$STATE/active" ] ;; restart)
  mkdir -p /var/lib/rancher/k3s/agent/etc/containerd
  printf "version = 3\\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']\\n" >/var/lib/rancher/k3s/agent/etc/containerd/config.toml
  touch "$STATE/active"; mkdir -p /etc/rancher/k3s; printf x >/etc/rancher/k3s/k3s.yaml ;; esac`,
    );
    sb.put(
      "/var/lib/forge-edge/fetch/k3s",
      `#!/bin/sh\ncase "$1" in --version) echo "k3s version ${V} (x)";; esac\n`,
      0o755,
    );
    sb.put(
      "/var/lib/forge-edge/fetch/install.sh",
      'echo "installer SKIP_DOWNLOAD=$INSTALL_K3S_SKIP_DOWNLOAD" >>/var/lib/forge-edge/installer.log\n',
    );
    const script = renderScript(
      "k3s-install",
      k3sParams(node, { sku: SKUS.p40, k3sVersion: V }, { serverUrl: "", clusterInit: false }),
    );
    sb.put("/var/lib/forge-edge/fetch/version", "v1.36.3+k3s1\n");
    const stale = sb.run(script, { stdin: "tok\n" });
    assert.notEqual(stale.status, 0);
    assert.match(stale.stderr, /staged K3s 'v1\.36\.3\+k3s1', not v1\.36\.4\+k3s1/);

    sb.put("/var/lib/forge-edge/fetch/version", `${V}\n`);
    const r = sb.run(script, { stdin: "tok\n" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(sb.read("/var/lib/forge-edge/installer.log"), "installer SKIP_DOWNLOAD=binary\n");
    assert.match(sb.read("/usr/local/bin/k3s") ?? "", /k3s version/);
    assert.equal(sb.stateFile("curl.log"), undefined, "the K3s step downloaded something");
  });

  it("image-prepull writes K3s's list once, validates references, and skips K3s releases without the watcher", () => {
    const images = [
      "nvcr.io/nvidia/tritonserver:25.01-py3",
      "registry.site:5000/dp@sha256:" + "a".repeat(64),
    ];
    const script = renderScript("image-prepull", prePullParams(images, { k3sVersion: V }));
    const r = sb.run(script);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(sb.read(LIST), `${images.join("\n")}\n`);
    assert.match(r.stdout, /^prepull=\S+ images=2\n$/);
    const again = sb.run(script);
    assert.equal(again.status, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /asked K3s/);

    const bad = sb.run(renderScript("image-prepull", prePullParams(["ok:1", "bad ref"], { k3sVersion: V })));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /'bad ref' is not an image reference/);

    const old = sb.run(renderScript("image-prepull", prePullParams(images, { k3sVersion: "v1.31.4+k3s1" })));
    assert.equal(old.status, 0, old.stderr);
    assert.match(old.stdout, /^prepull=skipped/);
    assert.equal(
      sb.read(LIST),
      undefined,
      "an old K3s would pull the list before its kubelet at the next start",
    );

    const rm = sb.run(renderScript("image-prepull-remove", {}));
    assert.equal(rm.status, 0, rm.stderr);
  });

  it("image-prepull and the program agree on which K3s releases watch agent/images (k3s-io/k3s#11561-#11563)", () => {
    // The watcher was backported to v1.29.13, v1.30.9 and v1.31.5, and came to 1.32 with v1.32.1, not v1.32.0.
    const cases: [string, boolean][] = [
      ["v1.29.12+k3s1", false],
      ["v1.29.13+k3s1", true],
      ["v1.30.8+k3s1", false],
      ["v1.30.9+k3s1", true],
      ["v1.31.4+k3s1", false],
      ["v1.31.5+k3s1", true],
      ["v1.32.0+k3s1", false],
      ["v1.32.1+k3s1", true],
      ["v1.36.4+k3s1", true],
    ];
    for (const [version, watches] of cases) {
      assert.equal(k3sWatchesImages(version), watches, `the program on ${version}`);
      const r = sb.run(renderScript("image-prepull", prePullParams(["ok:1"], { k3sVersion: version })));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(
        /^prepull=skipped/.test(r.stdout),
        !watches,
        `image-prepull.sh on ${version}: ${r.stdout}`,
      );
      sb.run(renderScript("image-prepull-remove", {}));
    }
  });
});
