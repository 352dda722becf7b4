/** `nodes`: the boxes of the site, reached over SSH, and the K3s roles they take. */
import { Checker, ConfigSource, keysOf, readJson } from "../checker";
import { parseHostKeyPin, PinPolicy } from "./security";

export type NodeRole = "server" | "agent";

export interface NodeConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly role: NodeRole;
  /** Physical GPUs in the node; the device plugin advertises `gpus × timeSlicingReplicas` slices. */
  readonly gpus: number;
  /**
   * Pinned SSH host key, `type base64` (ed25519 or ECDSA; RSA is refused). Required unless the stack sets
   * insecureSkipHostKeyCheck; without it the host key is not verified.
   */
  readonly hostKey?: string;
}

export const NODE_KEYS = keysOf<keyof NodeConfig>({
  name: true,
  host: true,
  port: true,
  user: true,
  role: true,
  gpus: true,
  hostKey: true,
});

const HOST_RE = /^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$/;
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;

export function parseNodes(c: Checker, src: ConfigSource, ctx: PinPolicy): NodeConfig[] {
  return nodesAt(c, "nodes", readJson(src, "nodes"), ctx);
}

/** The node list of one cluster under `key` (`nodes`, or a site's `sites[i].nodes`), each problem named by its path. */
export function nodesAt(c: Checker, key: string, raw: unknown, ctx: PinPolicy): NodeConfig[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    c.problems.push(
      `${key} is required: a list of {name, host, role: server|agent, hostKey, port?, user?, gpus?}, got ${JSON.stringify(raw)}`,
    );
    return [];
  }
  const nodes = raw.map((n, i) => parseNode(c, `${key}[${i}]`, n, ctx));
  checkUnique(c, key, nodes, "name", (n) => n.name, ".name: node names must be unique");
  checkUnique(c, key, nodes, "host", sshEndpoint, ": one node per SSH endpoint");
  const servers = nodes.filter((n) => n.role === "server").length;
  if (servers === 0)
    c.problems.push(`${key} has no server: the first K3s server must be a node with role: server`);
  if (servers === 2 || servers > 3) {
    c.problems.push(
      `${key} has ${servers} servers: K3s embedded etcd needs 1 server, or 3 for HA (an even count loses quorum as easily as one)`,
    );
  }
  if (nodes.length > 0 && nodes[0].role !== "server") {
    c.problems.push(
      `${key}[0].role must be server: the first node initialises the cluster and the others join it`,
    );
  }
  return nodes;
}

/** `host:port`: what one node, and only one in the whole stack, may be dialled at. */
export function sshEndpoint(n: Pick<NodeConfig, "host" | "port">): string {
  return `${n.host}:${n.port}`;
}

function parseNode(c: Checker, key: string, raw: unknown, ctx: PinPolicy): NodeConfig {
  const o = c.section(key, raw, NODE_KEYS);
  const role = c.str(`${key}.role`, o.role, "server", /^(server|agent)$/, "server or agent") as NodeRole;
  const hostKey = parseHostKeyPin(c, `${key}.hostKey`, o.hostKey, ctx);
  return {
    name: c.name(`${key}.name`, o.name),
    host: c.str(`${key}.host`, o.host, undefined, HOST_RE, "an IP address or DNS name"),
    port: c.int(`${key}.port`, o.port, 22, 1, 65535),
    user: c.str(`${key}.user`, o.user, "root", USER_RE, "a POSIX user name with passwordless sudo, or root"),
    role,
    gpus: c.int(`${key}.gpus`, o.gpus, 1, 1, 64),
    hostKey,
  };
}

/** A problem for each node whose `field` repeats an earlier node's (nodes with the field blank are not reported). */
function checkUnique(
  c: Checker,
  key: string,
  nodes: readonly NodeConfig[],
  field: "name" | "host",
  value: (n: NodeConfig) => string,
  why: string,
): void {
  const seen = new Map<string, number>();
  nodes.forEach((n, i) => {
    const v = value(n);
    if (n[field] && seen.has(v))
      c.problems.push(`${key}[${i}].${field} = "${v}" duplicates ${key}[${seen.get(v)}]${why}`);
    seen.set(v, i);
  });
}

/** The site's physical GPUs (at least 1, so defaults stay meaningful while the nodes are invalid) and GPU slices. */
export function gpuTotals(
  nodes: readonly Pick<NodeConfig, "gpus">[],
  timeSlicingReplicas: number,
): { gpus: number; slices: number } {
  const gpus = nodes.reduce((s, n) => s + n.gpus, 0) || 1;
  return { gpus, slices: gpus * timeSlicingReplicas };
}
