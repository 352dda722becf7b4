/**
 * Locates the locally built binaries (etcd, kube-*, kubectl, kwok, pulumi) that the
 * toolchain build writes into the forge-edge cache, described by `toolchain.json`.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const BINARY_NAMES = [
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubectl",
  "kwok",
  "pulumi",
] as const;

export type BinaryName = (typeof BINARY_NAMES)[number];

export interface Toolchain {
  /** Root dir such that `<pulumiRoot>/bin/pulumi` is the CLI (Automation API `PulumiCommand.get({root})`). */
  pulumiRoot: string;
  /** PULUMI_HOME holding the locally installed provider plugins. */
  pulumiHome: string;
  /** Absolute paths of each binary. */
  bin: Record<BinaryName, string>;
  /** Multi-document YAML of kwok `Stage` objects, passed to kwok with `--config`. */
  kwokStages: string;
  versions: Record<string, string>;
  /** Path of the toolchain.json this was read from. */
  manifestPath: string;
}

export class ToolchainMissingError extends Error {}

/** `${FORGE_EDGE_CACHE:-$HOME/.cache/forge-edge}` */
export function cacheDir(): string {
  const env = process.env.FORGE_EDGE_CACHE;
  return env !== undefined && env !== "" ? env : path.join(os.homedir(), ".cache", "forge-edge");
}

/** The pinned versions in harness/versions.env (KEY=VALUE lines), for tools the tests locate themselves. */
export function pinnedVersions(): Record<string, string> {
  const text = fs.readFileSync(path.join(__dirname, "versions.env"), "utf8");
  return Object.fromEntries(
    text
      .split("\n")
      .map((l) => /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1], m[2].replace(/^"(.*)"$/, "$1")]),
  );
}

export function toolchainManifestPath(): string {
  return path.join(cacheDir(), "toolchain.json");
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** True when toolchain.json exists (it may still be invalid). */
export function toolchainAvailable(): boolean {
  return fs.existsSync(toolchainManifestPath());
}

/**
 * Reads and validates toolchain.json. Throws ToolchainMissingError with a
 * "run npm run build:toolchain first" message when it does not exist, and a plain
 * Error naming the problem when it is malformed or a binary is missing.
 * `need` restricts the existence check to the binaries the caller uses.
 */
export function loadToolchain(need: readonly BinaryName[] = BINARY_NAMES): Toolchain {
  const file = toolchainManifestPath();
  if (!fs.existsSync(file)) {
    throw new ToolchainMissingError(
      `forge-edge toolchain not found: ${file} does not exist. ` +
        `Run \`npm run build:toolchain\` first (set FORGE_EDGE_CACHE to use another cache dir).`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message}); re-run \`npm run build:toolchain\``);
  }
  if (!isRecord(raw)) throw new Error(`${file}: expected a JSON object`);
  const binRaw = raw.bin;
  if (!isRecord(binRaw)) throw new Error(`${file}: field "bin" must be an object`);
  const bin = {} as Record<BinaryName, string>;
  for (const name of BINARY_NAMES) {
    const p = binRaw[name];
    bin[name] = typeof p === "string" ? p : "";
  }
  for (const name of need) {
    const p = bin[name];
    if (p === "") throw new Error(`${file}: bin["${name}"] is missing; re-run \`npm run build:toolchain\``);
    try {
      fs.accessSync(p, fs.constants.X_OK);
    } catch {
      throw new Error(
        `${file}: bin["${name}"] = ${p} is not an executable file; re-run \`npm run build:toolchain\``,
      );
    }
  }
  const versions: Record<string, string> = {};
  if (isRecord(raw.versions)) {
    for (const [k, v] of Object.entries(raw.versions)) if (typeof v === "string") versions[k] = v;
  }
  // The build writes the path of the stages file; the content is what kwok is given.
  const stagesRaw = typeof raw.kwokStages === "string" ? raw.kwokStages : "";
  const kwokStages =
    stagesRaw !== "" && !stagesRaw.includes("\n") && fs.existsSync(stagesRaw)
      ? fs.readFileSync(stagesRaw, "utf8")
      : stagesRaw;
  if (need.includes("kwok") && !/kind:\s*Stage/.test(kwokStages)) {
    throw new Error(`${file}: "kwokStages" holds no kwok Stage objects; re-run \`npm run build:toolchain\``);
  }
  return {
    pulumiRoot: typeof raw.pulumiRoot === "string" ? raw.pulumiRoot : "",
    pulumiHome: typeof raw.pulumiHome === "string" ? raw.pulumiHome : "",
    bin,
    kwokStages,
    versions,
    manifestPath: file,
  };
}

/** The checker's name in toolchain.json's `bin` (built by the `checker` group; not in BINARY_NAMES). */
export const CHECKER_BINARY = "forge-edge-checker";

export class CheckerMissingError extends Error {}

/**
 * Path of forge-edge-checker (harness/toolchain/checker): K3s's containerd template rendering, containerd's
 * config loader and the NVIDIA device plugin's config parser, built into the toolchain. Throws
 * CheckerMissingError naming the command to run when toolchain.json lacks it or it is not executable.
 */
export function checkerPath(): string {
  const file = toolchainManifestPath();
  const build = "Run `bash harness/build-toolchain.sh --only checker` (or `npm run build:toolchain`) first";
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new CheckerMissingError(
      `${CHECKER_BINARY} is not built: cannot read ${file} (${(e as Error).message}). ${build}.`,
    );
  }
  const p = isRecord(raw) && isRecord(raw.bin) ? raw.bin[CHECKER_BINARY] : undefined;
  if (typeof p !== "string" || p === "") {
    throw new CheckerMissingError(
      `${CHECKER_BINARY} is not built: ${file} has no bin["${CHECKER_BINARY}"]. ${build}.`,
    );
  }
  try {
    fs.accessSync(p, fs.constants.X_OK);
  } catch {
    throw new CheckerMissingError(
      `${CHECKER_BINARY} is not built: ${p} (from ${file}) is not executable. ${build}.`,
    );
  }
  return p;
}
