/**
 * tools/previewSummary.ts over real `pulumi preview --json` output of the v3.274.1 CLI, captured from
 * tests/e2e/offline.test.ts (FORGE_EDGE_CAPTURE_DIR) with the steps' old and new states removed (they are not read,
 * and hold the node scripts):
 *
 * - fixtures/preview-offline.json: the driver's preview of the 3-site fleet with site-a offline (excluded) after
 *   `inference.settings` changed: site-b and site-c update their inference ConfigMap and Deployment.
 * - fixtures/drift-clean.json: the driver's drift check (`preview --refresh --expect-no-changes --json`) of the
 *   converged fleet.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { FleetReport, siteReachability } from "../../tools/fleet";
import {
  changeOf,
  main,
  PreviewDigest,
  siteOf,
  STACK_GROUP,
  summarize,
  toMarkdown,
  urnParts,
} from "../../tools/previewSummary";

const fixture = (name: string) => path.join(__dirname, "fixtures", name);
const load = (name: string) => JSON.parse(fs.readFileSync(fixture(name), "utf8")) as PreviewDigest;

/** The driver's report for that preview: site-a's SSH and API refused. */
const REPORT: FleetReport = {
  stack: "offline",
  op: "preview",
  sites: [
    siteReachability("site-a", [
      { what: "ssh p40-01", host: "127.0.1.120", port: 22, kind: "ssh", ok: false, detail: "ECONNREFUSED" },
      { what: "api", host: "127.0.1.120", port: 6443, kind: "tcp", ok: false, detail: "ECONNREFUSED" },
    ]),
    siteReachability("site-b", [
      { what: "ssh p40-01", host: "127.0.1.130", port: 22, kind: "ssh", ok: true, detail: "4 ms" },
    ]),
    siteReachability("site-c", [
      { what: "ssh p40-01", host: "127.0.1.140", port: 22, kind: "ssh", ok: true, detail: "4 ms" },
    ]),
  ],
  skipped: ["site-a"],
  excludes: [],
  exitCode: 0,
};

