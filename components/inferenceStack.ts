import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

import { SkuProfile } from "../config/skus";
import { DEFAULT_PROBES, ProbeConfig } from "../config/sections/inference";
import { InferenceConfig } from "../config/stack";
import {
  ANNOTATIONS,
  configHash,
  GPU_RESOURCE,
  gpuNodeSelector,
  INFERENCE,
  NAMESPACE,
  PRIORITY_CLASSES,
  PULUMI_ANNOTATIONS,
  RUNTIME_CLASS,
} from "./names";

/** What a rollout may spend on one replica besides the model load. */
export const ROLLOUT = {
  terminationGraceSeconds: 60,
  /** A first pull of a multi-GB inference image over an edge uplink (~10 GB at 100 Mbit/s). */
  imagePullSeconds: 900,
} as const;
/**
 * The HPA owns the replica count once it exists: after it scales (field manager `horizontal-pod-autoscaler`,
 * subresource `scale`), applying our `replicas` would be a server-side apply conflict. With the field ignored,
 * pulumi-kubernetes 4.25 drops it from the apply when another manager owns it, and the diff ignores it.
 */
export const DEPLOYMENT_IGNORE_CHANGES = ["spec.replicas"];
/** The design's probe timings: the defaults of `inference.probes` (a stack may tune them). */
export const PROBES: ProbeConfig = DEFAULT_PROBES;

export interface InferenceStackArgs {
  sku: SkuProfile;
  inference: InferenceConfig;
  storage: { size: string; storageClass: string };
  /** GPU nodes the replicas can spread over: each may pull the image once during a rollout. */
  gpuNodes: number;
  /** The node behind the stack's `endpoint` output: replicas prefer it, so that address serves. */
  entryNode: string;
  nodePort: number;
  allowedCidrs: readonly string[];
  /**
   * What the inference pods need before the Deployment is applied: GPU slices advertised (the device plugin), the
   * node labels they select, the images an air gap stages. Its ConfigMap, Service, policies and budget need none.
   */
  podsAfter?: pulumi.Resource[];
}

/**
 * The Forge Cognition inference server and everything that keeps it serving: its config, the NodePort, the
 * disruption budget, the autoscaler and the network policy. Model storage is per replica (a generic ephemeral
 * volume on the replica's node), so any GPU node can run any replica.
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
      { metadata: { name: INFERENCE.configMap, namespace: NAMESPACE, labels: INFERENCE.labels }, data },
      child,
    );
    this.deployment = new k8s.apps.v1.Deployment(
      `${name}-deployment`,
      deploymentSpec(args.inference, configHash(data), args.storage, args),
      {
        parent: this,
        dependsOn: [config, ...(args.podsAfter ?? [])],
        ignoreChanges: DEPLOYMENT_IGNORE_CHANGES,
      },
    );
    this.service = new k8s.core.v1.Service(`${name}-service`, serviceSpec(args.inference, args.nodePort), {
      parent: this,
      dependsOn: [this.deployment],
    });
    new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, pdbSpec(), child);
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

/**
 * Each replica's own model volume, created with the pod on whatever node it is scheduled to and deleted with it. A
 * shared ReadWriteOnce claim would pin every replica to the node holding it (a drain then strands them); hostPath
 * is refused by the namespace's restricted Pod Security level. The cost: a replacement pod fetches its model again.
 */
export function modelsVolume(storage: {
  size: string;
  storageClass: string;
}): k8s.types.input.core.v1.Volume {
  return {
    name: "models",
    ephemeral: {
      volumeClaimTemplate: {
        metadata: { labels: INFERENCE.labels },
        spec: {
          accessModes: ["ReadWriteOnce"],
          // local-path binds on first consumer, so the volume is made on the node the scheduler picked.
          storageClassName: storage.storageClass,
          resources: { requests: { storage: storage.size } },
        },
      },
    },
  };
}

/**
 * Startup budget: enough startup periods to cover the model's load time, never below the floor (the design's
 * 30 x 10 s = five minutes by default). `probes` is the stack's `inference.probes`.
 */
export function startupFailureThreshold(modelLoadSeconds: number, probes: ProbeConfig = PROBES): number {
  return Math.max(
    probes.minStartupFailureThreshold,
    Math.ceil(modelLoadSeconds / probes.startupPeriodSeconds),
  );
}

