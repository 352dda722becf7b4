/**
 * Air gap, issue 12 item 3: K3s starts on its own artefacts, the stack's image tarballs copy meanwhile and are placed
 * in agent/images once K3s runs (its image watcher imports them), and a step waits until containerd has every image
 * the stack runs. The program's graph under strict mocks, the pure parts, and both node scripts in the sandbox.
 */
import * as assert from "node:assert/strict";
import { statSync, truncateSync } from "node:fs";

import { run } from "../../program";
import { airgapFiles, airgapImportParams, importsLate } from "../../components/edgeNode";
import { devicePluginSpec } from "../../components/gpuSharing";
import { K3sCluster } from "../../components/k3sCluster";
import {
  devicePluginImage,
  importTimeoutSeconds,
  k3sWatchesImages,
  normalizeImageRef,
  stackImageRefs,
} from "../../config/images";
import { SKUS } from "../../config/skus";
import { parseStackConfig } from "../../config/stack";
import { renderScript } from "../../scripts/render";
import { stackImageNames } from "../../harness/site";
import { HOST_KEY } from "../badConfigs";
import { existingFiles } from "./airgapFiles";
import { NodeSandbox, requireSandbox } from "./nodeSandbox";
import { evaluate, evaluateStack, stackSource } from "./support";

const MB = 1e6;
const airgap = existingFiles({
  k3sBinary: "k3s",
  installScript: "install.sh",
  imagesTarball: "k3s-airgap-images-amd64.tar.zst",
  stackImageTarballs: ["images/device-plugin.tar", "images/inference.tar.zst"],
});
// Sparse files of the sizes the import's wait is computed from: 30 MB and 10 GB.
truncateSync(airgap.stackImageTarballs[0], 30 * MB);
truncateSync(airgap.stackImageTarballs[1], 10_000 * MB);
const P40_IMAGES = [
  "nvcr.io/nvidia/k8s-device-plugin:v0.20.0",
  "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-ubuntu22.04",
  "registry.example.com/forge/cognition-llamacpp:1.4.0-cuda12",
];

