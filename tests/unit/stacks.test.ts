/** Each committed stack file, evaluated under mocks as the engine would: what it asks for, resource by resource. */
import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";

import { run } from "../../program";
import { SKU_NAMES, SkuName } from "../../config/skus";
import { parseStackConfig } from "../../config/stack";
import {
  evaluateStack,
  Evaluation,
  isSecretValue,
  MOCK_KUBECONFIG,
  MOCK_TOKEN,
  Recorded,
  stackFileConfig,
  stackSource,
  TEST_SSH_KEY,
  unwrap,
  valueOf,
} from "./support";

type Outputs = ReturnType<typeof run>;
const K8S = {
  ns: "kubernetes:core/v1:Namespace",
  pc: "kubernetes:scheduling.k8s.io/v1:PriorityClass",
  quota: "kubernetes:core/v1:ResourceQuota",
  limits: "kubernetes:core/v1:LimitRange",
  cm: "kubernetes:core/v1:ConfigMap",
  deploy: "kubernetes:apps/v1:Deployment",
  ds: "kubernetes:apps/v1:DaemonSet",
  svc: "kubernetes:core/v1:Service",
  pdb: "kubernetes:policy/v1:PodDisruptionBudget",
  hpa: "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
  np: "kubernetes:networking.k8s.io/v1:NetworkPolicy",
  rc: "kubernetes:node.k8s.io/v1:RuntimeClassPatch",
  provider: "pulumi:providers:kubernetes",
};
const CMD = "command:remote:Command";

// Loosely typed views of recorded inputs: the assertions below are the type check.
/* eslint-disable @typescript-eslint/no-explicit-any */
const meta = (r: Recorded) =>
  r.inputs.metadata as { name: string; namespace?: string; labels?: Record<string, string> };
const spec = (r: Recorded) => r.inputs.spec as any;
const k8sNamed = (ev: Evaluation<Outputs>, type: string, name: string) => {
  const r = ev.ofType(type).find((x) => meta(x).name === name);
  assert.ok(r, `${type} ${name} not declared`);
  return r;
};

/** What the stack file asks for, as validated: every SKU's stack is checked against its own file and profile. */
function expected(stack: SkuName) {
  const cfg = parseStackConfig(stack, stackSource(stack));
  return {
    discovery: cfg.sku.deviceDiscovery,
    dcgm: cfg.dcgmExporter,
    replicas: cfg.timeSlicingReplicas,
    podReplicas: cfg.inference.replicas,
    quotaGpu: String(cfg.quota.gpu),
  };
}