/** Seconds the startup probe allows before the kubelet restarts a loading container (>= modelLoadSeconds). */
export function startupBudgetSeconds(modelLoadSeconds: number, probes: ProbeConfig = PROBES): number {
  return startupFailureThreshold(modelLoadSeconds, probes) * probes.startupPeriodSeconds;
}

/** What the rollout arithmetic reads of the inference config: the load time and, where set, the probes. */
type RolloutInput = Pick<InferenceConfig, "modelLoadSeconds"> & { probes?: ProbeConfig };

/**
 * Seconds a healthy rollout may spend replacing one replica: the old pod's grace period, the image pull, the whole
 * startup budget, then one readiness period. Also the Deployment's progress deadline: each replica that becomes
 * available is progress, so no healthy replacement may take longer.
 */
export function replicaRolloutSeconds(inf: RolloutInput): number {
  const probes = inf.probes ?? PROBES;
  return (
    ROLLOUT.terminationGraceSeconds +
    ROLLOUT.imagePullSeconds +
    startupBudgetSeconds(inf.modelLoadSeconds, probes) +
    probes.readinessPeriodSeconds
  );
}

/**
 * How long Pulumi waits for the Deployment: a rollout replaces replicas one at a time (`maxSurge: 0`,
 * `maxUnavailable: 1`), and the HPA may have scaled up to `maxReplicas`, so every one of them may be replaced
 * in turn. The image pull is paid once per node the replicas spread over, not per replica.
 */
export function deploymentAwaitSeconds(
  inf: RolloutInput & Pick<InferenceConfig, "maxReplicas">,
  gpuNodes: number,
): number {
  const perReplica = replicaRolloutSeconds(inf) - ROLLOUT.imagePullSeconds;
  const pulls = Math.max(1, Math.min(inf.maxReplicas, gpuNodes));
  return inf.maxReplicas * perReplica + pulls * ROLLOUT.imagePullSeconds;
}

