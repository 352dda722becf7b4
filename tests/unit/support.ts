/**
 * Evaluates the forge-edge program under Pulumi mocks, the way the engine would with a stack file's config.
 * Every registered resource is recorded with its inputs; any provider function call fails the test, since the
 * program is not supposed to make one.
 */
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { ConfigSource } from "../../config/stack";

export const ROOT = path.resolve(__dirname, "../..");
export const SECRET_SIG = "4dabf18193072939515e22adb298388d";
export const TEST_SSH_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nunit-test-key-material\n-----END OPENSSH PRIVATE KEY-----";
export const MOCK_TOKEN = "mock-k3s-token-0123456789abcdef";
export const MOCK_KUBECONFIG = [
  "apiVersion: v1",
  "clusters:",
  "- cluster:",
  "    certificate-authority-data: Q0EtREFUQQ==",
  "    server: https://127.0.0.1:6443",
  "  name: default",
  "users:",
  "- name: default",
  "  user:",
  "    client-key-data: U0VDUkVULUtFWQ==",
].join("\n");

export type Inputs = Record<string, unknown>;
export interface Recorded {
  type: string;
  name: string;
  inputs: Inputs;
  /** The explicit provider's reference, `<provider URN>::<id>`, when the resource has one. */
  provider?: string;
}

/*
 * The mock monitor qualifies a URN's type by the parent's own type only (`Parent$child`); the engine qualifies it by
 * the parent's whole type chain (`Grandparent$Parent$child`; the root stack is left out). Use the engine's scheme, so
 * that the URNs a test sees are the ones a real stack stores.
 */
(MockMonitor.prototype as unknown as { newUrn(parent: string, type: string, name: string): string }).newUrn =
  function (parent: string, type: string, name: string): string {
    const chain = parent ? `${parent.split("::")[2]}$${type}` : type;
    return `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::${chain}::${name}`;
  };

/** The dependencies (URNs) each resource was registered with, by URN: explicit `dependsOn` and inputs' resources. */
const registeredDependencies = new Map<string, string[]>();
interface RegisterRequest {
  getParent(): string;
  getType(): string;
  getName(): string;
  getDependenciesList(): string[];
}
const monitorProto = MockMonitor.prototype as unknown as {
  newUrn(parent: string, type: string, name: string): string;
  registerResource(req: RegisterRequest, callback: unknown): Promise<void>;
};
const registerResource = monitorProto.registerResource;
monitorProto.registerResource = function (this: unknown, req: RegisterRequest, callback: unknown) {
  const urn = monitorProto.newUrn.call(this, req.getParent(), req.getType(), req.getName());
  registeredDependencies.set(urn, req.getDependenciesList());
  return registerResource.call(this, req, callback);
};

/** A stack file's `config:` block as the engine passes it to the program (objects as JSON strings). */
export function stackFileConfig(stack: string): Record<string, string> {
  const doc = yaml.load(readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8")) as {
    config: Record<string, unknown>;
  };
  return Object.fromEntries(
    Object.entries(doc.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
  );
}

/** A ConfigSource over a stack file plus overrides, for the pure validation tests. */
export function stackSource(
  stack: string,
  overrides: Record<string, unknown> = {},
  secret = true,
): ConfigSource {
  const map: Record<string, string> = { "forge-edge:sshPrivateKey": TEST_SSH_KEY, ...stackFileConfig(stack) };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete map[`forge-edge:${k}`];
    else map[`forge-edge:${k}`] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return {
    get: (k) => map[`forge-edge:${k}`],
    isSecret: (k) => secret && k === "sshPrivateKey",
  };
}

/** True when a mock input arrived wrapped as a secret. */
export function isSecretValue(v: unknown): boolean {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG] !== undefined;
}

export function unwrap(v: unknown): unknown {
  return isSecretValue(v) ? (v as { value: unknown }).value : v;
}

function mockState(type: string, name: string, inputs: Inputs): Inputs {
  switch (type) {
    case "random:index/randomPassword:RandomPassword":
      return { ...inputs, result: MOCK_TOKEN };
    case "command:remote:Command":
      if (name.endsWith("-kubeconfig")) return { ...inputs, stdout: MOCK_KUBECONFIG, stderr: "" };
      if (name.endsWith("-nvidia-runtime"))
        return {
          ...inputs,
          stdout: "gpus=1 tegra=false runtime=/usr/bin/nvidia-container-runtime",
          stderr: "",
        };
      return { ...inputs, stdout: "k3s=ok", stderr: "" };
    default:
      return inputs;
  }
}

export interface Evaluation<T> {
  resources: Recorded[];
  result: T;
  byName(name: string): Recorded;
  ofType(type: string): Recorded[];
  /** Every registered resource's URN, as the mock monitor computed it (the engine's scheme: parent type chain). */
  urns(): string[];
  /** The names of the resources the named resource was registered as depending on. */
  dependencies(name: string): string[];
}

/** Runs `program` under mocks with the given config and waits until every resource is registered. */
export async function evaluate<T>(
  stack: string,
  config: Record<string, string>,
  program: () => T,
  preview = false,
): Promise<Evaluation<T>> {
  const resources: Recorded[] = [];
  registeredDependencies.clear();
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs, provider: args.provider });
        return { id: `${args.name}-id`, state: mockState(args.type, args.name, args.inputs) };
      },
      call: (args) => {
        throw new Error(`unexpected provider call ${args.token}`);
      },
    },
    "forge-edge",
    stack,
    preview,
  );
  pulumi.runtime.setAllConfig(config, ["forge-edge:sshPrivateKey"]);
  const result = program();
  await settle(() => resources.length);
  return {
    resources,
    result,
    byName: (name) => {
      const r = resources.find((x) => x.name === name);
      if (!r) throw new Error(`no resource named ${name}; have: ${resources.map((x) => x.name).join(", ")}`);
      return r;
    },
    ofType: (type) => resources.filter((x) => x.type === type),
    urns: () => [...mockMonitor().getRegisteredResources().keys()],
    dependencies: (name) => {
      const urn = [...registeredDependencies.keys()].find((u) => u.endsWith(`::${name}`));
      if (!urn) throw new Error(`no resource named ${name}`);
      return registeredDependencies.get(urn)!.map((u) => u.split("::").pop()!);
    },
  };
}

/** Evaluates a stack file's config (with overrides) through the program's real entry point. */
export async function evaluateStack<T>(
  stack: string,
  program: () => T,
  overrides: Record<string, unknown> = {},
) {
  const config: Record<string, string> = {
    ...stackFileConfig(stack),
    "forge-edge:sshPrivateKey": TEST_SSH_KEY,
  };
  for (const [k, v] of Object.entries(overrides))
    config[`forge-edge:${k}`] = typeof v === "string" ? v : JSON.stringify(v);
  return evaluate(stack, config, program);
}

/** The monitor `setMocks` installed; it records each resource under the URN the engine would give it. */
function mockMonitor(): { getRegisteredResources(): Map<string, unknown> } {
  return pulumi.runtime.getMonitor() as unknown as { getRegisteredResources(): Map<string, unknown> };
}

/** Waits until registrations stop arriving (mocks resolve on the event loop, not synchronously). */
async function settle(count: () => number): Promise<void> {
  let last = -1;
  let stable = 0;
  while (stable < 10) {
    await new Promise((r) => setTimeout(r, 10));
    const now = count();
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
}

/** Resolves an Output (including a secret one) for assertions. */
export function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}
