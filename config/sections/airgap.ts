/**
 * Sites without the internet, or behind their own registry: `airgap` (K3s and the stack's images copied from the
 * machine running pulumi) and `registries` (K3s's registries.yaml, whose credentials reach the node on stdin only).
 */
import { Checker, ConfigSource, FileStat, keysOf, readJson } from "../checker";

export interface AirgapConfig {
  readonly k3sBinary: string;
  readonly installScript: string;
  readonly imagesTarball: string;
  /** Image tarballs of every image the stack runs (device plugin, DCGM exporter, inference), for K3s to import. */
  readonly stackImageTarballs: readonly string[];
  /**
   * Each stack tarball's size and mtime, in the same order, read once here: the size bounds the import's wait, and a
   * change re-runs it. Absent where the config source cannot read files (tools that parse a stack without them).
   */
  readonly stackImageStats?: readonly (FileStat | undefined)[];
}

export const AIRGAP_KEYS = keysOf<Exclude<keyof AirgapConfig, "stackImageStats">>({
  k3sBinary: true,
  installScript: true,
  imagesTarball: true,
  stackImageTarballs: true,
});

/** K3s's registries.yaml (mirrors, configs): its credentials are Pulumi secrets and reach the node on stdin only. */
export interface RegistriesConfig {
  readonly mirrors: Readonly<Record<string, { readonly endpoint: readonly string[] }>>;
  readonly configs: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Any `configs.<host>.auth` present. */
  readonly hasCredentials: boolean;
}

export const REGISTRIES_KEYS = keysOf<Exclude<keyof RegistriesConfig, "hasCredentials">>({
  mirrors: true,
  configs: true,
});
/** The keys K3s reads under `mirrors.<host>` and `configs.<host>`. */
const MIRROR_KEYS = ["endpoint", "rewrite"];
const REGISTRY_CONFIG_KEYS = ["auth", "tls"];

const TARBALL_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*\.tar(\.gz|\.zst)?$/;

export function parseAirgap(c: Checker, src: ConfigSource): AirgapConfig | undefined {
  const raw = readJson(src, "airgap");
  if (raw === undefined) return undefined;
  const o = c.section("airgap", raw, AIRGAP_KEYS);
  const path = (k: keyof AirgapConfig) =>
    existing(c, src, `airgap.${k}`, c.str(`airgap.${k}`, o[k], undefined, /^[^\0]+$/, PATH_ALLOWED));
  const stackImageTarballs = parseStackImageTarballs(c, o.stackImageTarballs ?? []);
  stackImageTarballs.forEach((t, i) => existing(c, src, `airgap.stackImageTarballs[${i}]`, t));
  return {
    k3sBinary: path("k3sBinary"),
    installScript: path("installScript"),
    imagesTarball: path("imagesTarball"),
    stackImageTarballs,
    ...(src.fileStat ? { stackImageStats: stackImageTarballs.map((t) => src.fileStat!(t)) } : {}),
  };
}

const PATH_ALLOWED = "a path on the machine running pulumi";

/**
 * A missing file is refused here, by key, before anything reaches a node: the engine reads an asset's file only when
 * a copy step hashes it, and a preview with a missing one hung there instead of failing.
 */
function existing(c: Checker, src: ConfigSource, key: string, file: string): string {
  if (file !== "" && src.isFile && !src.isFile(file))
    c.fail(key, file, `a path to a readable file on the machine running pulumi (no such file)`);
  return file;
}

/** `airgap.stackImageTarballs`: K3s imports every tarball in its images directory, so the file names must differ. */
function parseStackImageTarballs(c: Checker, raw: unknown): string[] {
  if (!Array.isArray(raw)) {
    c.fail("airgap.stackImageTarballs", raw, "a list of image tarball paths (.tar, .tar.gz, .tar.zst)");
    return [];
  }
  const tarballs: string[] = [];
  const seen = new Set<string>();
  raw.forEach((v, i) => {
    const key = `airgap.stackImageTarballs[${i}]`;
    const base = typeof v === "string" ? (v.split("/").pop() ?? "") : "";
    if (typeof v !== "string" || !TARBALL_RE.test(base))
      c.fail(key, v, "a path to an image tarball named *.tar, *.tar.gz or *.tar.zst");
    else if (seen.has(base) || base.startsWith("k3s-airgap-images"))
      c.fail(key, v, "file names must be unique and not k3s-airgap-images*");
    else tarballs.push(v);
    seen.add(base);
  });
  return tarballs;
}

/** `registries`: K3s's registries.yaml as an object; credentials only from a secret config value. */
export function parseRegistries(c: Checker, src: ConfigSource): RegistriesConfig | undefined {
  const raw = readJson(src, "registries");
  if (raw === undefined) return undefined;
  const o = c.section("registries", raw, REGISTRIES_KEYS);
  const mirrors: Record<string, { endpoint: string[] }> = {};
  for (const [host, m] of Object.entries(c.object("registries.mirrors", o.mirrors))) {
    const mo = c.section(`registries.mirrors.${host}`, m, MIRROR_KEYS);
    const ep = mo.endpoint;
    if (!Array.isArray(ep) || ep.length === 0 || !ep.every((e) => typeof e === "string" && /^\S+$/.test(e)))
      c.fail(
        `registries.mirrors.${host}.endpoint`,
        ep,
        'a non-empty list of registry URLs, e.g. ["https://registry.site:5000"]',
      );
    else mirrors[host] = { ...mo, endpoint: ep as string[] };
  }
  const configs: Record<string, Record<string, unknown>> = {};
  let hasCredentials = false;
  for (const [host, cfg] of Object.entries(c.object("registries.configs", o.configs))) {
    const co = c.section(`registries.configs.${host}`, cfg, REGISTRY_CONFIG_KEYS);
    if (co.auth !== undefined) hasCredentials = true;
    configs[host] = co;
  }
  if (hasCredentials && !src.isSecret("registries")) {
    c.problems.push(
      "registries holds registry credentials in plaintext: set them as secrets, e.g. `pulumi config set --path --secret 'registries.configs.<host>.auth.password' <password>`",
    );
  }
  return { mirrors, configs, hasCredentials };
}
