/**
 * The user's lifecycle, for real: for each SKU stack, the Pulumi engine built from source runs this program
 * against a simulated edge site (real control plane, kwok GPU nodes, real OpenSSH hosts): preview as a pipeline
 * runs it, up, a no-op preview and up, destroy — and no secret shows up in plaintext anywhere.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { SKU_NAMES, SkuName } from "../../config/skus";
import { EngineStack } from "../../harness/engine";
import { useSite } from "../../harness/fixture";
import { readKubeconfig } from "../../harness/kubeClient";
import { Site } from "../../harness/site";
import { checkerPath } from "../../harness/toolchain";

const SKUS = SKU_NAMES;
/** Slices each SKU's stack file asks for (1 GPU per node). */
const SLICES: Record<SkuName, number> = { thor: 4, rtx4000: 4, p40: 2 };
/**
 * The K3s each run installs: the stack files' default (containerd 2, `config-v3.toml.tmpl`) and, on the P40 site,
 * a release that still bundles containerd 1.7 (`config.toml.tmpl`, version-2 schema), so both template
 * generations go through K3s's rendering and containerd's own loader.
 */
const K3S: Partial<Record<SkuName, string>> = { p40: "v1.31.5+k3s1" };

interface RuntimeClass {
  handler: string;
  metadata: { annotations?: Record<string, string>; managedFields?: { manager: string }[] };
}

interface Timing {
  [op: string]: number;
}
export const TIMINGS: Record<string, Timing> = {};

async function timed<T>(sku: string, op: string, f: () => Promise<T>): Promise<T> {
  const t = Date.now();
  try {
    return await f();
  } finally {
    (TIMINGS[sku] ??= {})[op] = (Date.now() - t) / 1000;
  }
}

