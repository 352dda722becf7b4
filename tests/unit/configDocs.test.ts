/**
 * docs/configuration.md is the configuration reference: it lists exactly the keys the parser knows, one per row,
 * named the way `pulumi config set --path` names them. The parser's list comes from its typed key lists.
 */
import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";

import { ConfigError, configKeyPaths, parseStackConfig, SECTION_KEYS } from "../../config/stack";
import { ROOT, stackSource } from "./support";

const PAGE = "docs/configuration.md";

/** The first cell of every table row on the page (header and separator rows left out). */
function documentedKeys(): string[] {
  const rows = readFileSync(path.join(ROOT, PAGE), "utf8")
    .split("\n")
    .filter((l) => l.startsWith("|") && !/^\|\s*(key\s*\||-)/.test(l));
  return rows.map((row) => {
    const cell = row.split("|")[1].trim();
    const m = /^`([^`]+)`$/.exec(cell);
    assert.ok(m, `${PAGE}: a row must name one key in backticks, got: ${cell}`);
    return m[1];
  });
}

describe("configuration reference (docs/configuration.md)", () => {
  it("lists every key the parser knows, and no other", () => {
    const documented = documentedKeys();
    const known = configKeyPaths();
    const missing = known.filter((k) => !documented.includes(k));
    const unknown = documented.filter((k) => !known.includes(k));
    assert.deepEqual(missing, [], `keys the parser knows but ${PAGE} does not list`);
    assert.deepEqual(unknown, [], `keys ${PAGE} lists but the parser does not know`);
    assert.equal(new Set(documented).size, documented.length, `${PAGE} lists a key twice`);
  });

  it("derives the keys from the parser's typed key lists, nested keys included", () => {
    const known = configKeyPaths();
    for (const k of [
      "sku",
      "sshPrivateKey",
      "insecureSkipHostKeyCheck",
      "inference.modelMemoryGiB",
      "nodes[].hostKey",
      "sites[].name",
      "sites[].nodes[].host",
      "sites[].nodePort",
      "sites[].storage.storageClass",
      "rollout.batchSize",
      "registries.mirrors",
      "airgap.stackImageTarballs",
      "storage.storageClass",
      "quota.pods",
    ])
      assert.ok(known.includes(k), k);
    assert.ok(!known.includes("inference"), "a section is listed by its keys");
  });

  it("README links to the page", () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    assert.ok(readme.includes("(docs/configuration.md)"), "README.md must link to docs/configuration.md");
  });
});

describe("the typed key lists are the lists the parser checks against", () => {
  for (const [section, keys] of Object.entries(SECTION_KEYS)) {
    it(`${section}: an unknown key is refused, naming the allowed keys`, () => {
      const nodes = stackSource("p40").get("nodes")!;
      const lists: Record<string, string> = { nodes, sites: `[{"name":"site-a","nodes":${nodes}}]` };
      const base = JSON.parse(stackSource("p40").get(section) ?? lists[section] ?? "{}") as unknown;
      const value = Array.isArray(base)
        ? [{ ...(base[0] as object), typo: 1 }]
        : { ...(base as object), typo: 1 };
      const key = Array.isArray(base) ? `${section}[0].typo` : `${section}.typo`;
      // A stack sets `nodes` or `sites`, not both.
      const others = section === "sites" ? { nodes: undefined } : {};
      assert.throws(
        () => parseStackConfig("p40", stackSource("p40", { ...others, [section]: value })),
        (e: ConfigError) =>
          e.problems.includes(`${key} is not a known key: allowed keys are ${keys.join(", ")}`),
      );
    });
  }
});
