import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

import { SkuProfile } from "../config/skus";
import { InferenceConfig } from "../config/stack";
import { sha256 } from "../scripts/render";
import { RUNTIME_CLASS } from "./gpuSharing";
import { NAMESPACE } from "./platform";

export const APP = "inference-server";
const LABELS = { app: APP };
const CONFIG_MAP = "inference-config";
const MODELS_PVC = "forge-models";
/** Probe periods are the seed's; only the startup budget stretches with the model's load time. */
export const PROBES = {
  startupPeriodSeconds: 10,
  minStartupFailureThreshold: 30,
  livenessPeriodSeconds: 30,
  livenessFailureThreshold: 3,
  readinessPeriodSeconds: 10,
  readinessFailureThreshold: 3,
} as const;

export interface InferenceStackArgs {
  sku: SkuProfile;
  inference: InferenceConfig;
  storage: { size: string; storageClass: string };
  nodePort: number;
  allowedCidrs: readonly string[];
}

/**
 * The Forge Cognition inference server and everything that keeps it serving: its config, model storage, the
 * NodePort, the disruption budget, the autoscaler and the network policy.
 */
export class InferenceStack extends pulumi.ComponentResource {
  public readonly deployment: k8s.apps.v1.Deployment;
  public readonly service: k8s.core.v1.Service;

  constructor(name: string, args: InferenceStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:inference:InferenceStack", name, {}, opts);
    const child = { parent: this };

    const data = configData(args.inference);
    const config = new k8s.core.v1.ConfigMap(
      `${name}-config`,
      { metadata: { name: CONFIG_MAP, namespace: NAMESPACE, labels: LABELS }, data },
      child,
    );
    const pvc = new k8s.core.v1.PersistentVolumeClaim(`${name}-models`, modelsPvcSpec(args.storage), child);
    this.deployment = new k8s.apps.v1.Deployment(
      `${name}-deployment`,
      deploymentSpec(args.inference, sha256(JSON.stringify(data))),
      {
        parent: this,
        dependsOn: [config, pvc],
      },
    );
    this.service = new k8s.core.v1.Service(`${name}-service`, serviceSpec(args.inference, args.nodePort), {
      parent: this,
      dependsOn: [this.deployment],
    });
    new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, pdbSpec(args.inference.replicas), child);
    new k8s.autoscaling.v2.HorizontalPodAutoscaler(`${name}-hpa`, hpaSpec(args.sku, args.inference), {
      parent: this,
      dependsOn: [this.deployment],
    });
    for (const np of networkPolicies(args.inference.port, args.allowedCidrs)) {
      new k8s.networking.v1.NetworkPolicy(`${name}-netpol-${np.metadata.name}`, np, child);
    }

    this.registerOutputs({ deployment: this.deployment.metadata.name, service: this.service.metadata.name });
  }
}

/** The inference-config ConfigMap: the stack's settings plus what the server must know about its GPU share. */
export function configData(inf: InferenceConfig): Record<string, string> {
  return {
    ...inf.settings,
    FORGE_PORT: String(inf.port),
    FORGE_GPU_MEMORY_GIB: String(inf.modelMemoryGiB),
    FORGE_MODEL_DIR: "/models",
  };
}

export function modelsPvcSpec(storage: {
  size: string;
  storageClass: string;
}): k8s.types.input.core.v1.PersistentVolumeClaim {
  return {
    metadata: { name: MODELS_PVC, namespace: NAMESPACE, labels: LABELS },
    spec: {
      accessModes: ["ReadWriteOnce"],
      storageClassName: storage.storageClass,
      resources: { requests: { storage: storage.size } },
    },
  };
}

/** Startup budget: enough 10 s periods to cover the model's load time, never below the seed's five minutes. */
export function startupFailureThreshold(modelLoadSeconds: number): number {
  return Math.max(
    PROBES.minStartupFailureThreshold,
    Math.ceil(modelLoadSeconds / PROBES.startupPeriodSeconds),
  );
}

