/**
 * The CrossGuard policy pack (policy/): each rule on its own, then every policy fed the resources the real
 * program declares for each committed stack (no violation), and a mutated plan (violations).
 *
 * Resources reach the policies the way @pulumi/policy's analyzer server hands them over: Analyze gets unwrapped
 * values behind the unknown-checking proxy, Remediate gets `Secret` objects behind the secret-preserving proxy.
 */
import * as assert from "node:assert/strict";
import {
  PolicyResource,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  Secret,
  StackValidationArgs,
  StackValidationPolicy,
  unknownCheckingProxy,
  UnknownValueError,
} from "@pulumi/policy";
import { secretsPreservingProxy } from "@pulumi/policy/secret";
import * as yaml from "js-yaml";

import { deploymentSpec, PROBES, serviceSpec } from "../../components/inferenceStack";
import { INFERENCE as INFERENCE_NAMES } from "../../components/names";
import { SKU_NAMES, SKUS } from "../../config/skus";
import { InferenceConfig } from "../../config/stack";
import { run } from "../../program";
import {
  checkCommandInputsSecret,
  checkGpuMemoryBudget,
  checkGpuPodSpec,
  checkGpuProbes,
  checkNodePorts,
  checkPlaintextSecrets,
  POLICIES,
  Props,
  ResourceInput,
  secretLike,
  secretnessOf,
  skusDeclared,
  timeSlicingReplicas,
} from "../../policy/policies";
import { evaluateStack, isSecretValue, Recorded, TEST_SSH_KEY } from "./support";

/* eslint-disable @typescript-eslint/no-explicit-any */

const DEPLOY = "kubernetes:apps/v1:Deployment";
const CM = "kubernetes:core/v1:ConfigMap";
const SVC = "kubernetes:core/v1:Service";
const CMD = "command:remote:Command";
/** @pulumi/policy's unknown-string sentinel (proxy.js); the first test checks the proxy still treats it so. */
const UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const INFERENCE: InferenceConfig = {
  image: "registry.example.com/forge/llm:1.0",
  replicas: 1,
  maxReplicas: 2,
  cpuRequest: "1",
  cpuLimit: "4",
  memoryRequest: "4Gi",
  memoryLimit: "8Gi",
  gpuSlicesPerPod: 1,
  modelMemoryGiB: 10,
  cudaMajor: 12,
  modelLoadSeconds: 300,
  port: 8080,
  shmSize: "2Gi",
  readOnlyRootFilesystem: true,
  settings: {},
  probes: PROBES,
};
const deployment = (): Props =>
  clone(
    deploymentSpec(
      INFERENCE,
      "hash",
      { size: "50Gi", storageClass: "local-path" },
      { gpuNodes: 1, entryNode: "node-1" },
    ),
  ) as Props;
const podSpec = (p: Props): any => (p as any).spec.template.spec;

function timeSlicing(replicas: number): string {
  return yaml.dump({
    version: "v1",
    sharing: { timeSlicing: { resources: [{ name: "nvidia.com/gpu", replicas }] } },
  });
}
function budgetResources(replicas: number, memoryGiB: number, sku?: string): ResourceInput[] {
  const out: ResourceInput[] = [
    {
      type: CM,
      props: {
        metadata: { name: "nvidia-device-plugin-config" },
        data: { "config.yaml": timeSlicing(replicas) },
      },
    },
    {
      type: CM,
      urn: "urn:inference-config",
      props: { metadata: { name: "inference-config" }, data: { FORGE_GPU_MEMORY_GIB: String(memoryGiB) } },
    },
  ];
  if (sku)
    out.push({
      type: CMD,
      name: "n1-nvidia-runtime",
      props: { create: `bash -c "…"\nSKU='${sku}'\nDISCOVERY='nvml'\n` },
    });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Driving the Policy objects the way the analyzer server does.

interface Found {
  policy: string;
  message: string;
  urn?: string;
}

/** A recorded input with mock secrets turned into @pulumi/policy `Secret`s (Remediate) or plain values (Analyze). */
function deserialize(v: unknown, keepSecrets: boolean): unknown {
  if (isSecretValue(v)) {
    const inner = deserialize((v as { value: unknown }).value, keepSecrets);
    return keepSecrets ? new Secret(inner) : inner;
  }
  if (Array.isArray(v)) return v.map((x) => deserialize(x, keepSecrets));
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deserialize(x, keepSecrets)]));
  }
  return v;
}

