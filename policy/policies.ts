/**
 * forge-edge CrossGuard policies. Every rule is a pure, exported function over plain resource properties that
 * returns violation messages; the Policy objects at the end only adapt those functions to @pulumi/policy.
 *
 * Unknown values (a `pulumi preview` before the value exists) never fail a plan: in plain objects an unknown is
 * `undefined` and is skipped; under the engine, @pulumi/policy hands props over behind a proxy that throws
 * `UnknownValueError` on an unknown, which `skipUnknown` turns into "nothing to report".
 */
import {
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  Secret,
  StackValidationArgs,
  StackValidationPolicy,
  UnknownValueError,
} from "@pulumi/policy";
import * as yaml from "js-yaml";

import {
  DEVICE_PLUGIN,
  GPU_RESOURCE,
  INFERENCE,
  NODE_LABELS,
  PRIORITY_CLASSES,
  RUNTIME_CLASS,
} from "../components/names";
import { isSkuName, SKU_NAMES, SKUS, SkuName, usableGpuMemoryGiB } from "../config/skus";
import { NODE_PORT_RANGE } from "../config/stack";

export type Props = Record<string, unknown>;

/** What a rule needs to know about one resource: its Pulumi type, its name/URN, and its properties. */
export interface ResourceInput {
  type: string;
  name?: string;
  urn?: string;
  props: Props;
}

export interface Violation {
  message: string;
  urn?: string;
}

export const COMMAND_TYPES = ["command:remote:Command", "command:local:Command"] as const;

// ---------------------------------------------------------------------------------------------------------
// Small helpers over loosely typed property bags.

function obj(v: unknown): Props | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Props) : undefined;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function at(v: unknown, path: readonly string[]): unknown {
  let cur = v;
  for (const k of path) {
    const o = obj(cur);
    if (o === undefined) return undefined;
    cur = o[k];
  }
  return cur;
}

/** The Kubernetes kind of a `kubernetes:<group>/<version>:<Kind>` type token, or undefined for other types. */
export function k8sKind(type: string): string | undefined {
  const m = /^kubernetes:[^:]+:([A-Za-z]+)$/.exec(type);
  return m?.[1];
}

function displayName(r: { type: string; name?: string; props: Props }): string {
  const name = at(r.props, ["metadata", "name"]) ?? r.name ?? "?";
  return `${k8sKind(r.type) ?? r.type} ${String(name)}`;
}

