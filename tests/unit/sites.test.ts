/**
 * A stack as a fleet of sites (issue 10): the top-level `nodes` form plans exactly the URNs it planned before sites
 * existed, and a `sites` stack gives every site its own cluster, provider identity, overrides and names.
 */
import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";

import { run } from "../../program";
import { siteWaves } from "../../components/site";
import { stackNodes } from "../../tools/pinHostKeys";
import { preflightParams } from "../../tools/preflight";
import { ConfigError, parseStackConfig } from "../../config/stack";
import { HOST_KEY } from "../badConfigs";
import { LEGACY_CASES } from "./fixtures/legacyCases";
import { evaluateStack, Evaluation, isSecretValue, Recorded, stackSource, unwrap, valueOf } from "./support";

type Outputs = ReturnType<typeof run>;

/**
 * Recorded from the program as it was before sites existed (commit d2eb7ab plus the tree's uncommitted dependsOn
 * changes, which touch no name), with the engine's URN scheme (tests/unit/support.ts).
 */
const LEGACY_URNS = JSON.parse(
  readFileSync(path.join(__dirname, "fixtures/legacyUrns.json"), "utf8"),
) as Record<string, string[]>;

/**
 * URNs of resources added after the recording (online installs' k3s-fetch and image-prepull steps, the air gap's
 * airgap-import step, issue 12.3).
 */
const ADDED_SINCE = /\$command:remote:Command::[^:]+-(k3s-fetch|image-prepull|airgap-import)$/;

const node = (name: string, host: string, role = "server", extra: Record<string, unknown> = {}) => ({
  name,
  host,
  role,
  hostKey: HOST_KEY,
  ...extra,
});

/** Three plants: a one-box site, one that overrides the network and storage, and a site with an agent. */
const FLEET = [
  { name: "plant-a", nodes: [node("edge-01", "192.0.2.10")] },
  {
    name: "plant-b",
    nodes: [node("edge-01", "192.0.2.20")],
    nodePort: 30180,
    allowedCidrs: ["198.51.100.0/24"],
    storage: { size: "150Gi" },
  },
  { name: "plant-c", nodes: [node("edge-01", "192.0.2.30"), node("edge-02", "192.0.2.31", "agent")] },
];
const fleetOverrides = { nodes: undefined, sites: FLEET };

const meta = (r: Recorded) => r.inputs.metadata as { name: string; namespace?: string };
const parentTypes = (urn: string) => urn.split("::")[2].split("$");

describe("sites: a top-level `nodes` stack keeps its URNs", () => {
  it("the recorded cases cover every committed stack file", () => {
    for (const stack of ["thor", "rtx4000", "p40"]) assert.ok(LEGACY_URNS[stack]?.length > 0, stack);
    assert.deepEqual(
      LEGACY_CASES.map((c) => c.name),
      Object.keys(LEGACY_URNS),
    );
  });

  for (const c of LEGACY_CASES) {
    it(`${c.name}: plans exactly the URNs recorded before sites existed, no Site component and no alias needed`, async () => {
      const ev = await evaluateStack(c.stack, run, c.overrides);
      const urns = ev.urns().sort();
      // Steps added since the recording are new resources, not renames: issue 12.3's K3s download step.
      assert.deepEqual(
        urns.filter((u) => !ADDED_SINCE.test(u)),
        LEGACY_URNS[c.name],
      );
      assert.ok(!urns.some((u) => u.includes("forge:site:Site")));
      // The provider identity is part of every Kubernetes object's state: it must not move either.
      const provider = ev.ofType("pulumi:providers:kubernetes");
      assert.equal(provider.length, 1);
      const first =
        (c.overrides.nodes as { name: string }[] | undefined)?.[0].name ?? ev.result.nodes![0].name;
      assert.equal(provider[0].inputs.clusterIdentifier, `forge-edge/${c.stack}/${first}`);
      assert.equal(ev.result.sites, undefined, "a one-site stack keeps its outputs as they were");
    });
  }
});