function resourceArgs(
  r: Recorded,
  remediate: boolean,
  config: Record<string, unknown>,
): ResourceValidationArgs {
  const raw = deserialize(r.inputs, remediate) as Props;
  const props = unknownCheckingProxy(remediate ? secretsPreservingProxy(raw) : raw);
  return {
    type: r.type,
    props,
    urn: urnOf(r),
    name: r.name,
    opts: {
      protect: false,
      ignoreChanges: [],
      aliases: [],
      additionalSecretOutputs: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    },
    stackTags: new Map(),
    isType: () => false,
    asType: () => undefined,
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string): never => {
      throw new Error(`not applicable: ${reason}`);
    },
  };
}

const urnOf = (r: Recorded) => `urn:pulumi:test::forge-edge::${r.type}::${r.name}`;

/** Every policy over a plan: Remediate pass, Analyze pass per resource, then the stack pass. */
async function runPolicies(
  resources: Recorded[],
  config: Record<string, Record<string, unknown>> = {},
): Promise<Found[]> {
  const found: Found[] = [];
  const resourcePolicies = POLICIES.filter((p): p is ResourceValidationPolicy => "validateResource" in p);
  const stackPolicies = POLICIES.filter((p): p is StackValidationPolicy => "validateStack" in p);
  for (const r of resources) {
    for (const p of resourcePolicies) {
      if (p.enforcementLevel === "remediate" && p.remediateResource) {
        await p.remediateResource(resourceArgs(r, true, config[p.name] ?? {}));
      }
    }
    for (const p of resourcePolicies) {
      const validations = Array.isArray(p.validateResource) ? p.validateResource : [p.validateResource!];
      for (const v of validations) {
        await v(resourceArgs(r, false, config[p.name] ?? {}), (message) =>
          found.push({ policy: p.name, message, urn: urnOf(r) }),
        );
      }
    }
  }
  const stackResources: PolicyResource[] = resources.map((r) => ({
    ...resourceArgs(r, false, {}),
    dependencies: [],
    propertyDependencies: {},
  }));
  for (const p of stackPolicies) {
    const args: StackValidationArgs = {
      resources: stackResources,
      stackTags: new Map(),
      getConfig: <T extends object>() => (config[p.name] ?? {}) as T,
      notApplicable: (reason?: string): never => {
        throw new Error(`not applicable: ${reason}`);
      },
    };
    await p.validateStack(args, (message, urn) => found.push({ policy: p.name, message, urn }));
  }
  return found;
}

// ---------------------------------------------------------------------------------------------------------

