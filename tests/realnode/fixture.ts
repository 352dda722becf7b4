/**
 * The real-node suites' shared set-up: a control plane and one real node (harness/realNode.ts, configured as K3s
 * would) in a temporary dir, kubectl and a KubeClient against it, and the stack objects the drills apply, built by
 * the stack's own components from a config parsed by the real stack parser.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

import { configData, deploymentSpec } from "../../components/inferenceStack";
import {
  configHash,
  INFERENCE,
  NAMESPACE,
  NODE_LABELS,
  PRIORITY_CLASSES,
  RUNTIME_CLASS,
} from "../../components/names";
import { parseStackConfig, type InferenceConfig, type StackConfig } from "../../config/stack";
import { startControlPlane, type ControlPlane } from "../../harness/controlPlane";
import { KubeClient } from "../../harness/kubeClient";
import { nodeToolchain, nvidiaTemplate, startRealNode, type RealNode } from "../../harness/realNode";
import { KUBELET_INFERENCE } from "../../harness/site";
import { checkerPath, loadToolchain } from "../../harness/toolchain";
import { stackSource } from "../unit/support";

/** The image name a stack configures; the fake inference image is retagged to it on the node. */
export const STACK_IMAGE = "registry.example.com/forge/cognition-llm:1.2.0";

export type Obj = Record<string, unknown>;

export interface DrillNodeOptions {
  /** Names the temporary dir: `<tmpPrefix>XXXXXX` in the OS's temp dir. */
  tmpPrefix: string;
  /** The node's name and address (198.18.0.x: the kubelet refuses a loopback node IP). */
  name: string;
  ip: string;
  /** GPUs and time-slicing replicas the node's device-plugin stand-in advertises (0: none runs). */
  gpus: number;
  gpuReplicas?: number;
  /** The host's GPU file (as sshHost.ts writes /opt/forge-harness/gpu), written to `<dir>/gpu` for the runtime. */
  gpuFile?: string;
  imageTarballs: string[];
  retag?: Array<[string, string]>;
  /** kube-router's policy controller (k3s-netpol) on the node. */
  netpol?: { bin: string };
  /** Runs once the control plane is up, before the node starts: what the node's components need from the API. */
  beforeNode?: (d: DrillNode) => void;
}

export interface DrillNode {
  dir: string;
  cp: ControlPlane;
  /** Set once the node started (always, outside `beforeNode`). */
  node: RealNode;
  kube: KubeClient;
  /** `<dir>/gpu` when the options gave a GPU file. */
  gpuFile?: string;
  /** kubectl with the admin kubeconfig; its stdout. */
  kubectl(...args: string[]): string;
  /** `kubectl apply` of the objects as one List. */
  apply(items: unknown[]): void;
  /** Stops the node and the control plane, removes the dir (kept with FORGE_KEEP=1); idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts the control plane, then (after `beforeNode`) the real node with the labels of a GPU node, K3s's containerd
 * template with the nvidia runtime and forge-edge-checker's rendering. On a failure what started is stopped again.
 */
export async function startDrillNode(opts: DrillNodeOptions): Promise<DrillNode> {
  assert.equal(process.getuid?.(), 0, "a real node needs root (mounts, cgroups, netfilter)");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), opts.tmpPrefix));
  const kubectlBin = loadToolchain(["kubectl"]).bin.kubectl;
  let cp: ControlPlane | undefined;
  let node: RealNode | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (node) await node.stop();
    if (cp) await cp.stop();
    if (process.env.FORGE_KEEP !== "1") fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    let gpuFile: string | undefined;
    if (opts.gpuFile !== undefined) {
      gpuFile = path.join(dir, "gpu");
      fs.writeFileSync(gpuFile, opts.gpuFile);
    }
    cp = await startControlPlane({ dir: path.join(dir, "cp"), hostIps: [opts.ip] });
    const admin = cp.kubeconfigPath;
    const kubectl = (...args: string[]): string =>
      execFileSync(kubectlBin, ["--kubeconfig", admin, ...args], { encoding: "utf8" });
    const d = {
      dir,
      cp,
      kube: KubeClient.fromKubeconfig(admin),
      ...(gpuFile !== undefined ? { gpuFile } : {}),
      kubectl,
      apply: (items: unknown[]): void => {
        execFileSync(kubectlBin, ["--kubeconfig", admin, "apply", "-f", "-"], {
          input: JSON.stringify({ apiVersion: "v1", kind: "List", items }),
        });
      },
      stop,
    } as DrillNode;
    opts.beforeNode?.(d);
    const tc = nodeToolchain();
    node = await startRealNode({
      name: opts.name,
      ip: opts.ip,
      dir: path.join(dir, "node"),
      controlPlane: { server: cp.server, ...cp.pki },
      containerdTemplate: nvidiaTemplate(),
      checker: checkerPath(),
      toolchain: tc,
      labels: [`${NODE_LABELS.gpuPresent}=true`],
      gpus: opts.gpus,
      ...(opts.gpuReplicas !== undefined ? { gpuReplicas: opts.gpuReplicas } : {}),
      ...(gpuFile !== undefined ? { gpuFile } : {}),
      imageTarballs: opts.imageTarballs,
      ...(opts.retag ? { retag: opts.retag } : {}),
      ...(opts.netpol ? { netpol: opts.netpol } : {}),
    });
    d.node = node;
    return d;
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * A drill's stack config: the rtx4000 stack file through the real stack parser (and its fit rules), its inference
 * sized for this machine as on a kubelet site (harness/site.ts KUBELET_INFERENCE) with the stack image, then
 * `inference` over that and `overrides` (other stack keys) beside it.
 */
