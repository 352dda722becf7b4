/** Binds the stack configuration to the running Pulumi program. */
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";

import { FileStat } from "./checker";
import { ConfigError, ConfigSource, parseStackConfig, StackConfig } from "./stack";

// The SDK exports isConfigSecret at runtime but not in its typings.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const runtimeConfig = require("@pulumi/pulumi/runtime/config") as { isConfigSecret(key: string): boolean };

export const PROJECT = "forge-edge";

/** Reads this project's keys from the engine's configuration. */
export function pulumiConfigSource(project = PROJECT): ConfigSource & { keys(): string[] } {
  const prefix = `${project}:`;
  return {
    get: (key) => pulumi.runtime.getConfig(prefix + key),
    isSecret: (key) => runtimeConfig.isConfigSecret(prefix + key),
    isFile,
    fileStat,
    keys: () =>
      Object.keys(pulumi.runtime.allConfig())
        .filter((k) => k.startsWith(prefix))
        .map((k) => k.slice(prefix.length)),
  };
}

/** Size and modification time of a local file (the air-gap tarballs, whose size bounds their import's wait). */
export function fileStat(file: string): FileStat | undefined {
  try {
    const st = fs.statSync(file);
    return { bytes: st.size, mtimeMs: st.mtimeMs };
  } catch {
    return undefined;
  }
}

/** A readable regular file (the air-gap files the nodes get copied). */
export function isFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.R_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export interface LoadedConfig {
  config: StackConfig;
  sshPrivateKey: pulumi.Output<string>;
}

/** Parses and validates the stack's config; throws a ConfigError before any resource is declared. */
export function loadConfig(): LoadedConfig {
  let config: StackConfig;
  try {
    config = parseStackConfig(pulumi.getStack(), pulumiConfigSource());
  } catch (e) {
    // A RunError is shown to the user as its message alone, without a stack trace.
    throw e instanceof ConfigError ? new pulumi.RunError(e.message) : e;
  }
  const sshPrivateKey = new pulumi.Config(PROJECT).requireSecret("sshPrivateKey");
  return { config, sshPrivateKey };
}
