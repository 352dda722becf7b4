/**
 * Drill, not a test (it takes over ten minutes by design, so `npm test` does not run it): a healthy rollout that
 * outlives pulumi-kubernetes' 10-minute default Deployment wait must not fail `pulumi up`.
 *
 * On a simulated P40 site the stack is brought up, the node is cordoned, and a settings change rolls the
 * Deployment: with `maxSurge: 0` the old pod goes and the new one stays Pending until the node is uncordoned after
 * `--hold` seconds (default 660, past the provider's 600 s default) — a stand-in for a slow image pull and model
 * load. The update succeeds only if the Deployment's await budget (`pulumi.com/timeoutSeconds`, derived from the
 * stack) covers the wait. Run: `npm run drill:slow-rollout [-- --hold 660]`; prints the budget, the wait and the
 * result.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { run } from "../program";
import { openStack, PROJECT } from "./engine";
import { startSite } from "./site";

async function main(): Promise<void> {
  const holdIdx = process.argv.indexOf("--hold");
  const holdSeconds = holdIdx > 0 ? Number(process.argv[holdIdx + 1]) : 660;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-slow-rollout-"));
  const site = await startSite({ sku: "p40", dir, ipBase: 150 });
  try {
    const es = await openStack({
      stackName: "slow-rollout",
      dir,
      config: site.config,
      program: async () => run(),
    });
    await es.stack.up();
    const deployPath = "/apis/apps/v1/namespaces/forge-cognition/deployments/inference-server";
    const deploy = (await site.kube.get(deployPath)) as { metadata: { annotations: Record<string, string> } };
    const budget = deploy.metadata.annotations["pulumi.com/timeoutSeconds"];
    const node = "/api/v1/nodes/p40-01";
    const cordon = (unschedulable: boolean) =>
      site.kube.send("PATCH", node, { spec: { unschedulable } }, "application/merge-patch+json");
    await cordon(true);
    const cfg = JSON.parse(site.config.inference.value) as { settings?: Record<string, string> };
    cfg.settings = { ...(cfg.settings ?? {}), DRILL: "slow-rollout" };
    await es.stack.setConfig(`${PROJECT}:inference`, { value: JSON.stringify(cfg) });
    const t = Date.now();
    const release = setTimeout(() => void cordon(false), holdSeconds * 1000);
    try {
      const res = await es.stack.up();
      console.log(
        `await budget ${budget} s; new pod held Pending ${holdSeconds} s; up ${res.summary.result} after ` +
          `${((Date.now() - t) / 1000).toFixed(1)} s (pulumi-kubernetes default: 600 s)`,
      );
    } catch (e) {
      console.log(
        `up FAILED after ${((Date.now() - t) / 1000).toFixed(1)} s: ${(e as Error).message.slice(-600)}`,
      );
      process.exitCode = 1;
    } finally {
      clearTimeout(release);
    }
    await es.stack.destroy();
  } finally {
    await site.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exitCode = 1;
});
