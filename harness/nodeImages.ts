/**
 * The one place the harness asks for OCI image tarballs for a real simulated node (issue 11): no registry is
 * reachable, so every image a node runs is built here by the `node` toolchain group (harness/build-toolchain.sh,
 * harness/images) and handed to K3s's images directory (/var/lib/rancher/k3s/agent/images), which K3s imports at
 * start.
 *
 * - `k3sAirgapImages()`: K3s's own images a node needs, under K3s v1.36's names, in one tarball as
 *   k3s-airgap-images-amd64.tar carries them: the pause image, local-path-provisioner and its busybox helper.
 * - `stackImages(names)`: one tarball per image name a stack runs, each the stand-in for that image (the device
 *   plugin, the DCGM exporter, else the fake inference server) re-packed by the node group's `ocitar` under exactly
 *   that name; cached per name in the node group's dir (a rebuild of the group drops the cache with it).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { nodeToolchain, readVersions, type NodeToolchain } from "./realNode";

/** The file name K3s's air-gap images tarball has for amd64 (the SKUs' arch picks it in components/edgeNode.ts). */
export const K3S_AIRGAP_TARBALL = "k3s-airgap-images-amd64.tar";

/** The images the node group builds, by their tarball in `<node dir>/images`. */
export const STAND_INS = {
  pause: "pause.tar",
  inference: "inference.tar",
  "device-plugin": "device-plugin.tar",
  "dcgm-exporter": "dcgm-exporter.tar",
  "local-path-provisioner": "local-path-provisioner.tar",
  busybox: "busybox.tar",
} as const;

export type StandIn = keyof typeof STAND_INS;

/** An image name without its registry host and tag: "nvcr.io/nvidia/k8s-device-plugin:v1" -> "nvidia/k8s-device-plugin". */
export function imageRepository(image: string): string {
  const noDigest = image.split("@")[0];
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  const repo = colon > slash ? noDigest.slice(0, colon) : noDigest;
  const first = repo.split("/")[0];
  // A first component with a dot or a port, or "localhost", is a registry host (the Docker reference grammar).
  return repo.includes("/") && (/[.:]/.test(first) || first === "localhost")
    ? repo.slice(first.length + 1)
    : repo;
}

/**
 * Which stand-in runs an image: the NVIDIA device plugin and DCGM exporter by their repositories, K3s's own images
 * by theirs; any other image a stack names is its inference server.
 */
export function standInFor(image: string): StandIn {
  const name = imageRepository(image).split("/").pop() ?? "";
  switch (name) {
    case "k8s-device-plugin":
      return "device-plugin";
    case "dcgm-exporter":
      return "dcgm-exporter";
    case "local-path-provisioner":
      return "local-path-provisioner";
    case "mirrored-library-busybox":
    case "busybox":
      return "busybox";
    case "mirrored-pause":
    case "pause":
      return "pause";
    default:
      return "inference";
  }
}

/** A tarball file name for an image name: unique per name, safe as a path component and as K3s's file name. */
export function imageTarballName(image: string): string {
  if (!/:[^/:]+$/.test(image.split("@")[0])) throw new Error(`image ${image} needs a tag`);
  return `${image.replace(/[^A-Za-z0-9._-]+/g, "_")}.tar`;
}

/** The node group's tarball of a stand-in. */
export function standInTarball(standIn: StandIn, tc: NodeToolchain = nodeToolchain()): string {
  const file = path.join(tc.dir, "images", STAND_INS[standIn]);
  if (!fs.existsSync(file))
    throw new Error(`${file} is missing: build it with \`bash harness/build-toolchain.sh node\``);
  return file;
}

/** K3s's own images for a node (pause, local-path-provisioner, busybox) in one tarball, under K3s's names. */
export function k3sAirgapImages(tc: NodeToolchain = nodeToolchain()): string {
  const file = path.join(tc.dir, "images", K3S_AIRGAP_TARBALL);
  if (!fs.existsSync(file))
    throw new Error(`${file} is missing: build it with \`bash harness/build-toolchain.sh node\``);
  return file;
}

/** The names k3sAirgapImages() carries (harness/versions.env). */
export function k3sAirgapImageNames(): string[] {
  const v = readVersions();
  return [v.NODE_PAUSE_IMAGE, v.NODE_LOCAL_PATH_IMAGE, v.NODE_BUSYBOX_IMAGE];
}

export interface StackImage {
  name: string;
  standIn: StandIn;
  /** An OCI image-layout tarball holding the stand-in under `name` only. */
  tarball: string;
}

/** One tarball per image name, re-packed from its stand-in by the node group's ocitar (cached per name). */
export function stackImages(names: readonly string[], tc: NodeToolchain = nodeToolchain()): StackImage[] {
  const cache = path.join(tc.dir, "stack-images");
  fs.mkdirSync(cache, { recursive: true });
  return [...new Set(names)].map((name) => {
    const standIn = standInFor(name);
    const tarball = path.join(cache, imageTarballName(name));
    const src = standInTarball(standIn, tc);
    if (!fs.existsSync(tarball) || fs.statSync(tarball).mtimeMs < fs.statSync(src).mtimeMs) {
      // ocitar writes <out>.tmp and renames it: a concurrent reader never sees half a tarball.
      execFileSync(path.join(tc.dir, "ocitar"), ["-from", src, "-name", name, "-o", tarball], {
        stdio: ["ignore", "ignore", "pipe"],
      });
    }
    return { name, standIn, tarball };
  });
}
