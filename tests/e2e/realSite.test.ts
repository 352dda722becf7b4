/**
 * Issue 11, the core wiring: a single-node simulated site with a REAL node below the API (FORGE_EDGE_NODE=kubelet:
 * kubelet, containerd 2, runc, CNI, kube-proxy started by the K3s double). The real engine runs `pulumi up`; the
 * images travel the program's air-gap path (SFTP copy, K3s's images dir, containerd's import); the stack's
 * `endpoint` answers /health from the fake inference pod through NodePort 30080 and kube-proxy; the GPU pods ran
 * through the nvidia-container-runtime double; `pulumi destroy` leaves the host as before the install and no node
 * process behind. Needs `bash harness/build-toolchain.sh node` and a private network namespace (netns-run.sh).
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";

import { DEVICE_PLUGIN, INFERENCE, NAMESPACE } from "../../components/names";
import { EngineStack } from "../../harness/engine";
import { useSite } from "../../harness/fixture";
import { nodeToolchain } from "../../harness/realNode";
import { parseStackConfig } from "../../config/stack";
import {
  checkKubeletSite,
  nodeKindFromEnv,
  Site,
  stackFileValues,
  stackImageNames,
  startSite,
} from "../../harness/site";
import { nodeProcesses } from "../../harness/sshHost";
import { loadToolchain } from "../../harness/toolchain";

/** GET url: the status code, or undefined when nothing answers within 2 s. */
function httpStatus(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

/** A label selector for labels. */
function selector(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

describe("e2e: a real node on the simulated site (FORGE_EDGE_NODE=kubelet)", function () {
  this.timeout(20 * 60_000);
  let site: Site;
  let es: EngineStack;
  let pristine: Record<string, string>;
  let endpoint = "";
  const timings: Record<string, number> = {};
  const t0 = Date.now();
  const kubectl = (...args: string[]): string =>
    execFileSync(
      loadToolchain(["kubectl"]).bin.kubectl,
      ["--kubeconfig", site.controlPlane.kubeconfigPath, ...args],
      { encoding: "utf8" },
    );

  useSite(this, {
    name: "realsite",
    sku: "thor",
    node: "kubelet",
    keepIfEnv: "FORGE_KEEP",
    ready: (f) => {
      ({ site, es } = f);
      timings.siteStartS = (Date.now() - t0) / 1000;
      pristine = site.hosts[0].snapshot();
    },
    beforeStop: () => {
      timings.e2eS = (Date.now() - t0) / 1000;
      console.log(`      timings: ${JSON.stringify(timings)}`);
    },
  });

  it("pulumi up: the stack's endpoint answers /health with 200 from the inference pod (NodePort 30080, kube-proxy)", async function () {
    const upStart = Date.now();
    // Polls the endpoint from up's start: the time to the first 200 (the endpoint is http://<node host>:<nodePort>).
    const host = site.hosts[0].host;
    let firstOk: number | undefined;
    let polling = true;
    const poller = (async () => {
      while (polling && firstOk === undefined) {
        if ((await httpStatus(`http://${host}:30080/health`)) === 200) firstOk = Date.now();
        else await new Promise((r) => setTimeout(r, 500));
      }
    })();
    try {
      const res = await es.stack.up({ onOutput: () => undefined });
      timings.upS = (Date.now() - upStart) / 1000;
      assert.equal(res.summary.result, "succeeded");
      endpoint = String(res.outputs.endpoint.value);
    } finally {
      polling = false;
      await poller;
    }
    assert.equal(endpoint, `http://${host}:30080`);
    assert.equal(await httpStatus(`${endpoint}/health`), 200, `${endpoint}/health`);
    if (firstOk !== undefined) timings.firstHealth200S = (firstOk - upStart) / 1000;
    // Served by a real kubelet's node, not kwok: no kwok annotation, the versions of the node group.
    const node = JSON.parse(kubectl("get", "node", site.hosts[0].name, "-o", "json")) as {
      metadata: { annotations?: Record<string, string> };
      status: {
        allocatable: Record<string, string>;
        nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string };
      };
    };
    assert.equal(node.metadata.annotations?.["kwok.x-k8s.io/node"], undefined);
    assert.match(node.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\//);
    // nvidia.com/gpu comes from the stack's device-plugin DaemonSet (thor: 1 GPU x 4 time-slicing replicas), not
    // from the host stand-in, which a kubelet site does not start.
    assert.equal(node.status.allocatable["nvidia.com/gpu"], "4");
    assert.deepEqual(
      site.hosts[0].processes().filter((p) => p.endsWith("/gpu-device-plugin")),
      [],
    );
  });

  it("kubectl get pods -n forge-cognition: the inference pod is Running 1/1", function () {
    const rows = kubectl("get", "pods", "-n", NAMESPACE, "--no-headers", "-l", selector(INFERENCE.labels))
      .trim()
      .split("\n");
    assert.ok(rows.length >= 1 && rows[0] !== "", "no inference pod");
    for (const r of rows) assert.match(r, /^\S+\s+1\/1\s+Running\s+/, r);
  });

  it("kubectl logs deployment/inference-server -n forge-cognition: the apiserver reads the server's log from the kubelet", function () {
    // The design's troubleshooting command: apiserver -> kubelet (InternalIP, x509 as user kube-apiserver) -> CRI.
    const log = kubectl("logs", `deployment/${INFERENCE.name}`, "-n", NAMESPACE, "--tail=50");
    assert.match(log, /fake inference server on :\d+/);
  });

  it("the inference and device-plugin containers were created through the nvidia-container-runtime double", function () {
    const record = path.join(site.hosts[0].rootDirs["/var/log/forge-edge"], "nvidia-container-runtime.log");
    const created = fs.existsSync(record) ? fs.readFileSync(record, "utf8") : "";
    const ids = (ns: string, selector: string): string[] => {
      const pods = JSON.parse(kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json")) as {
        items: Array<{ status: { containerStatuses?: Array<{ containerID?: string }> } }>;
      };
      return pods.items.flatMap((p) =>
        (p.status.containerStatuses ?? []).map((c) => (c.containerID ?? "").replace(/^containerd:\/\//, "")),
      );
    };
    const inference = ids(NAMESPACE, selector(INFERENCE.labels));
    const plugin = ids(DEVICE_PLUGIN.namespace, selector(DEVICE_PLUGIN.labels));
    assert.ok(inference.length > 0 && plugin.length > 0, "no inference or device-plugin container");
    for (const id of [...inference, ...plugin]) {
      assert.ok(id !== "", "a container without an id");
      assert.match(
        created,
        new RegExp(` create ${id} `),
        `container ${id} did not go through the nvidia runtime`,
      );
    }
  });

  it("pulumi destroy: the host is as before the install and no node process is left", async function () {
    const t = Date.now();
    const res = await es.stack.destroy({ onOutput: () => undefined });
    timings.destroyS = (Date.now() - t) / 1000;
    assert.equal(res.summary.result, "succeeded");
    assert.deepEqual(site.hosts[0].snapshot(), pristine);
    assert.deepEqual(nodeProcesses(site.hosts[0], nodeToolchain().dir), []);
    const cg = `/sys/fs/cgroup/pids${site.hosts[0].cgroupRoot()}`;
    assert.equal(fs.existsSync(cg), false, `${cg} is still there`);
  });
});

describe("kubelet sites: the switch and its refusals", function () {
  it("FORGE_EDGE_NODE picks kwok (default) or kubelet, nothing else", function () {
    assert.equal(nodeKindFromEnv({}), "kwok");
    assert.equal(nodeKindFromEnv({ FORGE_EDGE_NODE: "kubelet" }), "kubelet");
    assert.throws(() => nodeKindFromEnv({ FORGE_EDGE_NODE: "kubelt" }), /kwok or kubelet, not kubelt/);
  });

  it("refuses multi-node kubelet sites naming the collision, and a run outside a private network namespace", async function () {
    assert.throws(
      () => checkKubeletSite(2, { FORGE_EDGE_NETNS: "1" }),
      /one node: .*cni0, iptables and 127\.0\.0\.1:10010\/10249\/10256.*\(asked for 2\)/,
    );
    assert.throws(() => checkKubeletSite(1, {}), /netns-run\.sh/);
    assert.doesNotThrow(() => checkKubeletSite(1, { FORGE_EDGE_NETNS: "1" }));
    // startSite refuses before it starts anything.
    await assert.rejects(
      startSite({
        sku: "p40",
        dir: "/nonexistent/forge-edge-site",
        node: "kubelet",
        nodes: [
          { name: "a", role: "server" },
          { name: "b", role: "agent" },
        ],
      }),
      /a kubelet site .* has one node/,
    );
  });

  it("names the stack's images as the program runs them: inference, the device-plugin DaemonSet's, DCGM's", function () {
    const values: Record<string, unknown> = {
      ...stackFileValues("p40"),
      inference: { ...(stackFileValues("p40").inference as object), image: "registry.example.com/x/llm:9" },
      devicePluginVersion: "v0.19.1",
      sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n",
    };
    const cfg = parseStackConfig("p40", {
      get: (k) => {
        const v = values[k];
        return v === undefined ? undefined : typeof v === "string" ? v : JSON.stringify(v);
      },
      isSecret: (k) => k === "sshPrivateKey",
    });
    const names = stackImageNames(cfg);
    assert.equal(names.inference, "registry.example.com/x/llm:9");
    assert.equal(names.devicePlugin, "nvcr.io/nvidia/k8s-device-plugin:v0.19.1");
    assert.equal(names.dcgm, cfg.dcgmExporter ? cfg.dcgmExporterImage : undefined);
  });
});
