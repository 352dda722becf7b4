/**
 * The Kubernetes names forge-edge promises (components/names.ts): the design document's, spelled out here on
 * purpose. A renamed object breaks every operator's runbook, so renaming one must fail here first; and no program
 * file may spell a contract name itself, or a rename would leave it (and the policy rule reading it) behind.
 */
import * as assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import * as ts from "typescript";

import * as names from "../../components/names";
import {
  ANNOTATIONS,
  configHash,
  DEVICE_PLUGIN,
  GPU_RESOURCE,
  INFERENCE,
  NAMESPACE,
  NODE_LABELS,
  PRIORITY_CLASSES,
  RUNTIME_CLASS,
} from "../../components/names";
import { sha256 } from "../../scripts/render";
import { ROOT } from "./support";

/** Every string the names module exports, by its path (`INFERENCE.configMap`); functions are not names. */
function flatten(value: unknown, at: string, out: Record<string, string> = {}): Record<string, string> {
  if (typeof value === "string") out[at] = value;
  else if (typeof value === "object" && value !== null)
    for (const [k, v] of Object.entries(value)) flatten(v, at === "" ? k : `${at}.${k}`, out);
  return out;
}

/** The program's TypeScript: what runs under `pulumi up` and in the policy pack (the harness and tests do not). */
const PROGRAM_DIRS = ["components", "config", "policy", "scripts", "tools"];
const NAMES_FILE = "components/names.ts";

function programFiles(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
      const rel = dir === "" ? e.name : path.posix.join(dir, e.name);
      if (e.isDirectory()) return dir === "" || e.name === "node_modules" ? [] : walk(rel);
      return e.name.endsWith(".ts") ? [rel] : [];
    });
  return [...walk(""), ...PROGRAM_DIRS.flatMap(walk)];
}

