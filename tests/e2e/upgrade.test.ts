/**
 * Upgrade proof for issue 10 ("prove it with a stack created before the change"): a one-site stack is deployed by
 * the program as it was before fleet work (commit e64ad27, the last main before sites), on a simulated site, then
 * the current program previews and updates the same stack state. Every resource the old program created keeps its
 * URN: none is deleted, replaced or created again. (The programs differ by other commits too, so updates in place are
 * expected; the sites refactor itself must add no identity change.)
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";

import { EngineStack, openStack, PROJECT, projectCopy } from "../../harness/engine";
import { ConfigEntry, Site, startSite } from "../../harness/site";

const ROOT = path.resolve(__dirname, "../..");
/** The last landed main before fleet work (sites, site waves). */
const BEFORE_SITES = "e64ad27";
const STACK = "upgrade";

interface Step {
  op: string;
  urn: string;
  old?: string;
}

/**
 * Resources of the old stack that later, non-fleet commits replace or remove on purpose, with the commit and why.
 * Anything else that is not kept fails the test.
 */
const EXPECTED_CHANGES: Record<string, { ops: string[]; why: string }> = {
  "forge:cluster:K3sCluster$command:remote:Command::edge-kubeconfig": {
    ops: ["replace", "create-replacement", "delete-replaced"],
    why: "re-reads the kubeconfig: its triggers are the K3s step's command, which 7311323 changed (no box state)",
  },
  "forge:inference:InferenceStack$kubernetes:core/v1:PersistentVolumeClaim::inference-models": {
    ops: ["delete"],
    why: "71c8682: one model volume per replica (a generic ephemeral volume) instead of one shared PVC",
  },
};

describe("e2e: a stack created before sites existed upgrades to the current program without replacing anything", function () {
  this.timeout(30 * 60_000);
  let dir: string;
  let site: Site | undefined;
  let old: EngineStack;
  let oldUrns: string[];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-e2e-upgrade-"));
    site = await startSite({ sku: "p40", dir: path.join(dir, "site"), ipBase: 230 });
  });

  after(async () => {
    await site?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`deploys the site with the program of ${BEFORE_SITES}`, async () => {
    // The old tree, with this checkout's node_modules (its dependencies are the same versions).
    const tree = path.join(dir, "old");
    fs.mkdirSync(tree);
    execFileSync("bash", ["-c", `git -C "${ROOT}" archive ${BEFORE_SITES} | tar x -C "${tree}"`]);
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(tree, "node_modules"));
    // Its own stack file's values, with the node pointed at the site (the harness's site config is for today's keys).
    const oldValues = (
      yaml.load(fs.readFileSync(path.join(tree, "Pulumi.p40.yaml"), "utf8")) as {
        config: Record<string, unknown>;
      }
    ).config;
    const config: Record<string, ConfigEntry> = {};
    for (const [k, v] of Object.entries(oldValues))
      config[k.replace(`${PROJECT}:`, "")] = { value: typeof v === "string" ? v : JSON.stringify(v) };
    for (const k of ["nodes", "airgap", "sshPrivateKey"]) config[k] = site!.config[k];
    old = await openStack({ stackName: STACK, dir, config, projectDir: tree });
    const res = await old.stack.up();
    assert.equal(res.summary.result, "succeeded");
    const state = (await old.stack.exportStack()).deployment as {
      resources: { urn: string; type: string }[];
    };
    oldUrns = state.resources.filter((r) => !r.type.startsWith("pulumi:providers:")).map((r) => r.urn);
    assert.ok(
      oldUrns.some((u) => u.endsWith("::inference-deployment")),
      "the old program deployed the inference",
    );
  });

  it("the current program plans no replace, delete or new create of any resource the old program created", async () => {
    // Today's project on the same backend and stack: the stack settings of a copy, today's stack file values.
    const project = projectCopy(path.join(dir, "current"));
    // A snapshot of today's program (the copy links to the working tree): an edit of the tree during the run is no change.
    for (const f of ["index.ts", "program.ts", "config", "components", "scripts"]) {
      const at = path.join(project, f);
      const target = fs.realpathSync(at);
      fs.rmSync(at);
      fs.cpSync(target, at, { recursive: true });
    }
    const { stack: current } = await openStack({
      stackName: STACK,
      dir,
      config: site!.config,
      projectDir: project,
    });
    const steps: Step[] = [];
    const preview = await current.preview({
      onEvent: (e) => {
        const m = e.resourcePreEvent?.metadata;
        // A step under an alias names the new URN; its old state names the URN the old program gave it.
        if (m) steps.push({ op: m.op, urn: m.urn, old: m.old?.urn });
      },
    });
    assert.equal(preview.changeSummary.delete ?? 0, 1, "only the shared model PVC is deleted");
    const opsOf = new Map<string, string[]>();
    for (const st of steps)
      for (const u of new Set([st.urn, st.old ?? st.urn])) opsOf.set(u, [...(opsOf.get(u) ?? []), st.op]);
    const tail = (u: string) => u.split("::").slice(2).join("::");
    const notKept = oldUrns
      .map((u) => ({ urn: tail(u), ops: opsOf.get(u) ?? ["(not in the program)"] }))
      .filter((r) => r.ops.some((op) => op !== "same" && op !== "update"));
    const unexpected = notKept.filter((r) => !r.ops.every((op) => EXPECTED_CHANGES[r.urn]?.ops.includes(op)));
    assert.deepEqual(unexpected, [], "resources of the old stack not kept, other than the intended ones");
    // What the current program adds (features of later commits, not renames) is created; nothing old is.
    const created = steps.filter((s) => s.op === "create").map((s) => s.urn);
    assert.ok(created.every((u) => !oldUrns.includes(u)));

    const up = await current.up();
    assert.equal(up.summary.result, "succeeded");
    assert.equal(up.summary.resourceChanges?.replace ?? 0, 1, "only the kubeconfig read step");
    assert.equal(up.summary.resourceChanges?.delete ?? 0, 1, "only the shared model PVC");
    const after = await current.preview({ expectNoChanges: true });
    assert.equal(after.changeSummary.create ?? 0, 0);
  });
});
