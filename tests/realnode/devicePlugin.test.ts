/**
 * Issue 11, the GPU DaemonSets on a real node: the stack's own time-slicing ConfigMap and device-plugin DaemonSet
 * (components/gpuSharing.ts, RTX PRO 4000 profile) run the device-plugin stand-in image under the stack's image name
 * (harness/nodeImages.ts), through the `nvidia` runtime class and the nvidia-container-runtime double, which exposes
 * the host's one GPU; the plugin registers GPUs x replicas with the kubelet over the device-plugin gRPC API (no host
 * stand-in runs: FORGE_NODE_GPUS=0). A new replicas value rolls the pod (config-hash annotation) and the Node's
 * allocatable follows; the same DaemonSet without the runtime class crash-loops and advertises nothing; the DCGM
 * exporter stand-in serves /metrics for the exposed GPU.
 *   bash harness/netns-run.sh npx mocha --timeout 900000 tests/realnode/devicePlugin.test.ts
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import {
  dcgmCounters,
  dcgmExporterSpec,
  devicePluginSpec,
  timeSlicingConfig,
  type GpuSharingArgs,
} from "../../components/gpuSharing";
import {
  configHash,
  DCGM_EXPORTER,
  DEVICE_PLUGIN,
  PRIORITY_CLASSES,
  RUNTIME_CLASS,
} from "../../components/names";
import { DEFAULT_DCGM_EXPORTER_IMAGE, DEFAULT_DEVICE_PLUGIN_VERSION } from "../../config/sections/platform";
import { SKUS } from "../../config/skus";
import { k3sAirgapImageNames, k3sAirgapImages, stackImages } from "../../harness/nodeImages";
import { waitFor } from "../../harness/proc";
import { nodeToolchain, readVersions, type RealNode } from "../../harness/realNode";
import { httpGet, NVIDIA_RUNTIME_CLASS, startDrillNode, type DrillNode, type Obj } from "./fixture";

const NODE = "edge-gpu-1";
const NODE_IP = "198.18.0.20";
const SKU = SKUS.rtx4000;
const ARGS: GpuSharingArgs = {
  sku: SKU,
  timeSlicingReplicas: 4,
  gpuNodes: 1,
  devicePluginVersion: DEFAULT_DEVICE_PLUGIN_VERSION,
  dcgmExporter: true,
  dcgmExporterImage: DEFAULT_DCGM_EXPORTER_IMAGE,
};
const PLUGIN_IMAGE = `nvcr.io/nvidia/k8s-device-plugin:${DEFAULT_DEVICE_PLUGIN_VERSION}`;

interface PodObj {
  metadata: { name: string; uid: string; deletionTimestamp?: string; labels?: Record<string, string> };
  status: {
    phase?: string;
    podIP?: string;
    containerStatuses?: Array<{
      containerID?: string;
      ready: boolean;
      restartCount: number;
      state?: { waiting?: { reason?: string }; running?: object };
      lastState?: { terminated?: { exitCode: number } };
    }>;
  };
}

/** The stack's time-slicing ConfigMap and device-plugin DaemonSet for `replicas`, as GpuSharing declares them. */
function pluginObjects(replicas: number): Obj[] {
  const text = timeSlicingConfig(SKU, replicas);
  return [
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: DEVICE_PLUGIN.configMap, namespace: DEVICE_PLUGIN.namespace },
      data: { "config.yaml": text },
    },
    {
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      ...devicePluginSpec({ ...ARGS, timeSlicingReplicas: replicas }, configHash(text)),
    },
  ];
}

