import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startControlPlane, type ControlPlane } from "../../harness/controlPlane";
import { KubeClient } from "../../harness/kubeClient";
import { canConnect, waitFor } from "../../harness/proc";
import {
  parseSharingConfig,
  pickConfigKey,
  startDevicePluginSim,
  type DevicePluginSim,
} from "../../harness/devicePluginSim";

interface NodeView {
  metadata: { name: string };
  status?: {
    conditions?: { type: string; status: string }[];
    allocatable?: Record<string, string>;
    capacity?: Record<string, string>;
  };
}
interface PodView {
  metadata: { name: string };
  spec: { nodeName?: string };
  status?: { phase?: string };
}

function fakeNode(name: string, extra: Record<string, string> = {}): unknown {
  const res = { cpu: "8", memory: "32Gi", pods: "110", ...extra };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      annotations: { "kwok.x-k8s.io/node": "fake" },
      labels: { "kubernetes.io/hostname": name },
    },
    status: { capacity: res, allocatable: res },
  };
}

const isReady = (n: NodeView | undefined): boolean =>
  n?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

describe("harness/controlPlane + kwok", function () {
  this.timeout(600000);
  let tmp = "";
  let cp: ControlPlane | undefined;
  let kube: KubeClient;
  let sim: DevicePluginSim | undefined;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-cp-"));
    cp = await startControlPlane({ dir: tmp, hostIps: ["127.0.1.9"] });
    kube = KubeClient.fromKubeconfig(cp.kubeconfigPath);
    console.log(`      control plane ready in ${cp.startMs} ms`);
  });
  after(async () => {
    await sim?.stop();
    if (cp) {
      const ms = await cp.stop();
      console.log(`      control plane stopped in ${ms} ms`);
      assert.equal(await cp.stop(), ms, "stop() is idempotent");
      assert.equal(await canConnect("127.0.0.1", cp.apiPort), false, "apiserver still listening");
      const left = spawnSync("pgrep", ["-f", tmp], { encoding: "utf8" }).stdout.trim();
      assert.equal(left, "", "component processes left running");
    }
    if (tmp !== "") fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("serves an admin kubeconfig on 127.0.0.1 with the default ServiceAccount", async () => {
    const c = cp as ControlPlane;
    assert.match(c.server, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(fs.readFileSync(c.kubeconfigPath, "utf8").includes(`server: ${c.server}`));
    assert.match(c.caPem, /BEGIN CERTIFICATE/);
    const cert = execFileSync(
      "openssl",
      ["x509", "-noout", "-ext", "subjectAltName", "-in", path.join(tmp, "pki", "apiserver.crt")],
      { encoding: "utf8" },
    );
    for (const ip of ["127.0.0.1", "127.0.1.9", "10.43.0.1"])
      assert.ok(cert.includes(`IP Address:${ip}`), cert);
    assert.ok(await kube.get("/api/v1/namespaces/default/serviceaccounts/default"));
    const v = (await kube.get("/version")) as { major: string; minor: string };
    assert.ok(Number(v.minor) > 0, `apiserver version not stamped: ${JSON.stringify(v)}`);
  });

  it("makes a kwok node with nvidia.com/gpu Ready and runs a pod requesting it", async () => {
    await kube.send("POST", "/api/v1/nodes", fakeNode("gpu-node", { "nvidia.com/gpu": "2" }));
    await waitFor("gpu-node Ready", 60000, async () =>
      isReady((await kube.get("/api/v1/nodes/gpu-node")) as NodeView) ? true : undefined,
    );
    await kube.send("POST", "/api/v1/namespaces/default/pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "gpu-pod" },
      spec: {
        containers: [
          {
            name: "c",
            image: "example.invalid/never-pulled:1",
            resources: { limits: { "nvidia.com/gpu": "1" } },
          },
        ],
      },
    });
    const pod = await waitFor("gpu-pod Running", 60000, async () => {
      const p = (await kube.get("/api/v1/namespaces/default/pods/gpu-pod")) as PodView;
      return p.status?.phase === "Running" ? p : undefined;
    });
    assert.equal(pod.spec.nodeName, "gpu-node");
    // pod-delete stage: deletion completes without a kubelet.
    await kube.send("DELETE", "/api/v1/namespaces/default/pods/gpu-pod");
    await waitFor("gpu-pod gone", 60000, async () =>
      (await kube.get("/api/v1/namespaces/default/pods/gpu-pod")) === undefined ? true : undefined,
    );
  });

  it("runs a Deployment through controller-manager and scheduler", async () => {
    await kube.send("POST", "/apis/apps/v1/namespaces/default/deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web" },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: { containers: [{ name: "c", image: "example.invalid/web:1" }] },
        },
      },
    });
    await waitFor("web available", 90000, async () => {
      const d = (await kube.get("/apis/apps/v1/namespaces/default/deployments/web")) as {
        status?: { availableReplicas?: number };
      };
      return d.status?.availableReplicas === 2 ? true : undefined;
    });
  });

  it("device plugin sim advertises replicas x GPUs while the plugin pod runs, and removes them after", async () => {
    const c = cp as ControlPlane;
    await kube.send("POST", "/api/v1/nodes", fakeNode("edge-ts"));
    await waitFor("edge-ts Ready", 60000, async () =>
      isReady((await kube.get("/api/v1/nodes/edge-ts")) as NodeView) ? true : undefined,
    );
    sim = startDevicePluginSim({
      kubeconfigPath: c.kubeconfigPath,
      gpuCountByNode: { "edge-ts": 2 },
      intervalMs: 300,
    });
    const ns = "nvidia-device-plugin";
    await kube.send("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: ns },
    });
    await kube.send("POST", `/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "plugin-sharing" },
      data: {
        "any.yaml":
          "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n",
      },
    });
    await kube.send("POST", `/apis/apps/v1/namespaces/${ns}/daemonsets`, {
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "plugin" },
      spec: {
        selector: { matchLabels: { app: "plugin" } },
        template: {
          metadata: { labels: { app: "plugin" } },
          spec: {
            nodeSelector: { "kubernetes.io/hostname": "edge-ts" },
            containers: [
              {
                name: "p",
                image: "example.invalid/plugin:1",
                volumeMounts: [{ name: "cfg", mountPath: "/config" }],
              },
            ],
            volumes: [{ name: "cfg", configMap: { name: "plugin-sharing" } }],
          },
        },
      },
    });
    const gpus = async (): Promise<string | undefined> =>
      ((await kube.get("/api/v1/nodes/edge-ts")) as NodeView).status?.allocatable?.["nvidia.com/gpu"];
    await waitFor("edge-ts advertises 8 nvidia.com/gpu", 90000, async () =>
      (await gpus()) === "8" ? true : undefined,
    );
    assert.deepEqual(sim.advertised()["edge-ts"], {
      resource: "nvidia.com/gpu",
      replicas: 4,
      count: 8,
      source: "plugin-sharing/any.yaml",
      pod: sim.advertised()["edge-ts"].pod,
    });
    const n = (await kube.get("/api/v1/nodes/edge-ts")) as NodeView;
    assert.equal(n.status?.capacity?.["nvidia.com/gpu"], "8");

    // Still there after a few kwok heartbeats.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await gpus(), "8");

    await kube.send(
      "DELETE",
      `/apis/apps/v1/namespaces/${ns}/daemonsets/plugin?propagationPolicy=Foreground`,
    );
    await waitFor("nvidia.com/gpu removed from edge-ts", 90000, async () =>
      (await gpus()) === undefined ? true : undefined,
    );
    assert.deepEqual(sim.errors(), []);
  });
});

describe("harness/devicePluginSim config parsing", () => {
  it("reads time-slicing replicas and renames", () => {
    assert.deepEqual(
      parseSharingConfig(
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n",
      ),
      { resource: "nvidia.com/gpu", replicas: 4 },
    );
    assert.deepEqual(
      parseSharingConfig(
        "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources: [{name: nvidia.com/gpu, replicas: 2}]\n",
      ),
      { resource: "nvidia.com/gpu.shared", replicas: 2 },
    );
    assert.deepEqual(parseSharingConfig('{"version":"v1","flags":{"migStrategy":"none"}}'), {
      resource: "nvidia.com/gpu",
      replicas: 1,
    });
    assert.throws(
      () =>
        parseSharingConfig(
          "version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 0}]}}",
        ),
      /positive integer/,
    );
  });
  it("picks the config key data-driven", () => {
    const pod = { metadata: { name: "p" }, spec: { containers: [{ name: "c" }] } };
    const vol = { name: "v", configMap: { name: "cm" } };
    assert.equal(pickConfigKey({ "b.yaml": "", "config.yaml": "" }, vol, pod, {}), "config.yaml");
    assert.equal(pickConfigKey({ "b.yaml": "", "a.yaml": "" }, vol, pod, {}), "a.yaml");
    assert.equal(
      pickConfigKey({ "b.yaml": "", "config.yaml": "" }, vol, pod, {
        "nvidia.com/device-plugin.config": "b.yaml",
      }),
      "b.yaml",
    );
    assert.equal(
      pickConfigKey(
        { "b.yaml": "", "config.yaml": "" },
        { name: "v", configMap: { name: "cm", items: [{ key: "b.yaml", path: "x" }] } },
        pod,
        {},
      ),
      "b.yaml",
    );
  });
});
