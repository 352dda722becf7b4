/**
 * `npm run bench -- --time-to-serving-sim [--scale 0.05] [--runs 1] [--out FILE]`: time to serving MEASURED on the
 * simulated site with realistic durations (harness/ttsSim.ts), one p40 node, air gap, for the program before issue
 * 12's restructure (BEFORE, exported with `git archive`, this checkout's node_modules linked, as
 * tests/e2e/upgrade.test.ts does) and the program today (a snapshot of the working tree), each on a fresh site with
 * the same doubles and durations, alternating. Measured from `up`'s start to the first ready endpoint of the
 * inference Service, polled from outside the engine. Writes bench-results.json's `timeToServingSim` key (the
 * file's other figures are kept) and README.md's `bench-tts-sim` section.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";
import { EngineEvent } from "@pulumi/pulumi/automation";

import { INFERENCE, NAMESPACE } from "../components/names";
import { openStack, PROJECT, projectCopy } from "./engine";
import { KubeClient } from "./kubeClient";
import { parseStackConfig } from "../config/stack";
import { k3sAirgapImageNames } from "./nodeImages";
import { ConfigEntry, Site, stackImageNames, startSite } from "./site";
import {
  containerdName,
  formattedTimeToServingSim,
  lanShaping,
  recordedDelays,
  SIM_SCALE,
  SimPlan,
  simPlan,
  SimRun,
  simSummary,
  TimeToServingSimResults,
  TTS_SIM_SECTION,
} from "./ttsSim";

const ROOT = path.resolve(__dirname, "..");
/** The program before the restructure: the parent of b91ca91 (k3s-fetch, image-prepull, the model). */
export const BEFORE = {
  commit: "b91ca91^",
  note: "e904056, the main before b91ca91's bootstrap restructure",
};

/** sha256 of a file, hex (sha256sum streams it: the layer of a sim image is up to GBs). */
function sha256File(file: string): string {
  return execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0];
}

/**
 * Writes `file`, an OCI image-layout tarball (what `ctr images import` and K3s's watcher import) of one image with
 * one uncompressed layer of about `bytes` random bytes (nothing on the way compresses it), named `refs` in
 * index.json's io.containerd.image.name annotations (index.json first, so a reader finds the names at once).
 */
export function writeImageTarball(file: string, refs: readonly string[], bytes: number): string {
  if (!refs.length) throw new Error("an image tarball needs a name");
  const work = fs.mkdtempSync(`${file}.d-`);
  try {
    const blobs = path.join(work, "layout", "blobs", "sha256");
    fs.mkdirSync(blobs, { recursive: true });
    const put = (content: Buffer | string): { digest: string; size: number } => {
      const buf = Buffer.from(content);
      const hex = createHash("sha256").update(buf).digest("hex");
      fs.writeFileSync(path.join(blobs, hex), buf);
      return { digest: `sha256:${hex}`, size: buf.length };
    };
    const payload = path.join(work, "payload");
    fs.mkdirSync(payload);
    execFileSync("head", ["-c", String(bytes), "/dev/urandom"], {
      stdio: ["ignore", fs.openSync(path.join(payload, "blob"), "w"), "inherit"],
    });
    const layerTmp = path.join(work, "layer.tar");
    execFileSync("tar", ["-cf", layerTmp, "-C", payload, "blob"]);
    fs.rmSync(payload, { recursive: true });
    const layerHex = sha256File(layerTmp);
    const layer = { digest: `sha256:${layerHex}`, size: fs.statSync(layerTmp).size };
    fs.renameSync(layerTmp, path.join(blobs, layerHex));
    const config = put(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: {},
        rootfs: { type: "layers", diff_ids: [layer.digest] },
      }),
    );
    const manifest = put(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
      }),
    );
    const layout = path.join(work, "layout");
    fs.writeFileSync(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    fs.writeFileSync(
      path.join(layout, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: refs.map((ref) => ({
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: {
            "io.containerd.image.name": ref,
            "org.opencontainers.image.ref.name": ref.split(":").pop()!,
          },
          platform: { architecture: "amd64", os: "linux" },
        })),
      }),
    );
    execFileSync("tar", ["-cf", file, "-C", layout, "index.json", "oci-layout", "blobs"]);
    return file;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The program tree of `program`: BEFORE exported from git, or a snapshot of today's working tree. */
