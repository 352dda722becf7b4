/**
 * `npm run demo -- --stack <sku> [--sites N]`: brings up a simulated edge site for one SKU, runs the real `pulumi up` of this
 * project against it (the CLI and providers built by harness/build-toolchain.sh), shows what runs, and tears
 * everything down on exit or Ctrl-C. No hardware needed. With `--sites N` (N ≥ 2) the stack is a fleet of N
 * single-node sites, each its own simulated cluster, rolled out in site waves: a canary site, then the rest.
 * A single site's node is a real one by default (kubelet, containerd, runc, CNI, kube-proxy from the toolchain's
 * `node` group): the demo re-runs itself in a private network namespace and ends with the design's first test, a
 * real `curl http://<node>:30080/health`. FORGE_EDGE_NODE=kwok keeps the node simulated (kwok), as fleets are.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { SKU_NAMES, SkuName } from "../config/skus";
import { EngineStack, openStack, PROJECT, projectCopy } from "./engine";
import { startFleet } from "./fleetSites";
import { nodeToolchain } from "./realNode";
import { nodeKindFromEnv, startSite, type NodeKind } from "./site";
import { loadToolchain } from "./toolchain";

/** At most this many simulated sites: each runs its own control plane (etcd, apiserver, …, kwok). */
const MAX_DEMO_SITES = 5;

function parseArgs(argv: string[]): { sku: SkuName; keep: boolean; sites: number } {
  let sku = "thor";
  let keep = false;
  let sites = "1";
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--stack") sku = argv[++i] ?? "";
    else if (argv[i].startsWith("--stack=")) sku = argv[i].slice("--stack=".length);
    else if (argv[i] === "--sites") sites = argv[++i] ?? "";
    else if (argv[i].startsWith("--sites=")) sites = argv[i].slice("--sites=".length);
    else if (argv[i] === "--keep") keep = true;
    else
      throw new Error(
        `unknown argument ${argv[i]}: usage npm run demo -- --stack ${SKU_NAMES.join("|")} [--sites N] [--keep]`,
      );
  }
  if (!(SKU_NAMES as readonly string[]).includes(sku))
    throw new Error(`--stack must be one of ${SKU_NAMES.join(", ")}`);
  const n = Number(sites);
  if (!/^[0-9]+$/.test(sites) || n < 1 || n > MAX_DEMO_SITES)
    throw new Error(
      `--sites must be a whole number from 1 to ${MAX_DEMO_SITES}, not ${JSON.stringify(sites)}`,
    );
  return { sku: sku as SkuName, keep, sites: n };
}

function step(msg: string): void {
  console.log(`\n\x1b[1m==> ${msg}\x1b[0m`);
}

/**
 * The demo's teardown, run once whether the demo ends or is interrupted: `pulumi destroy` as soon as an `up` has
 * started (a failed `up` can leave steps done on the hosts), then the simulated sites stop and their folder goes.
 */
