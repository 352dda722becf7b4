/**
 * Stack configuration: read once, validated in full, and turned into plain typed values. Nothing downstream
 * touches raw config, and nothing reaches a node unless every key is valid.
 */
import { capacityProblems } from "./capacity";
import { parseHostKey } from "./hostKeys";
import { SKUS, SKU_NAMES, SkuName, SkuProfile, unifiedMemoryBudget, usableGpuMemoryGiB } from "./skus";

export const DEFAULT_K3S_VERSION = "v1.36.4+k3s1";
export const DEFAULT_TOOLKIT_VERSION = "1.20.0";
export const DEFAULT_DEVICE_PLUGIN_VERSION = "v0.20.0";
export const DEFAULT_DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-ubuntu22.04";
export const NODE_PORT_RANGE = { min: 30000, max: 32767 } as const;
/** K3s releases older than this lack the pre-created `nvidia` RuntimeClass and `config.toml.tmpl` base template. */
export const MIN_K3S_MINOR = 30;

export type NodeRole = "server" | "agent";

export interface NodeConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly role: NodeRole;
  /** Physical GPUs in the node; the device plugin advertises `gpus × timeSlicingReplicas` slices. */
  readonly gpus: number;
  /**
   * Pinned SSH host key, `type base64` (ed25519 or ECDSA; RSA is refused). Required unless the stack sets
   * insecureSkipHostKeyCheck; without it the host key is not verified.
   */
  readonly hostKey?: string;
}

export interface InferenceConfig {
  readonly image: string;
  readonly replicas: number;
  readonly maxReplicas: number;
  readonly cpuRequest: string;
  readonly cpuLimit: string;
  readonly memoryRequest: string;
  readonly memoryLimit: string;
  readonly gpuSlicesPerPod: number;
  readonly modelMemoryGiB: number;
  readonly cudaMajor: number;
  readonly modelLoadSeconds: number;
  readonly port: number;
  readonly shmSize: string;
  readonly readOnlyRootFilesystem: boolean;
  readonly settings: Readonly<Record<string, string>>;
}

export interface QuotaConfig {
  readonly gpu: number;
  readonly requestsMemory: string;
  readonly limitsMemory: string;
  readonly pods: number;
}

export interface AirgapConfig {
  readonly k3sBinary: string;
  readonly installScript: string;
  readonly imagesTarball: string;
  /** Image tarballs of every image the stack runs (device plugin, DCGM exporter, inference), for K3s to import. */
  readonly stackImageTarballs: readonly string[];
}

/** K3s's registries.yaml (mirrors, configs): its credentials are Pulumi secrets and reach the node on stdin only. */
export interface RegistriesConfig {
  readonly mirrors: Readonly<Record<string, { readonly endpoint: readonly string[] }>>;
  readonly configs: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Any `configs.<host>.auth` present. */
  readonly hasCredentials: boolean;
}

export interface RolloutConfig {
  /** Nodes bootstrapped or upgraded together after the canary; 0 means all of the rest at once. */
  readonly batchSize: number;
  /** How long removing a node may wait for its pods to be evicted. */
  readonly drainTimeoutSeconds: number;
}

export interface StackConfig {
  readonly stack: string;
  readonly sku: SkuProfile;
  readonly nodes: readonly NodeConfig[];
  readonly k3sVersion: string;
  readonly toolkitVersion: string;
  readonly devicePluginVersion: string;
  readonly dcgmExporterImage: string;
  /** DCGM exporter is deployed: the SKU supports DCGM and the stack did not turn it off. */
  readonly dcgmExporter: boolean;
  readonly timeSlicingReplicas: number;
  readonly inference: InferenceConfig;
  readonly storage: { readonly size: string; readonly storageClass: string };
  readonly nodePort: number;
  readonly quota: QuotaConfig;
  readonly allowedCidrs: readonly string[];
  readonly airgap?: AirgapConfig;
  readonly registries?: RegistriesConfig;
  readonly rollout: RolloutConfig;
  /** Lab opt-out: nodes without a pinned hostKey are dialled without verifying the host key. */
  readonly insecureSkipHostKeyCheck: boolean;
}

