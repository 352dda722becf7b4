/** Multi-node and air-gapped clusters under mocks: who joins whom, HA, and what gets copied to the node. */
import * as assert from "node:assert/strict";

import { run } from "../../program";
import { rewriteKubeconfig, rolloutWaves, serverUrlOf } from "../../components/k3sCluster";
import { NodeConfig } from "../../config/stack";
import { existingFiles } from "./airgapFiles";
import { evaluateStack, MOCK_KUBECONFIG } from "./support";
import { HOST_KEY } from "../badConfigs";

const nodes = [
  { name: "s1", host: "192.0.2.10", role: "server", hostKey: HOST_KEY },
  { name: "s2", host: "192.0.2.11", role: "server", hostKey: HOST_KEY },
  { name: "s3", host: "192.0.2.12", role: "server", hostKey: HOST_KEY },
  { name: "a1", host: "192.0.2.20", role: "agent", user: "ubuntu", port: 2222, hostKey: HOST_KEY },
];

describe("K3s cluster", () => {
  it("initialises HA on the first server and joins the others to it", async () => {
    const ev = await evaluateStack("rtx4000", run, { nodes, quota: undefined });
    const k3s = (n: string) => String(ev.byName(`${n}-k3s`).inputs.create);
    assert.match(k3s("s1"), /CLUSTER_INIT='true'/);
    assert.match(k3s("s1"), /SERVER_URL=''/);
    for (const n of ["s2", "s3", "a1"]) {
      assert.match(k3s(n), /SERVER_URL='https:\/\/192\.0\.2\.10:6443'/, n);
      assert.match(k3s(n), /CLUSTER_INIT='false'/, n);
    }
    assert.match(k3s("a1"), /ROLE='agent'/);
    assert.match(k3s("a1"), /^sudo -n bash -c/, "non-root users go through sudo");
    assert.match(String(ev.byName("a1-k3s").inputs.delete), /ROLE='agent'/);
    assert.deepEqual(ev.result.gpuSlicesPerNode, { s1: 4, s2: 4, s3: 4, a1: 4 });
  });

  it("walks the fleet in waves: servers one by one, a canary agent, then batches", () => {
    const mk = (name: string, role: "server" | "agent"): NodeConfig => ({
      name,
      host: name,
      port: 22,
      user: "root",
      role,
      gpus: 1,
    });
    const fleet = [
      mk("s1", "server"),
      mk("s2", "server"),
      mk("s3", "server"),
      ...[1, 2, 3, 4, 5].map((i) => mk(`a${i}`, "agent")),
    ];
    assert.deepEqual(rolloutWaves(fleet, 2), [["s1"], ["s2"], ["s3"], ["a1"], ["a2", "a3"], ["a4", "a5"]]);
    assert.deepEqual(rolloutWaves(fleet, 0), [["s1"], ["s2"], ["s3"], ["a1"], ["a2", "a3", "a4", "a5"]]);
    assert.deepEqual(rolloutWaves([mk("s1", "server")], 0), [["s1"]]);
  });

  it("drains a node from the first server before uninstalling it, and exports the waves", async () => {
    const ev = await evaluateStack("rtx4000", run, { nodes, quota: undefined, rollout: { batchSize: 1 } });
    const drains = ev.ofType("command:remote:Command").filter((r) => r.name.startsWith("edge-drain-"));
    assert.deepEqual(drains.map((d) => d.name).sort(), ["edge-drain-a1", "edge-drain-s2", "edge-drain-s3"]);
    for (const d of drains) {
      assert.equal(d.inputs.create, undefined, "nothing runs while the node stays");
      assert.match(String(d.inputs.delete), /forge-edge drain-node\.sh/);
      assert.equal((d.inputs.connection as { value: { host: string } }).value.host, "192.0.2.10");
    }
    assert.deepEqual(ev.result.rolloutWaves, [["s1"], ["s2"], ["s3"], ["a1"]]);
  });

  it("labels every node for the device plugin and our scheduling", async () => {
    const ev = await evaluateStack("p40", run);
    assert.match(
      String(ev.byName("p40-01-k3s").inputs.create),
      /NODE_LABELS='nvidia\.com\/gpu\.present=true,forge-edge\.io\/sku=p40,forge-edge\.io\/gpu-count=1,forge-edge\.io\/device-discovery=nvml'/,
    );
  });

  it("pins the SSH host key when one is configured and bounds dialing", async () => {
    const hostKey = HOST_KEY;
    const ev = await evaluateStack("p40", run, {
      nodes: [{ name: "p", host: "192.0.2.30", role: "server", hostKey }],
    });
    const conn = (ev.byName("p-k3s").inputs.connection as { value: Record<string, unknown> }).value;
    assert.equal(conn.hostKey, hostKey);
    assert.equal(conn.dialErrorLimit, 4);
    assert.equal(conn.perDialTimeout, 15);
  });

  it("copies air-gap artifacts to the node before installing K3s", async () => {
    const airgap = existingFiles({
      k3sBinary: "k3s",
      installScript: "install.sh",
      imagesTarball: "images.tar.zst",
    });
    const ev = await evaluateStack("thor", run, { airgap });
    const copies = ev
      .ofType("command:remote:CopyToRemote")
      .map((r) => r.inputs.remotePath)
      .sort();
    assert.deepEqual(copies, [
      "/var/lib/forge-edge/airgap/images/k3s-airgap-images-arm64.tar.zst",
      "/var/lib/forge-edge/airgap/install.sh",
      "/var/lib/forge-edge/airgap/k3s",
    ]);
    assert.match(String(ev.byName("thor-01-k3s").inputs.create), /AIRGAP='true'/);
  });

  it("rewrites the kubeconfig to the server's address", () => {
    assert.match(rewriteKubeconfig(MOCK_KUBECONFIG, "192.0.2.10"), /server: https:\/\/192\.0\.2\.10:6443/);
    assert.match(rewriteKubeconfig(MOCK_KUBECONFIG, "2001:db8::1"), /server: https:\/\/\[2001:db8::1\]:6443/);
    assert.throws(() => rewriteKubeconfig("apiVersion: v1", "192.0.2.10"), /no https server entry/);
    assert.equal(
      serverUrlOf({ name: "x", host: "edge.example", port: 22, user: "root", role: "server", gpus: 1 }),
      "https://edge.example:6443",
    );
  });
});