for (const stack of SKU_NAMES) {
  describe(`stack ${stack} (Pulumi.${stack}.yaml)`, () => {
    let ev: Evaluation<Outputs>;
    const want = expected(stack);
    before(async () => {
      ev = await evaluateStack(stack, run);
    });

    it("declares the seed's namespace with restricted Pod Security Admission", () => {
      const ns = k8sNamed(ev, K8S.ns, "forge-cognition");
      assert.equal(meta(ns).labels?.["pod-security.kubernetes.io/enforce"], "restricted");
      assert.ok(k8sNamed(ev, K8S.ns, "nvidia-device-plugin"));
    });

    it("declares the four priority classes with the seed's values", () => {
      const got = Object.fromEntries(ev.ofType(K8S.pc).map((r) => [meta(r).name, r.inputs.value]));
      assert.deepEqual(got, {
        "forge-llm-critical": 1000000,
        "forge-high": 100000,
        "forge-normal": 10000,
        "forge-low": 1000,
      });
    });

    it("scales the resource quota to the stack", () => {
      const q = ev.ofType(K8S.quota)[0];
      assert.equal(meta(q).namespace, "forge-cognition");
      assert.equal(spec(q).hard["requests.nvidia.com/gpu"], want.quotaGpu);
      assert.ok(spec(q).hard["requests.memory"] && spec(q).hard["limits.memory"] && spec(q).hard.pods);
      assert.ok(ev.ofType(K8S.limits).length === 1);
    });

    it("configures time-slicing in the device plugin's ConfigMap", () => {
      const cm = k8sNamed(ev, K8S.cm, "nvidia-device-plugin-config");
      assert.equal(meta(cm).namespace, "nvidia-device-plugin");
      const cfg = yaml.load((cm.inputs.data as Record<string, string>)["config.yaml"]) as any;
      assert.equal(cfg.version, "v1");
      assert.deepEqual(cfg.sharing.timeSlicing.resources, [
        { name: "nvidia.com/gpu", replicas: want.replicas },
      ]);
      assert.equal(cfg.sharing.timeSlicing.failRequestsGreaterThanOne, true);
      assert.equal(cfg.flags.deviceDiscoveryStrategy, want.discovery);
    });

    it("runs the device plugin through K3s's nvidia RuntimeClass, scheduled without NFD", () => {
      const rc = k8sNamed(ev, K8S.rc, "nvidia");
      assert.equal(rc.inputs.handler, "nvidia");
      const ds = k8sNamed(ev, K8S.ds, "nvidia-device-plugin-daemonset");
      const pod = spec(ds).template.spec;
      assert.equal(pod.runtimeClassName, "nvidia");
      assert.match(pod.containers[0].image, /^nvcr\.io\/nvidia\/k8s-device-plugin:v0\.20\.\d+$/);
      const env = Object.fromEntries(pod.containers[0].env.map((e: any) => [e.name, e.value]));
      assert.equal(env.DEVICE_DISCOVERY_STRATEGY, want.discovery);
      const term =
        pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0];
      assert.deepEqual(term.matchExpressions[0], {
        key: "nvidia.com/gpu.present",
        operator: "In",
        values: ["true"],
      });
      assert.ok(spec(ds).template.metadata.annotations["forge-edge.io/config-sha256"]);
    });

    it(want.dcgm ? "deploys the DCGM exporter" : "deploys no DCGM exporter (no DCGM on this SKU)", () => {
      const dcgm = ev.ofType(K8S.ds).filter((r) => meta(r).name === "dcgm-exporter");
      assert.equal(dcgm.length, want.dcgm ? 1 : 0);
      if (want.dcgm) {
        const counters = k8sNamed(ev, K8S.cm, "dcgm-exporter-metrics");
        const fields = (counters.inputs.data as Record<string, string>)["metrics.csv"]
          .split("\n")
          .filter((l) => /^DCGM/.test(l));
        assert.ok(fields.some((l) => l.startsWith("DCGM_FI_DEV_GPU_UTIL")));
        assert.ok(!fields.some((l) => l.startsWith("DCGM_FI_PROF_")), "no profiling fields on this SKU");
      }
    });

    it("declares the inference Deployment with the seed's names, probes and GPU slice", () => {
      const d = k8sNamed(ev, K8S.deploy, "inference-server");
      assert.equal(meta(d).namespace, "forge-cognition");
      assert.equal(spec(d).replicas, want.podReplicas);
      assert.deepEqual(spec(d).selector.matchLabels, { app: "inference-server" });
      assert.deepEqual(spec(d).strategy.rollingUpdate, { maxSurge: 0, maxUnavailable: 1 });
      const pod = spec(d).template.spec;
      assert.equal(pod.priorityClassName, "forge-llm-critical");
      assert.equal(pod.runtimeClassName, "nvidia");
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
      const c = pod.containers[0];
      assert.equal(c.resources.limits["nvidia.com/gpu"], "1");
      assert.deepEqual(c.securityContext.capabilities, { drop: ["ALL"] });
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.equal(c.startupProbe.httpGet.path, "/health");
      assert.equal(c.startupProbe.periodSeconds, 10);
      assert.ok(c.startupProbe.failureThreshold >= 30);
      assert.deepEqual(
        [c.livenessProbe.httpGet.path, c.livenessProbe.periodSeconds, c.livenessProbe.failureThreshold],
        ["/health", 30, 3],
      );
      assert.deepEqual(
        [c.readinessProbe.httpGet.path, c.readinessProbe.periodSeconds, c.readinessProbe.failureThreshold],
        ["/health/ready", 10, 3],
      );
      const shm = pod.volumes.find((v: any) => v.name === "dshm");
      assert.equal(shm.emptyDir.medium, "Memory");
      assert.ok(spec(d).template.metadata.annotations["forge-edge.io/config-sha256"]);
      assert.deepEqual(c.envFrom, [{ configMapRef: { name: "inference-config" } }]);
    });

    it("exposes NodePort 30080 and protects the server with a PDB, an HPA and NetworkPolicies", () => {
      const svc = k8sNamed(ev, K8S.svc, "inference-server");
      assert.equal(spec(svc).type, "NodePort");
      assert.equal(spec(svc).ports[0].nodePort, 30080);
      assert.ok(k8sNamed(ev, K8S.cm, "inference-config"));
      assert.equal(ev.ofType("kubernetes:core/v1:PersistentVolumeClaim").length, 0, "models are per replica");
      const pdb = k8sNamed(ev, K8S.pdb, "inference-server");
      assert.equal(spec(pdb).maxUnavailable, 1);
      const hpa = k8sNamed(ev, K8S.hpa, "inference-server");
      assert.equal(spec(hpa).metrics[0].resource.name, "cpu");
      assert.ok(meta(hpa).name && (hpa.inputs.metadata as any).annotations["forge-edge.io/metric-reason"]);
      const names = ev
        .ofType(K8S.np)
        .map((r) => meta(r).name)
        .sort();
      assert.deepEqual(names, ["default-deny", "inference-server"]);
      const allow = k8sNamed(ev, K8S.np, "inference-server");
      assert.ok(spec(allow).ingress[0].from.every((f: any) => f.ipBlock.cidr.startsWith("19")));
      assert.equal(spec(allow).egress[0].ports[0].port, 53);
    });

    it("bootstraps the node over SSH: runtime first, then K3s, with uninstall on delete", () => {
      const first = (JSON.parse(stackFileConfig(stack)["forge-edge:nodes"]) as { name: string }[])[0].name;
      const runtime = ev.byName(`${first}-nvidia-runtime`);
      const k3s = ev.byName(`${first}-k3s`);
      assert.match(
        String(runtime.inputs.create),
        /^bash -c "\$\(cat <<'FORGE_EDGE_SCRIPT_END'\n# forge-edge nvidia-runtime\.sh/,
      );
      assert.match(String(runtime.inputs.create), new RegExp(`DISCOVERY='${want.discovery}'`));
      assert.match(String(runtime.inputs.delete), /nvidia-runtime-revert/);
      assert.match(String(k3s.inputs.create), /K3S_VERSION='v1\.36\.4\+k3s1'/);
      assert.match(String(k3s.inputs.delete), /k3s-uninstall\.sh/);
      assert.doesNotMatch(String(k3s.inputs.create), new RegExp(MOCK_TOKEN));
    });

    it("proves each node speaks SSH, within a bound, before any step runs on it", () => {
      for (const node of JSON.parse(stackFileConfig(stack)["forge-edge:nodes"]) as {
        name: string;
        host: string;
      }[]) {
        const probe = ev.byName(`${node.name}-ssh-probe`);
        assert.equal(probe.type, "command:local:Command");
        assert.ok(String(probe.inputs.create).startsWith("node -e "));
        assert.ok(String(probe.inputs.create).endsWith(` '${node.host}' 22 20 '${node.name}'`));
        // Re-runs exactly when a step will: its triggers are the steps' commands.
        assert.deepEqual(probe.inputs.triggers, [
          ev.byName(`${node.name}-nvidia-runtime`).inputs.create,
          ev.byName(`${node.name}-k3s`).inputs.create,
          // Online installs: the K3s download step (issue 12.3).
          ev.byName(`${node.name}-k3s-fetch`).inputs.create,
          // ...and K3s's background pull of the inference image, right after K3s runs.
          ev.byName(`${node.name}-image-prepull`).inputs.create,
        ]);
      }
    });

    it("pre-pulls the stack's inference image on every node once K3s runs (online install)", () => {
      const { image } = JSON.parse(stackFileConfig(stack)["forge-edge:inference"]) as { image: string };
      for (const node of JSON.parse(stackFileConfig(stack)["forge-edge:nodes"]) as { name: string }[]) {
        const prePull = ev.byName(`${node.name}-image-prepull`);
        assert.ok(String(prePull.inputs.create).includes(`IMAGES='${image}'`), String(prePull.inputs.create));
        assert.deepEqual(ev.dependencies(`${node.name}-image-prepull`), [`${node.name}-k3s`]);
      }
    });

    it("keeps the SSH key, the K3s token and the kubeconfig secret", async () => {
      for (const cmd of ev.ofType(CMD)) {
        assert.ok(isSecretValue(cmd.inputs.connection), `${cmd.name}.connection must be secret`);
        assert.equal((unwrap(cmd.inputs.connection) as any).privateKey, TEST_SSH_KEY);
        assert.doesNotMatch(
          JSON.stringify([cmd.inputs.create, cmd.inputs.delete]),
          /unit-test-key-material|mock-k3s-token/,
        );
      }
      const k3s = ev.ofType(CMD).filter((r) => r.name.endsWith("-k3s"));
      assert.ok(
        k3s.length > 0 &&
          k3s.every((r) => isSecretValue(r.inputs.stdin) && unwrap(r.inputs.stdin) === MOCK_TOKEN),
      );
      const read = ev.ofType(CMD).find((r) => r.name.endsWith("-kubeconfig"))!;
      assert.equal(read.inputs.logging, "none");
      const provider = ev.ofType(K8S.provider)[0];
      assert.ok(isSecretValue(provider.inputs.kubeconfig), "provider kubeconfig must be secret");
      assert.match(String(provider.inputs.clusterIdentifier), new RegExp(`^forge-edge/${stack}/`));
      assert.equal(await pulumi.isSecret(ev.result.kubeconfig!), true);
      const kc = await valueOf(ev.result.kubeconfig!);
      assert.match(kc, /server: https:\/\/192\.0\.2\.\d+:6443/);
      assert.notEqual(kc, MOCK_KUBECONFIG);
    });

    it("exports the endpoint, nodes and GPU slices per node", async () => {
      assert.match(ev.result.endpoint!, /^http:\/\/192\.0\.2\.\d+:30080$/);
      assert.equal(ev.result.sku, stack);
      const [node] = ev.result.nodes!;
      assert.equal(ev.result.gpuSlicesPerNode![node.name], want.replicas * node.gpus);
      const reports = await valueOf(ev.result.gpuReports!);
      assert.match(reports[node.name], /gpus=1/);
    });
  });
}
