/**
 * The fleet driver's pure parts (tools/fleet.ts): arguments, what is probed per site, the probe on real sockets,
 * the `--exclude` globs as the engine matches them, the command lines, the table; and the program's side: skipped
 * sites hold up no wave and keep their names.
 */
import * as assert from "node:assert/strict";
import * as net from "node:net";

import { run, SKIP_SITES_ENV, skippedSites } from "../../program";
import { parseStackConfig } from "../../config/stack";
import {
  formatReachability,
  parseFleetArgs,
  probe,
  pulumiCommandLine,
  engineEnv,
  siteEndpoints,
  siteExcludes,
  siteReachability,
} from "../../tools/fleet";
import { HOST_KEY } from "../badConfigs";
import { evaluateStack, stackSource } from "./support";

const node = (name: string, host: string, role = "server") => ({ name, host, role, hostKey: HOST_KEY });
const FLEET = {
  nodes: undefined,
  sites: [
    { name: "plant-a", nodes: [node("edge-01", "192.0.2.10")] },
    { name: "plant-b", nodes: [node("edge-01", "192.0.2.20"), node("edge-02", "192.0.2.21", "agent")] },
    { name: "plant-c", nodes: [node("edge-01", "192.0.2.30")] },
  ],
  rollout: { canarySites: 1, siteBatchSize: 1 },
};

/** The engine's glob matcher, as in pkg/resource/deploy/deployment.go (UrnTargets.getMatcher). */
function engineGlob(glob: string): RegExp {
  const quote = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(
    "^" +
      glob
        .split("**")
        .map((seg) => seg.split("*").map(quote).join("[^:]*"))
        .join(".*") +
      "$",
  );
}
const excluded = (globs: string[], urn: string) => globs.some((g) => engineGlob(g).test(urn));

