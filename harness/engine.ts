/**
 * The real Pulumi engine (the CLI built by harness/build-toolchain.sh) driven through the Automation API, fully
 * offline: file backend, passphrase secrets, locally installed plugins, no update checks or plugin downloads.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { LocalWorkspace, PulumiCommand, PulumiFn, Stack } from "@pulumi/pulumi/automation";

import { loadToolchain } from "./toolchain";
import { ConfigEntry } from "./site";

export const PROJECT = "forge-edge";
const ROOT = path.resolve(__dirname, "..");
/** What a copy of the project needs: the program, its scripts and its dependencies (linked, not copied). */
const PROJECT_FILES = [
  "Pulumi.yaml",
  "index.ts",
  "program.ts",
  "config",
  "components",
  "scripts",
  "package.json",
  "tsconfig.json",
  "node_modules",
];

/**
 * A throwaway copy of the project, for running it the way `pulumi up` does (through the Node language host)
 * without the stack settings ever touching the committed Pulumi.<stack>.yaml files.
 */
export function projectCopy(dir: string): string {
  const project = path.join(dir, "project");
  fs.mkdirSync(project, { recursive: true });
  for (const f of PROJECT_FILES) fs.symlinkSync(path.join(ROOT, f), path.join(project, f));
  return project;
}
export const PASSPHRASE = "forge-edge-e2e-passphrase";

export interface EngineStack {
  stack: Stack;
  /** Directory of the file backend. */
  stateDir: string;
  /** The stack's state file in the file backend. */
  stateFile: string;
  env: Record<string, string>;
}

/** Offline engine settings shared by every workspace. */
export function engineEnv(stateDir: string): Record<string, string> {
  const tc = loadToolchain(["pulumi"]);
  return {
    PULUMI_HOME: tc.pulumiHome,
    PULUMI_BACKEND_URL: `file://${stateDir}`,
    PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
    // The command provider adds the agent at SSH_AUTH_SOCK to every connection and fails every operation when
    // that socket is dead; the tests authenticate with the stack's key alone, whatever the caller's shell has.
    SSH_AUTH_SOCK: "",
  };
}

/**
 * Opens (creating if needed) a stack of the forge-edge project: an inline program when `program` is given,
 * otherwise a project directory run by the Node language host, the way `pulumi up` runs it. Setting the config
 * writes Pulumi.<stack>.yaml into that directory, so pass a copy, never the repository itself.
 */
export async function openStack(opts: {
  stackName: string;
  dir: string;
  config: Record<string, ConfigEntry>;
  program?: PulumiFn;
  /** A copy of the project to run through the language host when there is no inline program. */
  projectDir?: string;
}): Promise<EngineStack> {
  const tc = loadToolchain(["pulumi"]);
  const stateDir = path.join(opts.dir, "state");
  fs.mkdirSync(stateDir, { recursive: true });
  const env = engineEnv(stateDir);
  const pulumiCommand = await PulumiCommand.get({ root: tc.pulumiRoot });
  const wsOpts = { pulumiCommand, pulumiHome: tc.pulumiHome, envVars: env };
  const stack = opts.program
    ? await LocalWorkspace.createOrSelectStack(
        { stackName: opts.stackName, projectName: PROJECT, program: opts.program },
        {
          ...wsOpts,
          workDir: fs.mkdtempSync(path.join(opts.dir, "ws-")),
          projectSettings: { name: PROJECT, runtime: "nodejs", backend: { url: env.PULUMI_BACKEND_URL } },
        },
      )
    : await LocalWorkspace.createOrSelectStack(
        { stackName: opts.stackName, workDir: requireProjectDir(opts.projectDir) },
        wsOpts,
      );
  await stack.setAllConfig(
    Object.fromEntries(
      Object.entries(opts.config).map(([k, v]) => [
        `${PROJECT}:${k}`,
        { value: v.value, secret: !!v.secret },
      ]),
    ),
  );
  return {
    stack,
    stateDir,
    stateFile: path.join(stateDir, ".pulumi", "stacks", PROJECT, `${opts.stackName}.json`),
    env,
  };
}

function requireProjectDir(dir: string | undefined): string {
  if (dir === undefined || path.resolve(dir) === ROOT) {
    throw new Error(
      "openStack needs an inline program or a copy of the project (it writes the stack settings file)",
    );
  }
  return dir;
}