describe("policy pack", () => {
  it("declares every policy mandatory (command-inputs-secret: remediate, reported as mandatory)", () => {
    assert.deepEqual(
      POLICIES.map((p) => [p.name, p.enforcementLevel]),
      [
        ["gpu-pod-runtime-class-and-priority", "mandatory"],
        ["gpu-deployment-probes", "mandatory"],
        ["gpu-memory-budget", "mandatory"],
        ["no-plaintext-secrets", "mandatory"],
        ["command-inputs-secret", "remediate"],
        ["service-node-port-range", "mandatory"],
      ],
    );
    assert.throws(() => unknownCheckingProxy({ x: UNKNOWN_STRING }).x, UnknownValueError);
  });

  describe("gpu-pod-runtime-class-and-priority", () => {
    it("passes the program's inference Deployment", () => {
      assert.deepEqual(checkGpuPodSpec(DEPLOY, deployment()), []);
    });
    it("fails a GPU pod without runtimeClassName nvidia", () => {
      const d = deployment();
      delete podSpec(d).runtimeClassName;
      const [msg, ...rest] = checkGpuPodSpec(DEPLOY, d);
      assert.match(msg, /Deployment inference-server requests nvidia\.com\/gpu .* runtimeClassName is unset/);
      assert.equal(rest.length, 0);
      podSpec(d).runtimeClassName = "runc";
      assert.match(checkGpuPodSpec(DEPLOY, d)[0], /runtimeClassName is "runc"/);
    });
    it("fails a GPU pod without a priorityClassName", () => {
      const d = deployment();
      delete podSpec(d).priorityClassName;
      assert.match(checkGpuPodSpec(DEPLOY, d)[0], /sets no priorityClassName/);
    });
    it("looks at every pod template kind and at limits-only requests", () => {
      const container = { name: "c", resources: { limits: { "nvidia.com/gpu": 1 } } };
      const pod = { containers: [container] };
      assert.equal(
        checkGpuPodSpec("kubernetes:core/v1:Pod", { metadata: { name: "p" }, spec: pod }).length,
        2,
      );
      assert.equal(
        checkGpuPodSpec("kubernetes:batch/v1:CronJob", {
          spec: { jobTemplate: { spec: { template: { spec: pod } } } },
        }).length,
        2,
      );
      assert.equal(
        checkGpuPodSpec("kubernetes:apps/v1:StatefulSet", { spec: { template: { spec: pod } } }).length,
        2,
      );
    });
    it("ignores pods that request no GPU, and unknown specs", () => {
      assert.deepEqual(
        checkGpuPodSpec("kubernetes:core/v1:Pod", { spec: { containers: [{ name: "c" }] } }),
        [],
      );
      const zero = { containers: [{ name: "c", resources: { requests: { "nvidia.com/gpu": "0" } } }] };
      assert.deepEqual(checkGpuPodSpec("kubernetes:core/v1:Pod", { spec: zero }), []);
      assert.deepEqual(checkGpuPodSpec(DEPLOY, { metadata: { name: "x" } }), []);
    });
  });

  describe("gpu-deployment-probes", () => {
    it("passes the program's inference Deployment", () => {
      assert.deepEqual(checkGpuProbes(DEPLOY, deployment()), []);
    });
    it("fails a GPU Deployment missing a probe", () => {
      const d = deployment();
      delete podSpec(d).containers[0].livenessProbe;
      delete podSpec(d).containers[0].startupProbe;
      assert.match(
        checkGpuProbes(DEPLOY, d)[0],
        /GPU container inference-server has no startupProbe, livenessProbe/,
      );
    });
    it("checks Deployments only", () => {
      const d = deployment();
      delete podSpec(d).containers[0].livenessProbe;
      assert.deepEqual(checkGpuProbes("kubernetes:apps/v1:DaemonSet", d), []);
    });
  });

  describe("gpu-memory-budget", () => {
    it("passes the committed P40 budget (2 × 10 GiB of 22 GiB)", () => {
      assert.deepEqual(checkGpuMemoryBudget(budgetResources(2, 10, "p40")), []);
    });
    it("fails 8 replicas × 10 GiB on a P40, on the inference-config URN", () => {
      const [v, ...rest] = checkGpuMemoryBudget(budgetResources(8, 10, "p40"));
      assert.equal(rest.length, 0);
      assert.equal(v.urn, "urn:inference-config");
      assert.match(
        v.message,
        /replicas 8 × 10 GiB per replica = 80 GiB over-subscribes NVIDIA Tesla P40: 19 GiB usable/,
      );
    });
    it("takes the SKU from policy config over the resources, and refuses an unknown one", () => {
      // 4 × 24 GiB fits Thor (128 − 16 − 2 = 110 GiB) but not an RTX PRO 4000.
      assert.deepEqual(checkGpuMemoryBudget(budgetResources(4, 24, "thor")), []);
      assert.equal(checkGpuMemoryBudget(budgetResources(4, 24, "thor"), { sku: "rtx4000" }).length, 1);
      assert.match(
        checkGpuMemoryBudget(budgetResources(2, 1), { sku: "h100" })[0].message,
        new RegExp(`one of ${SKU_NAMES.join(", ")}$`),
      );
    });
    it("reads the SKU from node labels and refuses a stack of mixed SKUs", () => {
      const labels = (sku: string): ResourceInput => ({
        type: CMD,
        name: `${sku}-k3s`,
        props: { create: `NODE_LABELS='nvidia.com/gpu.present=true,forge-edge.io/sku=${sku}'` },
      });
      assert.deepEqual(skusDeclared([labels("p40")]), ["p40"]);
      assert.equal(checkGpuMemoryBudget([...budgetResources(4, 10), labels("p40")]).length, 1);
      assert.match(
        checkGpuMemoryBudget([...budgetResources(2, 1, "p40"), labels("thor")])[0].message,
        /more than one SKU \(p40, thor\)/,
      );
    });
    it("skips what it cannot judge: no SKU, missing ConfigMaps, unknown data", () => {
      assert.deepEqual(checkGpuMemoryBudget(budgetResources(8, 10)), []);
      assert.deepEqual(checkGpuMemoryBudget(budgetResources(8, 10, "p40").slice(1)), []);
      const unknown = budgetResources(8, 10, "p40");
      delete (unknown[1].props as any).data;
      assert.deepEqual(checkGpuMemoryBudget(unknown), []);
      assert.equal(timeSlicingReplicas("version: v1\n"), undefined);
      assert.equal(timeSlicingReplicas(": not yaml: ["), undefined);
    });
  });

  describe("no-plaintext-secrets", () => {
    it("passes the program's scripts and a ConfigMap of settings", () => {
      assert.deepEqual(
        checkPlaintextSecrets(CMD, { create: "K3S_TOKEN_FILE=/etc/rancher/k3s/token\nread -r token" }),
        [],
      );
      const data = {
        MAX_TOKENS: "4096",
        MODEL_NAME: "m",
        "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
      };
      assert.deepEqual(checkPlaintextSecrets(CM, { metadata: { name: "inference-config" }, data }), []);
    });
    it("fails key material in a command's create, update or delete", () => {
      assert.match(
        checkPlaintextSecrets(CMD, { create: `echo '${TEST_SSH_KEY}' > k` })[0],
        /create contains a private key/,
      );
      assert.match(
        checkPlaintextSecrets(CMD, { update: "k3s agent --token K10abcdef0123456789::server:s3cr3t" })[0],
        /update contains a K3s join token/,
      );
      assert.match(
        checkPlaintextSecrets(CMD, { delete: "cat <<EOF\n    client-key-data: U0VDUkVULUtFWQ==\nEOF" })[0],
        /delete contains a kubeconfig client key/,
      );
    });
    it("fails credentials in a ConfigMap", () => {
      const cm = (data: Record<string, string>) =>
        checkPlaintextSecrets(CM, { metadata: { name: "c" }, data });
      assert.match(
        cm({ "app.properties": "user=forge\npassword=hunter22" })[0],
        /key app\.properties holds a credential/,
      );
      assert.match(cm({ HF_TOKEN: "hf_abc" })[0], /key name HF_TOKEN/);
      assert.match(cm({ "key.pem": "-----BEGIN EC PRIVATE KEY-----\nx" })[0], /private key/);
      assert.equal(secretLike("url?token=abcdef", true), "a credential assignment (password=/token=/…)");
      assert.equal(secretLike("max_token=512", true), undefined);
    });
  });

  describe("command-inputs-secret", () => {
    const cmd = (stdin: unknown): Recorded => ({
      type: CMD,
      name: "n1-k3s",
      inputs: {
        create: "true",
        connection: {
          "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
          value: { host: "h" },
        },
        stdin,
      },
    });
    const secret = (value: unknown) => ({
      "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
      value,
    });

    it("passes secret connection and stdin", async () => {
      assert.deepEqual(await runPolicies([cmd(secret("token"))]), []);
    });
    it("fails a plaintext stdin, reported by the Analyze pass after Remediate saw it", async () => {
      const found = await runPolicies([cmd("token")]);
      assert.deepEqual(
        found.map((f) => [f.policy, f.urn]),
        [["command-inputs-secret", "urn:pulumi:test::forge-edge::command:remote:Command::n1-k3s"]],
      );
      assert.match(found[0].message, /stdin is not a secret/);
    });
    it("skips an unknown stdin, and sees secretness beneath the Remediate proxies", () => {
      assert.deepEqual(
        checkCommandInputsSecret(
          CMD,
          { connection: {}, stdin: UNKNOWN_STRING },
          secretnessOf({ connection: new Secret({}), stdin: UNKNOWN_STRING }),
        ),
        [],
      );
      const raw = { connection: new Secret({ host: "h" }), stdin: "t" };
      assert.deepEqual(secretnessOf(unknownCheckingProxy(secretsPreservingProxy(raw)))("connection"), true);
      assert.deepEqual(secretnessOf(unknownCheckingProxy(secretsPreservingProxy(raw)))("stdin"), false);
    });
  });

  describe("service-node-port-range", () => {
    const svc = (nodePort: number) => clone(serviceSpec(INFERENCE, nodePort)) as Props;
    it("passes NodePort 30080, and a Service that leaves the port to Kubernetes", () => {
      assert.deepEqual(checkNodePorts(SVC, svc(30080)), []);
      assert.deepEqual(checkNodePorts(SVC, { spec: { type: "NodePort", ports: [{ port: 80 }] } }), []);
    });
    it("fails NodePort 8080", () => {
      assert.match(checkNodePorts(SVC, svc(8080))[0], /nodePort 8080 is outside 30000–32767/);
    });
    it("fails a port outside allowedNodePorts when configured", () => {
      assert.match(
        checkNodePorts(SVC, svc(30080), { allowedNodePorts: [30090] })[0],
        /not in allowedNodePorts \(30090\)/,
      );
      assert.deepEqual(checkNodePorts(SVC, svc(30090), { allowedNodePorts: [30090] }), []);
    });
  });

  it("skips unknown values under the engine's proxy instead of failing the plan", async () => {
    const unknownDeploy: Recorded = {
      type: DEPLOY,
      name: "d",
      inputs: { spec: { template: { spec: { containers: UNKNOWN_STRING } } } },
    };
    const unknownSvc: Recorded = {
      type: SVC,
      name: "s",
      inputs: { spec: { ports: [{ nodePort: UNKNOWN_STRING }] } },
    };
    const unknownCm: Recorded = {
      type: CM,
      name: "c",
      inputs: { metadata: { name: "c" }, data: UNKNOWN_STRING },
    };
    assert.deepEqual(await runPolicies([unknownDeploy, unknownSvc, unknownCm]), []);
  });
});