describe("fleet driver (tools/fleet.ts)", () => {
  it("parses the operation, the stack and the pulumi arguments after --", () => {
    const a = parseFleetArgs(
      ["up", "--stack", "thor", "--report", "r.json", "--", "--diff", "--target", "x"],
      "/p",
    );
    assert.deepEqual(a, {
      op: "up",
      stack: "thor",
      cwd: "/p",
      report: "r.json",
      probeSeconds: 5,
      pulumiArgs: ["--diff", "--target", "x"],
    });
    assert.throws(() => parseFleetArgs(["destroy", "--stack", "thor"]), /unknown operation "destroy"/);
    assert.throws(() => parseFleetArgs(["preview"]), /--stack is required/);
    assert.throws(
      () => parseFleetArgs(["preview", "--stack", "t", "--probe-seconds", "0"]),
      /--probe-seconds/,
    );
    assert.throws(() => parseFleetArgs(["preview", "--stack", "t", "--yes"]), /unknown argument "--yes"/);
  });

  it("probes every node's SSH and the first server's API, per site", () => {
    const config = parseStackConfig("p40", stackSource("p40", FLEET));
    assert.deepEqual(
      siteEndpoints(config).map((s) => [
        s.site,
        s.endpoints.map((e) => `${e.what} ${e.host}:${e.port} ${e.kind}`),
      ]),
      [
        ["plant-a", ["ssh edge-01 192.0.2.10:22 ssh", "api 192.0.2.10:6443 tcp"]],
        [
          "plant-b",
          ["ssh edge-01 192.0.2.20:22 ssh", "ssh edge-02 192.0.2.21:22 ssh", "api 192.0.2.20:6443 tcp"],
        ],
        ["plant-c", ["ssh edge-01 192.0.2.30:22 ssh", "api 192.0.2.30:6443 tcp"]],
      ],
    );
  });

  it("excludes exactly one site's resources, with the engine's glob semantics", () => {
    const globs = siteExcludes("thor", "plant-b");
    const urn = (types: string, name: string) => `urn:pulumi:thor::forge-edge::${types}::${name}`;
    const inSite = [
      urn("forge:site:Site", "plant-b"),
      urn("forge:site:Site$forge:cluster:K3sCluster", "plant-b-edge"),
      urn(
        "forge:site:Site$forge:cluster:K3sCluster$forge:node:EdgeNode$command:remote:Command",
        "plant-b-edge-01-k3s",
      ),
      urn("forge:site:Site$forge:cluster:K3sCluster$pulumi:providers:kubernetes", "plant-b-edge-k8s"),
      urn(
        "forge:site:Site$forge:inference:InferenceStack$kubernetes:apps/v1:Deployment",
        "plant-b-inference-deployment",
      ),
    ];
    const outside = [
      urn("forge:site:Site", "plant-a"),
      urn("forge:site:Site$forge:cluster:K3sCluster", "plant-a-edge"),
      urn("forge:site:Site$forge:cluster:K3sCluster", "plant-bb-edge"),
      urn("pulumi:pulumi:Stack", "forge-edge-thor"),
      "urn:pulumi:rtx4000::forge-edge::forge:site:Site::plant-b",
    ];
    for (const u of inSite) assert.ok(excluded(globs, u), `${u} is not excluded`);
    for (const u of outside) assert.ok(!excluded(globs, u), `${u} is excluded`);
  });

  it("runs preview, up and the drift check with the unreachable sites excluded", () => {
    const args = (op: string) => parseFleetArgs([op, "--stack", "thor", "--", "--json"]);
    const ex = siteExcludes("thor", "plant-b").flatMap((g) => ["--exclude", g]);
    assert.deepEqual(pulumiCommandLine(args("preview"), ["plant-b"]), [
      ...["preview", "--stack", "thor", "--non-interactive"],
      ...ex,
      "--json",
    ]);
    assert.deepEqual(pulumiCommandLine(args("up"), []), [
      ...["up", "--yes", "--skip-preview", "--stack", "thor", "--non-interactive"],
      "--json",
    ]);
    // The CLI refuses --target with --exclude: a targeted run picks its sites itself.
    const targeted = parseFleetArgs([
      "up",
      "--stack",
      "thor",
      "--",
      "--target",
      "urn:pulumi:thor::forge-edge::**::plant-a",
    ]);
    assert.ok(!pulumiCommandLine(targeted, ["plant-b"]).includes("--exclude"));
    assert.deepEqual(pulumiCommandLine(args("drift"), ["plant-b"]).slice(0, 3), [
      "preview",
      "--refresh",
      "--expect-no-changes",
    ]);
  });

  it("prints one row per site: reachable, or unreachable with each failed endpoint", () => {
    const ok = {
      what: "ssh edge-01",
      host: "192.0.2.10",
      port: 22,
      kind: "ssh" as const,
      ok: true,
      detail: "3 ms",
    };
    const table = formatReachability("thor", [
      siteReachability("plant-a", [ok]),
      siteReachability("plant-c", [
        ok,
        { what: "api", host: "192.0.2.10", port: 6443, kind: "tcp", ok: false, detail: "ECONNREFUSED" },
      ]),
      siteReachability("plant-b", [
        { ...ok, host: "192.0.2.20", ok: false, detail: "ECONNREFUSED" },
        {
          what: "api",
          host: "192.0.2.20",
          port: 6443,
          kind: "tcp",
          ok: false,
          detail: "no connection within 5s",
        },
      ]),
    ]);
    assert.equal(
      table,
      [
        "stack thor: 2 of 3 site(s) reachable",
        "site     status                detail",
        "plant-a  reachable             1 endpoint(s) answered",
        "plant-c  reachable             SSH answered; api 192.0.2.10:6443 ECONNREFUSED (not deployed yet, or K3s down)",
        "plant-b  UNREACHABLE: skipped  ssh edge-01 192.0.2.20:22 ECONNREFUSED; api 192.0.2.20:6443 no connection within 5s",
      ].join("\n"),
    );
  });

  describe("probe, on real sockets", () => {
    const servers: net.Server[] = [];
    const listen = async (onConn: (s: net.Socket) => void) => {
      const server = net.createServer((s) => {
        s.on("error", () => undefined); // the probe hangs up as soon as it has its answer
        onConn(s);
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return (server.address() as net.AddressInfo).port;
    };
    const held: net.Socket[] = [];
    after(() => {
      held.forEach((s) => s.destroy());
      servers.forEach((s) => s.close());
    });

    it("an SSH server answers with its version line; a TCP endpoint with a connection", async () => {
      const port = await listen((s) => s.end("SSH-2.0-OpenSSH_9.2\r\n"));
      const r = await probe({ what: "ssh n", host: "127.0.0.1", port, kind: "ssh" }, 2);
      assert.equal(r.ok, true, r.detail);
      const api = await probe({ what: "api", host: "127.0.0.1", port, kind: "tcp" }, 2);
      assert.equal(api.ok, true, api.detail);
    });

    it("a closed port, a silent server and a non-SSH server fail, each within the bound, saying why", async () => {
      const closed = await listen(() => undefined);
      servers.pop()!.close();
      await new Promise((r) => setTimeout(r, 50));
      const silent = await listen((s) => held.push(s));
      const http = await listen((s) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
      const at = (port: number) => ({ what: "ssh n", host: "127.0.0.1", port, kind: "ssh" as const });
      assert.deepEqual(
        (await Promise.all([probe(at(closed), 1), probe(at(silent), 1), probe(at(http), 1)])).map((r) => [
          r.ok,
          r.detail,
        ]),
        [
          [false, "ECONNREFUSED"],
          [false, "no SSH version line within 1s"],
          [false, "closed the connection"],
        ],
      );
    });
  });
});

describe("program: sites skipped by the fleet driver", () => {
  afterEach(() => delete process.env[SKIP_SITES_ENV]);

  it("reads the comma-separated list", () => {
    assert.deepEqual(skippedSites(undefined), []);
    assert.deepEqual(skippedSites(" plant-a, ,plant-c,plant-a"), ["plant-a", "plant-c"]);
  });

  it("plans the waves over the other sites and still declares the skipped one under its own names", async () => {
    const all = await evaluateStack("p40", run, FLEET);
    process.env[SKIP_SITES_ENV] = "plant-a";
    const ev = await evaluateStack("p40", run, FLEET);
    assert.deepEqual(all.result.siteWaves, [["plant-a"], ["plant-b"], ["plant-c"]]);
    assert.deepEqual(ev.result.siteWaves, [["plant-b"], ["plant-c"]]);
    assert.deepEqual(ev.result.skippedSites, ["plant-a"]);
    assert.deepEqual(
      ev.urns().sort(),
      all.urns().sort(),
      "the same resources: nothing of the skipped site is deleted",
    );
    // The new canary waits for nothing; the next wave waits for it, not for the skipped site.
    assert.ok(!ev.dependencies("plant-b-edge-01-ssh-probe").some((d) => d.startsWith("plant-a-")));
    assert.ok(ev.dependencies("plant-c-edge-01-ssh-probe").includes("plant-b-health"));
  });

  it("refuses a skipped site the stack does not have", async () => {
    process.env[SKIP_SITES_ENV] = "plant-z";
    await assert.rejects(
      evaluateStack("p40", run, FLEET),
      /FORGE_EDGE_SKIP_SITES names no site of this fleet stack: plant-z/,
    );
  });
});

describe("fleet driver: the engine's environment", () => {
  it("skips the per-step checkpoints of a preview and a drift check, never of an up; the caller's value wins", () => {
    assert.equal(engineEnv("preview", {}, []).PULUMI_SKIP_CHECKPOINTS, "true");
    assert.equal(engineEnv("drift", {}, []).PULUMI_SKIP_CHECKPOINTS, "true");
    assert.equal(engineEnv("up", {}, []).PULUMI_SKIP_CHECKPOINTS, undefined);
    assert.equal(
      engineEnv("preview", { PULUMI_SKIP_CHECKPOINTS: "false" }, []).PULUMI_SKIP_CHECKPOINTS,
      "false",
    );
  });

  it("tells the program which sites this run leaves out", () => {
    assert.equal(engineEnv("up", { HOME: "/h" }, ["plant-b", "plant-c"])[SKIP_SITES_ENV], "plant-b,plant-c");
    assert.equal(engineEnv("up", { HOME: "/h" }, []).HOME, "/h");
  });
});