/** Where raw values come from: `pulumi.Config` in the program, a plain map in tests. */
export interface ConfigSource {
  /** Raw string value as the engine hands it over (objects as JSON), or undefined when unset. */
  get(key: string): string | undefined;
  isSecret(key: string): boolean;
}

export class ConfigError extends Error {
  constructor(
    readonly stack: string,
    readonly problems: readonly string[],
  ) {
    super(
      `stack "${stack}" has ${problems.length} invalid configuration value(s); nothing was changed on any node:\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

const NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const K3S_VERSION_RE = /^v1\.(\d+)\.(\d+)\+k3s(\d+)$/;
const TOOLKIT_VERSION_RE = /^\d+\.\d+\.\d+$/;
const IMAGE_RE = /^[a-z0-9]+([._/:@-][a-zA-Z0-9_.-]+)*$/;
const HOST_RE = /^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$/;
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const SETTING_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const MEMORY_UNITS: Record<string, number> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** Bytes in a Kubernetes memory quantity, or undefined if it is not one. */
export function parseMemory(q: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) return undefined;
  return Number(m[1]) * MEMORY_UNITS[m[2] ?? ""];
}

/** Millicores in a Kubernetes CPU quantity, or undefined if it is not one. */
export function parseCpu(q: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(m)?$/.exec(q);
  if (!m) return undefined;
  return m[2] ? Number(m[1]) : Number(m[1]) * 1000;
}

/** Validates an IPv4 or IPv6 CIDR. */
export function isCidr(s: string): boolean {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (v4) return v4.slice(1, 5).every((o) => Number(o) <= 255) && Number(v4[5]) <= 32;
  const v6 = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(s);
  return !!v6 && v6[1].includes(":") && Number(v6[2]) <= 128;
}

/**
 * Collects problems instead of throwing at the first one, so a user fixes a stack file in one round.
 * Every message names the key, the bad value and what is allowed.
 */
class Checker {
  readonly problems: string[] = [];

  fail(key: string, value: unknown, allowed: string): void {
    // The engine hands scalars over as strings; show numbers and booleans the way the user typed them.
    const shown =
      typeof value === "string" && /^(-?\d+(\.\d+)?|true|false)$/.test(value) ? value : JSON.stringify(value);
    this.problems.push(`${key} = ${shown} is invalid: ${allowed}`);
  }

  str(key: string, v: unknown, def: string | undefined, re: RegExp, allowed: string): string {
    if (v === undefined || v === null) {
      if (def === undefined) this.problems.push(`${key} is required: ${allowed}`);
      return def ?? "";
    }
    if (typeof v !== "string" || !re.test(v)) {
      this.fail(key, v, allowed);
      return def ?? "";
    }
    return v;
  }

  int(key: string, v: unknown, def: number | undefined, min: number, max: number): number {
    return this.number(key, v, def, min, max, true);
  }

  num(key: string, v: unknown, def: number | undefined, min: number, max: number): number {
    return this.number(key, v, def, min, max, false);
  }

  private number(
    key: string,
    v: unknown,
    def: number | undefined,
    min: number,
    max: number,
    integer: boolean,
  ): number {
    const allowed = `${integer ? "an integer" : "a number"} from ${min} to ${max}`;
    if (v === undefined || v === null) {
      if (def === undefined) this.problems.push(`${key} is required: ${allowed}`);
      return def ?? min;
    }
    // The engine hands numbers over as strings.
    const n = typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    const ok =
      typeof n === "number" && (integer ? Number.isInteger(n) : Number.isFinite(n)) && n >= min && n <= max;
    if (!ok) {
      this.fail(key, v, allowed);
      return def ?? min;
    }
    return n;
  }

  bool(key: string, v: unknown, def: boolean): boolean {
    if (v === undefined || v === null) return def;
    if (v === true || v === "true") return true;
    if (v === false || v === "false") return false;
    this.fail(key, v, "true or false");
    return def;
  }

  memory(key: string, v: unknown, def: string | undefined): string {
    const allowed = 'a positive Kubernetes memory quantity such as "512Mi" or "16Gi"';
    const s = this.str(key, v, def, /^.+$/, allowed);
    if (s && !(parseMemory(s)! > 0)) this.fail(key, v, allowed);
    return s;
  }

  cpu(key: string, v: unknown, def: string | undefined): string {
    const allowed = 'a positive Kubernetes CPU quantity such as "500m" or "2"';
    const s = this.str(key, v, def, /^.+$/, allowed);
    if (s && !(parseCpu(s)! > 0)) this.fail(key, v, allowed);
    return s;
  }

  object(key: string, v: unknown): Record<string, unknown> {
    if (v === undefined || v === null) return {};
    if (typeof v !== "object" || Array.isArray(v)) {
      this.fail(key, v, "an object (set it with `pulumi config set --path`)");
      return {};
    }
    return v as Record<string, unknown>;
  }

  unknownKeys(key: string, obj: Record<string, unknown>, known: readonly string[]): void {
    for (const k of Object.keys(obj)) {
      if (!known.includes(k))
        this.problems.push(`${key}.${k} is not a known key: allowed keys are ${known.join(", ")}`);
    }
  }
}

function readJson(src: ConfigSource, key: string): unknown {
  const raw = src.get(key);
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** The value as shown in a message: long host keys are cut, they only need to be recognisable. */
function shortKey(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 36)}...` : s;
}

function parseNodes(
  c: Checker,
  raw: unknown,
  ctx: { stack: string; insecureSkipHostKeyCheck: boolean },
): NodeConfig[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    c.problems.push(
      `nodes is required: a list of {name, host, role: server|agent, hostKey, port?, user?, gpus?}, got ${JSON.stringify(raw)}`,
    );
    return [];
  }
  const nodes = raw.map((n, i): NodeConfig => {
    const key = `nodes[${i}]`;
    const o = c.object(key, n);
    c.unknownKeys(key, o, ["name", "host", "port", "user", "role", "gpus", "hostKey"]);
    const role = c.str(`${key}.role`, o.role, "server", /^(server|agent)$/, "server or agent") as NodeRole;
    let hostKey: string | undefined;
    if (o.hostKey === undefined || o.hostKey === null) {
      if (!ctx.insecureSkipHostKeyCheck) {
        c.problems.push(
          `${key}.hostKey is required: the K3s token and the admin kubeconfig travel over this SSH connection, so the node's host key must be pinned (ssh-ed25519 or ecdsa-sha2-nistp*); ` +
            `run \`npm run pin-host-keys -- --stack ${ctx.stack}\` to fill every node's pin from ssh-keyscan, or set insecureSkipHostKeyCheck: true on a lab stack`,
        );
      }
    } else {
      const parsed = typeof o.hostKey === "string" ? parseHostKey(o.hostKey) : undefined;
      if (parsed?.ok) hostKey = parsed.value.line;
      else
        c.fail(
          `${key}.hostKey`,
          shortKey(o.hostKey),
          parsed?.reason ?? 'an authorized_keys line, "ssh-ed25519 AAAA..."',
        );
    }
    return {
      name: c.str(`${key}.name`, o.name, undefined, NAME_RE, "a DNS label (lower-case letters, digits, '-')"),
      host: c.str(`${key}.host`, o.host, undefined, HOST_RE, "an IP address or DNS name"),
      port: c.int(`${key}.port`, o.port, 22, 1, 65535),
      user: c.str(
        `${key}.user`,
        o.user,
        "root",
        USER_RE,
        "a POSIX user name with passwordless sudo, or root",
      ),
      role,
      gpus: c.int(`${key}.gpus`, o.gpus, 1, 1, 64),
      hostKey,
    };
  });
  const seen = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (n.name && seen.has(n.name)) {
      c.problems.push(
        `nodes[${i}].name = "${n.name}" duplicates nodes[${seen.get(n.name)}].name: node names must be unique`,
      );
    }
    seen.set(n.name, i);
  });
  const endpoints = new Map<string, number>();
  nodes.forEach((n, i) => {
    const ep = `${n.host}:${n.port}`;
    if (n.host && endpoints.has(ep)) {
      c.problems.push(
        `nodes[${i}].host = "${ep}" duplicates nodes[${endpoints.get(ep)}]: one node per SSH endpoint`,
      );
    }
    endpoints.set(ep, i);
  });
  const servers = nodes.filter((n) => n.role === "server").length;
  if (servers === 0)
    c.problems.push("nodes has no server: the first K3s server must be a node with role: server");
  if (servers === 2 || servers > 3) {
    c.problems.push(
      `nodes has ${servers} servers: K3s embedded etcd needs 1 server, or 3 for HA (an even count loses quorum as easily as one)`,
    );
  }
  if (nodes.length > 0 && nodes[0].role !== "server") {
    c.problems.push(
      "nodes[0].role must be server: the first node initialises the cluster and the others join it",
    );
  }
  return nodes;
}

