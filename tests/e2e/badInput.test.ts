/**
 * Bad input through the real engine: every broken configuration makes `pulumi preview` fail with a message that
 * names the stack and the key, and nothing runs on the node.
 */
import * as assert from "node:assert/strict";

import { EngineStack, PROJECT } from "../../harness/engine";
import { useSite } from "../../harness/fixture";
import { ConfigEntry, Site, stackFileValues } from "../../harness/site";
import { SkuName } from "../../config/skus";
import { BAD_CONFIGS } from "../badConfigs";

describe("e2e: broken stack configs are refused by pulumi preview before any node is touched", function () {
  this.timeout(20 * 60_000);
  let site: Site;
  let es: EngineStack;

  useSite(this, {
    name: "bad",
    stackName: "bad-input",
    sku: "p40",
    ipBase: 40,
    ready: (f) => {
      ({ site, es } = f);
    },
  });

  it("has at least 20 distinct broken configurations", () => {
    assert.ok(BAD_CONFIGS.length >= 20);
  });

  for (const c of BAD_CONFIGS) {
    it(`refuses: ${c.name}`, async () => {
      // Cases for another SKU start from that SKU's stack file (its nodes are never dialled: preview stops first).
      const config: Record<string, ConfigEntry> = { ...site.config };
      if (c.stack !== undefined && c.stack !== "p40") {
        for (const [k, v] of Object.entries(stackFileValues(c.stack as SkuName))) {
          config[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
        }
      }
      for (const [k, v] of Object.entries(c.overrides)) {
        if (v === undefined) delete config[k];
        else
          config[k] = { value: typeof v === "string" ? v : JSON.stringify(v), secret: k === "sshPrivateKey" };
      }
      if (c.secret === false) config.sshPrivateKey = { value: site.key.privateKeyPem, secret: false };
      const current = await es.stack.getAllConfig();
      for (const k of Object.keys(current)) {
        if (!(k.replace(`${PROJECT}:`, "") in config)) await es.stack.removeConfig(k);
      }
      await es.stack.setAllConfig(
        Object.fromEntries(
          Object.entries(config).map(([k, v]) => [`${PROJECT}:${k}`, { value: v.value, secret: !!v.secret }]),
        ),
      );
      const calls = site.hosts[0].calls().length;
      const expect = new RegExp(c.expect.source.replace(/^\^/, "").replace(/\$$/, ""));
      await assert.rejects(es.stack.preview(), (e: Error) => {
        assert.match(e.message, /stack "bad-input" has \d+ invalid configuration value/);
        assert.match(e.message, expect);
        assert.ok(
          !e.message.includes(site.key.privateKeyPem.split("\n")[1]),
          "the SSH key leaked into the error",
        );
        return true;
      });
      assert.equal(site.hosts[0].calls().length, calls, "a command ran on the node");
    });
  }
});
