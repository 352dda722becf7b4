import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

import { K3S_API_PORT } from "../config/fleetRun";
import { SkuProfile } from "../config/skus";
import { NodeBootstrap, NodeConfig, RolloutConfig } from "../config/stack";
import { remoteCommand } from "../scripts/render";
import { EdgeNode, nodeConnection, nodeLabels } from "./edgeNode";
import { PULUMI_ANNOTATIONS } from "./names";

export { K3S_API_PORT };

export interface K3sClusterArgs {
  nodes: readonly NodeConfig[];
  /** Passed to every node as is. */
  bootstrap: NodeBootstrap;
  sshPrivateKey: pulumi.Input<string>;
  rollout: Pick<RolloutConfig, "batchSize" | "drainTimeoutSeconds">;
  /** The Kubernetes provider's `clusterIdentifier`: stable for the cluster's life, whatever its kubeconfig. */
  clusterIdentifier: string;
  /** Put before each node's name to name its EdgeNode: empty, or `<site>-` (node names repeat across sites). */
  nodeResourcePrefix: string;
  /** What must succeed before any node of this cluster is touched: the previous site wave's health gates. */
  after?: pulumi.Resource[];
}

export interface NodeSummary {
  name: string;
  host: string;
  role: string;
  gpus: number;
}

/**
 * The K3s cluster of one stack: a token, the nodes bootstrapped in rollout waves, and a Kubernetes provider built
 * from the first server's kubeconfig (secret end to end).
 */
export class K3sCluster extends pulumi.ComponentResource {
  public readonly nodes: EdgeNode[];
  public readonly kubeconfig: pulumi.Output<string>;
  public readonly provider: k8s.Provider;
  /** Every node's last step: Kubernetes resources wait for the whole cluster, not only the first server. */
  public readonly ready: pulumi.Resource[];
  /** The GPU/SKU labels of each node, converged on every `up`. */
  public readonly labels: k8s.core.v1.NodePatch[];
  public readonly summary: NodeSummary[];
  /** Node names per rollout wave, in order: how a bootstrap or a K3s upgrade walks the fleet. */
  public readonly waves: string[][];
  /**
   * Air gap: every node's import of the stack's image tarballs (EdgeNode.imagesImported), for the pods that run
   * those images to wait for; empty when no node has one (online, no stack tarballs, or a K3s without the watcher).
   */
  public readonly imagesReady: pulumi.Resource[];

  constructor(name: string, args: K3sClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:cluster:K3sCluster", name, {}, opts);
    const [first] = args.nodes;
    const servers = args.nodes.filter((n) => n.role === "server").length;
    const token = new random.RandomPassword(
      `${name}-token`,
      { length: 64, special: false },
      { parent: this },
    );
    const serverUrl = serverUrlOf(first);

    this.waves = rolloutWaves(args.nodes, args.rollout.batchSize);
    const byName = new Map(args.nodes.map((n) => [n.name, n]));
    const built = new Map<string, EdgeNode>();
    const drains: command.remote.Command[] = [];
    let previous: pulumi.Resource[] = args.after ?? [];
    for (const wave of this.waves) {
      const current = wave.map((nodeName) => {
        const node = byName.get(nodeName)!;
        const isFirst = node === first;
        const edge = new EdgeNode(
          `${args.nodeResourcePrefix}${node.name}`,
          {
            node,
            bootstrap: args.bootstrap,
            join: { serverUrl: isFirst ? "" : serverUrl, clusterInit: isFirst && servers > 1 },
            sshPrivateKey: args.sshPrivateKey,
            token: token.result,
            after: previous,
          },
          { parent: this },
        );
        built.set(node.name, edge);
        if (!isFirst) drains.push(this.drainOnRemoval(name, node, first, edge, built.get(first.name)!, args));
        return edge;
      });
      // The next wave starts once this one's K3s runs and its images are in containerd.
      previous = current.flatMap((n) => [n.k3s, ...(n.imagesImported ? [n.imagesImported] : [])]);
    }
    this.nodes = args.nodes.map((n) => built.get(n.name)!);
    this.imagesReady = this.nodes.flatMap((n) => (n.imagesImported ? [n.imagesImported] : []));
    const firstNode = built.get(first.name)!;

    const read = new command.remote.Command(
      `${name}-kubeconfig`,
      {
        connection: nodeConnection(first, args.sshPrivateKey),
        create: remoteCommand("read-kubeconfig", {}, first.user),
        // Re-read when K3s on the first server is reinstalled or upgraded.
        triggers: [firstNode.k3s.id, firstNode.k3s.create],
        logging: "none",
        addPreviousOutputInEnv: false,
      },
      { parent: this, dependsOn: [firstNode.k3s], additionalSecretOutputs: ["stdout", "stderr"] },
    );
    this.kubeconfig = pulumi.secret(read.stdout.apply((kc) => rewriteKubeconfig(kc, first.host)));

    this.provider = new k8s.Provider(
      `${name}-k8s`,
      {
        kubeconfig: this.kubeconfig,
        // A stable identity keeps previews from planning to replace every Kubernetes object whenever the
        // kubeconfig output is unknown (it is, whenever the read step changes).
        clusterIdentifier: args.clusterIdentifier,
        enableConfigMapMutable: true,
      },
      { parent: this },
    );

    // K3s applies `node-label` only when a node first registers: a later label change would never land. Patch
    // the labels after each node's K3s step, on every up.
    this.labels = args.nodes.map(
      (n) =>
        new k8s.core.v1.NodePatch(
          `${name}-labels-${n.name}`,
          nodeLabelPatch(n, args.bootstrap.sku),
          nodeLabelOptions(this, this.provider, built.get(n.name)!.k3s),
        ),
    );
    this.ready = [...this.nodes.map((n) => n.k3s), ...drains, ...this.labels];

    this.summary = args.nodes.map((n) => ({ name: n.name, host: n.host, role: n.role, gpus: n.gpus }));
    this.registerOutputs({ kubeconfig: this.kubeconfig, nodes: this.summary, waves: this.waves });
  }

