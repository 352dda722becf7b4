/**
 * `npm run bench -- --time-to-serving [--out FILE] [--set key=value ...]`: the modelled time to serving of one
 * node, before and after issue 12's restructure, printed step by step and written into bench-results.json's
 * `timeToServing` key (the file's other figures are kept). `--set uplinkMbps=50` puts a measured figure in place
 * of a default (harness/timeToServing.ts DEFAULTS says where each comes from).
 */
import * as fs from "node:fs";

import { defaultInputs, Inputs, timeToServing, timeToServingResults } from "./timeToServing";

export function parseSets(argv: readonly string[]): Inputs {
  const inputs = defaultInputs();
  argv.forEach((a, idx) => {
    if (a !== "--set") return;
    const m = /^([A-Za-z]+)=([0-9.]+)$/.exec(argv[idx + 1] ?? "");
    if (!m || !(m[1] in inputs)) {
      throw new Error(
        `--set wants key=number, key one of ${Object.keys(inputs).join(", ")}; got ${argv[idx + 1]}`,
      );
    }
    (inputs as unknown as Record<string, number>)[m[1]] = Number(m[2]);
  });
  return inputs;
}

export function timeToServingBench(opts: { out: string; argv: readonly string[] }): void {
  const inputs = parseSets(opts.argv);
  for (const s of timeToServing(inputs).scenarios) {
    console.log(`\n${s.mode}, ${s.order}: ${s.seconds.toFixed(1)} s to serving`);
    for (const t of s.steps) {
      const crit = s.criticalPath.includes(t.id) ? "*" : " ";
      console.log(
        `  ${crit} ${t.id.padEnd(18)} ${t.start.toFixed(1).padStart(7)} ${t.end.toFixed(1).padStart(7)}  ${t.what}`,
      );
    }
  }
  const doc = fs.existsSync(opts.out)
    ? (JSON.parse(fs.readFileSync(opts.out, "utf8")) as Record<string, unknown>)
    : {};
  doc.timeToServing = timeToServingResults(inputs, new Date());
  fs.writeFileSync(opts.out, JSON.stringify(doc, null, 2) + "\n");
  console.log(`\n(* on the critical path) wrote ${opts.out} (timeToServing)`);
}
