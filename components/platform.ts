import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

import { QuotaConfig } from "../config/stack";
import { GPU_RESOURCE, NAMESPACE, PLATFORM, PRIORITY_CLASSES } from "./names";

export interface PlatformArgs {
  quota: QuotaConfig;
}

/**
 * What every Forge workload runs inside: the namespace with Pod Security Admission, the priority classes, and
 * the quota and defaults that keep one workload from starving the node.
 */
export class Platform extends pulumi.ComponentResource {
  public readonly namespace: k8s.core.v1.Namespace;
  public readonly priorityClasses: k8s.scheduling.v1.PriorityClass[];
  public readonly quota: k8s.core.v1.ResourceQuota;
  public readonly limitRange: k8s.core.v1.LimitRange;

  constructor(name: string, args: PlatformArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:platform:Platform", name, {}, opts);
    const child = { parent: this };

    this.namespace = new k8s.core.v1.Namespace(`${name}-namespace`, { metadata: namespaceMeta() }, child);
    this.priorityClasses = Object.values(PRIORITY_CLASSES).map(
      (pc) =>
        new k8s.scheduling.v1.PriorityClass(
          `${name}-${pc.name}`,
          {
            metadata: { name: pc.name },
            value: pc.value,
            globalDefault: false,
            preemptionPolicy: "PreemptLowerPriority",
            description: pc.description,
          },
          child,
        ),
    );
    const inNs = { parent: this, dependsOn: [this.namespace] };
    this.quota = new k8s.core.v1.ResourceQuota(`${name}-quota`, quotaSpec(args.quota), inNs);
    this.limitRange = new k8s.core.v1.LimitRange(`${name}-limits`, limitRangeSpec(), inNs);

    this.registerOutputs({ namespace: this.namespace.metadata.name });
  }
}

export function namespaceMeta() {
  return {
    name: NAMESPACE,
    labels: {
      // Inference pods meet the restricted profile; enforce it so nothing weaker slips in beside them.
      "pod-security.kubernetes.io/enforce": "restricted",
      "pod-security.kubernetes.io/enforce-version": "latest",
      "pod-security.kubernetes.io/warn": "restricted",
      "pod-security.kubernetes.io/audit": "restricted",
    },
  };
}

export function quotaSpec(q: QuotaConfig): k8s.types.input.core.v1.ResourceQuota {
  return {
    metadata: { name: PLATFORM.quota, namespace: NAMESPACE },
    spec: {
      hard: {
        [`requests.${GPU_RESOURCE}`]: String(q.gpu),
        "requests.memory": q.requestsMemory,
        "limits.memory": q.limitsMemory,
        pods: String(q.pods),
      },
    },
  };
}

/** Defaults for containers that declare nothing, so the memory quota can admit them. */
export function limitRangeSpec(): k8s.types.input.core.v1.LimitRange {
  return {
    metadata: { name: PLATFORM.limitRange, namespace: NAMESPACE },
    spec: {
      limits: [
        {
          type: "Container",
          defaultRequest: { cpu: "100m", memory: "128Mi" },
          default: { cpu: "1", memory: "512Mi" },
        },
      ],
    },
  };
}
