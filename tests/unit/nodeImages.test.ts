/**
 * harness/nodeImages.ts's pure parts: which stand-in runs an image a stack names, and the tarball name per image.
 * (The tarballs themselves are imported by the real containerd in tests/realnode/devicePlugin.test.ts, and ocitar's
 * layout is tested by its own Go tests in the node toolchain group.)
 */
import * as assert from "node:assert/strict";

import { DEFAULT_DCGM_EXPORTER_IMAGE, DEFAULT_DEVICE_PLUGIN_VERSION } from "../../config/sections/platform";
import { imageRepository, imageTarballName, k3sAirgapImageNames, standInFor } from "../../harness/nodeImages";

describe("nodeImages", () => {
  it("strips registry host and tag, keeping Docker Hub style paths", () => {
    assert.equal(imageRepository("nvcr.io/nvidia/k8s-device-plugin:v0.20.0"), "nvidia/k8s-device-plugin");
    assert.equal(imageRepository("localhost:5000/a/b:1"), "a/b");
    assert.equal(imageRepository("rancher/mirrored-pause:3.10.2"), "rancher/mirrored-pause");
    assert.equal(imageRepository("busybox"), "busybox");
    assert.equal(imageRepository("registry.example.com/forge/llm@sha256:abc"), "forge/llm");
  });

  it("picks the stand-in for the stack's own image names", () => {
    assert.equal(
      standInFor(`nvcr.io/nvidia/k8s-device-plugin:${DEFAULT_DEVICE_PLUGIN_VERSION}`),
      "device-plugin",
    );
    assert.equal(standInFor(DEFAULT_DCGM_EXPORTER_IMAGE), "dcgm-exporter");
    assert.equal(standInFor("registry.example.com/forge/cognition-llm:1.2.0"), "inference");
    // A repository that merely contains a stand-in's name is still an inference image.
    assert.equal(standInFor("registry.example.com/forge/k8s-device-plugin-llm:1"), "inference");
    for (const [name, want] of k3sAirgapImageNames().map((n, i) => [n, i] as const)) {
      assert.equal(standInFor(name), (["pause", "local-path-provisioner", "busybox"] as const)[want], name);
    }
  });

  it("names one tarball per image, path-safe, and refuses an untagged name", () => {
    assert.equal(
      imageTarballName("nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-ubuntu22.04"),
      "nvcr.io_nvidia_k8s_dcgm-exporter_4.6.0-4.8.3-ubuntu22.04.tar",
    );
    assert.notEqual(imageTarballName("a/b:1"), imageTarballName("a/b:2"));
    assert.throws(() => imageTarballName("registry.example.com:5000/forge/llm"), /needs a tag/);
  });

  it("names K3s v1.36's images (harness/versions.env)", () => {
    assert.deepEqual(k3sAirgapImageNames(), [
      "docker.io/rancher/mirrored-pause:3.10.2",
      "docker.io/rancher/local-path-provisioner:v0.0.37",
      "docker.io/rancher/mirrored-library-busybox:1.37.0",
    ]);
  });
});