describe("sites: a 3-site fleet under mocks", () => {
  let ev: Evaluation<Outputs>;
  before(async () => {
    ev = await evaluateStack("p40", run, fleetOverrides);
  });

  it("parses as three sites, each with the stack's values where it sets none", () => {
    const cfg = parseStackConfig("p40", stackSource("p40", fleetOverrides));
    assert.equal(cfg.layout, "sites");
    assert.deepEqual(
      cfg.sites.map((s) => [s.name, s.nodePort, s.allowedCidrs, s.storage.size, s.storage.storageClass]),
      [
        ["plant-a", 30080, ["192.0.2.0/24"], "100Gi", "local-path"],
        ["plant-b", 30180, ["198.51.100.0/24"], "150Gi", "local-path"],
        ["plant-c", 30080, ["192.0.2.0/24"], "100Gi", "local-path"],
      ],
    );
    assert.equal(cfg.nodes.length, 4, "every node of the stack, site after site");
  });

  it("declares one Site component per site, everything of a site under it and named after it", () => {
    const urns = ev.urns();
    const siteUrns = urns.filter((u) => u.split("::")[2] === "forge:site:Site");
    assert.deepEqual(siteUrns.map((u) => u.split("::")[3]).sort(), ["plant-a", "plant-b", "plant-c"]);
    for (const u of urns.filter((x) => !siteUrns.includes(x))) {
      assert.equal(parentTypes(u)[0], "forge:site:Site", `${u} is not under a site`);
      assert.match(u.split("::")[3], /^plant-[abc]-/, `${u} is not named after its site`);
    }
    assert.equal(new Set(urns).size, urns.length, "URNs are unique although node names repeat across sites");
    // Per site: the same resources as a one-site stack of the same shape.
    const perSite = (site: string) => urns.filter((u) => u.split("::")[3].startsWith(`${site}-`)).length;
    assert.equal(perSite("plant-a"), perSite("plant-b"));
    assert.ok(
      perSite("plant-c") > perSite("plant-a"),
      "plant-c has an agent (its node steps and drain step)",
    );
    assert.ok(
      urns.includes(
        "urn:pulumi:p40::forge-edge::forge:site:Site$forge:cluster:K3sCluster$forge:node:EdgeNode$command:remote:Command::plant-c-edge-02-k3s",
      ),
    );
  });

  it("gives every site its own cluster token, kubeconfig read and provider with a stable identity", () => {
    const providers = ev.ofType("pulumi:providers:kubernetes");
    assert.deepEqual(providers.map((p) => p.name).sort(), [
      "plant-a-edge-k8s",
      "plant-b-edge-k8s",
      "plant-c-edge-k8s",
    ]);
    assert.deepEqual(providers.map((p) => p.inputs.clusterIdentifier).sort(), [
      "forge-edge/p40/plant-a/edge-01",
      "forge-edge/p40/plant-b/edge-01",
      "forge-edge/p40/plant-c/edge-01",
    ]);
    for (const p of providers) assert.ok(isSecretValue(p.inputs.kubeconfig), `${p.name}: kubeconfig secret`);
    assert.equal(ev.ofType("random:index/randomPassword:RandomPassword").length, 3);
    const reads = ev.ofType("command:remote:Command").filter((r) => r.name.endsWith("-kubeconfig"));
    assert.deepEqual(reads.map((r) => (unwrap(r.inputs.connection) as { host: string }).host).sort(), [
      "192.0.2.10",
      "192.0.2.20",
      "192.0.2.30",
    ]);
  });

  it("joins each site's agents to that site's own server", () => {
    const agent = String(ev.byName("plant-c-edge-02-k3s").inputs.create);
    assert.match(agent, /SERVER_URL='https:\/\/192\.0\.2\.30:6443'/);
    assert.match(String(ev.byName("plant-a-edge-01-k3s").inputs.create), /SERVER_URL=''/);
    // Node names are the nodes' own: the Kubernetes node of every site's first box is edge-01.
    assert.match(String(ev.byName("plant-b-edge-01-k3s").inputs.create), /NODE_NAME='edge-01'/);
  });

  it("applies a site's overrides to that site only: NodePort, client networks, model volume", () => {
    const svc = (site: string) =>
      ev.byName(`${site}-inference-service`).inputs.spec as { ports: { nodePort: number }[] };
    assert.deepEqual(
      ["plant-a", "plant-b", "plant-c"].map((s) => svc(s).ports[0].nodePort),
      [30080, 30180, 30080],
    );
    const cidrs = (site: string) =>
      JSON.stringify(ev.byName(`${site}-inference-netpol-inference-server`).inputs.spec);
    assert.match(cidrs("plant-b"), /198\.51\.100\.0\/24/);
    assert.doesNotMatch(cidrs("plant-b"), /192\.0\.2\.0\/24/);
    assert.match(cidrs("plant-a"), /192\.0\.2\.0\/24/);
    const volume = (site: string) => JSON.stringify(ev.byName(`${site}-inference-deployment`).inputs.spec);
    assert.match(volume("plant-b"), /"storage":"150Gi"/);
    assert.match(volume("plant-a"), /"storage":"100Gi"/);
  });

  it("sends every Kubernetes object of a site to that site's provider, under the same contract names", () => {
    const objects = ev.resources.filter((r) => r.type.startsWith("kubernetes:"));
    assert.ok(objects.length > 0);
    for (const o of objects) {
      const site = /^plant-[abc]/.exec(o.name)![0];
      assert.match(o.provider ?? "", new RegExp(`::${site}-edge-k8s::`), `${o.name} goes to ${o.provider}`);
    }
    const deployments = ev.ofType("kubernetes:apps/v1:Deployment");
    assert.equal(deployments.length, 3);
    assert.ok(deployments.every((d) => meta(d).name === "inference-server"));
  });

  it("exports every site's endpoint, health URL, nodes, slices and secret kubeconfig; no single-site outputs", async () => {
    const sites = ev.result.sites!;
    assert.deepEqual(Object.keys(sites), ["plant-a", "plant-b", "plant-c"]);
    assert.equal(sites["plant-b"].endpoint, "http://192.0.2.20:30180");
    assert.equal(sites["plant-b"].healthUrl, "http://192.0.2.20:30180/health");
    assert.deepEqual(
      sites["plant-c"].nodes.map((n) => n.name),
      ["edge-01", "edge-02"],
    );
    assert.deepEqual(sites["plant-c"].gpuSlicesPerNode, { "edge-01": 2, "edge-02": 2 });
    assert.deepEqual(sites["plant-c"].rolloutWaves, [["edge-01"], ["edge-02"]]);
    assert.equal(await pulumi.isSecret(sites["plant-a"].kubeconfig), true);
    assert.match(await valueOf(sites["plant-c"].kubeconfig), /server: https:\/\/192\.0\.2\.30:6443/);
    assert.equal(ev.result.endpoint, undefined);
    assert.equal(ev.result.kubeconfig, undefined);
  });

  it("a one-site fleet keeps the top-level outputs as well", async () => {
    const one = await evaluateStack("p40", run, { nodes: undefined, sites: [FLEET[1]] });
    assert.equal(one.result.endpoint, "http://192.0.2.20:30180");
    assert.deepEqual(Object.keys(one.result.sites!), ["plant-b"]);
  });
});