describe("air gap: stack images imported once K3s runs (issue 12.3)", () => {
  describe("the program's graph", () => {
    it("K3s waits for its own artefacts only; the import step waits for K3s and the stack tarballs' copies", async () => {
      const ev = await evaluateStack("p40", run, { airgap });
      const k3sDeps = ev.dependencies("p40-01-k3s");
      for (const own of ["k3s", "installer", "images"])
        assert.ok(k3sDeps.includes(`p40-01-airgap-${own}`), own);
      assert.ok(!k3sDeps.some((d) => /airgap-image-/.test(d)), `K3s waits for a stack tarball: ${k3sDeps}`);
      assert.ok(k3sDeps.includes("p40-01-nvidia-runtime"));

      const imp = ev.byName("p40-01-airgap-import");
      assert.deepEqual(ev.dependencies("p40-01-airgap-import").sort(), [
        "p40-01-airgap-image-device-plugin",
        "p40-01-airgap-image-inference",
        "p40-01-k3s",
      ]);
      const create = String(imp.inputs.create);
      assert.match(create, /forge-edge airgap-import\.sh/);
      assert.match(create, /TARBALLS='device-plugin\.tar inference\.tar\.zst'/);
      assert.match(create, new RegExp(`IMAGES='${P40_IMAGES.join("\n").replace(/[./]/g, "\\$&")}'`));
      // 120 s + 10,030 MB at 20 MB/s (501.5 s, rounded up).
      assert.match(create, /TIMEOUT_SECONDS='622'/);
      assert.match(String(imp.inputs.delete), /forge-edge airgap-import-remove\.sh/);
      // K3s imports only its own tarball before its kubelet starts.
      assert.match(
        String(ev.byName("p40-01-k3s").inputs.create),
        /AIRGAP_IMAGES='k3s-airgap-images-amd64\.tar\.zst'\n/,
      );
      // A changed import step re-proves SSH first, like every step's change.
      assert.ok((ev.byName("p40-01-ssh-probe").inputs.triggers as unknown[]).includes(imp.inputs.create));
      // A tarball replaced by one of another size or age re-runs the import: the config read both, once.
      const stat = (f: string) => statSync(f);
      assert.deepEqual(
        imp.inputs.triggers,
        airgap.stackImageTarballs.map(
          (f, i) => `image-${["device-plugin", "inference"][i]}:${stat(f).size}:${stat(f).mtimeMs}`,
        ),
      );
    });

    it("reads the tarballs' sizes in the config, once; a source that cannot read files gives none", () => {
      const src = stackSource("p40", { airgap });
      const plain = parseStackConfig("p40", src).airgap!;
      assert.equal(plain.stackImageStats, undefined);
      const seen: string[] = [];
      const withFiles = parseStackConfig("p40", {
        ...src,
        fileStat: (f: string) => (seen.push(f), { bytes: 7, mtimeMs: 1 }),
      }).airgap!;
      assert.deepEqual(seen, airgap.stackImageTarballs);
      assert.deepEqual(withFiles.stackImageStats, [
        { bytes: 7, mtimeMs: 1 },
        { bytes: 7, mtimeMs: 1 },
      ]);
    });

    it("no import step without stack tarballs, nor on a K3s without the watcher (all tarballs before start)", async () => {
      const none = await evaluateStack("p40", run, { airgap: { ...airgap, stackImageTarballs: [] } });
      assert.ok(!none.resources.some((r) => r.name.endsWith("airgap-import")));
      assert.match(
        String(none.byName("p40-01-k3s").inputs.create),
        /AIRGAP_IMAGES='k3s-airgap-images-amd64\.tar\.zst'\n/,
      );

      const old = await evaluateStack("p40", run, { airgap, k3sVersion: "v1.31.4+k3s1" });
      assert.ok(!old.resources.some((r) => r.name.endsWith("airgap-import")));
      assert.match(
        String(old.byName("p40-01-k3s").inputs.create),
        /AIRGAP_IMAGES='k3s-airgap-images-amd64\.tar\.zst device-plugin\.tar inference\.tar\.zst'\n/,
      );
      const deps = old.dependencies("p40-01-k3s");
      assert.ok(
        deps.includes("p40-01-airgap-image-inference") && deps.includes("p40-01-airgap-image-device-plugin"),
      );

      const online = await evaluateStack("p40", run, {});
      assert.ok(!online.resources.some((r) => /airgap/.test(r.name)));
    });

    it("the cluster exposes every node's import; the next rollout wave waits for it", async () => {
      const cfg = parseStackConfig(
        "p40",
        stackSource("p40", {
          airgap,
          nodes: [
            { name: "s1", host: "192.0.2.10", role: "server", hostKey: HOST_KEY },
            { name: "a1", host: "192.0.2.20", role: "agent", hostKey: HOST_KEY },
          ],
          quota: undefined,
        }),
      );
      const cluster = (bootstrap: typeof cfg.bootstrap) => () =>
        new K3sCluster("c", {
          nodes: cfg.nodes,
          bootstrap,
          sshPrivateKey: "key",
          rollout: cfg.rollout,
          clusterIdentifier: "c",
          nodeResourcePrefix: "",
        });
      const ev = await evaluate("p40", {}, cluster(cfg.bootstrap));
      assert.deepEqual(
        ev.result.imagesReady.map((r) => r.constructor.name),
        ["Command", "Command"],
      );
      assert.equal(ev.result.nodes[0].imagesImported, ev.result.imagesReady[0]);
      assert.equal(ev.result.nodes[1].imagesImported, ev.result.imagesReady[1]);
      assert.deepEqual(ev.dependencies("a1-ssh-probe").sort(), ["s1-airgap-import", "s1-k3s"]);

      const online = await evaluate(
        "p40",
        {},
        cluster({ ...cfg.bootstrap, airgap: undefined, airgapImages: [] }),
      );
      assert.deepEqual(online.result.imagesReady, []);
      assert.deepEqual(online.dependencies("a1-ssh-probe"), ["s1-k3s"]);
    });
  });

  describe("pure parts", () => {
    it("normalises references as containerd lists them (distribution/reference ParseDockerRef)", () => {
      // Each pair as github.com/distribution/reference v0.6.0's ParseDockerRef printed it (go run, module cache).
      const D = "a".repeat(64);
      const cases: [string, string][] = [
        ["nginx", "docker.io/library/nginx:latest"],
        ["nginx:1.25", "docker.io/library/nginx:1.25"],
        ["library/nginx", "docker.io/library/nginx:latest"],
        ["docker.io/nginx", "docker.io/library/nginx:latest"],
        ["foo/bar", "docker.io/foo/bar:latest"],
        ["a/b/c:tag", "docker.io/a/b/c:tag"],
        ["index.docker.io/foo/bar", "docker.io/foo/bar:latest"],
        ["index.docker.io/nginx", "docker.io/library/nginx:latest"],
        ["localhost/x", "localhost/x:latest"],
        ["localhost:5000/x:1", "localhost:5000/x:1"],
        ["Registry/x/y", "Registry/x/y:latest"],
        ["nvcr.io/nvidia/k8s-device-plugin:v0.20.0", "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"],
        [`nginx:1@sha256:${D}`, `docker.io/library/nginx@sha256:${D}`],
        [`nvcr.io/x@sha256:${D}`, `nvcr.io/x@sha256:${D}`],
        [`foo@sha256:${D}`, `docker.io/library/foo@sha256:${D}`],
      ];
      for (const [ref, want] of cases) assert.equal(normalizeImageRef(ref), want, ref);
      assert.throws(() => normalizeImageRef("Foo"), /not an image reference/);
      assert.throws(() => normalizeImageRef("docker.io/Foo/bar"), /not an image reference/);
    });

    it("the stack's images: device plugin as the DaemonSet renders it, DCGM exporter when enabled, inference", () => {
      const cfg = parseStackConfig("p40", stackSource("p40"));
      const ds = devicePluginSpec(
        {
          sku: cfg.sku,
          timeSlicingReplicas: cfg.timeSlicingReplicas,
          gpuNodes: 1,
          devicePluginVersion: cfg.devicePluginVersion,
          dcgmExporter: cfg.dcgmExporter,
          dcgmExporterImage: cfg.dcgmExporterImage,
        },
        "",
      ) as { spec: { template: { spec: { containers: { image: string }[] } } } };
      assert.equal(devicePluginImage(cfg.devicePluginVersion), ds.spec.template.spec.containers[0].image);
      assert.equal(stackImageNames(cfg).devicePlugin, ds.spec.template.spec.containers[0].image);
      assert.deepEqual(stackImageRefs(cfg, cfg.inference.image), P40_IMAGES);
      assert.deepEqual(stackImageRefs({ ...cfg, dcgmExporter: false }, "llm"), [
        P40_IMAGES[0],
        "docker.io/library/llm:latest",
      ]);
      // What the program hands every node: the same list, in an air gap only.
      assert.deepEqual(
        parseStackConfig("p40", stackSource("p40", { airgap })).bootstrap.airgapImages,
        P40_IMAGES,
      );
      assert.deepEqual(cfg.bootstrap.airgapImages, []);
      const thor = parseStackConfig("thor", stackSource("thor", { airgap }));
      assert.equal(thor.bootstrap.airgapImages?.length, 2, "Thor has no DCGM exporter");
    });

    it("which K3s releases import tarballs added while they run", () => {
      const yes = [
        "v1.29.13+k3s1",
        "v1.30.9+k3s1",
        "v1.31.5+k3s1",
        "v1.32.1+k3s1",
        "v1.33.0+k3s1",
        "v1.36.4+k3s1",
      ];
      const no = ["v1.29.12+k3s1", "v1.30.8+k3s1", "v1.31.4+k3s1", "v1.32.0+k3s1", "v1.28.15+k3s1", "latest"];
      for (const v of yes) assert.equal(k3sWatchesImages(v), true, v);
      for (const v of no) assert.equal(k3sWatchesImages(v), false, v);
      const gap = { k3sVersion: "v1.36.4+k3s1", airgap: { ...airgap, stackImageTarballs: ["/x/i.tar"] } };
      assert.equal(importsLate(gap), true);
      assert.equal(importsLate({ ...gap, k3sVersion: "v1.32.0+k3s1" }), false);
      assert.equal(importsLate({ ...gap, airgap: { ...gap.airgap, stackImageTarballs: [] } }), false);
      assert.equal(importsLate({ k3sVersion: "v1.36.4+k3s1" }), false);
    });

    it("the wait: 120 s plus the tarballs' bytes at 20 MB/s, rounded up", () => {
      assert.equal(importTimeoutSeconds([]), 120);
      assert.equal(importTimeoutSeconds([1]), 121);
      assert.equal(importTimeoutSeconds([20 * MB]), 121);
      assert.equal(importTimeoutSeconds([20 * MB + 1]), 122);
      assert.equal(importTimeoutSeconds([10_000 * MB, 30 * MB]), 622);
      const stack = airgapFiles(airgap, SKUS.p40).filter((f) => f.stack);
      assert.deepEqual(airgapImportParams(stack, [30 * MB, 10_000 * MB], ["a", "b"]), {
        TARBALLS: "device-plugin.tar inference.tar.zst",
        IMAGES: "a\nb",
        TIMEOUT_SECONDS: 622,
      });
    });
  });

  describe("airgap-import.sh and airgap-import-remove.sh, run in a sandbox", function () {
    const STAGED = "/var/lib/forge-edge/airgap/images";
    const IMAGES_DIR = "/var/lib/rancher/k3s/agent/images";
    const DP = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0";
    const INF = "registry.example.com/forge/llm:1";
    let sb: NodeSandbox;
    before(requireSandbox);
    beforeEach(() => {
      sb = new NodeSandbox();
      // K3s's watcher, reduced: a supported file in agent/images is "imported" with the refs state/refs/<name>
      // lists; every call logs what agent/images held, so a test sees whether a partial or temporary name showed.
      sb.stub(
        "k3s",
        `[ "$1 $2 $3 $4 $5 $6" = "ctr -n k8s.io images ls -q" ] || { echo "unexpected k3s $*" >&2; exit 2; }
ls -A ${IMAGES_DIR} >>"$STATE/seen" 2>/dev/null || true
for f in ${IMAGES_DIR}/*; do
  case "$f" in *.tar | *.tar.zst) [ -e "$STATE/refs/\${f##*/}" ] && cat "$STATE/refs/\${f##*/}" ;; esac
done
echo "docker.io/rancher/mirrored-pause:3.6"`,
      );
      sb.run(`mkdir -p ${sb.state}/refs`);
      sb.put(`${STAGED}/device-plugin.tar`, "dp-tarball");
      sb.put(`${STAGED}/inference.tar.zst`, "inference-tarball");
      sb.put(`${IMAGES_DIR}/k3s-airgap-images-amd64.tar.zst`, "k3s-own");
    });
    afterEach(() => sb?.dispose());

    const refs = (name: string, ...r: string[]) =>
      sb.run(`printf '%s\\n' ${r.join(" ")} >${sb.state}/refs/${name}`);
    const script = (timeout = 5) =>
      renderScript("airgap-import", {
        TARBALLS: "device-plugin.tar inference.tar.zst",
        IMAGES: `${DP}\n${INF}`,
        TIMEOUT_SECONDS: timeout,
      });
    const inode = (p: string) => sb.run(`stat -c %i ${p}`).stdout.trim();

    it("places each tarball as a hard link under its name, waits until both images are listed, and is idempotent", () => {
      refs("device-plugin.tar", DP);
      refs("inference.tar.zst", INF);
      const r = sb.run(script());
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^placed=2 images=2 waited=\d+s\n$/);
      assert.equal(sb.read(`${IMAGES_DIR}/inference.tar.zst`), "inference-tarball");
      assert.equal(inode(`${IMAGES_DIR}/inference.tar.zst`), inode(`${STAGED}/inference.tar.zst`));
      assert.equal(sb.run(`stat -c %a ${IMAGES_DIR}/device-plugin.tar`).stdout, "644\n");
      assert.doesNotMatch(sb.run(`ls -A ${IMAGES_DIR}`).stdout, /\.part/);
      assert.match(
        sb.read("/var/lib/forge-edge/airgap-import") ?? "",
        /^device-plugin\.tar \d+ \d+\ninference\.tar\.zst /,
      );

      const again = sb.run(script());
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, /^placed=0 images=2 /);
      assert.equal(inode(`${IMAGES_DIR}/inference.tar.zst`), inode(`${STAGED}/inference.tar.zst`));
    });

    it("waits (bounded) for an image K3s has not imported yet, and fails naming it and where to look", () => {
      refs("device-plugin.tar", DP);
      // The inference image appears only on the third listing: the step waits for it.
      sb.stub(
        "k3s",
        `n=$(($(cat "$STATE/calls" 2>/dev/null || echo 0) + 1)); echo $n >"$STATE/calls"
echo ${DP}; [ $n -lt 3 ] || echo ${INF}`,
      );
      const r = sb.run(script());
      assert.equal(r.status, 0, r.stderr);
      assert.equal(sb.stateFile("calls"), "3\n");

      sb.stub("k3s", `echo ${DP}`);
      const t = sb.run(script(2));
      assert.notEqual(t.status, 0);
      assert.match(t.stderr, /after \d+s containerd still lacks registry\.example\.com\/forge\/llm:1:/);
      assert.match(
        t.stderr,
        /Imported images from \/var\/lib\/rancher\/k3s\/agent\/images\/…" and "Failed to import"/,
      );
    });

    it("places a changed tarball again; adopts one K3s's step placed before; refuses a missing one", () => {
      refs("device-plugin.tar", DP);
      refs("inference.tar.zst", INF);
      assert.equal(sb.run(script()).status, 0);
      // The copy step wrote a new tarball (a new file, as SFTP's rewrite of the staged name would leave it).
      sb.run(`rm ${STAGED}/inference.tar.zst && printf 'inference-tarball-v2' >${STAGED}/inference.tar.zst`);
      const r = sb.run(script());
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^placed=1 /);
      assert.equal(sb.read(`${IMAGES_DIR}/inference.tar.zst`), "inference-tarball-v2");

      const adopt = new NodeSandbox();
      try {
        sb.dispose();
        sb = adopt;
        sb.stub("k3s", `echo ${DP}; echo ${INF}`);
        sb.put(`${STAGED}/device-plugin.tar`, "dp-tarball");
        sb.put(`${STAGED}/inference.tar.zst`, "inference-tarball");
        sb.put(`${IMAGES_DIR}/device-plugin.tar`, "dp-tarball");
        sb.put(`${IMAGES_DIR}/inference.tar.zst`, "inference-tarball");
        const a = sb.run(script());
        assert.equal(a.status, 0, a.stderr);
        assert.match(a.stdout, /^placed=0 /);
        assert.match(sb.read("/var/lib/forge-edge/airgap-import") ?? "", /inference\.tar\.zst/);

        sb.run(`rm ${STAGED}/device-plugin.tar`);
        const m = sb.run(script());
        assert.notEqual(m.status, 0);
        assert.match(
          m.stderr,
          /staged tarball \/var\/lib\/forge-edge\/airgap\/images\/device-plugin\.tar is missing/,
        );
      } finally {
        adopt.dispose();
      }
    });

    it("K3s never sees a partial tarball: the temporary name is one its watcher skips, renamed when complete", () => {
      refs("device-plugin.tar", DP);
      refs("inference.tar.zst", INF);
      // Every rename logs what agent/images holds just before it: the moment a temporary name exists.
      sb.stub("mv", `ls -A ${IMAGES_DIR} >>"$STATE/seen" 2>/dev/null || true; exec /bin/mv "$@"`);
      assert.equal(sb.run(script()).status, 0);
      const seen = new Set((sb.stateFile("seen") ?? "").split("\n").filter(Boolean));
      assert.ok(
        [...seen].some((n) => n.endsWith(".part")),
        `no temporary name seen: ${[...seen]}`,
      );
      // K3s's watcher imports a name with a tarball's or list's suffix (watcher.go isFileSupported: a suffix match,
      // so a leading dot does not hide a file; the suffixes containerd.go preloadFile reads): only complete files
      // may carry one.
      const supported = /(\.tar|\.tar\.lz4|\.tar\.bz2|\.tbz|\.tar\.gz|\.tgz|\.tar\.zst|\.tzst|\.txt)$/;
      for (const name of seen)
        if (supported.test(name))
          assert.ok(
            ["k3s-airgap-images-amd64.tar.zst", "device-plugin.tar", "inference.tar.zst"].includes(name),
            `agent/images held ${name}`,
          );
    });

    it("the remove script takes back what was placed and nothing else, and is idempotent", () => {
      refs("device-plugin.tar", DP);
      refs("inference.tar.zst", INF);
      assert.equal(sb.run(script()).status, 0);
      for (let i = 0; i < 2; i++) {
        const r = sb.run(renderScript("airgap-import-remove", {}));
        assert.equal(r.status, 0, r.stderr);
      }
      assert.equal(sb.run(`ls -A ${IMAGES_DIR}`).stdout, "k3s-airgap-images-amd64.tar.zst\n");
      assert.equal(sb.read("/var/lib/forge-edge/airgap-import"), undefined);
      assert.equal(
        sb.read(`${STAGED}/inference.tar.zst`),
        "inference-tarball",
        "the staged copy is the stage's",
      );
    });
  });
});
