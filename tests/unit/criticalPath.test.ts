/** The critical path of an `up` from the engine's event stream (harness/criticalPath.ts), on a synthetic stream. */
import * as assert from "node:assert/strict";

import {
  analyse,
  criticalPath,
  dependencyMap,
  formatPath,
  formatSteps,
  resourceSteps,
  StateResource,
  TimedEvent,
} from "../../harness/criticalPath";

const U = (type: string, name: string): string => `urn:pulumi:s::forge-edge::${type}::${name}`;
const STACK = U("pulumi:pulumi:Stack", "forge-edge-s");
const CMD_PROV = U("pulumi:providers:command", "default_1_2_1");
const K8S_PROV = U("pulumi:providers:kubernetes", "edge-k8s");
const NODE = U("forge:node:EdgeNode", "n1");
const RUNTIME = U("command:remote:Command", "n1-nvidia-runtime");
const STAGE = U("command:remote:Command", "n1-airgap-stage");
const K3S = U("command:remote:Command", "n1-k3s");
const KUBECONFIG = U("command:remote:Command", "edge-kubeconfig");
const APP = U("forge:inference:InferenceStack", "inference");
const CONFIG = U("kubernetes:core/v1:ConfigMap", "inference-config");
const DEPLOY = U("kubernetes:apps/v1:Deployment", "inference-deployment");
const PDB = U("kubernetes:policy/v1:PodDisruptionBudget", "inference-pdb");

/** The state: a node component with two independent steps and K3s after both; the app component waits for K3s. */
const RESOURCES: StateResource[] = [
  { urn: STACK, type: "pulumi:pulumi:Stack", custom: false },
  { urn: CMD_PROV, type: "pulumi:providers:command", custom: true },
  { urn: NODE, type: "forge:node:EdgeNode", custom: false, parent: STACK },
  { urn: RUNTIME, type: "command:remote:Command", custom: true, parent: NODE, provider: `${CMD_PROV}::id1` },
  { urn: STAGE, type: "command:remote:Command", custom: true, parent: NODE, provider: `${CMD_PROV}::id1` },
  {
    urn: K3S,
    type: "command:remote:Command",
    custom: true,
    parent: NODE,
    provider: `${CMD_PROV}::id1`,
    dependencies: [RUNTIME, STAGE],
  },
  {
    urn: KUBECONFIG,
    type: "command:remote:Command",
    custom: true,
    provider: `${CMD_PROV}::id1`,
    propertyDependencies: { triggers: [K3S] },
  },
  { urn: K8S_PROV, type: "pulumi:providers:kubernetes", custom: true, dependencies: [KUBECONFIG] },
  // The component's dependsOn holds back its children: they record none of it themselves.
  { urn: APP, type: "forge:inference:InferenceStack", custom: false, parent: STACK, dependencies: [K3S] },
  {
    urn: CONFIG,
    type: "kubernetes:core/v1:ConfigMap",
    custom: true,
    parent: APP,
    provider: `${K8S_PROV}::id2`,
  },
  {
    urn: PDB,
    type: "kubernetes:policy/v1:PodDisruptionBudget",
    custom: true,
    parent: APP,
    provider: `${K8S_PROV}::id2`,
  },
  {
    urn: DEPLOY,
    type: "kubernetes:apps/v1:Deployment",
    custom: true,
    parent: APP,
    provider: `${K8S_PROV}::id2`,
    dependencies: [CONFIG],
  },
];

const T0 = 1_000_000;
const pre = (t: number, urn: string, type: string): TimedEvent => ({
  t: T0 + t,
  event: { resourcePreEvent: { metadata: { op: "create", urn, type } } },
});
const out = (t: number, urn: string, type: string): TimedEvent => ({
  t: T0 + t,
  event: { resOutputsEvent: { metadata: { op: "create", urn, type } } },
});
const typeOf = (urn: string): string => urn.split("::")[2];
/** [urn, start, end] in ms since the `up` started, arriving in time order as the engine sends them. */
function stream(steps: [string, number, number][]): TimedEvent[] {
  const events = steps.flatMap(([u, a, b]) => [pre(a, u, typeOf(u)), out(b, u, typeOf(u))]);
  // Unrelated events (diagnostics, the summary) are ignored.
  events.push({ t: T0 + 50, event: {} });
  return events.sort((a, b) => a.t - b.t);
}

const STEPS: [string, number, number][] = [
  [STACK, 100, 9800],
  [CMD_PROV, 400, 410],
  [NODE, 300, 4000],
  [RUNTIME, 420, 900],
  [STAGE, 420, 600],
  [K3S, 930, 3000],
  [KUBECONFIG, 3020, 3150],
  [K8S_PROV, 3250, 3350],
  [APP, 3400, 9000],
  [CONFIG, 3500, 3550],
  [PDB, 3500, 3700],
  [DEPLOY, 3600, 9000],
];
const T_END = 10_000;