function teardown(sku: SkuName, dir: string, keep: boolean, what: "site" | "sites") {
  const state: { es?: EngineStack; upStarted: boolean; stop?: () => Promise<void> } = { upStarted: false };
  let cleaning: Promise<void> | undefined;
  const run = () =>
    (cleaning ??= (async () => {
      if (keep) return void console.log(`\n--keep: leaving the ${what} running in ${dir}`);
      if (state.es && state.upStarted) {
        step(`pulumi destroy --stack ${sku} (uninstalls K3s from every simulated node)`);
        await state.es.stack
          .destroy({ onOutput: (s) => process.stdout.write(s) })
          .catch((e: Error) => console.error(e.message));
      }
      step(`stopping the simulated ${what}`);
      await state.stop?.();
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  process.once("SIGINT", () => void run().then(() => process.exit(130)));
  process.once("SIGTERM", () => void run().then(() => process.exit(143)));
  return { state, run };
}

/**
 * A kubelet demo: refuses fleets and a missing node group (saying how to build it); re-runs itself in a private
 * network namespace (the node's bridge, iptables and ports must not touch the machine's), returning its exit code.
 */
function kubeletDemo(sites: number): number | undefined {
  if (sites > 1) throw new Error("FORGE_EDGE_NODE=kubelet runs one site (a real node per network namespace)");
  try {
    nodeToolchain();
  } catch (e) {
    throw new Error(
      `the demo's real node needs the node toolchain group (or run it with FORGE_EDGE_NODE=kwok): ${(e as Error).message}`,
    );
  }
  if (process.env.FORGE_EDGE_NETNS === "1") return undefined;
  // Ctrl-C reaches the child too, which tears its site down: wait for it rather than exit first.
  process.on("SIGINT", () => undefined);
  const r = spawnSync(
    "bash",
    [path.join(__dirname, "netns-run.sh"), process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    { stdio: "inherit" },
  );
  return r.status ?? 1;
}

/** The design's first test: `curl http://<node>:30080/health` until 200 (bounded); throws otherwise. */
function curlHealth(endpoint: string): void {
  const url = `${endpoint}/health`;
  step(`curl ${url}`);
  let last = "";
  for (let i = 0; i < 30; i++) {
    const r = spawnSync("curl", ["-sS", "-m", "3", "-w", "\nHTTP %{http_code}\n", url], { encoding: "utf8" });
    last = `${r.stdout}${r.stderr}`.trim();
    if (/HTTP 200$/.test(last)) return void console.log(last);
    spawnSync("sleep", ["1"]);
  }
  throw new Error(`${url} did not answer 200 within 30 s: ${last}`);
}

async function main(): Promise<void> {
  const { sku, keep, sites } = parseArgs(process.argv.slice(2));
  // One site runs a real node by default (the design's first test, curl :30080/health, answers); a fleet's sites
  // are kwok (real nodes need a network namespace each). FORGE_EDGE_NODE=kwok|kubelet overrides.
  const node: NodeKind =
    process.env.FORGE_EDGE_NODE !== undefined ? nodeKindFromEnv() : sites > 1 ? "kwok" : "kubelet";
  if (node === "kubelet") {
    const status = kubeletDemo(sites);
    if (status !== undefined) return void (process.exitCode = status);
  }
  if (sites > 1) return fleetDemo(sku, sites, keep);
  const tc = loadToolchain();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `forge-demo-${sku}-`));
  const { state, run: cleanup } = teardown(sku, dir, keep, "site");

  try {
    const what =
      node === "kubelet" ? "a real node: kubelet, containerd, runc, CNI, kube-proxy" : "kwok GPU node";
    step(`starting a simulated ${sku} edge site (control plane + ${what} + SSH host) in ${dir}`);
    const site = await startSite({ sku, dir, node });
    state.stop = () => site.stop();
    console.log(
      `  node ${site.hosts[0].name} at ssh://root@${site.hosts[0].host}:22, timings (ms): ${JSON.stringify(site.timings)}`,
    );

    step(`pulumi up --stack ${sku} (Pulumi ${tc.versions.pulumi ?? ""}, real engine and providers)`);
    const es = await openStack({ stackName: sku, dir, config: site.config, projectDir: projectCopy(dir) });
    state.es = es;
    const t = Date.now();
    state.upStarted = true;
    const res = await es.stack.up({ onOutput: (s) => process.stdout.write(s) });
    console.log(`\nup: ${res.summary.result} in ${((Date.now() - t) / 1000).toFixed(1)} s`);

    step("what runs");
    const kubeconfig = path.join(dir, "kubeconfig");
    fs.writeFileSync(kubeconfig, String(res.outputs.kubeconfig.value), { mode: 0o600 });
    const kubectl = (...args: string[]) =>
      console.log(execFileSync(tc.bin.kubectl, ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8" }));
    kubectl(
      "get",
      "nodes",
      "-o",
      "custom-columns=NAME:.metadata.name,GPU:.status.allocatable.nvidia\\.com/gpu,SKU:.metadata.labels.forge-edge\\.io/sku",
    );
    kubectl("get", "pods,svc,pvc,hpa,pdb", "-n", "forge-cognition");
    kubectl("get", "daemonsets", "-n", "nvidia-device-plugin");
    console.log(
      node === "kubelet"
        ? `endpoint: ${res.outputs.endpoint.value}   (a real node: the inference pod serves it through kube-proxy)`
        : `endpoint: ${res.outputs.endpoint.value}   (simulated node: pods are kwok-simulated, nothing answers HTTP)`,
    );
    console.log(`gpu slices per node: ${JSON.stringify(res.outputs.gpuSlicesPerNode.value)}`);
    console.log(`autoscaling: ${JSON.stringify(res.outputs.autoscaling.value)}`);
    if (node === "kubelet") {
      // The design's troubleshooting command, answered by the real kubelet through the apiserver.
      step("kubectl logs deployment/inference-server -n forge-cognition --tail=5");
      kubectl("logs", "deployment/inference-server", "-n", "forge-cognition", "--tail=5");
      curlHealth(String(res.outputs.endpoint.value));
    }
  } finally {
    await cleanup();
  }
}

/** `--sites N`: N single-node sites in one stack, rolled out canary site first, then the rest in one wave. */
async function fleetDemo(sku: SkuName, count: number, keep: boolean): Promise<void> {
  const tc = loadToolchain();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `forge-demo-${sku}-fleet-`));
  const names = Array.from({ length: count }, (_, i) => `plant-${String.fromCharCode(97 + i)}`);
  const { state, run: cleanup } = teardown(sku, dir, keep, "sites");

  try {
    step(
      `starting ${count} simulated ${sku} edge sites (each its own control plane + kwok GPU node + SSH host) in ${dir}`,
    );
    const fleet = await startFleet({ sku, dir, sites: names.map((name) => ({ name })) });
    state.stop = () => fleet.stop();
    for (const [name, site] of fleet.sites)
      console.log(
        `  ${name}: node ${site.hosts[0].name} at ssh://root@${site.hosts[0].host}:22, API ${site.controlPlane.server}`,
      );

    step(
      `pulumi up --stack ${sku} with sites [${names.join(", ")}] (canary site first, then the rest in one wave)`,
    );
    const es = await openStack({ stackName: sku, dir, config: fleet.config(), projectDir: projectCopy(dir) });
    state.es = es;
    await es.stack.setConfig(`${PROJECT}:rollout`, {
      value: JSON.stringify({ canarySites: 1, siteBatchSize: 0 }),
    });
    const t = Date.now();
    const gates: string[] = [];
    state.upStarted = true;
    const res = await es.stack.up({
      onOutput: (s) => process.stdout.write(s),
      onEvent: (e) => {
        const done = e.resOutputsEvent?.metadata;
        if (done && done.urn.endsWith("-health"))
          gates.push(`${done.urn.split("::").pop()} +${((Date.now() - t) / 1000).toFixed(1)} s`);
      },
    });
    console.log(`\nup: ${res.summary.result} in ${((Date.now() - t) / 1000).toFixed(1)} s`);

    step("the site waves and each site");
    console.log(`waves: ${JSON.stringify(res.outputs.siteWaves.value)}`);
    console.log(`health gates passed, in order: ${gates.join(", ")}`);
    const outputs = res.outputs.sites.value as Record<
      string,
      { endpoint: string; nodes: unknown; gpuSlicesPerNode: unknown }
    >;
    for (const [name, o] of Object.entries(outputs)) {
      console.log(`\n${name}: endpoint ${o.endpoint}, slices ${JSON.stringify(o.gpuSlicesPerNode)}`);
      const kubeconfig = fleet.sites.get(name)!.controlPlane.kubeconfigPath;
      const kubectl = (...args: string[]) =>
        console.log(
          execFileSync(tc.bin.kubectl, ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8" }),
        );
      kubectl("get", "nodes");
      kubectl("get", "deployments", "-n", "forge-cognition");
    }
  } finally {
    await cleanup();
  }
}

main().catch((e: Error) => {
  console.error(`demo failed: ${e.message}`);
  process.exitCode = 1;
});
