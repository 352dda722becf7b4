/**
 * `npx ts-node tools/previewSummary.ts --preview preview.json [--fleet-report report.json] [--drift] [--stack S]`:
 * turns `pulumi preview --json` (or the drift check's `pulumi preview --refresh --expect-no-changes --json`) into a
 * Markdown comment grouped per site: which sites change and how (create / update / replace / delete counts and the
 * resources), which sites were unreachable and skipped (the fleet driver's `--report`, tools/fleet.ts), and the
 * engine's errors and warnings by site. It prints resource names, types and the names of the changed properties,
 * never a value: the preview's states hold the scripts, the host keys and (as ciphertext or `[secret]`) the secrets.
 *
 * The input shape is the CLI's PreviewDigest (pulumi/pulumi pkg/display/json.go): `config` (secrets blinded),
 * `steps[]` of `{op, urn, diffReasons?, replaceReasons?, detailedDiff?}` (v3.274.1 lists only the steps that change
 * something, and fills `detailedDiff` rather than `diffReasons`), `diagnostics[]` of `{urn?, message, severity}`.
 */
import * as fs from "node:fs";

import type { FleetReport } from "./fleet";

export interface PreviewStep {
  op: string;
  urn: string;
  diffReasons?: string[];
  replaceReasons?: string[];
  /** Property path → kind of change; the CLI fills it where the provider reports a detailed diff. */
  detailedDiff?: Record<string, unknown> | null;
}

export interface PreviewDiagnostic {
  urn?: string;
  message?: string;
  severity?: string;
}

export interface PreviewDigest {
  /** The stack's configuration, secrets blinded: `forge-edge:sites` names the fleet's sites. */
  config?: Record<string, string>;
  /** Only the steps that change something: the CLI leaves the unchanged ("same") ones out. */
  steps?: PreviewStep[];
  diagnostics?: PreviewDiagnostic[];
  changeSummary?: Record<string, number>;
}

export type Change = "create" | "update" | "replace" | "delete";
const CHANGES: readonly Change[] = ["create", "update", "replace", "delete"];

/** The engine's step ops, as the kind of change a reader cares about; undefined for no change. */
export function changeOf(op: string): Change | undefined {
  switch (op) {
    case "create":
    case "import":
      return "create";
    case "update":
      return "update";
    case "replace":
    case "create-replacement":
    case "delete-replaced":
    case "import-replacement":
      return "replace";
    case "delete":
    case "discard":
    case "discard-replaced":
      return "delete";
    default:
      return undefined; // same, read, refresh, remove-pending-replace
  }
}

/** The parts of a URN: `urn:pulumi:<stack>::<project>::<parent types $ ... $ type>::<name>`. */
export function urnParts(urn: string): { stack: string; types: string[]; type: string; name: string } {
  const [head, , types = "", ...name] = urn.split("::");
  const chain = types.split("$");
  return {
    stack: head.replace(/^urn:pulumi:/, ""),
    types: chain,
    type: chain[chain.length - 1],
    name: name.join("::"),
  };
}

const SITE_TYPE = "forge:site:Site";
/** Resources of the stack itself (the stack, default providers): no site's. */
export const STACK_GROUP = "(stack)";

/**
 * The site a resource belongs to: a fleet site (its `forge:site:Site` component, everything under it named
 * `<site>-...`), the one site of a top-level `nodes` stack (`single`), or the stack itself.
 */
export function siteOf(urn: string, sites: readonly string[], single?: string): string {
  const { types, type, name } = urnParts(urn);
  if (types[0] === SITE_TYPE) {
    if (types.length === 1) return name;
    // Site names never start with another site's name and a dash (config/sections/sites.ts): one match at most.
    return sites.find((s) => name.startsWith(`${s}-`)) ?? name;
  }
  if (type === "pulumi:pulumi:Stack" || type.startsWith("pulumi:providers:")) return STACK_GROUP;
  return single ?? STACK_GROUP;
}