/** Parses and validates the whole stack configuration, throwing one ConfigError that lists every problem. */
export function parseStackConfig(stack: string, src: ConfigSource): StackConfig {
  const c = new Checker();
  const known = [
    "sku",
    "nodes",
    "sshPrivateKey",
    "k3sVersion",
    "toolkitVersion",
    "devicePluginVersion",
    "dcgmExporter",
    "dcgmExporterImage",
    "timeSlicingReplicas",
    "inference",
    "storage",
    "nodePort",
    "quota",
    "allowedCidrs",
    "airgap",
    "registries",
    "rollout",
    "insecureSkipHostKeyCheck",
  ];

  const skuRaw = src.get("sku");
  const skuName = c.str("sku", skuRaw, undefined, /^(thor|rtx4000|p40)$/, `one of ${SKU_NAMES.join(", ")}`);
  const sku = SKUS[skuName as SkuName] ?? SKUS.p40;
  const skuKnown = skuName in SKUS;

  if (src.get("sshPrivateKey") === undefined) {
    c.problems.push(
      "sshPrivateKey is required: set it with `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`",
    );
  } else if (!src.isSecret("sshPrivateKey")) {
    c.problems.push(
      "sshPrivateKey is stored in plaintext: re-set it with `pulumi config set --secret sshPrivateKey < key`",
    );
  }

  const insecureSkipHostKeyCheck = c.bool(
    "insecureSkipHostKeyCheck",
    readJson(src, "insecureSkipHostKeyCheck"),
    false,
  );
  const nodes = parseNodes(c, readJson(src, "nodes"), { stack, insecureSkipHostKeyCheck });

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
  );
  if (
    src.get("timeSlicingReplicas") !== undefined &&
    c.problems.some((p) => p.startsWith("timeSlicingReplicas ="))
  ) {
    c.problems[c.problems.length - 1] += ` (the range ${sku.displayName} supports)`;
  }

  const inf = c.object("inference", readJson(src, "inference"));
  c.unknownKeys("inference", inf, [
    "image",
    "replicas",
    "maxReplicas",
    "cpuRequest",
    "cpuLimit",
    "memoryRequest",
    "memoryLimit",
    "gpuSlicesPerPod",
    "modelMemoryGiB",
    "cudaMajor",
    "modelLoadSeconds",
    "port",
    "shmSize",
    "readOnlyRootFilesystem",
    "settings",
  ]);
  const totalGpus = nodes.reduce((s, n) => s + n.gpus, 0) || 1;
  const totalSlices = totalGpus * timeSlicingReplicas;
  const replicas = c.int("inference.replicas", inf.replicas, 1, 1, 64);
  const settingsRaw = c.object("inference.settings", inf.settings);
  const settings: Record<string, string> = {};
  for (const [k, v] of Object.entries(settingsRaw)) {
    if (!SETTING_KEY_RE.test(k))
      c.fail(`inference.settings.${k}`, k, "keys must be environment variable names");
    else if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      c.fail(`inference.settings.${k}`, v, "a string, number or boolean");
    } else settings[k] = String(v);
  }
  const inference: InferenceConfig = {
    image: c.str(
      "inference.image",
      inf.image,
      undefined,
      IMAGE_RE,
      'a container image reference, e.g. "registry/forge/llm:1.2"',
    ),
    replicas,
    maxReplicas: c.int("inference.maxReplicas", inf.maxReplicas, replicas, 1, 64),
    cpuRequest: c.cpu("inference.cpuRequest", inf.cpuRequest, "1"),
    cpuLimit: c.cpu("inference.cpuLimit", inf.cpuLimit, "4"),
    memoryRequest: c.memory("inference.memoryRequest", inf.memoryRequest, "4Gi"),
    memoryLimit: c.memory("inference.memoryLimit", inf.memoryLimit, "8Gi"),
    gpuSlicesPerPod: c.int("inference.gpuSlicesPerPod", inf.gpuSlicesPerPod, 1, 1, 64),
    modelMemoryGiB: c.num("inference.modelMemoryGiB", inf.modelMemoryGiB, undefined, 0.1, 1024),
    cudaMajor: c.int("inference.cudaMajor", inf.cudaMajor, undefined, 9, 20),
    modelLoadSeconds: c.int("inference.modelLoadSeconds", inf.modelLoadSeconds, 300, 10, 7200),
    port: c.int("inference.port", inf.port, 8080, 1024, 65535),
    shmSize: c.memory("inference.shmSize", inf.shmSize, "2Gi"),
    readOnlyRootFilesystem: c.bool("inference.readOnlyRootFilesystem", inf.readOnlyRootFilesystem, true),
    settings,
  };

  // Cross-field rules: these are the ones that bite on real hardware.
  if (inference.gpuSlicesPerPod !== 1) {
    c.fail(
      "inference.gpuSlicesPerPod",
      inference.gpuSlicesPerPod,
      "only 1 is allowed: a time-sliced request for more than one slice gives no extra compute, and the device plugin runs with failRequestsGreaterThanOne",
    );
  }
  if (skuKnown && inf.cudaMajor !== undefined && !sku.cudaMajors.includes(inference.cudaMajor)) {
    c.fail(
      "inference.cudaMajor",
      inference.cudaMajor,
      `${sku.displayName} (${sku.gpu.architecture}, compute ${sku.gpu.computeCapability}) runs images built for CUDA ${sku.cudaMajors.join(" or ")} only`,
    );
  }
  if (inference.maxReplicas < inference.replicas) {
    c.fail(
      "inference.maxReplicas",
      inference.maxReplicas,
      `must be at least inference.replicas (${inference.replicas})`,
    );
  }
  if (inference.maxReplicas * inference.gpuSlicesPerPod > totalSlices) {
    c.fail(
      "inference.maxReplicas",
      inference.maxReplicas,
      `the nodes advertise ${totalSlices} GPU slice(s) (${totalGpus} GPU(s) × timeSlicingReplicas ${timeSlicingReplicas}); at most ${totalSlices} inference pods fit`,
    );
  }
  const reqMem = parseMemory(inference.memoryRequest);
  const limMem = parseMemory(inference.memoryLimit);
  if (reqMem !== undefined && limMem !== undefined && limMem < reqMem) {
    c.fail(
      "inference.memoryLimit",
      inference.memoryLimit,
      `must be at least inference.memoryRequest (${inference.memoryRequest})`,
    );
  }
  const reqCpu = parseCpu(inference.cpuRequest);
  const limCpu = parseCpu(inference.cpuLimit);
  if (reqCpu !== undefined && limCpu !== undefined && limCpu < reqCpu) {
    c.fail(
      "inference.cpuLimit",
      inference.cpuLimit,
      `must be at least inference.cpuRequest (${inference.cpuRequest})`,
    );
  }
  if (skuKnown && inf.modelMemoryGiB !== undefined) {
    // Time-slicing has no memory isolation: every slice on a GPU may hold a model copy at once.
    const usable = usableGpuMemoryGiB(sku, timeSlicingReplicas);
    const needed = timeSlicingReplicas * inference.modelMemoryGiB;
    if (needed > usable) {
      c.problems.push(
        `inference.modelMemoryGiB = ${inference.modelMemoryGiB} over-subscribes GPU memory: timeSlicingReplicas ${timeSlicingReplicas} × ${inference.modelMemoryGiB} GiB = ${round(needed)} GiB, ` +
          `but ${sku.displayName} has ${round(usable)} GiB usable per GPU (${sku.gpu.memoryGiB} GiB − ${sku.gpu.reservedGiB} GiB ${sku.gpu.unifiedMemory ? "reserved for the host (unified memory)" : "driver reserve"} − ${timeSlicingReplicas} × ${sku.gpu.contextOverheadGiB} GiB CUDA contexts); ` +
          `over by ${round(needed - usable)} GiB: lower modelMemoryGiB to ${Math.floor((usable / timeSlicingReplicas) * 10) / 10} or timeSlicingReplicas`,
      );
    }
  }

  const limGiB = limMem === undefined ? undefined : limMem / 2 ** 30;
  if (skuKnown && inf.modelMemoryGiB !== undefined && limGiB !== undefined) {
    // Unified memory: the models, their CUDA contexts and the containers' memory all come out of the host's RAM.
    const slicesPerNode = Math.max(1, ...nodes.map((n) => n.gpus)) * timeSlicingReplicas;
    const b = unifiedMemoryBudget(sku, {
      maxReplicas: inference.maxReplicas,
      slicesPerNode,
      modelMemoryGiB: inference.modelMemoryGiB,
      memoryLimitGiB: limGiB,
    });
    if (b !== undefined && !b.fits) {
      const room = Math.floor((b.totalGiB - b.hostReserveGiB) / b.perPodGiB);
      c.problems.push(
        `inference.maxReplicas = ${inference.maxReplicas} can drive ${sku.displayName} into the OOM killer: GPU and container memory share the node's ${b.totalGiB} GiB (unified memory), ` +
          `and ${b.podsPerNode} pod(s) per node × (modelMemoryGiB ${inference.modelMemoryGiB} + ${sku.gpu.contextOverheadGiB} GiB CUDA context + memoryLimit ${inference.memoryLimit} = ${round(b.perPodGiB)} GiB) ` +
          `+ ${b.hostReserveGiB} GiB host reserve (kubelet system-reserved ${sku.hostMemory.systemReservedGiB} GiB + eviction margin ${sku.hostMemory.evictionHardGiB} GiB) = ${round(b.neededGiB)} GiB; ` +
          `over by ${round(b.neededGiB - b.totalGiB)} GiB: ${room >= 1 ? `lower inference.maxReplicas to ${room}, or ` : "lower "}inference.memoryLimit or inference.modelMemoryGiB`,
      );
    }
  }

  if (skuKnown) {
    nodes.forEach((n, i) => {
      if (n.gpus > sku.gpu.maxGpusPerNode) {
        c.fail(
          `nodes[${i}].gpus`,
          n.gpus,
          `${sku.displayName} nodes hold at most ${sku.gpu.maxGpusPerNode} GPU(s)`,
        );
      }
    });
  }

  const st = c.object("storage", readJson(src, "storage"));
  c.unknownKeys("storage", st, ["size", "storageClass"]);
  const storage = {
    size: c.memory("storage.size", st.size, "50Gi"),
    storageClass: c.str(
      "storage.storageClass",
      st.storageClass,
      "local-path",
      NAME_RE,
      "a StorageClass name",
    ),
  };

  // Replicas spread over the GPU nodes (each has its own model volume): what fits is decided node by node.
  c.problems.push(
    ...capacityProblems({
      nodes,
      timeSlicingReplicas,
      replicas: inference.replicas,
      maxReplicas: inference.maxReplicas,
      storageSize: storage.size,
    }),
  );

  const nodePort = c.int("nodePort", src.get("nodePort"), 30080, NODE_PORT_RANGE.min, NODE_PORT_RANGE.max);

  // Quota defaults scale the seed (4 slices, 32Gi/64Gi, 10 pods) to what this stack's nodes offer.
  const q = c.object("quota", readJson(src, "quota"));
  c.unknownKeys("quota", q, ["gpu", "requestsMemory", "limitsMemory", "pods"]);
  const quota: QuotaConfig = {
    gpu: c.int("quota.gpu", q.gpu, totalSlices, 1, 1024),
    requestsMemory: c.memory("quota.requestsMemory", q.requestsMemory, `${32 * totalGpus}Gi`),
    limitsMemory: c.memory("quota.limitsMemory", q.limitsMemory, `${64 * totalGpus}Gi`),
    pods: c.int("quota.pods", q.pods, Math.max(10, totalSlices + 6), 1, 1000),
  };
  if (quota.gpu < inference.maxReplicas * inference.gpuSlicesPerPod) {
    c.fail(
      "quota.gpu",
      quota.gpu,
      `must cover inference.maxReplicas × gpuSlicesPerPod (${inference.maxReplicas})`,
    );
  }
  const qReq = parseMemory(quota.requestsMemory);
  if (qReq !== undefined && reqMem !== undefined && qReq < inference.maxReplicas * reqMem) {
    c.fail(
      "quota.requestsMemory",
      quota.requestsMemory,
      `must cover inference.maxReplicas × memoryRequest (${inference.maxReplicas} × ${inference.memoryRequest})`,
    );
  }
  const qLim = parseMemory(quota.limitsMemory);
  if (qLim !== undefined && limMem !== undefined && qLim < inference.maxReplicas * limMem) {
    c.fail(
      "quota.limitsMemory",
      quota.limitsMemory,
      `must cover inference.maxReplicas × memoryLimit (${inference.maxReplicas} × ${inference.memoryLimit})`,
    );
  }
  if (quota.pods < inference.maxReplicas) {
    c.fail("quota.pods", quota.pods, `must be at least inference.maxReplicas (${inference.maxReplicas})`);
  }

  const cidrsRaw = readJson(src, "allowedCidrs");
  let allowedCidrs: string[] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
  if (cidrsRaw !== undefined) {
    if (!Array.isArray(cidrsRaw) || cidrsRaw.length === 0) {
      c.fail("allowedCidrs", cidrsRaw, 'a non-empty list of CIDRs, e.g. ["192.0.2.0/24"]');
    } else {
      allowedCidrs = cidrsRaw.map(String);
      cidrsRaw.forEach((v, i) => {
        if (typeof v !== "string" || !isCidr(v))
          c.fail(`allowedCidrs[${i}]`, v, 'an IPv4/IPv6 CIDR such as "192.0.2.0/24"');
      });
    }
  }

  const ag = readJson(src, "airgap");
  let airgap: AirgapConfig | undefined;
  if (ag !== undefined) {
    const o = c.object("airgap", ag);
    c.unknownKeys("airgap", o, ["k3sBinary", "installScript", "imagesTarball", "stackImageTarballs"]);
    const path = (k: string) =>
      c.str(`airgap.${k}`, o[k], undefined, /^[^\0]+$/, "a path on the machine running pulumi");
    const stackImages = o.stackImageTarballs ?? [];
    const tarballs: string[] = [];
    if (!Array.isArray(stackImages)) {
      c.fail(
        "airgap.stackImageTarballs",
        stackImages,
        "a list of image tarball paths (.tar, .tar.gz, .tar.zst)",
      );
    } else {
      const seen = new Set<string>();
      stackImages.forEach((v, i) => {
        const base = typeof v === "string" ? (v.split("/").pop() ?? "") : "";
        if (typeof v !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]*\.tar(\.gz|\.zst)?$/.test(base))
          c.fail(
            `airgap.stackImageTarballs[${i}]`,
            v,
            "a path to an image tarball named *.tar, *.tar.gz or *.tar.zst",
          );
        else if (seen.has(base) || base.startsWith("k3s-airgap-images"))
          c.fail(
            `airgap.stackImageTarballs[${i}]`,
            v,
            "file names must be unique and not k3s-airgap-images*",
          );
        else tarballs.push(v);
        seen.add(base);
      });
    }
    airgap = {
      k3sBinary: path("k3sBinary"),
      installScript: path("installScript"),
      imagesTarball: path("imagesTarball"),
      stackImageTarballs: tarballs,
    };
  }

  const registries = parseRegistries(c, src);

  const ro = c.object("rollout", readJson(src, "rollout"));
  c.unknownKeys("rollout", ro, ["batchSize", "drainTimeoutSeconds"]);
  const rollout: RolloutConfig = {
    batchSize: c.int("rollout.batchSize", ro.batchSize, 0, 0, 1000),
    drainTimeoutSeconds: c.int("rollout.drainTimeoutSeconds", ro.drainTimeoutSeconds, 300, 30, 3600),
  };

  // Keys that are not ours are almost always typos of ours.
  for (const k of unknownTopLevel(src, known)) {
    c.problems.push(`${k} is not a known key: allowed keys are ${known.join(", ")}`);
  }

  if (c.problems.length > 0) throw new ConfigError(stack, c.problems);
  return {
    stack,
    sku,
    nodes,
    k3sVersion,
    toolkitVersion,
    devicePluginVersion,
    dcgmExporterImage,
    dcgmExporter: dcgmWanted && sku.metrics.dcgm,
    timeSlicingReplicas,
    inference,
    storage,
    nodePort,
    quota,
    allowedCidrs,
    airgap,
    registries,
    rollout,
    insecureSkipHostKeyCheck,
  };
}

/** `registries`: K3s's registries.yaml as an object; credentials only from a secret config value. */
function parseRegistries(c: Checker, src: ConfigSource): RegistriesConfig | undefined {
  const raw = readJson(src, "registries");
  if (raw === undefined) return undefined;
  const o = c.object("registries", raw);
  c.unknownKeys("registries", o, ["mirrors", "configs"]);
  const mirrors: Record<string, { endpoint: string[] }> = {};
  for (const [host, m] of Object.entries(c.object("registries.mirrors", o.mirrors))) {
    const mo = c.object(`registries.mirrors.${host}`, m);
    c.unknownKeys(`registries.mirrors.${host}`, mo, ["endpoint", "rewrite"]);
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
    const co = c.object(`registries.configs.${host}`, cfg);
    c.unknownKeys(`registries.configs.${host}`, co, ["auth", "tls"]);
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

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** Sources that can enumerate their keys report unknown ones; others skip the check. */
function unknownTopLevel(src: ConfigSource, known: readonly string[]): string[] {
  const keys = (src as Partial<{ keys(): string[] }>).keys?.() ?? [];
  return keys.filter((k) => !known.includes(k));
}