export function drillStack(inference: Obj = {}, overrides: Obj = {}): StackConfig {
  const committed = JSON.parse(stackSource("rtx4000").get("inference")!) as Obj;
  const merged = { ...committed, ...KUBELET_INFERENCE, image: STACK_IMAGE, modelMemoryGiB: 4, ...inference };
  return parseStackConfig("rtx4000", stackSource("rtx4000", { inference: merged, ...overrides }));
}

/** K3s's packaged runtimes.yaml: the nvidia RuntimeClass, handler nvidia. */
export const NVIDIA_RUNTIME_CLASS: Obj = {
  apiVersion: "node.k8s.io/v1",
  kind: "RuntimeClass",
  metadata: { name: RUNTIME_CLASS },
  handler: "nvidia",
};

/** What the stack puts in place before its inference server: its namespace, priority class, the RuntimeClass. */
export function inferencePrerequisites(): Obj[] {
  return [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } },
    {
      apiVersion: "scheduling.k8s.io/v1",
      kind: "PriorityClass",
      metadata: { name: PRIORITY_CLASSES.llmCritical.name },
      value: PRIORITY_CLASSES.llmCritical.value,
    },
    NVIDIA_RUNTIME_CLASS,
  ];
}

/**
 * The stack's ConfigMap and Deployment for `inf` on `nodeName`, the config hash as the component renders it. The
 * one change: no volume provisioner on this node, so the model volume is an emptyDir.
 */
export function inferenceObjects(inf: InferenceConfig, nodeName: string): Obj[] {
  const data = configData(inf);
  const dep = deploymentSpec(
    inf,
    configHash(data),
    { size: "1Gi", storageClass: "local-path" },
    { gpuNodes: 1, entryNode: nodeName },
  ) as { spec: { template: { spec: { volumes: Array<{ name: string }> } } } };
  const vols = dep.spec.template.spec.volumes;
  vols.splice(
    vols.findIndex((v) => v.name === "models"),
    1,
    { name: "models", emptyDir: {} } as { name: string },
  );
  return [
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: INFERENCE.configMap, namespace: NAMESPACE },
      data,
    },
    { apiVersion: "apps/v1", kind: "Deployment", ...dep },
  ];
}

/** GET url (5 s bound): status and body. */
export function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}
