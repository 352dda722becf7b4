/**
 * Per-node capacity of a stack. Each inference replica gets its own model volume on the node it runs on (a generic
 * ephemeral volume), so replicas spread over the GPU nodes: the site's slices add up, but every rule that decides
 * whether a replica fits is a rule about one node.
 */
import { parseMemory } from "./stack";

export interface CapacityInput {
  readonly nodes: readonly { readonly name: string; readonly gpus: number }[];
  readonly timeSlicingReplicas: number;
  readonly replicas: number;
  readonly maxReplicas: number;
  /** `storage.size`: one replica's model volume. */
  readonly storageSize: string;
}

export interface NodeCapacity {
  readonly name: string;
  /** `nvidia.com/gpu` the node advertises. */
  readonly slices: number;
  /** The most inference replicas that can land on this node. */
  readonly inferencePods: number;
  /**
   * Disk the node's local-path directory (`/var/lib/rancher/k3s/storage`) must hold for them. local-path has no
   * storage-capacity tracking, so the scheduler cannot check this: preflight or the node step has to.
   */
  readonly modelStorageBytes: number;
}

export function nodeCapacities(input: CapacityInput): NodeCapacity[] {
  const size = parseMemory(input.storageSize) ?? 0;
  return input.nodes.map((n) => {
    const slices = n.gpus * input.timeSlicingReplicas;
    const inferencePods = Math.min(slices, input.maxReplicas);
    return { name: n.name, slices, inferencePods, modelStorageBytes: inferencePods * size };
  });
}

/**
 * Problems with the site's per-node capacity, as config messages (key, value, why). On a multi-node site every node
 * may be drained (node removal, maintenance): the replicas the HPA never goes below must then fit on the other
 * nodes, or the evicted replica stays Pending and the disruption budget stops the drain until it times out. A
 * single-node site has nowhere to move a replica; that trade-off is documented, not refused.
 */
export function capacityProblems(input: CapacityInput): string[] {
  const caps = nodeCapacities(input);
  if (caps.length < 2) return [];
  const total = caps.reduce((s, c) => s + c.slices, 0);
  const problems: string[] = [];
  for (const c of caps) {
    const rest = total - c.slices;
    if (rest < input.replicas) {
      problems.push(
        `inference.replicas = ${input.replicas} does not fit when node ${c.name} is drained: the other nodes advertise ` +
          `${rest} GPU slice(s), so an evicted replica stays Pending and the drain waits on the disruption budget; ` +
          `lower inference.replicas to ${rest} or add GPU capacity`,
      );
    }
  }
  return problems;
}
