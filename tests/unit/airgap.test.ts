/** Air gap (issue 8.11): staging for non-root SSH users, every image the stack runs, private registries as secrets. */
import * as assert from "node:assert/strict";

import { run } from "../../program";
import { ConfigError, parseStackConfig } from "../../config/stack";
import { existingFiles } from "./airgapFiles";
import { evaluateStack, isSecretValue, stackSource, unwrap } from "./support";

const airgap = existingFiles({
  k3sBinary: "k3s",
  installScript: "install.sh",
  imagesTarball: "k3s-airgap-images-arm64.tar.zst",
  stackImageTarballs: ["images/device-plugin.tar", "images/inference.tar.zst"],
});

describe("air gap and private registries", () => {
  it("a non-root SSH user stages into a directory it owns, before any copy; K3s installs its own images from it", async () => {
    const ev = await evaluateStack("thor", run, {
      airgap,
      nodes: [{ name: "thor-01", host: "192.0.2.10", role: "server", user: "ubuntu", hostKey: undefined }],
      insecureSkipHostKeyCheck: true,
    });
    const stage = ev.byName("thor-01-airgap-stage");
    assert.match(String(stage.inputs.create), /^sudo -n bash -c/);
    assert.match(String(stage.inputs.create), /OWNER='ubuntu'/);
    assert.match(String(stage.inputs.delete), /forge-edge airgap-unstage\.sh/);
    const copies = ev.ofType("command:remote:CopyToRemote").map((r) => String(r.inputs.remotePath));
    assert.deepEqual(copies.sort(), [
      "/var/lib/forge-edge/airgap/images/device-plugin.tar",
      "/var/lib/forge-edge/airgap/images/inference.tar.zst",
      "/var/lib/forge-edge/airgap/images/k3s-airgap-images-arm64.tar.zst",
      "/var/lib/forge-edge/airgap/install.sh",
      "/var/lib/forge-edge/airgap/k3s",
    ]);
    const k3s = String(ev.byName("thor-01-k3s").inputs.create);
    assert.match(k3s, /^sudo -n bash -c/);
    // The stack's tarballs are placed by the import step once K3s runs (tests/unit/airgapImport.test.ts).
    assert.match(k3s, /AIRGAP_IMAGES='k3s-airgap-images-arm64\.tar\.zst'\n/);
    assert.match(String(ev.byName("thor-01-airgap-import").inputs.create), /^sudo -n bash -c/);
  });

  it("refuses image tarballs that are not tarballs or that collide", () => {
    const bad = (stackImageTarballs: unknown) => () =>
      parseStackConfig("p40", stackSource("p40", { airgap: { ...airgap, stackImageTarballs } }));
    assert.throws(bad(["/srv/x.img"]), /airgap\.stackImageTarballs\[0\].*image tarball/);
    assert.throws(bad(["/a/x.tar", "/b/x.tar"]), /airgap\.stackImageTarballs\[1\].*unique/);
    assert.throws(bad("/srv/x.tar"), /airgap\.stackImageTarballs = .*a list/);
  });

  it("registry credentials must be secret config; mirrors alone need not be", () => {
    const registries = {
      mirrors: { "docker.io": { endpoint: ["https://registry.site:5000"] } },
      configs: { "registry.site:5000": { auth: { username: "edge", password: "hunter2" } } },
    };
    assert.throws(
      () => parseStackConfig("p40", stackSource("p40", { registries })),
      (e: unknown) =>
        e instanceof ConfigError && /registries holds registry credentials in plaintext/.test(e.message),
    );
    const src = stackSource("p40", { registries });
    const secretSrc = { ...src, isSecret: (k: string) => k === "sshPrivateKey" || k === "registries" };
    assert.equal(parseStackConfig("p40", secretSrc).registries?.hasCredentials, true);
    const mirrorsOnly = parseStackConfig(
      "p40",
      stackSource("p40", { registries: { mirrors: registries.mirrors } }),
    );
    assert.equal(mirrorsOnly.registries?.hasCredentials, false);
    assert.throws(
      () => parseStackConfig("p40", stackSource("p40", { registries: { mirrors: { "docker.io": {} } } })),
      /registries\.mirrors\.docker\.io\.endpoint/,
    );
  });

  it("registries.yaml reaches the node on stdin as a secret, never in the command, before K3s starts", async () => {
    const registries = { mirrors: { "docker.io": { endpoint: ["https://registry.site:5000"] } } };
    const ev = await evaluateStack("p40", run, { registries });
    const step = ev.byName("p40-01-registries");
    assert.ok(isSecretValue(step.inputs.stdin), "stdin is not a secret");
    assert.deepEqual(JSON.parse(String(unwrap(step.inputs.stdin))), { ...registries, configs: {} });
    assert.doesNotMatch(String(step.inputs.create), /registry\.site/);
    assert.match(String(step.inputs.delete), /forge-edge registries-remove\.sh/);
  });
});