describe("critical path of an up", () => {
  it("inherits a component's dependsOn into its children, with providers and property dependencies", () => {
    const deps = dependencyMap(RESOURCES);
    assert.deepEqual([...deps.get(DEPLOY)!].sort(), [CONFIG, K3S, K8S_PROV].sort());
    assert.deepEqual([...deps.get(KUBECONFIG)!].sort(), [CMD_PROV, K3S].sort());
    assert.deepEqual([...deps.get(K3S)!].sort(), [CMD_PROV, RUNTIME, STAGE].sort());
  });

  it("times every resource step and names what it waited for; components and the stack do no work", () => {
    const steps = resourceSteps(stream(STEPS), RESOURCES, T0, T0 + T_END);
    assert.deepEqual(
      steps.map((s) => s.name),
      [
        "default_1_2_1",
        "n1-airgap-stage",
        "n1-nvidia-runtime",
        "n1-k3s",
        "edge-kubeconfig",
        "edge-k8s",
        "inference-config",
        "inference-pdb",
        "inference-deployment",
      ],
    );
    const k3s = steps.find((s) => s.urn === K3S)!;
    assert.deepEqual([k3s.start, k3s.end, k3s.duration], [930, 3000, 2070]);
    assert.equal(k3s.waitedFor, RUNTIME, "the later of its two dependencies");
    assert.equal(k3s.gap, 30);
    const deploy = steps.find((s) => s.urn === DEPLOY)!;
    assert.equal(deploy.waitedFor, CONFIG, "its own dependency ended after the component's and the provider");
    const pdb = steps.find((s) => s.urn === PDB)!;
    assert.equal(pdb.waitedFor, K8S_PROV, "the provider ended after the K3s step the component waited for");
    assert.equal(steps.find((s) => s.urn === CMD_PROV)!.waitedFor, undefined);
  });

  it("walks back from the last step to finish through what each waited for", () => {
    const steps = resourceSteps(stream(STEPS), RESOURCES, T0, T0 + T_END);
    assert.deepEqual(
      criticalPath(steps).map((s) => s.name),
      [
        "default_1_2_1",
        "n1-nvidia-runtime",
        "n1-k3s",
        "edge-kubeconfig",
        "edge-k8s",
        "inference-config",
        "inference-deployment",
      ],
    );
  });

  it("splits the wall time into engine start, steps, hand-overs and engine finish, and sets it against the floor", () => {
    const r = analyse({
      events: stream(STEPS),
      resources: RESOURCES,
      t0: T0,
      tEnd: T0 + T_END,
      floor: {
        scriptMs: { [RUNTIME]: 300, [STAGE]: 100, [K3S]: 1900, [KUBECONFIG]: 50 },
        readinessMs: { [DEPLOY]: 1000 },
        apiRttMs: 5,
      },
    });
    assert.equal(r.totalMs, 10_000);
    assert.equal(r.engineStartMs, 400);
    assert.equal(r.engineFinishMs, 1000);
    // Steps on the path: 10 + 480 + 2070 + 130 + 100 + 50 + 5400.
    assert.equal(r.pathStepsMs, 8240);
    // Hand-overs: 10 + 30 + 20 + 100 + 150 + 50.
    assert.equal(r.pathGapsMs, 360);
    assert.equal(r.engineStartMs + r.pathStepsMs + r.pathGapsMs + r.engineFinishMs, r.totalMs);
    // The stage's script is off the path; the provider and two objects cost one round trip each.
    assert.deepEqual(r.floor, { script: 2250, api: 15, readiness: 1000, total: 3265 });
    assert.equal(r.ratio, 10_000 / 3265);
    assert.equal(r.ratioWithoutEngine, 8600 / 3265);

    const table = formatPath(r);
    assert.match(table, /^critical path\s+type\s+start\s+end\s+dur\s+gap\s+script\s+api\s+ready$/m);
    assert.match(
      table,
      /^n1-k3s\s+remote:Command\s+0\.930\s+3\.000\s+2\.070\s+0\.030\s+1\.900\s+0\.000\s+0\.000$/m,
    );
    assert.match(table, /floor 3\.265 s .* ours 10\.000 s = 3\.06x the floor, 2\.63x without/);
    assert.match(
      formatSteps(r),
      /^inference-pdb\s+policy\/v1:PodDisruptionBudget\s+create\s+3\.500\s+3\.700\s+0\.200\s+edge-k8s\s+0\.150$/m,
    );
  });

  it("ends `up` at the CLI's exit; the Automation API's reads after it are reported, not counted", () => {
    const floor = { scriptMs: {}, readinessMs: {}, apiRttMs: 5 };
    const cli = analyse({
      events: stream(STEPS),
      resources: RESOURCES,
      t0: T0,
      tEnd: T0 + T_END,
      tReturned: T0 + T_END + 800,
      floor,
    });
    assert.equal(cli.totalMs, 10_000);
    assert.equal(cli.engineFinishMs, 1000);
    assert.equal(cli.afterCliMs, 800);
    assert.match(
      formatPath(cli),
      /= 10\.000 s to the CLI's exit \(then the Automation API's own reads .*, 0\.800 s, not counted\)/,
    );
    const plain = analyse({ events: stream(STEPS), resources: RESOURCES, t0: T0, tEnd: T0 + T_END, floor });
    assert.equal(plain.afterCliMs, undefined);
  });

  it("ends a step that never finished at the operation's end, failed, and still finds its chain", () => {
    const unfinished = stream(STEPS).filter((e) => e.event.resOutputsEvent?.metadata.urn !== DEPLOY);
    const steps = resourceSteps(unfinished, RESOURCES, T0, T0 + T_END);
    const deploy = steps.find((s) => s.urn === DEPLOY)!;
    assert.equal(deploy.failed, true);
    assert.equal(deploy.end, T_END);
    assert.equal(criticalPath(steps).at(-1)!.urn, DEPLOY);
    assert.deepEqual(criticalPath([]), []);
  });
});