describe("sites: validation spans the fleet", () => {
  const problems = (sites: unknown[], extra: Record<string, unknown> = {}): string[] => {
    try {
      parseStackConfig("p40", stackSource("p40", { nodes: undefined, sites, ...extra }));
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return [...e.problems];
    }
    return [];
  };

  it("accepts the 3-site fleet", () => {
    assert.deepEqual(problems(FLEET), []);
  });

  it("checks every site against its own capacity, naming the site", () => {
    // 2 slices per one-GPU box: maxReplicas 2 fits plant-a; plant-c drained of a node still holds a replica.
    const found = problems(FLEET, {
      inference: { ...JSON.parse(stackSource("p40").get("inference")!), replicas: 2, maxReplicas: 3 },
      quota: { gpu: 4 },
    });
    assert.ok(
      found.includes(
        "sites[0] (plant-a): inference.maxReplicas = 3 is invalid: the nodes advertise 2 GPU slice(s) (1 GPU(s) × timeSlicingReplicas 2); at most 2 inference pods fit",
      ),
      found.join("\n"),
    );
    assert.ok(
      !found.some((p) => p.startsWith("sites[2] (plant-c): inference.maxReplicas")),
      found.join("\n"),
    );
  });

  it("reports a problem every site has once, as a problem of the stack's own value", () => {
    const found = problems(FLEET, {
      inference: { ...JSON.parse(stackSource("p40").get("inference")!), cudaMajor: 13 },
    });
    assert.equal(found.filter((p) => p.includes("inference.cudaMajor = 13")).length, 1);
    assert.match(found.find((p) => p.includes("cudaMajor"))!, /^inference\.cudaMajor = 13 is invalid/);
  });
});

describe("sites: the node tools walk every site", () => {
  it("pin-host-keys names each node by the path `pulumi config set --path` takes", () => {
    const entries = { "forge-edge:sites": { objectValue: FLEET, secret: false } };
    assert.deepEqual(
      stackNodes(entries).map((e) => `${e.key} ${e.node.name}`),
      [
        "sites[0].nodes[0] edge-01",
        "sites[1].nodes[0] edge-01",
        "sites[2].nodes[0] edge-01",
        "sites[2].nodes[1] edge-02",
      ],
    );
    const legacy = {
      "forge-edge:nodes": { value: JSON.stringify([node("n1", "192.0.2.10")]), secret: false },
    };
    assert.deepEqual(
      stackNodes(legacy).map((e) => e.key),
      ["nodes[0]"],
    );
  });

  it("preflight checks a node against its own site's NodePort and model volume", () => {
    const cfg = parseStackConfig("p40", stackSource("p40", fleetOverrides));
    const [a, b] = cfg.sites;
    assert.match(String(preflightParams(cfg, b.nodes[0], b).PORTS), /\b30180$/);
    assert.match(String(preflightParams(cfg, a.nodes[0], a).PORTS), /\b30080$/);
    const free = (site: typeof a) => Number(preflightParams(cfg, site.nodes[0], site).MIN_FREE_GIB);
    assert.equal(free(b) - free(a), 50, "plant-b's model volumes are 150Gi instead of 100Gi");
  });
});