describe("policy pack over the program's resources", () => {
  for (const stack of SKU_NAMES) {
    it(`finds no violation in stack ${stack}`, async () => {
      const ev = await evaluateStack(stack, run);
      // The plan holds what each policy looks at, so "no violation" is not "nothing checked".
      assert.equal(ev.ofType(DEPLOY).length, 1);
      assert.ok(ev.ofType(CMD).some((r) => r.name.endsWith("-nvidia-runtime")));
      assert.ok(ev.ofType(CMD).some((r) => isSecretValue(r.inputs.stdin)));
      assert.deepEqual(
        skusDeclared(ev.resources.map((r) => ({ type: r.type, name: r.name, props: r.inputs }))),
        [stack],
      );
      assert.deepEqual(await runPolicies(ev.resources), []);
    });
  }

  it("finds the inference ConfigMap by the name the component gives it (components/names.ts)", async () => {
    const ev = await evaluateStack("p40", run);
    const plan: ResourceInput[] = ev.resources.map((r) => ({
      type: r.type,
      name: r.name,
      urn: `urn:${r.name}`,
      props: clone(r.inputs),
    }));
    const config = plan.find(
      (r) => r.type === CM && (r.props.metadata as any).name === INFERENCE_NAMES.configMap,
    );
    assert.ok(config, `the program declares no ConfigMap ${INFERENCE_NAMES.configMap}`);
    (config.props.data as any).FORGE_GPU_MEMORY_GIB = "40";
    assert.deepEqual(
      checkGpuMemoryBudget(plan).map((v) => v.urn),
      [config.urn],
    );
    // Under any other name the rule finds nothing and passes: only the shared name keeps the two together.
    (config.props.metadata as any).name = `${INFERENCE_NAMES.configMap}-renamed`;
    assert.deepEqual(checkGpuMemoryBudget(plan), []);
  });

  it("finds each violation in a mutated P40 plan", async () => {
    const ev = await evaluateStack("p40", run);
    const plan = clone(ev.resources);
    const named = (type: string, name: string) => {
      const r = plan.find((x) => x.type === type && (x.inputs.metadata as any)?.name === name);
      assert.ok(r, `${type} ${name}`);
      return r.inputs as any;
    };
    delete named(DEPLOY, "inference-server").spec.template.spec.runtimeClassName;
    delete named(DEPLOY, "inference-server").spec.template.spec.containers[0].readinessProbe;
    named(CM, "nvidia-device-plugin-config").data["config.yaml"] = timeSlicing(8);
    named(CM, "inference-config").data.FORGE_GPU_MEMORY_GIB = "10";
    named(CM, "inference-config").data.DB_PASSWORD = "hunter22";
    named(SVC, "inference-server").spec.ports[0].nodePort = 8080;
    const k3s = plan.find((r) => r.type === CMD && r.name.endsWith("-k3s"))!;
    k3s.inputs.stdin = (k3s.inputs.stdin as { value: unknown }).value;

    const found = await runPolicies(plan);
    assert.deepEqual(found.map((f) => f.policy).sort(), [
      "command-inputs-secret",
      "gpu-deployment-probes",
      "gpu-memory-budget",
      "gpu-pod-runtime-class-and-priority",
      "no-plaintext-secrets",
      "service-node-port-range",
    ]);
    const budget = found.find((f) => f.policy === "gpu-memory-budget")!;
    assert.match(budget.message, /8 × 10 GiB .* = 80 GiB over-subscribes NVIDIA Tesla P40: 19 GiB usable/);
    assert.match(budget.urn!, /ConfigMap::inference-config$/);
    assert.equal(SKUS.p40.gpu.memoryGiB, 24);
  });

  it("the budget policy's SKU can also come from policy config", async () => {
    // Thor's 4 × 24 GiB fits its 110 GiB; judged as a P40 (21 GiB usable at 4 slices) it does not.
    const ev = await evaluateStack("thor", run);
    assert.deepEqual(await runPolicies(ev.resources, { "gpu-memory-budget": { sku: "thor" } }), []);
    const found = await runPolicies(ev.resources, { "gpu-memory-budget": { sku: "p40" } });
    assert.deepEqual(
      found.map((f) => f.policy),
      ["gpu-memory-budget"],
    );
    assert.match(found[0].message, /4 × 24 GiB per replica = 96 GiB over-subscribes NVIDIA Tesla P40/);
  });
});