export function deploymentSpec(
  inf: InferenceConfig,
  configSha256: string,
  storage: { size: string; storageClass: string },
  site: { gpuNodes: number; entryNode: string },
): k8s.types.input.apps.v1.Deployment {
  const http = { path: "/health", port: "http" };
  return {
    metadata: {
      name: INFERENCE.name,
      namespace: NAMESPACE,
      labels: INFERENCE.labels,
      // A healthy rollout of a slow-loading model outlives the provider's 10-minute default wait.
      annotations: {
        [PULUMI_ANNOTATIONS.timeoutSeconds]: String(deploymentAwaitSeconds(inf, site.gpuNodes)),
      },
    },
    spec: {
      // Only the initial count: the HPA owns it afterwards (see DEPLOYMENT_IGNORE_CHANGES).
      replicas: inf.replicas,
      selector: { matchLabels: INFERENCE.labels },
      // Every slice may be taken: surging a new pod would wait for a slice forever. Replace one at a time.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } },
      progressDeadlineSeconds: replicaRolloutSeconds(inf),
      template: {
        metadata: {
          labels: INFERENCE.labels,
          // A changed inference-config rolls the pods by itself: no manual `rollout restart`.
          annotations: { [ANNOTATIONS.configHash]: configSha256 },
        },
        spec: {
          priorityClassName: PRIORITY_CLASSES.llmCritical.name,
          runtimeClassName: RUNTIME_CLASS,
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: ROLLOUT.terminationGraceSeconds,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 1000,
            runAsGroup: 1000,
            fsGroup: 1000,
            seccompProfile: { type: "RuntimeDefault" },
          },
          tolerations: [{ key: GPU_RESOURCE, operator: "Exists", effect: "NoSchedule" }],
          nodeSelector: gpuNodeSelector(),
          // Spread replicas over the GPU nodes: a drain then takes down one replica, and more nodes serve the
          // NodePort locally (externalTrafficPolicy: Local); the entry node first, so the `endpoint` output
          // serves. Both soft: a full node never leaves a replica Pending.
          affinity: {
            nodeAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                {
                  weight: 100,
                  preference: {
                    matchExpressions: [
                      { key: "kubernetes.io/hostname", operator: "In", values: [site.entryNode] },
                    ],
                  },
                },
              ],
            },
          },
          topologySpreadConstraints: [
            {
              maxSkew: 1,
              topologyKey: "kubernetes.io/hostname",
              whenUnsatisfiable: "ScheduleAnyway",
              labelSelector: { matchLabels: INFERENCE.labels },
            },
          ],
          containers: [
            {
              name: INFERENCE.name,
              image: inf.image,
              ports: [{ name: "http", containerPort: inf.port }],
              envFrom: [{ configMapRef: { name: INFERENCE.configMap } }],
              resources: {
                requests: {
                  cpu: inf.cpuRequest,
                  memory: inf.memoryRequest,
                  [GPU_RESOURCE]: String(inf.gpuSlicesPerPod),
                },
                limits: {
                  cpu: inf.cpuLimit,
                  memory: inf.memoryLimit,
                  [GPU_RESOURCE]: String(inf.gpuSlicesPerPod),
                },
              },
              startupProbe: {
                httpGet: http,
                periodSeconds: inf.probes.startupPeriodSeconds,
                failureThreshold: startupFailureThreshold(inf.modelLoadSeconds, inf.probes),
              },
              livenessProbe: {
                httpGet: http,
                periodSeconds: inf.probes.livenessPeriodSeconds,
                failureThreshold: inf.probes.livenessFailureThreshold,
              },
              readinessProbe: {
                httpGet: { path: "/health/ready", port: "http" },
                periodSeconds: inf.probes.readinessPeriodSeconds,
                failureThreshold: inf.probes.readinessFailureThreshold,
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
            modelsVolume(storage),
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
    metadata: {
      name: INFERENCE.name,
      namespace: NAMESPACE,
      labels: INFERENCE.labels,
      // The provider's Service await adds a fixed 10 s after the last Endpoints change ("settled"), on every create
      // and update: the longest step of a bootstrap. The Service is created only once the Deployment's await saw
      // its replicas ready (dependsOn), so its endpoints are the controller's milliseconds away.
      annotations: { [PULUMI_ANNOTATIONS.skipAwait]: "true" },
    },
    spec: {
      type: "NodePort",
      selector: INFERENCE.labels,
      // Keep the client's source address so the NetworkPolicy's CIDR allow-list means what it says. With
      // Cluster, kube-proxy masquerades NodePort traffic: every pod would see a node address, and the allow-list
      // would have to admit the nodes, i.e. every client. The price: a node serves the NodePort only while it runs
      // a ready replica: replicas prefer the entry node and spread over the rest (README, "Multi-node sites").
      externalTrafficPolicy: "Local",
      ports: [{ name: "http", port: inf.port, targetPort: "http", nodePort }],
    },
  };
}

/**
 * Voluntary disruptions (drains) take one replica at a time, however many the HPA runs. With one replica that
 * means a drain evicts it (an outage until it is rescheduled and has loaded its model) rather than waiting
 * forever. Pods that are not ready (crash-looping, stuck loading) serve nothing: evicting them is always allowed,
 * so they never hold a drain.
 */
export function pdbSpec(): k8s.types.input.policy.v1.PodDisruptionBudget {
  return {
    metadata: { name: INFERENCE.name, namespace: NAMESPACE, labels: INFERENCE.labels },
    spec: {
      maxUnavailable: 1,
      unhealthyPodEvictionPolicy: "AlwaysAllow",
      selector: { matchLabels: INFERENCE.labels },
    },
  };
}

export function hpaSpec(
  sku: SkuProfile,
  inf: InferenceConfig,
): k8s.types.input.autoscaling.v2.HorizontalPodAutoscaler {
  return {
    metadata: {
      name: INFERENCE.name,
      namespace: NAMESPACE,
      labels: INFERENCE.labels,
      annotations: { [ANNOTATIONS.metricReason]: sku.hpa.reason },
    },
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: INFERENCE.name },
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
      metadata: { name: INFERENCE.defaultDenyPolicy, namespace: NAMESPACE },
      spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] },
    },
    {
      metadata: { name: INFERENCE.name, namespace: NAMESPACE, labels: INFERENCE.labels },
      spec: {
        podSelector: { matchLabels: INFERENCE.labels },
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
