/**
 * The platform a stack runs on: the SKU profile, the pinned releases of K3s and the NVIDIA software, GPU
 * time-slicing and the DCGM exporter.
 */
import { Checker, ConfigSource, IMAGE_RE, keysOf, readJson } from "../checker";
import { isSkuName, SKU_NAMES, SKUS, SkuProfile } from "../skus";

export const DEFAULT_K3S_VERSION = "v1.36.4+k3s1";
export const DEFAULT_TOOLKIT_VERSION = "1.20.0";
export const DEFAULT_DEVICE_PLUGIN_VERSION = "v0.20.0";
export const DEFAULT_DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-ubuntu22.04";
/** K3s releases older than this lack the pre-created `nvidia` RuntimeClass and `config.toml.tmpl` base template. */
export const MIN_K3S_MINOR = 30;

const K3S_VERSION_RE = /^v1\.(\d+)\.(\d+)\+k3s(\d+)$/;
const TOOLKIT_VERSION_RE = /^\d+\.\d+\.\d+$/;

export interface PlatformConfig {
  readonly k3sVersion: string;
  readonly toolkitVersion: string;
  readonly devicePluginVersion: string;
  readonly dcgmExporterImage: string;
  /** DCGM exporter is deployed: the SKU supports DCGM and the stack did not turn it off. */
  readonly dcgmExporter: boolean;
  readonly timeSlicingReplicas: number;
}

export const PLATFORM_KEYS = keysOf<keyof PlatformConfig>({
  k3sVersion: true,
  toolkitVersion: true,
  devicePluginVersion: true,
  dcgmExporter: true,
  dcgmExporterImage: true,
  timeSlicingReplicas: true,
});

/**
 * `sku`, looked up in `SKUS`. An unknown name is a problem; parsing goes on with a stand-in profile (`known: false`)
 * so that every other key is still checked, and the rules that need the real SKU are skipped.
 */
export function parseSku(c: Checker, src: ConfigSource): { sku: SkuProfile; known: boolean } {
  const raw = src.get("sku");
  const allowed = `one of ${SKU_NAMES.join(", ")}`;
  if (raw === undefined) c.problems.push(`sku is required: ${allowed}`);
  else if (isSkuName(raw)) return { sku: SKUS[raw], known: true };
  else c.fail("sku", raw, allowed);
  return { sku: SKUS.p40, known: false };
}

/** The pinned releases, GPU time-slicing and the DCGM exporter. */
export function parsePlatform(
  c: Checker,
  src: ConfigSource,
  sku: SkuProfile,
  skuKnown: boolean,
): PlatformConfig {
  return { ...parseReleases(c, src), ...parseGpuSharing(c, src, sku, skuKnown) };
}

function parseReleases(
  c: Checker,
  src: ConfigSource,
): Pick<PlatformConfig, "k3sVersion" | "toolkitVersion" | "devicePluginVersion"> {
  const k3sVersion = c.str(
    "k3sVersion",
    src.get("k3sVersion"),
    DEFAULT_K3S_VERSION,
    K3S_VERSION_RE,
    `a pinned K3s release such as "${DEFAULT_K3S_VERSION}" (v1.${MIN_K3S_MINOR} or newer)`,
  );
  const minor = Number(K3S_VERSION_RE.exec(k3sVersion)?.[1] ?? MIN_K3S_MINOR);
  if (minor < MIN_K3S_MINOR) {
    c.fail(
      "k3sVersion",
      k3sVersion,
      `v1.${MIN_K3S_MINOR} or newer is required (nvidia RuntimeClass, containerd 2 template)`,
    );
  }
  const toolkitVersion = c.str(
    "toolkitVersion",
    src.get("toolkitVersion"),
    DEFAULT_TOOLKIT_VERSION,
    TOOLKIT_VERSION_RE,
    'an NVIDIA Container Toolkit version such as "1.20.0"',
  );
  const devicePluginVersion = c.str(
    "devicePluginVersion",
    src.get("devicePluginVersion"),
    DEFAULT_DEVICE_PLUGIN_VERSION,
    /^v0\.(1[7-9]|[2-9]\d)\.\d+$/,
    "a k8s-device-plugin tag v0.17.0 or newer (time-slicing with tegra discovery)",
  );
  return { k3sVersion, toolkitVersion, devicePluginVersion };
}

/** Time-slicing and the DCGM exporter, checked against what the SKU supports. */
function parseGpuSharing(
  c: Checker,
  src: ConfigSource,
  sku: SkuProfile,
  skuKnown: boolean,
): Pick<PlatformConfig, "dcgmExporter" | "dcgmExporterImage" | "timeSlicingReplicas"> {
  const dcgmWanted = c.bool("dcgmExporter", readJson(src, "dcgmExporter"), sku.metrics.dcgm);
  if (dcgmWanted && !sku.metrics.dcgm && skuKnown) {
    c.fail("dcgmExporter", true, `${sku.displayName} has no DCGM (${sku.metrics.note}); allowed: false`);
  }
  const dcgmExporterImage = c.str(
    "dcgmExporterImage",
    src.get("dcgmExporterImage"),
    DEFAULT_DCGM_EXPORTER_IMAGE,
    IMAGE_RE,
    "a container image reference",
  );
  const ts = sku.timeSlicing;
  const timeSlicingReplicas = c.int(
    "timeSlicingReplicas",
    src.get("timeSlicingReplicas"),
    ts.default,
    ts.min,
    ts.max,
    ` (the range ${sku.displayName} supports)`,
  );
  return {
    dcgmExporterImage,
    dcgmExporter: dcgmWanted && sku.metrics.dcgm,
    timeSlicingReplicas,
  };
}