export function deploymentSpec(inf: InferenceConfig, configHash: string): k8s.types.input.apps.v1.Deployment {
  const http = { path: "/health", port: "http" };
  return {
    metadata: { name: APP, namespace: NAMESPACE, labels: LABELS },
    spec: {
      replicas: inf.replicas,
      selector: { matchLabels: LABELS },
      // Every slice may be taken: surging a new pod would wait for a slice forever. Replace one at a time.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } },
      progressDeadlineSeconds: Math.max(600, inf.modelLoadSeconds * 2),
      template: {
        metadata: {
          labels: LABELS,
          // A changed inference-config rolls the pods by itself: no manual `rollout restart`.
          annotations: { "forge-edge.io/config-sha256": configHash },
        },
        spec: {
          priorityClassName: "forge-llm-critical",
          runtimeClassName: RUNTIME_CLASS,
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 60,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 1000,
            runAsGroup: 1000,
            fsGroup: 1000,
            seccompProfile: { type: "RuntimeDefault" },
          },
          tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
          nodeSelector: { "nvidia.com/gpu.present": "true" },
          containers: [
            {
              name: APP,
              image: inf.image,
              ports: [{ name: "http", containerPort: inf.port }],
              envFrom: [{ configMapRef: { name: CONFIG_MAP } }],
              resources: {
                requests: {
                  cpu: inf.cpuRequest,
                  memory: inf.memoryRequest,
                  "nvidia.com/gpu": String(inf.gpuSlicesPerPod),
                },
                limits: {
                  cpu: inf.cpuLimit,
                  memory: inf.memoryLimit,
                  "nvidia.com/gpu": String(inf.gpuSlicesPerPod),
                },
              },
              startupProbe: {
                httpGet: http,
                periodSeconds: PROBES.startupPeriodSeconds,
                failureThreshold: startupFailureThreshold(inf.modelLoadSeconds),
              },
              livenessProbe: {
                httpGet: http,
                periodSeconds: PROBES.livenessPeriodSeconds,
                failureThreshold: PROBES.livenessFailureThreshold,
              },
              readinessProbe: {
                httpGet: { path: "/health/ready", port: "http" },
                periodSeconds: PROBES.readinessPeriodSeconds,
                failureThreshold: PROBES.readinessFailureThreshold,
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: inf.readOnlyRootFilesystem,
                capabilities: { drop: ["ALL"] },
              },
              volumeMounts: [
                { name: "models", mountPath: "/models" },
                { name: "dshm", mountPath: "/dev/shm" },
                { name: "tmp", mountPath: "/tmp" },
              ],
            },
          ],
          volumes: [
            { name: "models", persistentVolumeClaim: { claimName: MODELS_PVC } },
            // Inference servers pass tensors between processes through /dev/shm; the default 64 MiB is too small.
            { name: "dshm", emptyDir: { medium: "Memory", sizeLimit: inf.shmSize } },
            { name: "tmp", emptyDir: {} },
          ],
        },
      },
    },
  };
}

export function serviceSpec(inf: InferenceConfig, nodePort: number): k8s.types.input.core.v1.Service {
  return {
    metadata: { name: APP, namespace: NAMESPACE, labels: LABELS },
    spec: {
      type: "NodePort",
      selector: LABELS,
      // Keep the client's source address so the NetworkPolicy's CIDR allow-list means what it says.
      externalTrafficPolicy: "Local",
      ports: [{ name: "http", port: inf.port, targetPort: "http", nodePort }],
    },
  };
}

/** One replica may always be disrupted voluntarily only if another keeps serving. */
export function pdbSpec(replicas: number): k8s.types.input.policy.v1.PodDisruptionBudget {
  return {
    metadata: { name: APP, namespace: NAMESPACE, labels: LABELS },
    spec: { minAvailable: replicas > 1 ? replicas - 1 : 1, selector: { matchLabels: LABELS } },
  };
}

export function hpaSpec(
  sku: SkuProfile,
  inf: InferenceConfig,
): k8s.types.input.autoscaling.v2.HorizontalPodAutoscaler {
  return {
    metadata: {
      name: APP,
      namespace: NAMESPACE,
      labels: LABELS,
      annotations: { "forge-edge.io/metric-reason": sku.hpa.reason },
    },
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: APP },
      minReplicas: inf.replicas,
      maxReplicas: inf.maxReplicas,
      metrics: [
        {
          type: "Resource",
          resource: {
            name: sku.hpa.metric,
            target: { type: "Utilization", averageUtilization: sku.hpa.targetUtilization },
          },
        },
      ],
      // A new replica loads a model for minutes: scale up deliberately, scale down slowly.
      behavior: {
        scaleUp: {
          stabilizationWindowSeconds: 60,
          policies: [{ type: "Pods", value: 1, periodSeconds: 300 }],
        },
        scaleDown: {
          stabilizationWindowSeconds: 600,
          policies: [{ type: "Pods", value: 1, periodSeconds: 300 }],
        },
      },
    },
  };
}

type NetworkPolicySpec = k8s.types.input.networking.v1.NetworkPolicy & { metadata: { name: string } };

/** Default deny in the namespace; the inference port from the allowed CIDRs only; DNS out. */
export function networkPolicies(port: number, allowedCidrs: readonly string[]): NetworkPolicySpec[] {
  return [
    {
      metadata: { name: "default-deny", namespace: NAMESPACE },
      spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] },
    },
    {
      metadata: { name: APP, namespace: NAMESPACE, labels: LABELS },
      spec: {
        podSelector: { matchLabels: LABELS },
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          {
            from: allowedCidrs.map((cidr) => ({ ipBlock: { cidr } })),
            ports: [{ protocol: "TCP", port }],
          },
        ],
        egress: [
          {
            to: [
              {
                namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
                podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
              },
            ],
            ports: [
              { protocol: "UDP", port: 53 },
              { protocol: "TCP", port: 53 },
            ],
          },
        ],
      },
    },
  ];
}
