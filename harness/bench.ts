/**
 * Scale figures, measured on the simulated site in one run (a benchmark, not a test):
 *   - `pulumi preview` wall time of a fresh stack with 1, 10 and 50 nodes (nothing is dialled in a preview);
 *   - bootstrap (`pulumi up`) wall time for 1 node and for 10 nodes (1 server + 9 agents joining in parallel);
 *   - a no-op `pulumi up` on the 10-node stack.
 * Output: one line per measurement, `<name>\t<seconds>`, and the same as JSON in bench-results.json (or the path
 * given with --out). Run: npm run bench [-- --out results.json]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { run } from "../program";
import { openStack } from "./engine";
import { machineLoad } from "./processes";
import { nodeEntry, Site, SiteNode, startSite } from "./site";

async function time(name: string, results: Record<string, number>, f: () => Promise<unknown>): Promise<void> {
  const t = Date.now();
  await f();
  results[name] = Math.round((Date.now() - t) / 100) / 10;
  console.log(`${name}\t${results[name]}`);
}

function fleet(n: number): SiteNode[] {
  return [
    { name: "node-00", role: "server" },
    ...Array.from({ length: n - 1 }, (_, i) => ({
      name: `node-${String(i + 1).padStart(2, "0")}`,
      role: "agent" as const,
    })),
  ];
}

/** The site's config with the fleet's nodes; hosts beyond the site's are fake loopback addresses never dialled. */
function fleetConfig(site: Site, nodes: SiteNode[]) {
  const entries = nodes.map((n, i) =>
    site.hosts[i]
      ? nodeEntry(n, site.hosts[i])
      : {
          name: n.name,
          host: `127.0.2.${i + 1}`,
          port: 22,
          user: "root",
          role: n.role,
          gpus: 1,
          hostKey: site.hosts[0].hostKeyLine, // a pin is required; these nodes are never dialled
        },
  );
  const config = { ...site.config, nodes: { value: JSON.stringify(entries) } };
  delete (config as Record<string, unknown>).quota; // derived from the fleet's slices
  return config;
}

/** Above this many cores' worth of other work, figures would measure the neighbours, not forge-edge. */
const MAX_BACKGROUND_CORES = 0.25;

async function refuseBusyMachine(): Promise<void> {
  const load = await machineLoad();
  if (load.busyCores <= MAX_BACKGROUND_CORES || process.argv.includes("--busy-ok")) return;
  throw new Error(
    `the machine is busy (${load.busyCores.toFixed(2)} of ${os.cpus().length} cores used by other processes; ` +
      `the limit is ${MAX_BACKGROUND_CORES}): figures taken now would not be comparable. Busiest:\n` +
      load.top
        .map((t) => `  ${t.cores.toFixed(2)} cores  pid ${t.info.pid}  ${t.info.command.slice(0, 120)}`)
        .join("\n") +
      "\nStop them (or pass --busy-ok to measure anyway) and rerun.",
  );
}

async function main(): Promise<void> {
  await refuseBusyMachine();
  const outIdx = process.argv.indexOf("--out");
  const out = outIdx > 0 ? process.argv[outIdx + 1] : "bench-results.json";
  const results: Record<string, number> = {};
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-bench-"));
  const program = async () => run();
  const ten = fleet(10);
  const site = await startSite({ sku: "p40", dir, nodes: ten, ipBase: 120 });
  try {
    for (const n of [1, 10, 50]) {
      const es = await openStack({
        stackName: `preview-${n}`,
        dir,
        config: fleetConfig(site, fleet(n)),
        program,
      });
      await time(`preview_${n}_nodes_s`, results, () => es.stack.preview());
    }
    const one = await openStack({ stackName: "up-1", dir, config: fleetConfig(site, fleet(1)), program });
    await time("up_1_node_s", results, () => one.stack.up());
    await time("destroy_1_node_s", results, () => one.stack.destroy());
    const many = await openStack({ stackName: "up-10", dir, config: fleetConfig(site, ten), program });
    await time("up_10_nodes_s", results, () => many.stack.up());
    await time("noop_up_10_nodes_s", results, () => many.stack.up());
    await time("destroy_10_nodes_s", results, () => many.stack.destroy());
  } finally {
    await site.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  fs.writeFileSync(
    out,
    JSON.stringify({ date: new Date().toISOString(), cores: os.cpus().length, results }, null, 2) + "\n",
  );
  console.log(`wrote ${out}`);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exitCode = 1;
});