function programTree(dir: string, program: SimRun["program"]): string {
  if (program === "before") {
    const tree = path.join(dir, "before");
    fs.mkdirSync(tree);
    execFileSync("bash", ["-c", `git -C "${ROOT}" archive ${BEFORE.commit} | tar x -C "${tree}"`]);
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(tree, "node_modules"));
    return tree;
  }
  const project = projectCopy(path.join(dir, "after"));
  // A snapshot: an edit of the working tree during the run changes nothing.
  for (const f of ["index.ts", "program.ts", "config", "components", "scripts"]) {
    const at = path.join(project, f);
    const target = fs.realpathSync(at);
    fs.rmSync(at);
    fs.cpSync(target, at, { recursive: true });
  }
  return project;
}

/** The stack file values of the tree in `stackDir`, with the node, key and air gap pointed at the site. */
function treeConfig(stackDir: string, site: Site, airgap: string): Record<string, ConfigEntry> {
  const values = (
    yaml.load(fs.readFileSync(path.join(stackDir, "Pulumi.p40.yaml"), "utf8")) as {
      config: Record<string, unknown>;
    }
  ).config;
  const config: Record<string, ConfigEntry> = {};
  for (const [k, v] of Object.entries(values))
    config[k.replace(`${PROJECT}:`, "")] = { value: typeof v === "string" ? v : JSON.stringify(v) };
  for (const k of ["nodes", "sshPrivateKey"]) config[k] = site.config[k];
  config.airgap = { value: airgap };
  return config;
}

/** Polls the inference Service's EndpointSlices until one holds a ready endpoint; resolves with the time (ms). */
function firstReadyEndpoint(kube: KubeClient, until: () => boolean): Promise<number | undefined> {
  type Slices = { items: { endpoints?: { conditions?: { ready?: boolean } }[] }[] };
  const url =
    `/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices?labelSelector=` +
    encodeURIComponent(`kubernetes.io/service-name=${INFERENCE.name}`);
  return new Promise((resolve) => {
    const tick = async (): Promise<void> => {
      const slices = (await kube.get(url).catch(() => undefined)) as Slices | undefined;
      if (slices?.items.some((s) => (s.endpoints ?? []).some((e) => e.conditions?.ready === true))) {
        resolve(Date.now());
        return;
      }
      if (until()) resolve(undefined);
      else setTimeout(() => void tick(), 100);
    };
    void tick();
  });
}

/** The staged tarballs (paths), by the plan's `files` keys. */
type Bundle = Record<keyof SimPlan["files"], string>;

/**
 * The air-gap bundle's image tarballs, of the plan's scaled sizes: real OCI images under the names the stack runs
 * (today's stack file, normalised as containerd lists them) and K3s's own, so K3s's watcher (the double) records
 * what the program's import step waits for. Written once per bench: `site` gives the stack file its nodes.
 */
function bundleMaker(dir: string, plan: SimPlan): (site: Site) => Bundle {
  let made: Bundle | undefined;
  return (site) => {
    if (made) return made;
    const config = treeConfig(ROOT, site, site.config.airgap.value);
    const cfg = parseStackConfig(SIM_SKU, {
      get: (k) => (k === "airgap" ? undefined : config[k]?.value),
      isSecret: (k) => config[k]?.secret === true,
    });
    const names = stackImageNames(cfg);
    fs.mkdirSync(dir, { recursive: true });
    made = {
      k3sImages: writeImageTarball(
        path.join(dir, "k3s-airgap-images.tar"),
        k3sAirgapImageNames().map(containerdName),
        plan.files.k3sImages,
      ),
      inferenceImage: writeImageTarball(
        path.join(dir, "inference-server.tar"),
        [containerdName(names.inference)],
        plan.files.inferenceImage,
      ),
      // The GPU images in one tarball: the device plugin and, when enabled, the DCGM exporter (the model has one
      // size for them).
      devicePluginImage: writeImageTarball(
        path.join(dir, "nvidia-device-plugin.tar"),
        [names.devicePlugin, ...(names.dcgm ? [names.dcgm] : [])].map(containerdName),
        plan.files.devicePluginImage,
      ),
    };
    return made;
  };
}

