/**
 * What the command-line tools (`npm run preflight`, `npm run pin-host-keys`) share: argument parsing and the stack's
 * configuration as the Pulumi CLI reads it (`pulumi config --json`), so secrets are decrypted by the user's own
 * backend and passphrase/KMS, exactly as `pulumi up` would.
 */
import { execFileSync } from "node:child_process";

import { ConfigSource } from "../config/stack";

/** The project name (config namespace); config/pulumi.ts has the same, but importing it loads the Pulumi SDK. */
export const PROJECT = "forge-edge";

export interface ToolArgs {
  stack: string;
  /** The project directory (holds Pulumi.yaml and the stack files). */
  cwd: string;
  flags: Set<string>;
}

/** `--stack NAME [--cwd DIR] [--flag ...]`; throws a usage error naming what is wrong. */
export function parseArgs(
  argv: readonly string[],
  usage: string,
  knownFlags: readonly string[] = [],
): ToolArgs {
  let stack = "";
  let cwd = process.cwd();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--stack" || a === "-s") stack = argv[++i] ?? "";
    else if (a.startsWith("--stack=")) stack = a.slice("--stack=".length);
    else if (a === "--cwd") cwd = argv[++i] ?? "";
    else if (knownFlags.includes(a)) flags.add(a);
    else throw new Error(`unknown argument "${a}"\n${usage}`);
  }
  if (!/^[A-Za-z0-9_./-]+$/.test(stack)) throw new Error(`--stack is required\n${usage}`);
  return { stack, cwd, flags };
}

export interface ConfigEntryJson {
  value?: string;
  objectValue?: unknown;
  secret: boolean;
}

/** The Pulumi CLI: `$PULUMI` when set (tests point it at the offline toolchain), else `pulumi` on PATH. */
export function pulumiBin(): string {
  return process.env.PULUMI ?? "pulumi";
}

/** `pulumi config --json [--show-secrets] --stack S` in the project directory. */
export function readStackConfig(args: ToolArgs, showSecrets: boolean): Record<string, ConfigEntryJson> {
  const out = execFileSync(
    pulumiBin(),
    ["config", "--json", ...(showSecrets ? ["--show-secrets"] : []), "--stack", args.stack],
    { cwd: args.cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 * 1024 * 1024 },
  );
  try {
    return JSON.parse(out) as Record<string, ConfigEntryJson>;
  } catch {
    // JSON.parse quotes the text around the error, which may hold a decrypted secret: never show it.
    throw new Error(
      `\`pulumi config --json --stack ${args.stack}\` did not print JSON (run it yourself to see why)`,
    );
  }
}

/** The raw value of an entry the way the engine hands it to the program (objects as JSON). */
export function rawValue(e: ConfigEntryJson | undefined): string | undefined {
  if (e === undefined) return undefined;
  if (typeof e.value === "string") return e.value;
  return e.objectValue === undefined ? undefined : JSON.stringify(e.objectValue);
}

/** A ConfigSource over `pulumi config --json` output: the same parser and errors as `pulumi preview`. */
export function configSource(entries: Record<string, ConfigEntryJson>): ConfigSource & { keys(): string[] } {
  const prefix = `${PROJECT}:`;
  return {
    get: (key) => rawValue(entries[prefix + key]),
    isSecret: (key) => entries[prefix + key]?.secret === true,
    keys: () =>
      Object.keys(entries)
        .filter((k) => k.startsWith(prefix))
        .map((k) => k.slice(prefix.length)),
  };
}

/** Runs a tool's main, printing an error's message alone (no stack trace) and exiting non-zero. */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : String(e));
      process.exitCode = 2;
    },
  );
}
