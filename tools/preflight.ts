/**
 * `npm run preflight -- --stack thor`: before the first `pulumi up` on real boxes, checks every node read-only over
 * SSH (with the pinned host key, the way the provider will dial it) and prints one table, each failure with its fix.
 * The node-side checks are scripts/preflight.sh, run as the login user without sudo; this file adds what only the
 * client can see: reachability, the host key and the login.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { isPlaceholderHostKey, parseHostKey } from "../config/hostKeys";
import { nodesKeyOf } from "../config/sections/sites";
import {
  ConfigError,
  NodeConfig,
  parseMemory,
  parseStackConfig,
  SiteConfig,
  StackConfig,
} from "../config/stack";
import { renderScript, ScriptParams } from "../scripts/render";
import { configSource, parseArgs, readStackConfig, runMain } from "./stackConfig";

const USAGE = "usage: npm run preflight -- --stack <stack> [--cwd <project dir>]";

export type Status = "ok" | "warn" | "fail";
export interface Row {
  node: string;
  check: string;
  status: Status;
  detail: string;
  fix: string;
}

/** What K3s, its images and the system pods need on disk before the model volumes (GiB). */
export const K3S_DISK_GIB = 20;
/**
 * The first NVIDIA Container Toolkit that detects Thor as Tegra (CSV mode): v1.18's changelog, "Fix mode detection on
 * Thor-based systems" (go-nvlib v0.7.2 matches the "NVIDIA Thor" iGPU name).
 */
export const TEGRA_MIN_TOOLKIT = "1.18.0";
/** The K3s release (minor) from which the kubelet refuses cgroup v1 (`failCgroupV1` defaults to true). */
export const CGROUP_V2_FROM_MINOR = 35;

/** The parameters of scripts/preflight.sh for one node of the stack, with its site's NodePort and storage. */
export function preflightParams(
  config: StackConfig,
  node: NodeConfig,
  site: Pick<SiteConfig, "nodePort" | "storage"> = config,
): ScriptParams {
  const { sku } = config;
  const local = site.storage.storageClass === "local-path";
  const storageGiB = local ? Math.ceil((parseMemory(site.storage.size) ?? 0) / 2 ** 30) : 0;
  const minor = Number(/^v1\.(\d+)\./.exec(config.k3sVersion)?.[1] ?? 0);
  // The API server and the kubelet on servers; the kubelet everywhere; the NodePort on every node (kube-proxy).
  const ports = [...(node.role === "server" ? [6443] : []), 10250, site.nodePort];
  return {
    SKU: sku.name,
    PRODUCT_MATCH: sku.gpu.productMatch,
    EXPECT_GPUS: node.gpus,
    DRIVER_MIN_BRANCH: sku.driver.minBranch,
    DRIVER_MAX_BRANCH: sku.driver.maxBranch,
    TOOLKIT_SOURCE: sku.toolkitSource,
    TOOLKIT_VERSION: config.toolkitVersion,
    TOOLKIT_MIN: sku.toolkitSource === "jetpack" ? TEGRA_MIN_TOOLKIT : config.toolkitVersion,
    MIN_L4T_MAJOR: sku.deviceDiscovery === "tegra" ? 38 : 0,
    MIN_FREE_GIB: K3S_DISK_GIB + storageGiB,
    PORTS: ports.join(" "),
    CGROUP_V2_REQUIRED: minor >= CGROUP_V2_FROM_MINOR,
  };
}

/** Parses the `CHECK\t…` lines of preflight.sh. */
export function parseChecks(node: string, stdout: string): Row[] {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("CHECK\t"))
    .map((l) => {
      const [, status, check, detail, fix] = l.split("\t");
      return { node, check, status: status as Status, detail: detail ?? "", fix: fix ?? "" };
    });
}

interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runSsh(args: string[], input: string, timeoutMs: number): Promise<SshResult> {
  return new Promise((resolve) => {
    const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 255, stdout, stderr });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(input);
  });
}

/** The SSH connection row, from how `ssh` failed (exit 255) or that it worked. */
function connectionRows(node: NodeConfig, name: string, r: SshResult, pinned: boolean, stack: string): Row[] {
  const endpoint = `${node.user}@${node.host}:${node.port}`;
  const err = r.stderr.trim().split("\n").slice(-1)[0] ?? "";
  if (r.code !== 255) {
    return [
      { node: name, check: "ssh", status: "ok", detail: `logged in as ${endpoint}`, fix: "" },
      pinned
        ? { node: name, check: "host key", status: "ok", detail: "matches the pin", fix: "" }
        : {
            node: name,
            check: "host key",
            status: "warn",
            detail: "not pinned (insecureSkipHostKeyCheck): not verified",
            fix: `npm run pin-host-keys -- --stack ${stack}`,
          },
    ];
  }
  if (
    /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|no matching host key type/i.test(
      r.stderr,
    )
  ) {
    return [
      { node: name, check: "ssh", status: "ok", detail: `${node.host}:${node.port} answers SSH`, fix: "" },
      {
        node: name,
        check: "host key",
        status: "fail",
        detail: "the host's key does not match nodes[].hostKey (or it has no key of the pinned type)",
        fix: `check the key on the box's console; if the box was reinstalled: npm run pin-host-keys -- --stack ${stack} --replace`,
      },
    ];
  }
  if (/Permission denied/i.test(r.stderr)) {
    return [
      {
        node: name,
        check: "ssh",
        status: "fail",
        detail: `${endpoint} refused the stack's sshPrivateKey`,
        fix: `add the public key of sshPrivateKey to ~${node.user}/.ssh/authorized_keys on the box, or fix nodes[].user`,
      },
    ];
  }
  return [
    {
      node: name,
      check: "ssh",
      status: "fail",
      detail: `${node.host}:${node.port} unreachable: ${err || "timed out"}`,
      fix: "check nodes[].host/port, the box's network and that sshd runs (port 22/tcp open from here)",
    },
  ];
}