const SIM_SKU = "p40";

async function oneRun(
  dir: string,
  program: SimRun["program"],
  plan: SimPlan,
  ipBase: number,
  bundle: (site: Site) => Bundle,
): Promise<SimRun> {
  const site = await startSite({
    sku: SIM_SKU,
    dir: path.join(dir, "site"),
    ipBase,
    hostOptions: () => ({ durations: JSON.stringify(plan.durations) }),
    podReadyDelay: { label: { key: "app", value: INFERENCE.labels.app }, milliseconds: plan.modelLoadMs },
  });
  const shaping = lanShaping(site.hosts[0].host, plan.lanMbps);
  try {
    // Only inside harness/netns-run.sh's namespace: its loopback is the run's own, not the machine's.
    if (process.env.FORGE_EDGE_NETNS !== "1")
      throw new Error(
        "--time-to-serving-sim shapes loopback traffic: run it through bash harness/netns-run.sh",
      );
    for (const args of shaping.add) execFileSync("tc", args, { stdio: ["ignore", "ignore", "pipe"] });
    const files = bundle(site);
    const airgap = JSON.stringify({
      k3sBinary: JSON.parse(site.config.airgap.value).k3sBinary as string,
      installScript: JSON.parse(site.config.airgap.value).installScript as string,
      imagesTarball: files.k3sImages,
      stackImageTarballs: [files.inferenceImage, files.devicePluginImage],
    });
    const tree = programTree(dir, program);
    const { stack } = await openStack({
      stackName: `tts-${program}`,
      dir,
      // Today's stack file is the working tree's (a project copy links only the program's files).
      config: treeConfig(program === "before" ? tree : ROOT, site, airgap),
      projectDir: tree,
    });
    // Each node step's start and end (engine events), printed so a difference between the programs can be placed.
    const steps = new Map<string, { start?: number; end?: number }>();
    const at = (urn: string): { start?: number; end?: number } => {
      const name = urn.split("::").pop()!;
      if (!steps.has(name)) steps.set(name, {});
      return steps.get(name)!;
    };
    // The poll runs while `up` does, and after it (the engine need not wait for the endpoint) up to a bound.
    let deadline = Infinity;
    const t0 = Date.now();
    const ready = firstReadyEndpoint(site.kube, () => Date.now() > deadline);
    try {
      const res = await stack.up({
        onEvent: (e: EngineEvent) => {
          if (e.resourcePreEvent) at(e.resourcePreEvent.metadata.urn).start = Date.now();
          if (e.resOutputsEvent) at(e.resOutputsEvent.metadata.urn).end = Date.now();
        },
      });
      if (res.summary.result !== "succeeded") throw new Error(`${program}: up ${res.summary.result}`);
      deadline = Date.now() + plan.modelLoadMs + 60_000;
    } catch (e) {
      // A failed `up` ends the poll at once: nothing is left to wait for.
      deadline = 0;
      throw e;
    }
    const upMs = Date.now() - t0;
    const readyAt = await ready;
    if (readyAt === undefined) throw new Error(`${program}: no ready inference endpoint`);
    const s = (ms: number): number => Math.round(ms) / 1000;
    for (const [name, t] of [...steps].sort((a, b) => (a[1].start ?? 0) - (b[1].start ?? 0)))
      if (name.startsWith("p40-01-"))
        console.log(`  ${program} ${name.padEnd(40)} ${s((t.start ?? t0) - t0)}–${s((t.end ?? t0) - t0)} s`);
    const k3s = steps.get("p40-01-k3s") ?? {};
    return {
      program,
      servingS: s(readyAt - t0),
      fromProbeS: s(readyAt - (steps.get("p40-01-ssh-probe")?.start ?? t0)),
      upS: s(upMs),
      k3sStartS: s((k3s.start ?? t0) - t0),
      k3sEndS: s((k3s.end ?? t0) - t0),
      doublesDelayS: recordedDelays(site.hosts[0].calls()),
    };
  } finally {
    // Nothing to remove when the shaping was never added; the site stops either way.
    if (process.env.FORGE_EDGE_NETNS === "1") spawnSync("tc", shaping.remove, { stdio: "ignore" });
    await site.stop();
  }
}