export interface SiteChanges {
  site: string;
  counts: Record<Change, number>;
  /** Changed resources: change, type, name, and the properties that cause it. */
  resources: { change: Change; type: string; name: string; reasons: string[] }[];
  diagnostics: PreviewDiagnostic[];
  /** From the fleet report: the site did not answer and was left out of the run. */
  unreachable?: string;
}

export interface Summary {
  stack: string;
  drift: boolean;
  sites: SiteChanges[];
}

/** Groups a preview per site; the sites come from the preview's Site components and the fleet report. */
export function summarize(
  preview: PreviewDigest,
  opts: { stack?: string; drift?: boolean; report?: FleetReport } = {},
): Summary {
  const steps = preview.steps ?? [];
  const stack = opts.stack ?? opts.report?.stack ?? (steps[0] ? urnParts(steps[0].urn).stack : "");
  // The JSON lists changing steps only, so the sites come from the configuration it carries (and the report).
  const fromConfig = configuredSites(preview.config);
  const names = [...new Set([...fromConfig, ...(opts.report?.sites.map((s) => s.site) ?? [])])];
  // A top-level `nodes` stack has no Site component: its one site is named after the stack.
  const single = fromConfig.length === 0 && !opts.report?.sites.length ? stack : undefined;
  const groups = new Map<string, SiteChanges>();
  const group = (site: string) => {
    let g = groups.get(site);
    if (!g) {
      g = { site, counts: { create: 0, update: 0, replace: 0, delete: 0 }, resources: [], diagnostics: [] };
      groups.set(site, g);
    }
    return g;
  };
  for (const n of names) group(n);
  if (single) group(single);
  const replaced = new Set<string>();
  for (const s of steps) {
    const change = changeOf(s.op);
    const site = siteOf(s.urn, names, single);
    if (change === undefined || (change === "replace" && replaced.has(s.urn))) {
      if (site !== STACK_GROUP) group(site);
      continue;
    }
    if (change === "replace") replaced.add(s.urn);
    const g = group(site);
    const { type, name } = urnParts(s.urn);
    g.counts[change]++;
    const reasons = s.replaceReasons ?? s.diffReasons ?? Object.keys(s.detailedDiff ?? {});
    g.resources.push({ change, type, name, reasons: [...reasons] });
  }
  // Errors always; warnings only about a site's resource (the stack's own are about outputs, not sites).
  for (const d of preview.diagnostics ?? []) {
    const site = d.urn ? siteOf(d.urn, names, single) : STACK_GROUP;
    if (d.severity === "error" || (d.severity === "warning" && site !== STACK_GROUP))
      group(site).diagnostics.push(d);
  }
  for (const s of opts.report?.sites ?? []) {
    if (s.reachable) continue;
    group(s.site).unreachable = s.probes
      .filter((p) => !p.ok)
      .map((p) => `${p.what} ${p.detail}`)
      .join("; ");
  }
  const order = (g: SiteChanges) => (g.site === STACK_GROUP ? 1 : 0);
  return {
    stack,
    drift: opts.drift ?? false,
    sites: [...groups.values()].sort((a, b) => order(a) - order(b)),
  };
}

/** Site names from the `forge-edge:sites` value the preview JSON carries; none for a `nodes` stack. */
export function configuredSites(config: Record<string, string> | undefined): string[] {
  try {
    const sites = JSON.parse(config?.["forge-edge:sites"] ?? "[]") as unknown;
    return Array.isArray(sites)
      ? sites.map((s) => (s as { name?: unknown }).name).filter((n): n is string => typeof n === "string")
      : [];
  } catch {
    return [];
  }
}

const total = (g: SiteChanges) => CHANGES.reduce((n, c) => n + g.counts[c], 0);
/** Markdown table cells: no pipes, no line breaks, no HTML. */
const cell = (s: string) => s.replace(/[|\r\n<>]/g, (c) => (c === "|" ? "\\|" : " "));

