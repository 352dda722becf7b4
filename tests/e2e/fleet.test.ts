/**
 * Fleets: a 1-server + 2-agent stack walked in waves, a node added and one removed without touching the others,
 * a 3-server HA cluster, and the policy pack gating a preview — all through the real engine.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

import { EngineStack, PROJECT } from "../../harness/engine";
import { useSite } from "../../harness/fixture";
import { nodeEntry, Site, SiteNode } from "../../harness/site";

const POLICY_PACK = path.resolve(__dirname, "../../policy/analyzer/pulumi-analyzer-policy");
export const MEASURED: Record<string, string> = {};

async function nodeNames(site: Site): Promise<string[]> {
  const list = (await site.kube.get("/api/v1/nodes")) as { items: { metadata: { name: string } }[] };
  return list.items.map((n) => n.metadata.name).sort();
}

describe("e2e: a fleet of one server and agents, walked in waves", function () {
  this.timeout(25 * 60_000);
  const nodes: SiteNode[] = [
    { name: "edge-s1", role: "server" },
    { name: "edge-a1", role: "agent" },
    { name: "edge-a2", role: "agent" },
  ];
  let site: Site;
  let es: EngineStack;
  let dir: string;
  const setNodes = (list: SiteNode[]) =>
    es.stack.setConfig(`${PROJECT}:nodes`, {
      value: JSON.stringify(list.map((n) => nodeEntry(n, site.hosts.find((h) => h.name === n.name)!))),
    });
  const callCounts = () => Object.fromEntries(site.hosts.map((h) => [h.name, h.calls().length]));

  useSite(this, {
    name: "fleet",
    sku: "rtx4000",
    nodes,
    ipBase: 100,
    spareIps: 2,
    ready: async (f) => {
      ({ site, es, dir } = f);
      await es.stack.removeConfig(`${PROJECT}:quota`).catch(() => undefined);
      await es.stack.setConfig(`${PROJECT}:rollout`, { value: JSON.stringify({ batchSize: 1 }) });
      // Two inference replicas: removing a node must drain it through the PodDisruptionBudget (maxUnavailable 1),
      // whichever node the scheduler put the pods on. With one replica the drain evicts it (an outage), as documented.
      const inference = JSON.parse(site.config.inference.value) as Record<string, unknown>;
      await es.stack.setConfig(`${PROJECT}:inference`, {
        value: JSON.stringify({ ...inference, replicas: 2, maxReplicas: 2 }),
      });
    },
  });

  it("the policy pack passes the plan, and fails it when the NodePort is not an allowed one", async () => {
    const ok = await es.stack.preview({ policyPacks: [POLICY_PACK] });
    assert.match(ok.stdout, /forge-edge/);
    const cfg = path.join(dir, "policy-config.json");
    fs.writeFileSync(cfg, JSON.stringify({ "service-node-port-range": { allowedNodePorts: [31000] } }));
    await assert.rejects(
      es.stack.preview({ policyPacks: [POLICY_PACK], policyPackConfigs: [cfg] }),
      /service-node-port-range[\s\S]*30080/,
    );
  });

  it("a failing canary stops the rollout before the next wave, and the server keeps serving", async () => {
    const canary = site.hosts[1];
    await canary.stop();
    await assert.rejects(es.stack.up(), /edge-a1/);
    assert.deepEqual(site.hosts[2].calls(), [], "the next wave started despite the failed canary");
    assert.deepEqual(await nodeNames(site), ["edge-s1"]);
    await canary.restart();
  });

  it("a rerun bootstraps the rest: the server, a canary agent, then the others, and exports the waves", async () => {
    const t = Date.now();
    const res = await es.stack.up();
    MEASURED["up-1+2"] = `${((Date.now() - t) / 1000).toFixed(1)} s for 1 server + 2 agents`;
    assert.deepEqual(res.outputs.rolloutWaves.value, [["edge-s1"], ["edge-a1"], ["edge-a2"]]);
    assert.deepEqual(await nodeNames(site), ["edge-a1", "edge-a2", "edge-s1"]);
    for (const h of site.hosts.slice(1)) {
      assert.match(
        h.calls().join("\n"),
        /install\.sh .*INSTALL_K3S_EXEC=agent .*K3S_URL=https:\/\/127\.0\.1\.100:6443/,
      );
    }
  });

  it("adding a node bootstraps only that node", async () => {
    const added: SiteNode = { name: "edge-a3", role: "agent" };
    await site.addHost(added);
    const before = callCounts();
    await setNodes([...nodes, added]);
    const res = await es.stack.up();
    assert.equal(res.summary.result, "succeeded");
    for (const h of site.hosts.slice(0, 3))
      assert.equal(h.calls().length, before[h.name], `${h.name} ran a command`);
    assert.match(site.hosts[3].calls().join("\n"), /INSTALL_K3S_EXEC=agent/);
    assert.ok((await nodeNames(site)).includes("edge-a3"));
  });

  it("removing a node drains it, deletes its Node object, then uninstalls it; no other node re-runs anything", async () => {
    const before = callCounts();
    await setNodes([nodes[0], nodes[2], { name: "edge-a3", role: "agent" }]);
    const res = await es.stack.up();
    assert.equal(res.summary.result, "succeeded");
    const serverCalls = site.hosts[0].calls().slice(before["edge-s1"]).join("\n");
    assert.match(serverCalls, /kubectl drain edge-a1/);
    assert.match(serverCalls, /kubectl .*delete node edge-a1/);
    assert.match(site.hosts[1].calls().slice(before["edge-a1"]).join("\n"), /k3s-agent-uninstall\.sh/);
    for (const name of ["edge-a2", "edge-a3"]) {
      assert.equal(
        site.hosts.find((h) => h.name === name)!.calls().length,
        before[name],
        `${name} ran a command`,
      );
    }
    assert.ok(!(await nodeNames(site)).includes("edge-a1"));
    await es.stack.preview({ expectNoChanges: true });
  });

  it("a K3s version change upgrades the nodes one at a time, servers first", async () => {
    await es.stack.setConfig(`${PROJECT}:k3sVersion`, { value: "v1.36.5+k3s1" });
    const events: string[] = [];
    const res = await es.stack.up({
      onEvent: (e) => {
        const pre = e.resourcePreEvent?.metadata;
        const done = e.resOutputsEvent?.metadata;
        if (pre?.op === "update" && pre.urn.endsWith("-k3s"))
          events.push(`start ${pre.urn.split("::").pop()}`);
        if (done?.op === "update" && done.urn.endsWith("-k3s"))
          events.push(`done ${done.urn.split("::").pop()}`);
      },
    });
    assert.equal(res.summary.result, "succeeded");
    assert.deepEqual(events, [
      "start edge-s1-k3s",
      "done edge-s1-k3s",
      "start edge-a2-k3s",
      "done edge-a2-k3s",
      "start edge-a3-k3s",
      "done edge-a3-k3s",
    ]);
    for (const h of site.hosts.filter((x) => x.name !== "edge-a1")) {
      assert.match(h.calls().join("\n"), /INSTALL_K3S_VERSION=v1\.36\.5\+k3s1/, h.name);
    }
    MEASURED["upgrade"] =
      `one node at a time, servers first: ${events.filter((e) => e.startsWith("done")).length} nodes`;
  });

  it("destroys the fleet", async () => {
    const started: Record<string, number> = {};
    const took: [string, number][] = [];
    const res = await es.stack.destroy({
      onEvent: (e) => {
        const pre = e.resourcePreEvent?.metadata;
        const done = e.resOutputsEvent?.metadata;
        if (pre) started[pre.urn] = Date.now();
        if (done && started[done.urn])
          took.push([done.urn.split("::").pop()!, (Date.now() - started[done.urn]) / 1000]);
      },
    });
    took.sort((a, b) => b[1] - a[1]);
    MEASURED["destroy-slowest"] = took
      .slice(0, 4)
      .map(([n, t]) => `${n} ${t.toFixed(1)} s`)
      .join(", ");
    assert.equal(res.summary.result, "succeeded");
    assert.deepEqual(await nodeNames(site), []);
  });
});

describe("e2e: a 3-server HA cluster (embedded etcd)", function () {
  this.timeout(20 * 60_000);
  const nodes: SiteNode[] = [
    { name: "ha-s1", role: "server" },
    { name: "ha-s2", role: "server" },
    { name: "ha-s3", role: "server" },
    { name: "ha-a1", role: "agent" },
  ];
  let site: Site;
  let es: EngineStack;

  useSite(this, {
    name: "ha",
    sku: "thor",
    nodes,
    ipBase: 110,
    ready: async (f) => {
      ({ site, es } = f);
      await es.stack.removeConfig(`${PROJECT}:quota`).catch(() => undefined);
    },
    destroy: true,
  });

  it("initialises etcd on the first server and joins the other servers one at a time", async () => {
    const t = Date.now();
    const res = await es.stack.up();
    MEASURED["up-ha"] = `${((Date.now() - t) / 1000).toFixed(1)} s for 3 servers + 1 agent`;
    assert.deepEqual(res.outputs.rolloutWaves.value, [["ha-s1"], ["ha-s2"], ["ha-s3"], ["ha-a1"]]);
    const config = (i: number) =>
      fs.readFileSync(path.join(site.hosts[i].rootDirs["/etc/rancher"], "k3s", "config.yaml"), "utf8");
    assert.match(config(0), /^cluster-init: true$/m);
    for (const i of [1, 2]) {
      assert.match(config(i), /^server: "https:\/\/127\.0\.1\.110:6443"$/m);
      assert.doesNotMatch(config(i), /cluster-init/);
    }
    assert.deepEqual(await nodeNames(site), ["ha-a1", "ha-s1", "ha-s2", "ha-s3"]);
    assert.deepEqual(res.outputs.gpuSlicesPerNode.value, { "ha-s1": 4, "ha-s2": 4, "ha-s3": 4, "ha-a1": 4 });
  });
});

after(() => {
  console.log("\n  fleet measurements:");
  for (const [k, v] of Object.entries(MEASURED)) console.log(`    ${k}: ${v}`);
});