describe("sites: waves", () => {
  const five = ["a", "b", "c", "d", "e"];

  it("plans a canary wave, then batches by count (0: all the rest) or by share of the fleet, rounded up", () => {
    assert.deepEqual(siteWaves(five, 1, { count: 0 }), [["a"], ["b", "c", "d", "e"]]);
    assert.deepEqual(siteWaves(five, 1, { count: 2 }), [["a"], ["b", "c"], ["d", "e"]]);
    assert.deepEqual(siteWaves(five, 2, { percent: 25 }), [["a", "b"], ["c", "d"], ["e"]]);
    assert.deepEqual(siteWaves(five, 0, { count: 1 }), [["a"], ["b"], ["c"], ["d"], ["e"]]);
    assert.deepEqual(siteWaves(five, 9, { count: 1 }), [five]);
    assert.deepEqual(siteWaves(["a"], 1, { percent: 10 }), [["a"]]);
  });

  it("parses rollout.canarySites and rollout.siteBatchSize (a count or a percentage)", () => {
    const rollout = (r: Record<string, unknown>) =>
      parseStackConfig("p40", stackSource("p40", { ...fleetOverrides, rollout: r })).rollout;
    assert.deepEqual(rollout({}).siteBatchSize, { count: 0 });
    assert.equal(rollout({}).canarySites, 1);
    assert.deepEqual(rollout({ siteBatchSize: "25%" }).siteBatchSize, { percent: 25 });
    assert.deepEqual(rollout({ siteBatchSize: 3, canarySites: 2 }), {
      batchSize: 0,
      drainTimeoutSeconds: 300,
      canarySites: 2,
      siteBatchSize: { count: 3 },
    });
  });

  it("starts a wave's sites only after every site of the previous wave is healthy: nodes bootstrapped, Deployment available", async () => {
    const ev = await evaluateStack("p40", run, { ...fleetOverrides, rollout: { siteBatchSize: 1 } });
    assert.deepEqual(ev.result.siteWaves, [["plant-a"], ["plant-b"], ["plant-c"]]);
    const gate = (site: string) => ev.dependencies(`${site}-edge-01-ssh-probe`);
    assert.deepEqual(gate("plant-a"), [], "the canary site waits for nothing");
    assert.deepEqual(gate("plant-b"), ["plant-a-health"]);
    assert.deepEqual(gate("plant-c"), ["plant-b-health"], "only the previous wave gates a site");
    // A site's health: its nodes' steps and labels, its Deployment's await, then the check on its first server.
    const health = ev.dependencies("plant-c-health");
    for (const d of [
      "plant-c-edge-01-k3s",
      "plant-c-edge-02-k3s",
      "plant-c-edge-labels-edge-02",
      "plant-c-inference-deployment",
    ])
      assert.ok(health.includes(d), `plant-c-health waits for ${d}`);
    const check = ev.byName("plant-c-health");
    assert.match(String(check.inputs.create), /forge-edge site-health\.sh/);
    assert.match(String(check.inputs.create), /DEPLOYMENT='inference-server'/);
    assert.equal((unwrap(check.inputs.connection) as { host: string }).host, "192.0.2.30");
  });

  it("checks a site's health again when one of its node steps changes, not when nothing on its boxes does", async () => {
    const triggers = async (overrides: Record<string, unknown>) => {
      const ev = await evaluateStack("p40", run, { ...fleetOverrides, ...overrides });
      return ev.byName("plant-a-health").inputs.triggers;
    };
    const before = await triggers({});
    assert.equal((before as unknown[]).length, 2, "the runtime and K3s steps of plant-a's one node");
    assert.notDeepEqual(await triggers({ k3sVersion: "v1.36.5+k3s1" }), before);
    assert.deepEqual(
      await triggers({ inference: { ...JSON.parse(stackSource("p40").get("inference")!), replicas: 2 } }),
      before,
    );
  });

  it("sites of one wave do not wait for each other", async () => {
    // Defaults: plant-a is the canary, plant-b and plant-c are the next wave.
    const ev = await evaluateStack("p40", run, fleetOverrides);
    assert.deepEqual(ev.result.siteWaves, [["plant-a"], ["plant-b", "plant-c"]]);
    assert.deepEqual(ev.dependencies("plant-c-edge-01-ssh-probe"), ["plant-a-health"]);
    assert.deepEqual(ev.dependencies("plant-b-edge-01-ssh-probe"), ["plant-a-health"]);
  });
});
