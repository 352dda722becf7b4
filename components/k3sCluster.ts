import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

import { SkuProfile } from "../config/skus";
import { AirgapConfig, NodeConfig } from "../config/stack";
import { remoteCommand } from "../scripts/render";
import { EdgeNode, nodeConnection } from "./edgeNode";

export const K3S_API_PORT = 6443;

export interface K3sClusterArgs {
  stack: string;
  sku: SkuProfile;
  nodes: readonly NodeConfig[];
  sshPrivateKey: pulumi.Input<string>;
  k3sVersion: string;
  toolkitVersion: string;
  timeSlicingReplicas: number;
  airgap?: AirgapConfig;
}

export interface NodeSummary {
  name: string;
  host: string;
  role: string;
  gpus: number;
}

/**
 * The K3s cluster of one stack: a token, the first server, the nodes that join it, and a Kubernetes provider
 * built from the server's kubeconfig (secret end to end).
 */
export class K3sCluster extends pulumi.ComponentResource {
  public readonly nodes: EdgeNode[];
  public readonly kubeconfig: pulumi.Output<string>;
  public readonly provider: k8s.Provider;
  /** Every node's K3s step: Kubernetes resources wait for the whole cluster, not only the first server. */
  public readonly ready: pulumi.Resource[];
  public readonly summary: NodeSummary[];
  /** `nvidia.com/gpu` each node advertises: physical GPUs × time-slicing replicas. */
  public readonly gpuSlicesPerNode: Record<string, number>;

  constructor(name: string, args: K3sClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("forge:cluster:K3sCluster", name, {}, opts);
    const [first, ...rest] = args.nodes;
    const servers = args.nodes.filter((n) => n.role === "server").length;

    const token = new random.RandomPassword(
      `${name}-token`,
      { length: 64, special: false },
      { parent: this },
    );

    const nodeArgs = (node: NodeConfig, serverUrl: string) => ({
      node,
      sku: args.sku,
      sshPrivateKey: args.sshPrivateKey,
      k3sVersion: args.k3sVersion,
      toolkitVersion: args.toolkitVersion,
      token: token.result,
      serverUrl,
      clusterInit: serverUrl === "" && servers > 1,
      airgap: args.airgap,
    });
    const firstNode = new EdgeNode(first.name, nodeArgs(first, ""), { parent: this });
    const serverUrl = serverUrlOf(first);
    // Joiners only need the first server up; they join in parallel with each other.
    const joiners = rest.map(
      (n) => new EdgeNode(n.name, nodeArgs(n, serverUrl), { parent: this, dependsOn: [firstNode.k3s] }),
    );
    this.nodes = [firstNode, ...joiners];
    this.ready = this.nodes.map((n) => n.k3s);

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
        clusterIdentifier: `forge-edge/${args.stack}/${first.name}`,
        enableConfigMapMutable: true,
      },
      { parent: this },
    );

    this.summary = args.nodes.map((n) => ({ name: n.name, host: n.host, role: n.role, gpus: n.gpus }));
    this.gpuSlicesPerNode = Object.fromEntries(
      args.nodes.map((n) => [n.name, n.gpus * args.timeSlicingReplicas]),
    );
    this.registerOutputs({
      kubeconfig: this.kubeconfig,
      nodes: this.summary,
      gpuSlicesPerNode: this.gpuSlicesPerNode,
    });
  }
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
