/**
 * config/skus.ts is the only list of SKUs. Adding one takes its profile there, its stack file, its pipeline matrix
 * entries and what its GPU reports to the test harness: this suite names whichever of them a SKU lacks, and
 * anything of those that names a SKU the table does not know.
 */
import * as assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { isSkuName, SKU_NAMES, SKUS } from "../../config/skus";
import { parseStackConfig } from "../../config/stack";
import { SKU_GPUS } from "../../harness/site";
import { ROOT, stackSource } from "./support";

/* eslint-disable @typescript-eslint/no-explicit-any */

const GITHUB_DIR = "pipelines/github";
const GITLAB_CI = "pipelines/gitlab/.gitlab-ci.yml";

const load = (file: string): any => yaml.load(readFileSync(path.join(ROOT, file), "utf8"));

/** Each pipeline stack matrix: where it is, and the stacks it lists. */
function pipelineMatrices(): { where: string; stacks: string[] }[] {
  const github = readdirSync(path.join(ROOT, GITHUB_DIR))
    .filter((f) => f.endsWith(".yml"))
    .flatMap((f) =>
      Object.entries<any>(load(path.posix.join(GITHUB_DIR, f)).jobs)
        .filter(([, job]) => job.strategy?.matrix?.stack !== undefined)
        .map(([id, job]) => ({ where: `${GITHUB_DIR}/${f} job ${id}`, stacks: job.strategy.matrix.stack })),
    );
  const gitlab = {
    where: `${GITLAB_CI} .stacks`,
    stacks: load(GITLAB_CI)[".stacks"].parallel.matrix[0].STACK,
  };
  return [...github, gitlab];
}

/** Committed stack files: Pulumi.<stack>.yaml and the SKU each one declares. */
function stackFiles(): { file: string; sku: unknown }[] {
  return readdirSync(ROOT)
    .filter((f) => /^Pulumi\.[^.]+\.yaml$/.test(f))
    .map((file) => ({ file, sku: load(file).config?.["forge-edge:sku"] }));
}

/** The driver branch of a version such as 580.95.05. */
const branchOf = (driver: string) => Number(driver.split(".")[0]);

/** What a SKU lacks of everything adding it takes; empty when it has it all. */
function missingFor(sku: string): string[] {
  const missing: string[] = [];
  const profile = isSkuName(sku) ? SKUS[sku] : undefined;
  if (profile?.name !== sku) missing.push(`its profile in config/skus.ts`);

  const file = `Pulumi.${sku}.yaml`;
  if (!existsSync(path.join(ROOT, file))) missing.push(`its stack file ${file}`);
  else if (load(file).config?.["forge-edge:sku"] !== sku) missing.push(`forge-edge:sku: ${sku} in ${file}`);

  for (const m of pipelineMatrices())
    if (!m.stacks.includes(sku)) missing.push(`its entry in the stack matrix of ${m.where}`);

  const gpu = (SKU_GPUS as Record<string, (typeof SKU_GPUS)[keyof typeof SKU_GPUS] | undefined>)[sku];
  if (gpu === undefined) missing.push("what its GPU reports to the harness (SKU_GPUS in harness/site.ts)");
  else if (profile) {
    if (!gpu.name.includes(profile.gpu.productMatch))
      missing.push(`a GPU name in SKU_GPUS containing productMatch ${profile.gpu.productMatch}`);
    if (gpu.computeCap !== profile.gpu.computeCapability)
      missing.push(`compute capability ${profile.gpu.computeCapability} in SKU_GPUS`);
    const branch = branchOf(gpu.driver);
    const { minBranch, maxBranch } = profile.driver;
    if (branch < minBranch || (maxBranch > 0 && branch > maxBranch))
      missing.push(`a driver in SKU_GPUS the SKU supports (${gpu.driver})`);
  }
  return missing;
}

describe("SKUs (config/skus.ts is the only list)", () => {
  it("lists the SKUs in the table's order, each profile named by its key", () => {
    assert.deepEqual(SKU_NAMES, Object.keys(SKUS));
    for (const sku of SKU_NAMES) assert.equal(SKUS[sku].name, sku);
    assert.equal(isSkuName("p40"), true);
    assert.equal(isSkuName("toString"), false, "only the table's own keys are SKUs");
  });

  for (const sku of SKU_NAMES) {
    it(`${sku} has everything a SKU takes: profile, stack file, pipeline entries, harness GPU`, () => {
      assert.deepEqual(missingFor(sku), [], `SKU ${sku} lacks`);
      assert.equal(
        parseStackConfig(sku, stackSource(sku)).sku.name,
        sku,
        `Pulumi.${sku}.yaml validates as ${sku}`,
      );
    });
  }

  it("and nothing names a SKU the table does not know", () => {
    const unknown = [
      ...stackFiles()
        .filter((s) => typeof s.sku !== "string" || !isSkuName(s.sku))
        .map((s) => `${s.file}: forge-edge:sku ${String(s.sku)}`),
      ...pipelineMatrices().flatMap((m) =>
        m.stacks.filter((s) => !isSkuName(s)).map((s) => `${m.where}: stack ${s}`),
      ),
      ...Object.keys(SKU_GPUS)
        .filter((s) => !isSkuName(s))
        .map((s) => `SKU_GPUS: ${s}`),
    ];
    assert.deepEqual(unknown, []);
    assert.ok(pipelineMatrices().length >= 4, "every workflow and the GitLab pipeline run a stack matrix");
  });

  it("and the check is live: a SKU with no profile lacks every part", () => {
    assert.deepEqual(missingFor("h100"), [
      "its profile in config/skus.ts",
      "its stack file Pulumi.h100.yaml",
      ...pipelineMatrices().map((m) => `its entry in the stack matrix of ${m.where}`),
      "what its GPU reports to the harness (SKU_GPUS in harness/site.ts)",
    ]);
  });
});