async function waitFor(what: string, f: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}`);
}

for (const sku of SKUS) {
  describe(`e2e: stack ${sku} on a simulated edge site`, function () {
    this.timeout(20 * 60_000);
    let site: Site;
    let es: EngineStack;
    let pristine: Record<string, string>[];
    const output: string[] = [];
    const secrets: string[] = [];
    const onOutput = (s: string) => output.push(s);
    const hostCalls = () => site.hosts.flatMap((h) => h.calls());

    useSite(this, {
      name: sku,
      stackName: `e2e-${sku}`,
      sku,
      config: (s) => (K3S[sku] ? { ...s.config, k3sVersion: { value: K3S[sku] } } : s.config),
      ready: (f) => {
        ({ site, es } = f);
        // openStack only writes the stack's settings: the hosts are as startSite left them.
        pristine = site.hosts.map((h) => h.snapshot());
        const admin = readKubeconfig(site.controlPlane.kubeconfigPath);
        secrets.push(
          ...site.key.privateKeyPem.split("\n").filter((l) => l.length > 40),
          admin.keyPem.split("\n")[1],
        );
      },
      keepIfEnv: "FORGE_E2E_KEEP",
    });

    it("preview plans every resource and touches no node", async () => {
      const calls = hostCalls().length;
      const res = await timed(sku, "preview", () => es.stack.preview({ onOutput, diff: true }));
      assert.ok((res.changeSummary.create ?? 0) >= 30, `plan: ${JSON.stringify(res.changeSummary)}`);
      for (const name of [
        "inference-server",
        "forge-llm-critical",
        "nvidia-device-plugin-daemonset",
        "inference-config",
      ]) {
        assert.match(res.stdout, new RegExp(name), `${name} missing from the plan`);
      }
      assert.equal(hostCalls().length, calls, "preview ran something on a node");
      site.hosts.forEach((h, i) => assert.deepEqual(h.snapshot(), pristine[i]));
    });

    it("up bootstraps the node over SSH and brings every Kubernetes resource up", async () => {
      const res = await timed(sku, "up", () => es.stack.up({ onOutput }));
      assert.equal(res.summary.result, "succeeded");
      const calls = hostCalls().join("\n");
      assert.match(calls, /install\.sh .*INSTALL_K3S_EXEC=server/);
      assert.match(calls, /nvidia-smi --query-gpu/);

      const node = (await site.kube.get(`/api/v1/nodes/${sku}-01`)) as {
        metadata: { labels: Record<string, string> };
        status: { allocatable: Record<string, string> };
      };
      assert.equal(node.metadata.labels["nvidia.com/gpu.present"], "true");
      assert.equal(node.metadata.labels["forge-edge.io/sku"], sku);
      assert.equal(node.status.allocatable["nvidia.com/gpu"], String(SLICES[sku]));
      assert.deepEqual(res.outputs.gpuSlicesPerNode.value, { [`${sku}-01`]: SLICES[sku] });

      const deploy = (await site.kube.get(
        "/apis/apps/v1/namespaces/forge-cognition/deployments/inference-server",
      )) as {
        spec: { replicas: number };
        status: { readyReplicas?: number };
      };
      assert.equal(deploy.status.readyReplicas, deploy.spec.replicas);
      const ds = (await site.kube.get(
        "/apis/apps/v1/namespaces/nvidia-device-plugin/daemonsets/nvidia-device-plugin-daemonset",
      )) as { status: { numberReady: number } };
      assert.equal(ds.status.numberReady, 1);
      const dcgm = await site.kube.get(
        "/apis/apps/v1/namespaces/nvidia-device-plugin/daemonsets/dcgm-exporter",
      );
      assert.equal(dcgm !== undefined, sku !== "thor", "DCGM exporter only where the SKU has DCGM");
      const svc = (await site.kube.get("/api/v1/namespaces/forge-cognition/services/inference-server")) as {
        spec: { ports: { nodePort: number }[] };
      };
      assert.equal(svc.spec.ports[0].nodePort, 30080);
      assert.equal(res.outputs.kubeconfig.secret, true);

      const token = fs
        .readFileSync(path.join(site.hosts[0].rootDirs["/etc/rancher"], "k3s", "token"), "utf8")
        .trim();
      assert.ok(token.length >= 32);
      secrets.push(token);
      const mode =
        fs.statSync(path.join(site.hosts[0].rootDirs["/etc/rancher"], "k3s", "k3s.yaml")).mode & 0o777;
      assert.equal(mode, 0o600, "the kubeconfig on the node is root-only");
    });

    it("the containerd config K3s rendered on the node loads in containerd with the nvidia runtime", () => {
      const rendered = path.join(
        site.hosts[0].rootDirs["/var/lib/rancher"],
        "k3s/agent/etc/containerd/config.toml",
      );
      // containerd's own loader (and its v2→v3 migration) on what landed, not a regex.
      const out = execFileSync(checkerPath(), ["check-containerd", rendered], { encoding: "utf8" });
      assert.match(out, /nvidia.*BinaryName.*nvidia-container-runtime/s);
      const version = K3S[sku] ?? "v1.36.4+k3s1";
      assert.match(
        fs.readFileSync(rendered, "utf8"),
        version.startsWith("v1.31.5") ? /^version = 2/m : /^version = 3/m,
      );
    });

    it("adopts K3s's own RuntimeClass nvidia instead of creating one", async () => {
      const rc = (await site.kube.get("/apis/node.k8s.io/v1/runtimeclasses/nvidia")) as RuntimeClass;
      assert.equal(rc.handler, "nvidia");
      // K3s's packaged runtimes addon created it (its objectset annotations), before the stack ran.
      assert.equal(rc.metadata.annotations?.["objectset.rio.cattle.io/owner-name"], "runtimes");
      const managers = (rc.metadata.managedFields ?? []).map((f) => f.manager);
      assert.ok(
        managers.some((m) => m.startsWith("pulumi")),
        `managers: ${managers.join(", ")}`,
      );
    });

    it("a label missing from a registered node converges on the next up --refresh", async () => {
      // K3s applies node-label only while it starts, and never removes one: a node registered under an older
      // config, or edited by hand, keeps what it has. The stack's NodePatch owns the labels on every up.
      const nodePath = `/api/v1/nodes/${sku}-01`;
      await site.kube.send(
        "PATCH",
        nodePath,
        { metadata: { labels: { "forge-edge.io/sku": null } } },
        "application/merge-patch+json",
      );
      const before = (await site.kube.get(nodePath)) as { metadata: { labels: Record<string, string> } };
      assert.equal(before.metadata.labels["forge-edge.io/sku"], undefined);
      const calls = hostCalls().length;
      const res = await es.stack.up({ onOutput, refresh: true });
      assert.equal(res.summary.result, "succeeded");
      const after = (await site.kube.get(nodePath)) as { metadata: { labels: Record<string, string> } };
      assert.equal(after.metadata.labels["forge-edge.io/sku"], sku);
      assert.equal(hostCalls().length, calls, "restoring a label ran nothing on the node");
    });

    it("a second preview expects no changes and a second up runs no remote command", async () => {
      await timed(sku, "preview-noop", () => es.stack.preview({ onOutput, expectNoChanges: true }));
      const before = hostCalls().length;
      const res = await timed(sku, "up-noop", () => es.stack.up({ onOutput }));
      const changes = Object.entries(res.summary.resourceChanges ?? {}).filter(([op]) => op !== "same");
      assert.deepEqual(changes, [], "the second up changed something");
      assert.equal(hostCalls().length, before, "the second up ran a command on a node");
    });

    it("keeps every secret out of the state file and the engine output", async () => {
      const state = fs.readFileSync(es.stateFile, "utf8");
      const text = output.join("");
      assert.ok(
        secrets.length >= 3 && text.length > 0,
        "nothing to look for: the secrets or the output were not captured",
      );
      for (const s of secrets) {
        assert.ok(!state.includes(s), "a secret is in the state file in plaintext");
        assert.ok(!text.includes(s), "a secret is in the engine output in plaintext");
      }
      assert.match(state, /"ciphertext"/);
    });

    it("destroy uninstalls every node and leaves no object and no state behind", async () => {
      const res = await timed(sku, "destroy", () => es.stack.destroy({ onOutput }));
      assert.equal(res.summary.result, "succeeded");
      assert.match(hostCalls().join("\n"), /k3s-uninstall\.sh/);
      site.hosts.forEach((h, i) => assert.deepEqual(h.snapshot(), pristine[i], `${h.name} is not as it was`));
      await waitFor(
        "namespace forge-cognition to go",
        async () => (await site.kube.get("/api/v1/namespaces/forge-cognition")) === undefined,
      );
      // K3s's own object stays: the cluster (K3s's datastore) owns it, not the stack.
      const rc = (await site.kube.get("/apis/node.k8s.io/v1/runtimeclasses/nvidia")) as
        | RuntimeClass
        | undefined;
      assert.equal(rc?.handler, "nvidia", "destroy deleted K3s's RuntimeClass nvidia");
      for (const p of [
        "/apis/scheduling.k8s.io/v1/priorityclasses/forge-llm-critical",
        "/api/v1/namespaces/nvidia-device-plugin",
        `/api/v1/nodes/${sku}-01`,
      ]) {
        await waitFor(`${p} to go`, async () => (await site.kube.get(p)) === undefined);
      }
      const exported = await es.stack.exportStack();
      assert.equal((exported.deployment as { resources?: unknown[] }).resources?.length ?? 0, 0);
    });
  });
}

after(() => {
  console.log("\n  e2e wall times (s):");
  for (const [sku, t] of Object.entries(TIMINGS)) console.log(`    ${sku}: ${JSON.stringify(t)}`);
});
