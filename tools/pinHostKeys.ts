/**
 * `npm run pin-host-keys -- --stack thor [--replace]`: fills every node's `hostKey` in the stack config from
 * `ssh-keyscan` (ed25519 preferred, else ECDSA; never RSA, which the provider can only verify with SHA-1), through
 * `pulumi config set --path 'nodes[i].hostKey'` (a fleet: `sites[j].nodes[k].hostKey`). Trust on first use: compare the printed fingerprints with the
 * boxes' consoles (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`). A pin that differs from what the host now
 * offers is never overwritten without --replace: that is what a man in the middle looks like.
 */
import { createHash } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";

import { isPlaceholderHostKey, parseHostKey, ParsedHostKey, PINNABLE_KEY_TYPES } from "../config/hostKeys";
import {
  ConfigEntryJson,
  parseArgs,
  pulumiBin,
  rawValue,
  readStackConfig,
  runMain,
  PROJECT,
  ToolArgs,
} from "./stackConfig";

const USAGE = "usage: npm run pin-host-keys -- --stack <stack> [--replace] [--cwd <project dir>]";

/** The key to pin from `ssh-keyscan` output: the first pinnable type in preference order. */
export function choosePin(scanOutput: string): ParsedHostKey | undefined {
  const offered = new Map<string, ParsedHostKey>();
  for (const line of scanOutput.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const parts = line.trim().split(/\s+/);
    const parsed = parsed3(parts);
    if (parsed) offered.set(parsed.type, parsed);
  }
  for (const t of PINNABLE_KEY_TYPES) if (offered.has(t)) return offered.get(t);
  return undefined;
}

function parsed3(parts: string[]): ParsedHostKey | undefined {
  if (parts.length < 3) return undefined;
  const r = parseHostKey(`${parts[1]} ${parts[2]}`);
  return r.ok ? r.value : undefined;
}

/** OpenSSH's `SHA256:…` fingerprint of a key line. */
export function fingerprint(line: string): string {
  const blob = Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

interface NodeEntry {
  name?: string;
  host?: string;
  port?: number | string;
  hostKey?: string;
}

export type PinOutcome = "pinned" | "unchanged" | "changed-refused" | "replaced" | "unreachable";

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, USAGE, ["--replace"]);
  const nodes = stackNodes(readStackConfig(args, false));
  if (nodes.length === 0)
    throw new Error(`stack "${args.stack}" has no nodes: set ${PROJECT}:nodes (or ${PROJECT}:sites) first`);
  let failed = 0;
  for (const { key, node } of nodes) {
    const outcome = pinNode(args, node, key);
    if (outcome === "changed-refused" || outcome === "unreachable") failed++;
  }
  if (failed > 0) console.error(`${failed} node(s) not pinned`);
  return failed > 0 ? 1 : 0;
}

/** Every node of the stack with the path `pulumi config set --path` names it by: `nodes[i]` or `sites[j].nodes[k]`. */
export function stackNodes(entries: Record<string, ConfigEntryJson>): { key: string; node: NodeEntry }[] {
  const list = (k: string): unknown[] => {
    const v = JSON.parse(rawValue(entries[`${PROJECT}:${k}`]) ?? "null") as unknown;
    return Array.isArray(v) ? v : [];
  };
  const nodes = list("nodes").map((node, i) => ({ key: `nodes[${i}]`, node: node as NodeEntry }));
  const inSites = list("sites").flatMap((site, j) => {
    const own = (site as { nodes?: unknown } | null)?.nodes;
    return (Array.isArray(own) ? own : []).map((node, k) => ({
      key: `sites[${j}].nodes[${k}]`,
      node: node as NodeEntry,
    }));
  });
  return [...nodes, ...inSites];
}

function pinNode(args: ToolArgs, n: NodeEntry, key: string): PinOutcome {
  const label = `${key} ${n.name ?? "?"} (${n.host ?? "?"}:${n.port ?? 22})`;
  if (typeof n.host !== "string" || n.host === "") {
    console.error(`${label}: no host set`);
    return "unreachable";
  }
  const scan = spawnSync(
    "ssh-keyscan",
    ["-T", "10", "-p", String(n.port ?? 22), "-t", "ed25519,ecdsa", n.host],
    { encoding: "utf8", timeout: 60_000 },
  );
  const pin = choosePin(scan.stdout ?? "");
  if (!pin) {
    const why = (scan.stderr ?? "").split("\n").filter((l) => l && !l.startsWith("#"))[0] ?? "no answer";
    console.error(
      `${label}: no ed25519 or ECDSA host key from ssh-keyscan (${why}); reachable on that port? ` +
        "An RSA-only sshd cannot be pinned: add `HostKey /etc/ssh/ssh_host_ed25519_key` (ssh-keygen -A) on the box",
    );
    return "unreachable";
  }
  const had = typeof n.hostKey === "string" ? parseHostKey(n.hostKey) : undefined;
  const hadLine = had?.ok ? had.value.line : undefined;
  if (hadLine === pin.line) {
    console.log(`${label}: already pinned, ${pin.type} ${fingerprint(pin.line)}`);
    return "unchanged";
  }
  const pinnedBefore = hadLine !== undefined && !isPlaceholderHostKey(hadLine);
  if (pinnedBefore && !args.flags.has("--replace")) {
    console.error(
      `${label}: the host now offers ${pin.type} ${fingerprint(pin.line)}, but the stack pins ${fingerprint(hadLine!)}. ` +
        "A reinstalled box gets new keys; so does a man in the middle. Check the key on the box's console, then rerun with --replace",
    );
    return "changed-refused";
  }
  execFileSync(pulumiBin(), ["config", "set", "--path", `${key}.hostKey`, pin.line, "--stack", args.stack], {
    cwd: args.cwd,
    stdio: ["ignore", "ignore", "pipe"],
  });
  console.log(
    `${label}: pinned ${pin.type} ${fingerprint(pin.line)}${pinnedBefore ? " (replaced the old pin)" : ""}; ` +
      "compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the box",
  );
  return pinnedBefore ? "replaced" : "pinned";
}

if (require.main === module) runMain(() => main(process.argv.slice(2)));