/** Runs a rule; an unknown value met while it runs means "cannot judge yet", never a failure. */
export function skipUnknown<T>(rule: () => T[]): T[] {
  try {
    return rule();
  } catch (e) {
    if (e instanceof UnknownValueError) return [];
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pod specs that request GPUs.

const TEMPLATE_PATHS: Record<string, readonly string[]> = {
  Deployment: ["spec", "template", "spec"],
  DaemonSet: ["spec", "template", "spec"],
  StatefulSet: ["spec", "template", "spec"],
  ReplicaSet: ["spec", "template", "spec"],
  ReplicationController: ["spec", "template", "spec"],
  Job: ["spec", "template", "spec"],
  CronJob: ["spec", "jobTemplate", "spec", "template", "spec"],
  Pod: ["spec"],
  PodTemplate: ["template", "spec"],
};

/** The pod spec a workload type declares (its template's), or undefined when the type has none. */
export function podSpecOf(type: string, props: Props): Props | undefined {
  const kind = k8sKind(type);
  const path = kind === undefined ? undefined : TEMPLATE_PATHS[kind];
  return path === undefined ? undefined : obj(at(props, path));
}

/** GPU slices a container asks for, the larger of its requests and limits for any `nvidia.com/gpu*` name. */
export function gpuRequest(container: Props): number {
  let most = 0;
  for (const side of ["requests", "limits"]) {
    const list = obj(at(container, ["resources", side])) ?? {};
    for (const [name, q] of Object.entries(list)) {
      if (name !== GPU_RESOURCE && !name.startsWith(`${GPU_RESOURCE}.`)) continue;
      const n = typeof q === "number" ? q : Number(q);
      if (Number.isFinite(n)) most = Math.max(most, n);
    }
  }
  return most;
}

/** The containers (init containers included) of a pod spec that request a GPU. */
export function gpuContainers(podSpec: Props): Props[] {
  return [...arr(podSpec.initContainers), ...arr(podSpec.containers)]
    .map(obj)
    .filter((c): c is Props => c !== undefined && gpuRequest(c) > 0);
}

/** Rule: a pod that requests `nvidia.com/gpu` runs with `runtimeClassName: nvidia` and a priority class. */
export function checkGpuPodSpec(type: string, props: Props): string[] {
  const spec = podSpecOf(type, props);
  if (spec === undefined) return [];
  const gpu = gpuContainers(spec);
  if (gpu.length === 0) return [];
  const who = `${displayName({ type, props })} requests ${GPU_RESOURCE} (container ${gpu.map((c) => c.name).join(", ")})`;
  const out: string[] = [];
  if (spec.runtimeClassName !== RUNTIME_CLASS) {
    out.push(
      `${who} but runtimeClassName is ${spec.runtimeClassName === undefined ? "unset" : JSON.stringify(spec.runtimeClassName)}: ` +
        `set runtimeClassName: ${RUNTIME_CLASS}, or the container starts without the NVIDIA runtime and sees no GPU`,
    );
  }
  if (typeof spec.priorityClassName !== "string" || spec.priorityClassName === "") {
    out.push(
      `${who} but sets no priorityClassName: GPU slices are scarce; give it a class (e.g. ${PRIORITY_CLASSES.llmCritical.name}) so ` +
        `the scheduler preempts lower-priority pods instead of leaving it Pending`,
    );
  }
  return out;
}

export const REQUIRED_PROBES = ["startupProbe", "livenessProbe", "readinessProbe"] as const;

/** Rule: a Deployment that requests GPUs has startup, liveness and readiness probes on each GPU container. */
export function checkGpuProbes(type: string, props: Props): string[] {
  if (k8sKind(type) !== "Deployment") return [];
  const spec = podSpecOf(type, props);
  if (spec === undefined) return [];
  const out: string[] = [];
  for (const c of gpuContainers(spec)) {
    const missing = REQUIRED_PROBES.filter((p) => obj(c[p]) === undefined);
    if (missing.length > 0) {
      out.push(
        `${displayName({ type, props })}: GPU container ${String(c.name)} has no ${missing.join(", ")}: a model ` +
          `load takes minutes (startup), a wedged GPU process must be restarted (liveness) and must not get ` +
          `traffic while loading (readiness)`,
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// GPU memory budget under time-slicing.

export interface MemoryBudgetConfig {
  /** The SKU, when the stack's resources do not say (or to override them). */
  sku?: string;
}

/** `replicas` of the device plugin's time-slicing config (`sharing.timeSlicing.resources[…].replicas`). */
export function timeSlicingReplicas(configYaml: string): number | undefined {
  let doc: unknown;
  try {
    doc = yaml.load(configYaml);
  } catch {
    return undefined;
  }
  const resources = arr(at(doc, ["sharing", "timeSlicing", "resources"])).map(obj);
  const entry = resources.find((r) => r?.name === GPU_RESOURCE) ?? resources[0];
  const n = Number(entry?.replicas);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** The SKU node label in a command's text, as the K3s step's NODE_LABELS parameter carries it. */
const SKU_LABEL_RE = new RegExp(`${escapeRegExp(NODE_LABELS.sku)}=([a-z0-9]+)`, "g");

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function configMapNamed(resources: readonly ResourceInput[], name: string): ResourceInput | undefined {
  return resources.find((r) => k8sKind(r.type) === "ConfigMap" && at(r.props, ["metadata", "name"]) === name);
}

/**
 * SKU names the stack's resources state: `SKU='…'` in the runtime command, `forge-edge.io/sku=…` node labels (in
 * the K3s step's command, or a Node/NodePatch).
 */
export function skusDeclared(resources: readonly ResourceInput[]): string[] {
  const found = new Set<string>();
  for (const r of resources) {
    if ((COMMAND_TYPES as readonly string[]).includes(r.type)) {
      const create = r.props.create;
      if (typeof create !== "string") continue;
      if ((r.name ?? "").endsWith("-nvidia-runtime") || /^SKU='/m.test(create)) {
        const m = /^SKU='([a-z0-9]+)'$/m.exec(create);
        if (m) found.add(m[1]);
      }
      for (const m of create.matchAll(SKU_LABEL_RE)) found.add(m[1]);
    } else if (k8sKind(r.type) === "Node" || k8sKind(r.type) === "NodePatch") {
      const label = at(r.props, ["metadata", "labels", NODE_LABELS.sku]);
      if (typeof label === "string") found.add(label);
    }
  }
  return [...found].sort();
}

/**
 * Rule (stack): time-slicing replicas × per-replica model memory fits the SKU's usable GPU memory. Time-slicing
 * has no memory isolation: every slice on a GPU may hold a model copy at once.
 */
export function checkGpuMemoryBudget(
  resources: readonly ResourceInput[],
  config: MemoryBudgetConfig = {},
): Violation[] {
  const plugin = configMapNamed(resources, DEVICE_PLUGIN.configMap);
  const inference = configMapNamed(resources, INFERENCE.configMap);
  if (plugin === undefined || inference === undefined) return [];
  const configYaml = at(plugin.props, ["data", "config.yaml"]);
  const memRaw = at(inference.props, ["data", "FORGE_GPU_MEMORY_GIB"]);
  if (typeof configYaml !== "string" || memRaw === undefined) return []; // unknown during preview
  const replicas = timeSlicingReplicas(configYaml);
  if (replicas === undefined) {
    return [
      {
        message: `ConfigMap ${DEVICE_PLUGIN.configMap}: config.yaml has no sharing.timeSlicing.resources[].replicas`,
        urn: plugin.urn,
      },
    ];
  }
  const memory = Number(memRaw);
  if (!Number.isFinite(memory) || memory <= 0) {
    return [
      {
        message: `ConfigMap ${INFERENCE.configMap}: FORGE_GPU_MEMORY_GIB = ${JSON.stringify(memRaw)} is not a positive number of GiB`,
        urn: inference.urn,
      },
    ];
  }

  let sku: SkuName;
  if (config.sku !== undefined && config.sku !== "") {
    if (!isSkuName(config.sku)) {
      return [
        { message: `policy config sku = ${JSON.stringify(config.sku)}: one of ${SKU_NAMES.join(", ")}` },
      ];
    }
    sku = config.sku;
  } else {
    const declared = skusDeclared(resources);
    if (declared.length === 0) return []; // nothing says which hardware this is: cannot judge
    if (declared.length > 1) {
      return [
        {
          message: `the stack's nodes declare more than one SKU (${declared.join(", ")}): one SKU per stack`,
        },
      ];
    }
    if (!isSkuName(declared[0])) {
      return [
        {
          message: `the stack declares SKU ${JSON.stringify(declared[0])}, which config/skus.ts does not know`,
        },
      ];
    }
    sku = declared[0];
  }

  const profile = SKUS[sku];
  const usable = usableGpuMemoryGiB(profile, replicas);
  const needed = replicas * memory;
  if (needed <= usable) return [];
  return [
    {
      message:
        `time-slicing replicas ${replicas} × ${memory} GiB per replica = ${round(needed)} GiB over-subscribes ` +
        `${profile.displayName}: ${round(usable)} GiB usable per GPU (${profile.gpu.memoryGiB} GiB − ` +
        `${profile.gpu.reservedGiB} GiB reserved − ${replicas} × ${profile.gpu.contextOverheadGiB} GiB CUDA contexts); ` +
        `time-slicing has no memory isolation, so the slices OOM each other`,
      urn: inference.urn,
    },
  ];
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

// ---------------------------------------------------------------------------------------------------------
// Plaintext secrets.

const PRIVATE_KEY_RE = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----/;
/** A K3s secure token: `K10<CA hash>::<user>:<password>`. */
const K3S_TOKEN_RE = /K10[0-9a-fA-F]{8,}::(?:server|node):\S+/;
const CLIENT_KEY_RE = /client-key-data:\s*[A-Za-z0-9+/=]{8,}/;
const SECRET_ASSIGNMENT_RE =
  /(?:^|[^A-Za-z0-9_-])(?:password|passwd|token|secret|api[_-]?key|access[_-]?key|private[_-]?key)\s*[=:]\s*["']?[^\s"'$]{3,}/im;
const SECRET_KEY_NAME_RE = /(?:^|[_.-])(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY)$/i;

/** What, if anything, in a piece of text looks like key material or a credential. */
export function secretLike(text: string, assignments = false): string | undefined {
  if (PRIVATE_KEY_RE.test(text)) return "a private key (-----BEGIN … PRIVATE KEY-----)";
  if (K3S_TOKEN_RE.test(text)) return "a K3s join token (K10…::server:…)";
  if (CLIENT_KEY_RE.test(text)) return "a kubeconfig client key (client-key-data:)";
  if (assignments && SECRET_ASSIGNMENT_RE.test(text)) return "a credential assignment (password=/token=/…)";
  return undefined;
}

/** Rule: no key material in a command's script text, nor credentials in a ConfigMap. */
export function checkPlaintextSecrets(type: string, props: Props): string[] {
  const out: string[] = [];
  if ((COMMAND_TYPES as readonly string[]).includes(type)) {
    for (const field of ["create", "update", "delete"]) {
      const text = props[field];
      const what = typeof text === "string" ? secretLike(text) : undefined;
      if (what) {
        out.push(
          `${type} ${field} contains ${what}: the command text is stored and shown in plaintext; pass secrets on ` +
            `stdin (pulumi.secret) or in a secret environment value`,
        );
      }
    }
    for (const [k, v] of Object.entries(obj(props.environment) ?? {})) {
      const what = typeof v === "string" ? secretLike(v) : undefined;
      if (what) out.push(`${type} environment ${k} contains ${what}: make it a secret (pulumi.secret)`);
    }
  } else if (k8sKind(type) === "ConfigMap") {
    const name = String(at(props, ["metadata", "name"]) ?? "?");
    for (const [k, v] of Object.entries(obj(props.data) ?? {})) {
      if (typeof v !== "string") continue;
      const what =
        secretLike(v, true) ??
        (SECRET_KEY_NAME_RE.test(k) && v.trim() !== "" ? `a credential (key name ${k})` : undefined);
      if (what) {
        out.push(
          `ConfigMap ${name} key ${k} holds ${what}: ConfigMaps are readable by anyone who can read the ` +
            `namespace and are stored unencrypted; use a Secret`,
        );
      }
    }
  }
  return out;
}

/**
 * Rule: a command's `connection` (SSH key) and `stdin` (the K3s token) are Pulumi secrets, so they are encrypted
 * in the state and masked in output. `isSecret(field)` says whether the field arrived secret; undefined means
 * "cannot tell" (unknown, or secretness not visible), which is skipped.
 */
export function checkCommandInputsSecret(
  type: string,
  props: Props,
  isSecret: (field: string) => boolean | undefined,
): string[] {
  if (type !== "command:remote:Command") return [];
  const out: string[] = [];
  for (const field of ["connection", "stdin"]) {
    if (props[field] === undefined || props[field] === null) continue;
    if (isSecret(field) === false) {
      out.push(
        `${type} ${field} is not a secret: it would be stored in the state and shown in diffs in plaintext; ` +
          `wrap it in pulumi.secret()`,
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Service NodePorts.

export interface NodePortConfig {
  /** When set and not empty, the only NodePorts allowed. */
  allowedNodePorts?: number[];
}

/** Rule: every NodePort a Service asks for lies in 30000–32767 and, when configured, in `allowedNodePorts`. */
export function checkNodePorts(type: string, props: Props, config: NodePortConfig = {}): string[] {
  if (k8sKind(type) !== "Service") return [];
  const name = String(at(props, ["metadata", "name"]) ?? "?");
  const allowed = config.allowedNodePorts ?? [];
  const out: string[] = [];
  for (const p of arr(at(props, ["spec", "ports"])).map(obj)) {
    const port = p?.nodePort;
    if (port === undefined || port === null) continue; // not set: Kubernetes allocates one in range
    const n = Number(port);
    if (!Number.isInteger(n) || n < NODE_PORT_RANGE.min || n > NODE_PORT_RANGE.max) {
      out.push(
        `Service ${name} port ${String(p?.name ?? p?.port)}: nodePort ${JSON.stringify(port)} is outside ` +
          `${NODE_PORT_RANGE.min}–${NODE_PORT_RANGE.max}, the API server's service-node-port-range`,
      );
    } else if (allowed.length > 0 && !allowed.includes(n)) {
      out.push(
        `Service ${name} port ${String(p?.name ?? p?.port)}: nodePort ${n} is not in allowedNodePorts ` +
          `(${allowed.join(", ")})`,
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Adapters to @pulumi/policy.

const SPECIAL_PROXY_TARGET = "__getSpecialProxyTarget";

/**
 * Unknown sentinels of @pulumi/policy (proxy.js; not in its typings). Reading below the proxies (as
 * `rawProps` does) sees them as plain strings.
 */
const UNKNOWN_SENTINELS = new Set([
  "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
  "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
  "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
  "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
  "030794c1-ac77-496b-92df-f27374a8bd58",
  "e48ece36-62e2-4504-bad9-02848725956a",
  "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
]);

/** The plain object beneath @pulumi/policy's unknown-checking and secret-preserving proxies. */
export function rawProps(props: object): Props {
  let cur: unknown = props;
  for (let i = 0; i < 4; i++) {
    const inner = (cur as Props)[SPECIAL_PROXY_TARGET];
    if (inner === undefined || inner === cur) break;
    cur = inner;
  }
  return cur as Props;
}

/**
 * Whether a top-level field arrived as a secret. Only the engine's Remediate call keeps secrets (as `Secret`
 * objects); Analyze hands over unwrapped values, so there this answers undefined ("cannot tell").
 */
export function secretnessOf(props: object): (field: string) => boolean | undefined {
  const raw = rawProps(props);
  return (field) => {
    const v = raw[field];
    if (v instanceof Secret) return true;
    if (typeof v === "string" && UNKNOWN_SENTINELS.has(v)) return undefined;
    if (typeof v === "object" && v !== null && v.constructor?.name === "Secret") return true;
    return false;
  };
}

function reportAll(report: ReportViolation, messages: readonly string[]): void {
  for (const m of messages) report(m);
}

function resourceOf(r: PolicyResource): ResourceInput {
  return { type: r.type, name: r.name, urn: r.urn, props: r.props };
}

export const gpuPodSpec: ResourceValidationPolicy = {
  name: "gpu-pod-runtime-class-and-priority",
  description: `Pods requesting ${GPU_RESOURCE} set runtimeClassName: ${RUNTIME_CLASS} and a priorityClassName.`,
  enforcementLevel: "mandatory",
  severity: "high",
  validateResource: (args, report) =>
    reportAll(
      report,
      skipUnknown(() => checkGpuPodSpec(args.type, args.props)),
    ),
};

export const gpuProbes: ResourceValidationPolicy = {
  name: "gpu-deployment-probes",
  description: `Deployments requesting ${GPU_RESOURCE} have startup, liveness and readiness probes on the GPU container.`,
  enforcementLevel: "mandatory",
  severity: "medium",
  validateResource: (args, report) =>
    reportAll(
      report,
      skipUnknown(() => checkGpuProbes(args.type, args.props)),
    ),
};

export const gpuMemoryBudget: StackValidationPolicy = {
  name: "gpu-memory-budget",
  description:
    "Time-slicing replicas × per-replica model memory (FORGE_GPU_MEMORY_GIB) fits the SKU's usable GPU memory.",
  enforcementLevel: "mandatory",
  severity: "high",
  configSchema: {
    properties: {
      sku: {
        type: "string",
        enum: [...SKU_NAMES],
        description: "the SKU, when the stack's resources do not say",
      },
    },
  },
  validateStack: (args: StackValidationArgs, report) => {
    const config = args.getConfig<MemoryBudgetConfig>();
    for (const v of skipUnknown(() => checkGpuMemoryBudget(args.resources.map(resourceOf), config))) {
      report(v.message, v.urn);
    }
  },
};

export const noPlaintextSecrets: ResourceValidationPolicy = {
  name: "no-plaintext-secrets",
  description:
    "No private key, K3s token or kubeconfig client key in command text; no credentials in ConfigMap data.",
  enforcementLevel: "mandatory",
  severity: "critical",
  validateResource: (args, report) =>
    reportAll(
      report,
      skipUnknown(() => checkPlaintextSecrets(args.type, args.props)),
    ),
};

/** Findings of the Remediate pass, reported by the Analyze pass that the engine runs next for the same URN. */
const plaintextInputs = new Map<string, string[]>();

/**
 * `connection` and `stdin` of remote commands are secrets. The engine sends secret markers only to Remediate
 * (Analyze gets unwrapped values), so this policy's level is `remediate`: its remediation only looks and never
 * changes the resource, and its validation reports what it saw; @pulumi/policy reports a violation of a
 * `remediate` policy as `mandatory`.
 */
export const commandInputsSecret: ResourceValidationPolicy = {
  name: "command-inputs-secret",
  description: "A remote command's connection (SSH private key) and stdin (K3s token) are Pulumi secrets.",
  enforcementLevel: "remediate",
  severity: "critical",
  remediateResource: (args: ResourceValidationArgs) => {
    // Read beneath the proxies: an unknown stdin (a new token) must not hide a plaintext connection.
    const raw = rawProps(args.props);
    const found = checkCommandInputsSecret(args.type, raw, secretnessOf(raw));
    if (found.length > 0) plaintextInputs.set(args.urn, found);
    else plaintextInputs.delete(args.urn);
    return undefined;
  },
  validateResource: (args, report) => {
    reportAll(report, plaintextInputs.get(args.urn) ?? []);
    plaintextInputs.delete(args.urn);
  },
};

export const nodePortRange: ResourceValidationPolicy = {
  name: "service-node-port-range",
  description: `Service NodePorts lie in ${NODE_PORT_RANGE.min}–${NODE_PORT_RANGE.max} and, when configured, in allowedNodePorts.`,
  enforcementLevel: "mandatory",
  severity: "medium",
  configSchema: {
    properties: {
      allowedNodePorts: {
        type: "array",
        items: { type: "integer", minimum: NODE_PORT_RANGE.min, maximum: NODE_PORT_RANGE.max },
        description: "the only NodePorts allowed (empty: any in range)",
      },
    },
  },
  validateResource: (args, report) =>
    reportAll(
      report,
      skipUnknown(() => checkNodePorts(args.type, args.props, args.getConfig<NodePortConfig>())),
    ),
};

export const POLICIES = [
  gpuPodSpec,
  gpuProbes,
  gpuMemoryBudget,
  noPlaintextSecrets,
  commandInputsSecret,
  nodePortRange,
] as const;