  /**
   * A no-op while the node is in the stack; when it leaves, its delete drains the node and deletes its Node
   * object from the first server, before the node's own uninstall runs (it depends on the node's K3s step).
   */
  private drainOnRemoval(
    name: string,
    node: NodeConfig,
    first: NodeConfig,
    edge: EdgeNode,
    firstNode: EdgeNode,
    args: K3sClusterArgs,
  ): command.remote.Command {
    return new command.remote.Command(
      `${name}-drain-${node.name}`,
      {
        connection: nodeConnection(first, args.sshPrivateKey),
        delete: remoteCommand(
          "drain-node",
          { NODE_NAME: node.name, DRAIN_TIMEOUT: args.rollout.drainTimeoutSeconds },
          first.user,
        ),
        addPreviousOutputInEnv: false,
      },
      {
        parent: this,
        dependsOn: [edge.k3s, firstNode.k3s],
        customTimeouts: { delete: `${args.rollout.drainTimeoutSeconds + 120}s` },
      },
    );
  }
}

/**
 * The node's labels as a server-side apply patch. K3s (the kubelet's `--node-labels`) set them at registration, so
 * a changed value conflicts with that manager: force it, since these keys are ours.
 */
export function nodeLabelPatch(node: NodeConfig, sku: SkuProfile): k8s.core.v1.NodePatchArgs {
  const labels = Object.fromEntries(
    nodeLabels(node, sku).map((l) => {
      const i = l.indexOf("=");
      return [l.slice(0, i), l.slice(i + 1)];
    }),
  );
  return { metadata: { name: node.name, labels, annotations: { [PULUMI_ANNOTATIONS.patchForce]: "true" } } };
}

/**
 * After the node's K3s step. (A K3s agent's kubelet may register a moment after its step returns; an apply that
 * comes first creates the Node, and the kubelet's registration adopts an existing Node of its name.) Retained on
 * delete: a leaving node's Node object is deleted by its drain step or its uninstall, and relinquishing the labels
 * first would only evict the device plugin from a node that is going away (or fail with the cluster gone).
 */
export function nodeLabelOptions(
  parent: pulumi.Resource,
  provider: k8s.Provider,
  k3s: pulumi.Resource,
): pulumi.CustomResourceOptions {
  return { parent, provider, dependsOn: [k3s], retainOnDelete: true };
}

/**
 * Rollout waves: the first server alone (the canary, which also initialises the cluster), each further server
 * alone (embedded etcd admits one member at a time), then the agents: one canary agent, then batches of
 * `batchSize` (0: all the rest at once). Each wave starts only when the previous one succeeded, so a failing node
 * stops the rollout while the nodes already done keep serving.
 */
export function rolloutWaves(nodes: readonly NodeConfig[], batchSize: number): string[][] {
  const servers = nodes.filter((n) => n.role === "server").map((n) => n.name);
  const agents = nodes.filter((n) => n.role === "agent").map((n) => n.name);
  const waves = servers.map((s) => [s]);
  if (agents.length === 0) return waves;
  const [canary, ...rest] = agents;
  waves.push([canary]);
  const size = batchSize > 0 ? batchSize : rest.length;
  for (let i = 0; i < rest.length; i += size) waves.push(rest.slice(i, i + size));
  return waves;
}

export function serverUrlOf(node: NodeConfig): string {
  const host = node.host.includes(":") ? `[${node.host}]` : node.host;
  return `https://${host}:${K3S_API_PORT}`;
}

/** K3s writes its kubeconfig for 127.0.0.1; clients reach the server at the node's address instead. */
export function rewriteKubeconfig(kubeconfig: string, host: string): string {
  const target = host.includes(":") ? `[${host}]` : host;
  const rewritten = kubeconfig.replace(
    /server:\s*https:\/\/(127\.0\.0\.1|localhost|\[::1\]):(\d+)/g,
    (_m, _h, port: string) => `server: https://${target}:${port}`,
  );
  if (!/server:\s*https:\/\//.test(rewritten))
    throw new Error("the K3s kubeconfig has no https server entry");
  return rewritten;
}