/** The comment: a table of every site, then per changed site its resources (at most `maxResources` each). */
export function toMarkdown(summary: Summary, maxResources = 25): string {
  const { stack, drift, sites } = summary;
  const real = sites.filter((g) => g.site !== STACK_GROUP);
  const changed = sites.filter((g) => total(g) > 0);
  const unreachable = sites.filter((g) => g.unreachable !== undefined);
  const failed = sites.filter((g) => g.diagnostics.some((d) => d.severity === "error"));
  const what = drift ? "drift" : "change";
  const lines: string[] = [
    `### ${drift ? "Drift check" : "Preview"}: stack \`${stack}\``,
    "",
    `${real.length} site(s): ${changed.filter((g) => g.site !== STACK_GROUP).length} with ${what}s, ` +
      `${unreachable.length} unreachable (skipped), ${failed.length} with errors.`,
    "",
    "| site | status | create | update | replace | delete |",
    "| ---- | ------ | -----: | -----: | ------: | -----: |",
  ];
  for (const g of sites) {
    if (g.site === STACK_GROUP && total(g) === 0 && g.diagnostics.length === 0) continue;
    const status =
      g.unreachable !== undefined
        ? "⚠️ unreachable: skipped, state kept"
        : g.diagnostics.some((d) => d.severity === "error")
          ? "❌ error"
          : total(g) > 0
            ? drift
              ? "drifted"
              : "changes"
            : drift
              ? "no drift"
              : "no change";
    lines.push(
      `| ${cell(g.site)} | ${status} | ${CHANGES.map((c) => (g.counts[c] > 0 ? String(g.counts[c]) : "")).join(" | ")} |`,
    );
  }
  for (const g of sites) {
    if (total(g) === 0 && g.diagnostics.length === 0 && g.unreachable === undefined) continue;
    lines.push("", `#### ${g.site}`);
    if (g.unreachable !== undefined)
      lines.push("", `Unreachable, left out of this run (its state is unchanged): ${cell(g.unreachable)}.`);
    if (g.resources.length > 0) {
      lines.push(
        "",
        "| change | type | resource | properties |",
        "| ------ | ---- | -------- | ---------- |",
      );
      for (const r of g.resources.slice(0, maxResources))
        lines.push(
          `| ${r.change} | \`${cell(r.type)}\` | \`${cell(r.name)}\` | ${cell(r.reasons.join(", "))} |`,
        );
      if (g.resources.length > maxResources)
        lines.push("", `… and ${g.resources.length - maxResources} more.`);
    }
    for (const d of g.diagnostics)
      lines.push("", `- **${d.severity}**: ${cell((d.message ?? "").trim().split("\n")[0].slice(0, 300))}`);
  }
  return lines.join("\n") + "\n";
}

const USAGE =
  "usage: ts-node tools/previewSummary.ts --preview <pulumi preview --json output> [--fleet-report <file>] [--drift] [--stack <stack>]";

export function main(argv: readonly string[]): string {
  let previewFile = "";
  let reportFile: string | undefined;
  let stack: string | undefined;
  let drift = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--preview") previewFile = argv[++i] ?? "";
    else if (a === "--fleet-report") reportFile = argv[++i];
    else if (a === "--stack") stack = argv[++i];
    else if (a === "--drift") drift = true;
    else throw new Error(`unknown argument "${a}"\n${USAGE}`);
  }
  if (!previewFile) throw new Error(`--preview is required\n${USAGE}`);
  const text = fs.readFileSync(previewFile, "utf8");
  let preview: PreviewDigest;
  try {
    preview = JSON.parse(text) as PreviewDigest;
  } catch {
    // A preview that failed before printing JSON: say so, without quoting what it printed instead.
    throw new Error(`${previewFile} is not the JSON of \`pulumi preview --json\``);
  }
  const report = reportFile ? (JSON.parse(fs.readFileSync(reportFile, "utf8")) as FleetReport) : undefined;
  return toMarkdown(summarize(preview, { stack, drift, report }));
}

if (require.main === module) {
  try {
    process.stdout.write(main(process.argv.slice(2)));
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 2;
  }
}
