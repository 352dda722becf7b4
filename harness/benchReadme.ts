/**
 * Rewrites README.md's performance section (between the bench markers) and its Fleets bench table (between the
 * bench-fleet markers) and its time-to-serving, simulated time-to-serving and peers tables from bench-results.json.
 * Run: npm run bench:readme [-- --results FILE]
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { BenchResults, formattedPerformance, replaceSection } from "./benchReport";
import { formattedFleet, replaceFleetSection } from "./fleetBench";
import { formattedTimeToServing, replaceTimeToServingSection } from "./timeToServing";
import { formattedTimeToServingSim, TTS_SIM_SECTION } from "./ttsSim";
import { formattedPeers, replacePeersSection } from "./peers/peerBench";

const ROOT = path.resolve(__dirname, "..");

async function main(): Promise<void> {
  const i = process.argv.indexOf("--results");
  const resultsFile = i > 0 ? process.argv[i + 1] : path.join(ROOT, "bench-results.json");
  const readmePath = path.join(ROOT, "README.md");
  const doc = JSON.parse(fs.readFileSync(resultsFile, "utf8")) as BenchResults;
  const readme = fs.readFileSync(readmePath, "utf8");
  let next = replaceSection(readme, await formattedPerformance(doc, readmePath));
  if (doc.fleet) next = replaceFleetSection(next, await formattedFleet(doc.fleet, readmePath));
  if (doc.timeToServing)
    next = replaceTimeToServingSection(next, await formattedTimeToServing(doc.timeToServing, readmePath));
  if (doc.timeToServingSim)
    next = TTS_SIM_SECTION.replace(next, await formattedTimeToServingSim(doc.timeToServingSim, readmePath));
  if (doc.peers) next = replacePeersSection(next, await formattedPeers(doc.peers, readmePath));
  if (next === readme) console.log("README.md is up to date");
  else {
    fs.writeFileSync(readmePath, next);
    console.log(`README.md: performance section rewritten from ${path.relative(ROOT, resultsFile)}`);
  }
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exitCode = 1;
});