/** Runs every node's checks (in parallel) and returns the rows in node order. */
export async function runPreflight(
  config: StackConfig,
  privateKey: string,
  opts: { timeoutMs?: number } = {},
): Promise<Row[]> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forge-preflight-"));
  try {
    const keyFile = path.join(tmp, "id");
    fs.writeFileSync(keyFile, privateKey.endsWith("\n") ? privateKey : `${privateKey}\n`, { mode: 0o600 });
    // A fleet's node names repeat across sites: its rows name the node `<site>/<node>`.
    const entries = config.sites.flatMap((site) =>
      site.nodes.map((node, k) => ({
        node,
        site,
        key: `${nodesKeyOf(site)}[${k}]`,
        label: config.layout === "sites" ? `${site.name}/${node.name}` : node.name,
      })),
    );
    const perNode = await Promise.all(
      entries.map(async ({ node, site, key, label }, i): Promise<Row[]> => {
        if (isPlaceholderHostKey(node.hostKey)) {
          return [
            {
              node: label,
              check: "host key",
              status: "fail",
              detail: "nodes[].hostKey is still the stack file's placeholder: not dialled",
              fix: `set ${key}.host, then npm run pin-host-keys -- --stack ${config.stack}`,
            },
          ];
        }
        const kh = path.join(tmp, `known_hosts.${i}`);
        const pin = node.hostKey ? parseHostKey(node.hostKey) : undefined;
        const hostPattern = node.port === 22 ? node.host : `[${node.host}]:${node.port}`;
        fs.writeFileSync(kh, pin?.ok ? `${hostPattern} ${pin.value.line}\n` : "");
        const args = [
          "-i",
          keyFile,
          "-p",
          String(node.port),
          "-o",
          "IdentitiesOnly=yes",
          "-o",
          "BatchMode=yes",
          "-o",
          `UserKnownHostsFile=${kh}`,
          "-o",
          "GlobalKnownHostsFile=/dev/null",
          "-o",
          "ConnectTimeout=10",
          "-o",
          "ServerAliveInterval=5",
          "-o",
          "ServerAliveCountMax=3",
          "-o",
          "LogLevel=ERROR",
          // The provider offers exactly the pinned key's algorithm; so does this check.
          ...(pin?.ok
            ? ["-o", "StrictHostKeyChecking=yes", "-o", `HostKeyAlgorithms=${pin.value.type}`]
            : ["-o", "StrictHostKeyChecking=no"]),
          `${node.user}@${node.host}`,
          "bash -s",
        ];
        const script = renderScript("preflight", preflightParams(config, node, site));
        const r = await runSsh(args, script, opts.timeoutMs ?? 120_000);
        const rows = connectionRows(node, label, r, pin?.ok === true, config.stack);
        if (r.code === 255) return rows;
        const checks = parseChecks(label, r.stdout);
        if (checks.length === 0 || r.code !== 0) {
          checks.push({
            node: label,
            check: "preflight.sh",
            status: "fail",
            detail: `exited ${r.code}: ${r.stderr.trim().split("\n").slice(-1)[0] ?? ""}`,
            fix: "bash must be installed on the box; run the script by hand to see why",
          });
        }
        return [...rows, ...checks];
      }),
    );
    return perNode.flat();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** One table: node, check, result, detail, and the fix of every warning or failure. */
export function formatTable(rows: readonly Row[]): string {
  const head: Row = { node: "NODE", check: "CHECK", status: "ok", detail: "DETAIL", fix: "FIX" };
  const shown = (r: Row) => (r === head ? "RESULT" : r.status.toUpperCase());
  const all = [head, ...rows];
  const w = (f: (r: Row) => string) => Math.max(...all.map((r) => f(r).length));
  const wn = w((r) => r.node);
  const wc = w((r) => r.check);
  const ws = w(shown);
  const wd = w((r) => r.detail);
  return all
    .map((r) =>
      [
        r.node.padEnd(wn),
        r.check.padEnd(wc),
        shown(r).padEnd(ws),
        r.status === "ok" && r !== head ? r.detail : r.detail.padEnd(wd),
        r.status === "ok" && r !== head ? "" : r.fix,
      ]
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, USAGE);
  const entries = readStackConfig(args, true);
  let config: StackConfig;
  try {
    config = parseStackConfig(args.stack, configSource(entries));
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  const key = configSource(entries).get("sshPrivateKey") ?? "";
  const rows = await runPreflight(config, key);
  console.log(formatTable(rows));
  const failed = rows.filter((r) => r.status === "fail").length;
  console.log(
    failed === 0
      ? `\npreflight passed on ${config.nodes.length} node(s) of stack "${config.stack}"`
      : `\n${failed} check(s) failed on stack "${config.stack}": fix them before \`pulumi up\``,
  );
  return failed === 0 ? 0 : 1;
}

if (require.main === module) runMain(() => main(process.argv.slice(2)));