describe("GPU DaemonSets on a real node: device plugin + DCGM stand-ins through the nvidia runtime", function () {
  this.timeout(600000);
  let fx: DrillNode | undefined;
  let node: RealNode;
  let gpuUuid: string;
  const timings: Record<string, number> = {};

  const kubectl = (...args: string[]): string => fx!.kubectl(...args);
  const apply = (objects: Obj[]): void => fx!.apply(objects);
  const pods = (selector: Record<string, string>): PodObj[] =>
    (
      JSON.parse(
        kubectl(
          "get",
          "pods",
          "-n",
          DEVICE_PLUGIN.namespace,
          "-l",
          Object.entries(selector)
            .map(([k, v]) => `${k}=${v}`)
            .join(","),
          "-o",
          "json",
        ),
      ) as { items: PodObj[] }
    ).items.filter((p) => p.metadata.deletionTimestamp === undefined);
  const allocatable = (): string =>
    kubectl("get", "node", NODE, "-o", "jsonpath={.status.allocatable.nvidia\\.com/gpu}");
  const runtimeRecord = (): string => {
    const f = path.join(node.hostPath("/var/log/forge-edge"), "nvidia-container-runtime.log");
    return fs.existsSync(f) ? fs.readFileSync(f, "utf8") : "";
  };
  const containerId = (p: PodObj): string =>
    (p.status.containerStatuses?.[0]?.containerID ?? "").replace(/^containerd:\/\//, "");
  /**
   * A container's log as the kubelet keeps it (/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log, CRI format);
   * read on the node because this control plane reaches kubelets by name only (`kubectl logs` cannot resolve it).
   */
  const podLog = (p: PodObj): string => {
    const d = path.join(
      node.hostPath("/var/log/pods"),
      `${DEVICE_PLUGIN.namespace}_${p.metadata.name}_${p.metadata.uid}`,
      "nvidia-device-plugin-ctr",
    );
    // One file per (re)start; the kubelet keeps the last two.
    return fs
      .readdirSync(d)
      .sort()
      .map((f) => fs.readFileSync(path.join(d, f), "utf8"))
      .join("");
  };
  /** The running plugin pod, once its container is up. */
  const runningPlugin = (): PodObj | undefined =>
    pods(DEVICE_PLUGIN.labels).find(
      (p) => p.status.containerStatuses?.[0]?.state?.running !== undefined && containerId(p) !== "",
    );

  before(async function () {
    const t0 = Date.now();
    const images = [
      k3sAirgapImages(),
      ...stackImages([PLUGIN_IMAGE, ARGS.dcgmExporterImage]).map((i) => i.tarball),
    ];
    timings.imagesMs = Date.now() - t0;
    fx = await startDrillNode({
      tmpPrefix: "forge-gpunode-",
      name: NODE,
      ip: NODE_IP,
      gpus: 0, // no host stand-in: only the DaemonSet's plugin can advertise nvidia.com/gpu
      // The host's GPU, as sshHost.ts writes /opt/forge-harness/gpu for the nvidia-smi double.
      gpuFile:
        "GPU_NAME='NVIDIA RTX PRO 4000 Blackwell'\nGPU_MEMORY_MIB='24463'\nGPU_DRIVER='580.95.05'\n" +
        "GPU_COMPUTE_CAP='12.0'\nGPU_COUNT='1'\nGPU_DRIVER_LOADED='true'\n",
      imageTarballs: images,
    });
    node = fx.node;
    timings.nodeStartMs = node.startMs;
    gpuUuid = execFileSync(
      "bash",
      [
        "-c",
        `. ${JSON.stringify(path.resolve(__dirname, "../../harness/doubles/lib.sh"))}; . "$1"; gpu_uuid 0`,
        "_",
        fx.gpuFile!,
      ],
      { encoding: "utf8", env: { PATH: process.env.PATH, FORGE_HARNESS_DIR: path.join(fx.dir, "none") } },
    );
    apply([
      {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: {
          name: DEVICE_PLUGIN.namespace,
          labels: { "pod-security.kubernetes.io/enforce": "privileged" },
        },
      },
      NVIDIA_RUNTIME_CLASS,
      {
        apiVersion: "scheduling.k8s.io/v1",
        kind: "PriorityClass",
        metadata: { name: PRIORITY_CLASSES.normal.name },
        value: PRIORITY_CLASSES.normal.value,
      },
    ]);
  });

  after(async function () {
    console.log(`      timings: ${JSON.stringify(timings)}`);
    await fx?.stop();
  });

  it("imported K3s's images and the stack's under their exact names (containerd's own importer)", function () {
    const sock = path.join(node.hostPath("/run/k3s"), "containerd/containerd.sock");
    const names = execFileSync(
      path.join(nodeToolchain().dir, "ctr"),
      ["--address", sock, "--namespace", "k8s.io", "images", "ls", "-q"],
      { encoding: "utf8" },
    ).split("\n");
    for (const n of [...k3sAirgapImageNames(), PLUGIN_IMAGE, ARGS.dcgmExporterImage])
      assert.ok(names.includes(n), `${n} not among ${names.join(" ")}`);
    assert.ok(!fs.existsSync(path.join(node.hostPath("/var/log/forge-edge"), "node/gpu-device-plugin.log")));
  });

  it("the stack's DaemonSet registers GPUs x replicas (1 x 4) through the kubelet, via the nvidia runtime", async function () {
    assert.equal(allocatable(), "", "nothing advertises nvidia.com/gpu before the DaemonSet");
    const t0 = Date.now();
    apply(pluginObjects(4));
    const gpus = await waitFor(
      "nvidia.com/gpu allocatable 4",
      180000,
      () => Promise.resolve(allocatable() === "4" ? "4" : undefined),
      500,
    );
    timings.allocatable4Ms = Date.now() - t0;
    assert.equal(gpus, "4");
    const pod = await waitFor("plugin pod running", 30000, () => Promise.resolve(runningPlugin()), 500);
    assert.match(
      runtimeRecord(),
      new RegExp(`^\\d+ create ${containerId(pod)} gpu=true devices=${gpuUuid}$`, "m"),
    );
    const logs = podLog(pod);
    assert.match(
      logs,
      /resource nvidia\.com\/gpu, replicas 4, failRequestsGreaterThanOne true, failOnInitError true/,
    );
    assert.match(logs, /registered nvidia\.com\/gpu with 4 devices/);
  });

  it("a new replicas value rolls the pod (config hash) and allocatable follows (4 -> 2)", async function () {
    const before = runningPlugin();
    assert.ok(before);
    const t0 = Date.now();
    apply(pluginObjects(2));
    let seen = "";
    await waitFor(
      "nvidia.com/gpu allocatable 2 from a new pod",
      180000,
      () => {
        const p = runningPlugin();
        const all = pods(DEVICE_PLUGIN.labels).map((q) => [q.metadata.uid, q.status.containerStatuses]);
        seen = `allocatable ${allocatable()}, pods ${JSON.stringify(all)}`;
        return Promise.resolve(
          p && p.metadata.uid !== before.metadata.uid && allocatable() === "2" ? p : undefined,
        );
      },
      500,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; last seen: ${seen}`);
    });
    timings.rollTo2Ms = Date.now() - t0;
    assert.equal(pods(DEVICE_PLUGIN.labels).length, 1);
  });

  it("the same DaemonSet without the nvidia runtime class crash-loops and advertises nothing", async function () {
    const [, ds] = pluginObjects(2) as [Obj, { metadata: Obj; spec: { selector: Obj; template: Obj } }];
    const labels = { "app.kubernetes.io/name": "plugin-no-runtime" };
    const tmpl = ds.spec.template as { metadata: { labels: object }; spec: Record<string, unknown> };
    const { runtimeClassName, ...spec } = tmpl.spec;
    assert.equal(runtimeClassName, RUNTIME_CLASS);
    apply([
      {
        apiVersion: "apps/v1",
        kind: "DaemonSet",
        metadata: { name: "plugin-no-runtime", namespace: DEVICE_PLUGIN.namespace },
        spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec } },
      },
    ]);
    const crashed = await waitFor(
      "plugin-no-runtime exits 1 and restarts",
      180000,
      () => {
        const p = pods(labels)[0];
        const s = p?.status.containerStatuses?.[0];
        return Promise.resolve(
          s && s.restartCount >= 1 && s.lastState?.terminated?.exitCode === 1 ? p : undefined,
        );
      },
      1000,
    );
    const logs = podLog(crashed);
    assert.match(logs, /nvml init failed: ERROR_LIBRARY_NOT_FOUND/);
    assert.equal(allocatable(), "2", "the crash-looping pod advertised nothing");
    assert.ok(!runtimeRecord().includes(containerId(crashed)), "it did not go through the nvidia runtime");
    kubectl("delete", "daemonset", "-n", DEVICE_PLUGIN.namespace, "plugin-no-runtime", "--wait=true");
  });

  it("K3s's own images run: the busybox helper runs local-path's setup script, the provisioner binary starts", async function () {
    const v = readVersions();
    // K3s v1.36's local-path-config `setup` script, run as the provisioner's helper pod runs it (VOL_DIR under the
    // node's storage dir, a hostPath). The provisioner itself needs the in-cluster API, which this control plane does
    // not route (endpoint reconciler none, apiserver on 127.0.0.1): here its image only has to run its binary.
    const setup = 'set -eu\nmkdir -m 0777 -p "${VOL_DIR}"\nchmod 700 "${VOL_DIR}/.."\n';
    const pod = (name: string, image: string, command: string[], extra: Obj = {}): Obj => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: "default" },
      spec: {
        restartPolicy: "Never",
        containers: [{ name, image, imagePullPolicy: "Never", command, ...extra }],
        ...(extra.volumeMounts
          ? {
              volumes: [
                {
                  name: "data",
                  hostPath: { path: "/var/lib/rancher/k3s/storage", type: "DirectoryOrCreate" },
                },
              ],
            }
          : {}),
      },
    });
    apply([
      pod("local-path-helper", v.NODE_BUSYBOX_IMAGE, ["/bin/sh", "-c", setup], {
        env: [{ name: "VOL_DIR", value: "/data/pvc-drill_default_models" }],
        volumeMounts: [{ name: "data", mountPath: "/data" }],
      }),
      pod("local-path-version", v.NODE_LOCAL_PATH_IMAGE, ["local-path-provisioner", "--version"]),
    ]);
    for (const name of ["local-path-helper", "local-path-version"]) {
      const phase = await waitFor(
        `pod ${name} finished`,
        120000,
        () => {
          const p = kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}");
          return Promise.resolve(p === "Succeeded" || p === "Failed" ? p : undefined);
        },
        500,
      );
      assert.equal(phase, "Succeeded", name);
    }
    const storage = path.join(node.hostPath("/var/lib/rancher"), "k3s/storage");
    assert.equal(fs.statSync(path.join(storage, "pvc-drill_default_models")).mode & 0o777, 0o777);
    assert.equal(fs.statSync(storage).mode & 0o777, 0o700);
  });

  it("the DCGM exporter stand-in serves one gauge per counter for the exposed GPU on :9400", async function () {
    const counters = dcgmCounters(SKU);
    apply([
      {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: DCGM_EXPORTER.configMap, namespace: DEVICE_PLUGIN.namespace },
        data: { "metrics.csv": counters },
      },
      {
        apiVersion: "apps/v1",
        kind: "DaemonSet",
        ...dcgmExporterSpec(ARGS.dcgmExporterImage, configHash(counters), 1),
      },
    ]);
    const t0 = Date.now();
    const res = await waitFor(
      "dcgm-exporter /metrics",
      180000,
      async () => {
        const ip = pods(DCGM_EXPORTER.labels)[0]?.status.podIP;
        if (!ip) return undefined;
        try {
          const r = await httpGet(`http://${ip}:9400/metrics`);
          return r.status === 200 ? r : undefined;
        } catch {
          return undefined;
        }
      },
      1000,
    );
    timings.dcgmMetricsMs = Date.now() - t0;
    const fields = counters
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"))
      .map((l) => l.split(",")[0].trim());
    assert.ok(fields.length >= 8);
    for (const f of fields) {
      const samples = res.body.split("\n").filter((l) => l.startsWith(`${f}{`));
      assert.equal(samples.length, 1, `${f}: ${samples.join(" | ")}`);
      assert.match(
        samples[0],
        new RegExp(`gpu="0",UUID="${gpuUuid}",.*modelName="NVIDIA RTX PRO 4000 Blackwell"`),
      );
      assert.match(res.body, new RegExp(`# TYPE ${f} gauge`));
    }
    const pod = pods(DCGM_EXPORTER.labels)[0];
    assert.match(runtimeRecord(), new RegExp(`create ${containerId(pod)} gpu=true devices=${gpuUuid}$`, "m"));
  });
});