export async function ttsSimBench(opts: {
  out: string;
  scale?: number;
  runs?: number;
  /** Rewrite README.md's section too (the bench writes the repository's bench-results.json). */
  readme: boolean;
}): Promise<void> {
  const plan = simPlan(undefined, opts.scale ?? SIM_SCALE);
  const runs: SimRun[] = [];
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "forge-tts-sim-"));
  const loads: number[] = [];
  const bundle = bundleMaker(path.join(base, "bundle"), plan);
  try {
    for (let i = 0; i < (opts.runs ?? 1); i++) {
      for (const program of ["before", "after"] as const) {
        loads.push(os.loadavg()[0]);
        const dir = path.join(base, `${program}-${i}`);
        fs.mkdirSync(dir);
        const r = await oneRun(dir, program, plan, 200 + 4 * runs.length, bundle);
        runs.push(r);
        console.log(
          `${program}\tserving ${r.servingS.toFixed(2)} s (${r.fromProbeS.toFixed(2)} s from the probe)\tup ${r.upS.toFixed(2)} s\tK3s step ` +
            `${r.k3sStartS.toFixed(2)}–${r.k3sEndS.toFixed(2)} s\tdoubles slept ${JSON.stringify(r.doublesDelayS)}`,
        );
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
  const results: TimeToServingSimResults = {
    date: new Date().toISOString(),
    machine: {
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      loadavg1: Math.round(Math.max(...loads) * 100) / 100,
    },
    scale: plan.scale,
    before: BEFORE,
    mode: "airgap",
    plan: {
      durations: plan.durations,
      modelLoadMs: plan.modelLoadMs,
      files: plan.files,
      lanMbps: plan.lanMbps,
      predicted: plan.predicted,
    },
    runs,
  };
  const s = simSummary(results);
  console.log(
    `\nair gap, scale ${plan.scale}: measured from up's start: before ${s.before.toFixed(2)} s, today ` +
      `${s.after.toFixed(2)} s, saved ${s.saved.toFixed(2)} s; from the probe: ${s.beforeFromProbe.toFixed(2)} → ` +
      `${s.afterFromProbe.toFixed(2)} s, saved ${s.savedFromProbe.toFixed(2)} s; model × scale: ${plan.predicted.current.toFixed(2)} → ` +
      `${plan.predicted.restructured.toFixed(2)} s, saved ${(plan.predicted.current - plan.predicted.restructured).toFixed(2)} s`,
  );
  const doc = fs.existsSync(opts.out)
    ? (JSON.parse(fs.readFileSync(opts.out, "utf8")) as Record<string, unknown>)
    : {};
  doc.timeToServingSim = results;
  fs.writeFileSync(opts.out, JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote ${opts.out} (timeToServingSim)`);
  if (!opts.readme) return;
  const readmePath = path.join(ROOT, "README.md");
  const readme = fs.readFileSync(readmePath, "utf8");
  fs.writeFileSync(
    readmePath,
    TTS_SIM_SECTION.replace(readme, await formattedTimeToServingSim(results, readmePath)),
  );
  console.log("rewrote README.md's bench-tts-sim section");
}
