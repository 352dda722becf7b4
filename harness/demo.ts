/**
 * `npm run demo -- --stack <sku>`: brings up a simulated edge site for one SKU, runs the real `pulumi up` of this
 * project against it (the CLI and providers built by harness/build-toolchain.sh), shows what runs, and tears
 * everything down on exit or Ctrl-C. No hardware needed.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { SKU_NAMES, SkuName } from "../config/skus";
import { EngineStack, openStack, projectCopy } from "./engine";
import { Site, startSite } from "./site";
import { loadToolchain } from "./toolchain";

function parseArgs(argv: string[]): { sku: SkuName; keep: boolean } {
  let sku = "thor";
  let keep = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--stack") sku = argv[++i] ?? "";
    else if (argv[i].startsWith("--stack=")) sku = argv[i].slice("--stack=".length);
    else if (argv[i] === "--keep") keep = true;
    else
      throw new Error(
        `unknown argument ${argv[i]}: usage npm run demo -- --stack ${SKU_NAMES.join("|")} [--keep]`,
      );
  }
  if (!(SKU_NAMES as readonly string[]).includes(sku))
    throw new Error(`--stack must be one of ${SKU_NAMES.join(", ")}`);
  return { sku: sku as SkuName, keep };
}

function step(msg: string): void {
  console.log(`\n\x1b[1m==> ${msg}\x1b[0m`);
}

async function main(): Promise<void> {
  const { sku, keep } = parseArgs(process.argv.slice(2));
  const tc = loadToolchain();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `forge-demo-${sku}-`));
  let site: Site | undefined;
  let es: EngineStack | undefined;
  let upDone = false;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      if (keep) return void console.log(`\n--keep: leaving the site running in ${dir}`);
      if (es && upDone) {
        step(`pulumi destroy --stack ${sku} (uninstalls K3s from every simulated node)`);
        await es.stack
          .destroy({ onOutput: (s) => process.stdout.write(s) })
          .catch((e: Error) => console.error(e.message));
      }
      step("stopping the simulated site");
      await site?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  process.once("SIGTERM", () => void cleanup().then(() => process.exit(143)));

  try {
    step(`starting a simulated ${sku} edge site (control plane + kwok GPU node + SSH host) in ${dir}`);
    site = await startSite({ sku, dir });
    console.log(
      `  node ${site.hosts[0].name} at ssh://root@${site.hosts[0].host}:22, timings (ms): ${JSON.stringify(site.timings)}`,
    );

    step(`pulumi up --stack ${sku} (Pulumi ${tc.versions.pulumi ?? ""}, real engine and providers)`);
    es = await openStack({ stackName: sku, dir, config: site.config, projectDir: projectCopy(dir) });
    const t = Date.now();
    const res = await es.stack.up({ onOutput: (s) => process.stdout.write(s) });
    upDone = true;
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
      `endpoint: ${res.outputs.endpoint.value}   (simulated node: pods are kwok-simulated, nothing answers HTTP)`,
    );
    console.log(`gpu slices per node: ${JSON.stringify(res.outputs.gpuSlicesPerNode.value)}`);
    console.log(`autoscaling: ${JSON.stringify(res.outputs.autoscaling.value)}`);
  } finally {
    await cleanup();
  }
}

main().catch((e: Error) => {
  console.error(`demo failed: ${e.message}`);
  process.exitCode = 1;
});
