/**
 * The images a stack runs, as containerd names them, and what K3s's image directory does with tarballs placed while
 * K3s runs. Pure: the air-gap import step (components/edgeNode.ts) waits for these names in `k3s ctr images ls`.
 */
import type { PlatformConfig } from "./sections/platform";

/**
 * The device plugin's image for a release, as components/gpuSharing.ts renders it into the DaemonSet (a unit test
 * compares the two).
 */
export function devicePluginImage(version: string): string {
  return `nvcr.io/nvidia/k8s-device-plugin:${version}`;
}

/**
 * An image reference in the form containerd stores and lists it: distribution/reference's `ParseDockerRef`
 * (normalize.go, v0.6.0): no domain → `docker.io`, `index.docker.io` → `docker.io`, a single path component on
 * docker.io → `library/…`, no tag and no digest → `:latest`, a tag next to a digest is dropped. The first component
 * is a domain when it has a `.` or `:`, is `localhost`, or has an upper-case letter.
 */
export function normalizeImageRef(ref: string): string {
  const slash = ref.indexOf("/");
  const first = slash < 0 ? "" : ref.slice(0, slash);
  let domain = "docker.io";
  let remainder = ref;
  if (slash >= 0) {
    if (first === "index.docker.io") remainder = ref.slice(slash + 1);
    else if (first === "localhost" || /[.:]/.test(first) || first.toLowerCase() !== first) {
      domain = first;
      remainder = ref.slice(slash + 1);
    }
  }
  const at = remainder.indexOf("@");
  const nameTag = at < 0 ? remainder : remainder.slice(0, at);
  const digest = at < 0 ? "" : remainder.slice(at);
  const colon = nameTag.lastIndexOf(":");
  const path = colon < 0 ? nameTag : nameTag.slice(0, colon);
  const tag = colon < 0 ? "" : nameTag.slice(colon);
  if (path === "" || path.toLowerCase() !== path || /\s/.test(ref))
    throw new Error(`"${ref}" is not an image reference (repository names are lower case)`);
  const repo = domain === "docker.io" && !path.includes("/") ? `library/${path}` : path;
  return `${domain}/${repo}${digest || tag || ":latest"}`;
}

/**
 * The images the stack's workloads run, normalised, in the order they start: the device plugin, the DCGM exporter
 * when enabled, the inference server. What an air gap's stack tarballs must hold.
 */
export function stackImageRefs(
  platform: Pick<PlatformConfig, "devicePluginVersion" | "dcgmExporter" | "dcgmExporterImage">,
  inferenceImage: string,
): string[] {
  const refs = [
    devicePluginImage(platform.devicePluginVersion),
    ...(platform.dcgmExporter ? [platform.dcgmExporterImage] : []),
    inferenceImage,
  ].map(normalizeImageRef);
  return [...new Set(refs)];
}

/**
 * K3s imports tarballs (and reads pre-pull lists) added to agent/images while it runs: the image watcher of
 * k3s-io/k3s#10973, released on v1.33 and backported to v1.29.13, v1.30.9, v1.31.5 and v1.32.1 (#11556–#11559,
 * each validated on that release's rc; v1.32.0 predates the backport). Older releases import only at start.
 */
export function k3sWatchesImages(k3sVersion: string): boolean {
  const m = /^v1\.(\d+)\.(\d+)[+-]/.exec(k3sVersion);
  if (!m) return false;
  const [minor, patch] = [Number(m[1]), Number(m[2])];
  const firstPatch: Record<number, number> = { 29: 13, 30: 9, 31: 5, 32: 1 };
  return minor >= 33 || (minor in firstPatch && patch >= firstPatch[minor]);
}

/** Seconds the import step waits for K3s to import the placed tarballs: 120 s plus their bytes at 20 MB/s. */
export const IMPORT_WAIT = { baseSeconds: 120, bytesPerSecond: 20e6 } as const;

export function importTimeoutSeconds(tarballBytes: readonly number[]): number {
  const bytes = tarballBytes.reduce((a, b) => a + b, 0);
  return IMPORT_WAIT.baseSeconds + Math.ceil(bytes / IMPORT_WAIT.bytesPerSecond);
}