/** The text of every string literal and template piece in a file: what it spells, comments left out. */
function literals(file: string): { text: string; line: number }[] {
  const source = ts.createSourceFile(
    file,
    readFileSync(path.join(ROOT, file), "utf8"),
    ts.ScriptTarget.ES2022,
  );
  const out: { text: string; line: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteralLike(node) || ts.isTemplateLiteralToken(node)) {
      out.push({
        text: node.text,
        line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1,
      });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

describe("Kubernetes names (components/names.ts)", () => {
  it("are the design document's: its runbook commands still name the deployed objects", () => {
    // Verbatim from the design document (k3s-deployment-design.md), each built again from the names module.
    const runbook: [string, string][] = [
      [
        "kubectl logs -f deployment/inference-server -n forge-cognition",
        `kubectl logs -f deployment/${INFERENCE.name} -n ${NAMESPACE}`,
      ],
      [
        "kubectl edit configmap inference-config -n forge-cognition",
        `kubectl edit configmap ${INFERENCE.configMap} -n ${NAMESPACE}`,
      ],
      [
        "kubectl describe pod -n forge-cognition -l app=inference-server",
        `kubectl describe pod -n ${NAMESPACE} -l ${Object.entries(INFERENCE.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(",")}`,
      ],
      ["kubectl get runtimeclass nvidia", `kubectl get runtimeclass ${RUNTIME_CLASS}`],
      ["kubectl get pods -n nvidia-device-plugin", `kubectl get pods -n ${DEVICE_PLUGIN.namespace}`],
      [
        '"resources":{"limits":{"nvidia.com/gpu":"1"}}',
        JSON.stringify({ resources: { limits: { [GPU_RESOURCE]: "1" } } }).slice(1, -1),
      ],
    ];
    for (const [design, ours] of runbook) assert.equal(ours, design);
  });

  it("keep the design's priority classes, values and use", () => {
    assert.deepEqual(Object.values(PRIORITY_CLASSES), [
      { name: "forge-llm-critical", value: 1_000_000, description: "LLM inference" },
      { name: "forge-high", value: 100_000, description: "Milvus, embeddings" },
      { name: "forge-normal", value: 10_000, description: "Monitoring, logging" },
      { name: "forge-low", value: 1_000, description: "Batch jobs" },
    ]);
  });

  it("hold every contract name as the design and the README spell it, and nothing else", () => {
    // A new name in the module is a new promise: add it here, and to the README's "What gets deployed".
    assert.deepEqual(flatten(names, ""), {
      NAMESPACE: "forge-cognition",
      "PRIORITY_CLASSES.llmCritical.name": "forge-llm-critical",
      "PRIORITY_CLASSES.llmCritical.description": "LLM inference",
      "PRIORITY_CLASSES.high.name": "forge-high",
      "PRIORITY_CLASSES.high.description": "Milvus, embeddings",
      "PRIORITY_CLASSES.normal.name": "forge-normal",
      "PRIORITY_CLASSES.normal.description": "Monitoring, logging",
      "PRIORITY_CLASSES.low.name": "forge-low",
      "PRIORITY_CLASSES.low.description": "Batch jobs",
      "PLATFORM.quota": "forge-cognition-quota",
      "PLATFORM.limitRange": "forge-cognition-limits",
      "INFERENCE.name": "inference-server",
      "INFERENCE.labels.app": "inference-server",
      "INFERENCE.configMap": "inference-config",
      "INFERENCE.defaultDenyPolicy": "default-deny",
      GPU_RESOURCE: "nvidia.com/gpu",
      RUNTIME_CLASS: "nvidia",
      "DEVICE_PLUGIN.namespace": "nvidia-device-plugin",
      "DEVICE_PLUGIN.configMap": "nvidia-device-plugin-config",
      "DEVICE_PLUGIN.daemonSet": "nvidia-device-plugin-daemonset",
      "DEVICE_PLUGIN.labels.app.kubernetes.io/name": "nvidia-device-plugin",
      "DCGM_EXPORTER.name": "dcgm-exporter",
      "DCGM_EXPORTER.configMap": "dcgm-exporter-metrics",
      "DCGM_EXPORTER.labels.app.kubernetes.io/name": "dcgm-exporter",
      // The label the NVIDIA device plugin's own chart schedules by; ours are set by K3s at registration.
      "NODE_LABELS.gpuPresent": "nvidia.com/gpu.present",
      "NODE_LABELS.sku": "forge-edge.io/sku",
      "NODE_LABELS.gpuCount": "forge-edge.io/gpu-count",
      "NODE_LABELS.deviceDiscovery": "forge-edge.io/device-discovery",
      "ANNOTATIONS.configHash": "forge-edge.io/config-sha256",
      "ANNOTATIONS.metricReason": "forge-edge.io/metric-reason",
      "PULUMI_ANNOTATIONS.timeoutSeconds": "pulumi.com/timeoutSeconds",
      "PULUMI_ANNOTATIONS.patchForce": "pulumi.com/patchForce",
      "PULUMI_ANNOTATIONS.skipAwait": "pulumi.com/skipAwait",
    });
    assert.deepEqual(names.gpuNodeSelector(), { [NODE_LABELS.gpuPresent]: "true" });
  });

  it("hash a config file's text, or a ConfigMap's data as JSON, for the config-hash annotation", () => {
    assert.equal(ANNOTATIONS.configHash, "forge-edge.io/config-sha256");
    assert.equal(configHash("version: v1\n"), sha256("version: v1\n"));
    assert.equal(configHash({ FORGE_PORT: "8080" }), sha256('{"FORGE_PORT":"8080"}'));
    assert.notEqual(configHash({ FORGE_PORT: "8080" }), configHash({ FORGE_PORT: "8081" }));
  });

  it(`are spelled nowhere in the program but ${NAMES_FILE}`, () => {
    const contract = Object.entries(flatten(names, ""))
      .filter(([at]) => !at.endsWith(".description"))
      .map(([, name]) => name);
    // Qualified keys (labels, annotations, the GPU resource) count inside longer strings too; plain names only whole.
    const spells = (text: string) =>
      text.includes("forge-edge.io/") ||
      contract.some((name) => (name.includes("/") ? text.includes(name) : text === name));
    const files = programFiles();
    assert.ok(files.includes(NAMES_FILE) && files.includes("policy/policies.ts"), files.join(", "));
    const found = files
      .filter((f) => f !== NAMES_FILE)
      .flatMap((f) =>
        literals(f)
          .filter((l) => spells(l.text))
          .map((l) => `${f}:${l.line}: "${l.text}"`),
      );
    assert.deepEqual(found, [], "import the name from components/names.ts");
  });
});