describe("preview summary (tools/previewSummary.ts)", () => {
  it("the fixtures are the CLI's JSON and hold no secret", () => {
    for (const f of ["preview-offline.json", "drift-clean.json"]) {
      const text = fs.readFileSync(fixture(f), "utf8");
      const doc = JSON.parse(text) as PreviewDigest;
      assert.ok(doc.changeSummary && doc.config && Array.isArray(doc.steps), f);
      assert.ok(!/BEGIN [A-Z ]*PRIVATE KEY|client-key-data|certificate-authority-data/.test(text), f);
      // The CLI blinds secret config; the e2e's key was a secret.
      assert.equal(
        (doc as { config?: Record<string, string> }).config?.["forge-edge:sshPrivateKey"],
        "[secret]",
        f,
      );
    }
  });

  it("reads URNs and ops the engine's way", () => {
    assert.deepEqual(
      urnParts("urn:pulumi:thor::forge-edge::forge:site:Site$forge:cluster:K3sCluster::plant-b-edge"),
      {
        stack: "thor",
        types: ["forge:site:Site", "forge:cluster:K3sCluster"],
        type: "forge:cluster:K3sCluster",
        name: "plant-b-edge",
      },
    );
    assert.deepEqual(
      [
        "same",
        "create",
        "update",
        "replace",
        "create-replacement",
        "delete-replaced",
        "delete",
        "refresh",
        "read",
      ].map(changeOf),
      [undefined, "create", "update", "replace", "replace", "replace", "delete", undefined, undefined],
    );
    const sites = ["plant-a", "plant-ab"];
    const u = (types: string, name: string) => `urn:pulumi:thor::forge-edge::${types}::${name}`;
    assert.equal(siteOf(u("forge:site:Site", "plant-a"), sites), "plant-a");
    assert.equal(siteOf(u("forge:site:Site$forge:cluster:K3sCluster", "plant-ab-edge"), sites), "plant-ab");
    assert.equal(siteOf(u("pulumi:pulumi:Stack", "forge-edge-thor"), sites), STACK_GROUP);
    // A top-level `nodes` stack: its resources are the one site's, named after the stack.
    assert.equal(siteOf(u("forge:cluster:K3sCluster", "edge"), [], "thor"), "thor");
  });

  it("groups the captured preview per site: two sites update, the offline one is flagged and unchanged", () => {
    const s = summarize(load("preview-offline.json"), { report: REPORT });
    const by = Object.fromEntries(s.sites.map((g) => [g.site, g]));
    assert.deepEqual(Object.keys(by).sort(), ["site-a", "site-b", "site-c"]);
    for (const site of ["site-b", "site-c"]) {
      assert.deepEqual(by[site].counts, { create: 0, update: 2, replace: 0, delete: 0 }, site);
      assert.deepEqual(by[site].resources.map((r) => `${r.change} ${r.type} ${r.name}`).sort(), [
        `update kubernetes:apps/v1:Deployment ${site}-inference-deployment`,
        `update kubernetes:core/v1:ConfigMap ${site}-inference-config`,
      ]);
    }
    assert.deepEqual(by["site-a"].counts, { create: 0, update: 0, replace: 0, delete: 0 });
    assert.equal(by["site-a"].unreachable, "ssh p40-01 ECONNREFUSED; api ECONNREFUSED");
  });

  it("writes the comment: a row per site, then each changed site's resources", () => {
    const md = toMarkdown(summarize(load("preview-offline.json"), { report: REPORT }));
    assert.match(md, /^### Preview: stack `offline`\n/);
    assert.match(md, /3 site\(s\): 2 with changes, 1 unreachable \(skipped\), 0 with errors\./);
    assert.match(md, /\| site-a \| ⚠️ unreachable: skipped, state kept \|  \|  \|  \|  \|/);
    assert.match(md, /\| site-b \| changes \|  \| 2 \|  \|  \|/);
    assert.match(md, /#### site-b\n\n\| change \| type \| resource \| properties \|/);
    assert.match(md, /\| update \| `kubernetes:core\/v1:ConfigMap` \| `site-b-inference-config` \|/);
    assert.match(
      md,
      /#### site-a\n\nUnreachable, left out of this run \(its state is unchanged\): ssh p40-01 ECONNREFUSED/,
    );
  });

  it("reports the drift check per site: no drift everywhere, or which site drifted and how", () => {
    const clean = load("drift-clean.json");
    const md = toMarkdown(summarize(clean, { drift: true }));
    assert.match(md, /^### Drift check: stack `offline`\n/);
    for (const site of ["site-a", "site-b", "site-c"])
      assert.match(md, new RegExp(`\\| ${site} \\| no drift \\|`));
    // The same check after someone edited site-c's ConfigMap by hand: the refreshed state differs from the program.
    // The refresh read the live ConfigMap, which differs from the program: the CLI adds an update step for it.
    const urn = clean.steps!.find((st) => st.urn.endsWith("::site-c-inference-config"))!.urn;
    const edited: PreviewDigest = {
      ...clean,
      steps: [
        ...clean.steps!,
        { op: "update", urn, detailedDiff: { data: { kind: "update", inputDiff: false } } },
      ],
    };
    const drifted = toMarkdown(summarize(edited, { drift: true }));
    assert.match(drifted, /\| site-c \| drifted \|  \| 1 \|  \|  \|/);
    assert.match(
      drifted,
      /\| update \| `kubernetes:core\/v1:ConfigMap` \| `site-c-inference-config` \| data \|/,
    );
    assert.match(drifted, /\| site-b \| no drift \|/);
  });

  it("the CLI reads the files, and refuses what is not preview JSON without quoting it", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "preview-summary-"));
    try {
      const report = path.join(dir, "report.json");
      fs.writeFileSync(report, JSON.stringify(REPORT));
      const md = main(["--preview", fixture("preview-offline.json"), "--fleet-report", report]);
      assert.match(md, /⚠️ unreachable/);
      const bad = path.join(dir, "bad.json");
      fs.writeFileSync(bad, "error: secret-looking text");
      assert.throws(
        () => main(["--preview", bad]),
        (e: Error) => !e.message.includes("secret-looking"),
      );
      assert.throws(() => main([]), /--preview is required/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
