/**
 * Time to serving of one edge node on real hardware, modelled from the bootstrap's steps (pure: no I/O, no clock).
 *
 * What a user waits for on a real box is not the engine but downloads, imports and the model load; the order of the
 * bootstrap decides how much of that overlaps. Each step has a network part (bytes over a link that concurrent
 * downloads share fairly, so two parallel downloads do not finish sooner than one after the other) and a local part
 * (CPU, disk, service start). A step starts when every step it depends on has finished. `simulate` plays the graph
 * out and returns each step's start and end; `criticalPath` names the chain that set the end.
 *
 * The graphs follow the program: components/edgeNode.ts (steps and their dependsOn), scripts/*.sh (what each step
 * does on the node), components/site.ts (platform and inference after the cluster), and K3s's own behaviour
 * (k3s-io/k3s pkg/agent/run.go: the kubelet starts only after containerd.Run returns, and that return waits for
 * every tarball and pre-pull list found in agent/images at start; pkg/agent/containerd/watcher.go: files added while
 * K3s runs are imported or pulled in the background).
 */

import { formatMarkdown, ReadmeSection } from "./readmeSection";

/** A link that concurrent downloads share. */
export type Link = "uplink" | "lan";

export interface Step {
  id: string;
  /** What the step does, for the table. */
  what: string;
  after: readonly string[];
  /** Bytes the step moves over `link` before its local part starts. */
  bytes?: number;
  link?: Link;
  /** Seconds of local work (CPU, disk, service start, API round trips) after the transfer. */
  localSeconds: number;
}

export interface Timing {
  id: string;
  start: number;
  end: number;
}

export interface Inputs {
  /** Edge uplink (registries, GitHub, NVIDIA's apt repository), Mbit/s. */
  uplinkMbps: number;
  /** Operator machine → node (SFTP copies of the air-gap bundle), Mbit/s. */
  lanMbps: number;
  /** The inference image, compressed, GB. */
  inferenceImageGB: number;
  /** The device plugin image, MB. */
  devicePluginImageMB: number;
  /** K3s binary, MB. */
  k3sBinaryMB: number;
  /** K3s's own air-gap images tarball (k3s-airgap-images-<arch>.tar.zst), MB. */
  k3sImagesMB: number;
  /** NVIDIA Container Toolkit's four packages plus the apt index of its repository, MB. */
  toolkitDownloadMB: number;
  /** apt-get update round trips + dpkg unpack/configure of the toolkit, s. */
  toolkitLocalSeconds: number;
  /** containerd import of an image tarball (decompress + unpack), MB/s. */
  importMBps: number;
  /** K3s service start to a ready API server and a registered node, without image imports, s. */
  k3sStartSeconds: number;
  /** Device plugin start once its image is present, to the node advertising GPUs, s. */
  devicePluginStartSeconds: number;
  /** Kubernetes objects of the platform and the inference stack (API round trips), s. */
  platformSeconds: number;
  /** The inference server's model load, up to /health/ready, s. */
  modelLoadSeconds: number;
}

/**
 * The defaults and where each comes from. `assumed` marks a figure no upstream metadata in reach fixed: the
 * bench prints it so, and a user puts their own measured values in (`npm run bench -- --time-to-serving`).
 */
export const DEFAULTS: { [K in keyof Inputs]: { value: Inputs[K]; source: string; assumed: boolean } } = {
  uplinkMbps: {
    value: 100,
    source:
      "the edge uplink components/inferenceStack.ts ROLLOUT.imagePullSeconds is sized for (~10 GB at 100 Mbit/s)",
    assumed: true,
  },
  lanMbps: { value: 1000, source: "operator laptop on the site's gigabit LAN", assumed: true },
  inferenceImageGB: {
    value: 10,
    source: "the multi-GB inference image of components/inferenceStack.ts ROLLOUT (~10 GB)",
    assumed: true,
  },
  devicePluginImageMB: {
    value: 150,
    source: "NVIDIA k8s-device-plugin image, order of magnitude",
    assumed: true,
  },
  k3sBinaryMB: { value: 70, source: "K3s release asset `k3s` (amd64), order of magnitude", assumed: true },
  k3sImagesMB: {
    value: 170,
    source: "K3s release asset k3s-airgap-images-amd64.tar.zst, order of magnitude",
    assumed: true,
  },
  toolkitDownloadMB: {
    value: 8,
    source:
      "nvidia-container-toolkit{,-base}, libnvidia-container{1,-tools} debs + repo index, order of magnitude",
    assumed: true,
  },
  toolkitLocalSeconds: {
    value: 25,
    source: "apt-get update + dpkg of four packages on an edge box",
    assumed: true,
  },
  importMBps: { value: 150, source: "containerd import (zstd/tar unpack) on NVMe", assumed: true },
  k3sStartSeconds: { value: 25, source: "K3s server start to /readyz and node registration", assumed: true },
  devicePluginStartSeconds: {
    value: 10,
    source: "device plugin start to nvidia.com/gpu capacity",
    assumed: true,
  },
  platformSeconds: {
    value: 5,
    source: "object creation on a local API server (bench: platform + inference objects take seconds)",
    assumed: false,
  },
  modelLoadSeconds: {
    value: 300,
    source: "inference.modelLoadSeconds default (config/sections/inference.ts)",
    assumed: false,
  },
};

export function defaultInputs(): Inputs {
  return Object.fromEntries(Object.entries(DEFAULTS).map(([k, v]) => [k, v.value])) as unknown as Inputs;
}

const MB = 1e6;

/** K3s's watcher processes a file's event 2 s after it (k3s-io/k3s pkg/agent/containerd/watcher.go AddAfter). */
export const WATCHER_DELAY_SECONDS = 2;

/** Mode of the install, and whether the bootstrap is the one before or after issue 12's restructure. */
export type Mode = "online" | "airgap";
export type Order = "current" | "restructured";

/**
 * The steps of a one-node `up` to serving, per mode and order.
 *
 * online, current: the toolkit install, then the K3s step downloads installer and binary itself, starts K3s;
 * then the device plugin, the platform, the Deployment; the kubelet pulls the inference image, the model loads.
 * online, restructured: a k3s-fetch step downloads (and verifies) installer and binary in parallel with the
 * toolkit install; right after K3s serves, a pre-pull list in agent/images has K3s pull the inference image in
 * the background while the device plugin and the platform come up.
 * airgap, current: every staged file, the multi-GB inference tarball included, is copied before the K3s step,
 * and K3s's start (so its kubelet) waits for the import of every tarball in agent/images.
 * airgap, restructured: the K3s step waits only for the runtime step and K3s's own artefacts; the stack's image
 * tarballs are copied meanwhile; the airgap-import step, after K3s and those copies, places them in agent/images,
 * where K3s's watcher imports them (2 s after the file appears, then at the import rate), and waits until containerd
 * lists every image the stack runs.
 * After K3s, restructured (components/site.ts): the platform's objects wait only for K3s; the device plugin's pods
 * wait for the platform's priority classes and, in an air gap, for the import; the inference Deployment's pods for
 * the device plugin (and so the import); "current" keeps the chain before issue 12 (device plugin, then the
 * platform and inference objects).
 */
export function bootstrapSteps(mode: Mode, order: Order, i: Inputs): Step[] {
  const img = i.inferenceImageGB * 1000 * MB;
  const dp = i.devicePluginImageMB * MB;
  const importS = (bytes: number): number => bytes / MB / i.importMBps;
  const common: Step[] = [
    { id: "probe", what: "SSH probe", after: [], localSeconds: 1 },
    {
      id: "toolkit",
      what: "NVIDIA Container Toolkit (apt)",
      after: ["probe"],
      bytes: i.toolkitDownloadMB * MB,
      link: "uplink",
      localSeconds: i.toolkitLocalSeconds,
    },
  ];
  const tail = (k3s: string, imageAt: string[], imageStep: Step | undefined): Step[] =>
    order === "current"
      ? [
          {
            id: "device-plugin",
            what: "device plugin image + start",
            after: [k3s],
            ...(mode === "online" ? { bytes: dp, link: "uplink" as const } : {}),
            localSeconds: i.devicePluginStartSeconds,
          },
          {
            id: "platform",
            what: "platform + inference objects",
            after: ["device-plugin"],
            localSeconds: i.platformSeconds,
          },
          ...(imageStep ? [imageStep] : []),
          {
            id: "model-load",
            what: "model load to /health/ready",
            after: ["platform", ...imageAt],
            localSeconds: i.modelLoadSeconds,
          },
        ]
      : [
          {
            id: "platform",
            what: "platform + inference objects (not waiting for images or GPUs)",
            after: ["k3s"],
            localSeconds: i.platformSeconds,
          },
          {
            id: "device-plugin",
            what: "device plugin pods (its image + start)",
            after: [k3s, "platform"],
            ...(mode === "online" ? { bytes: dp, link: "uplink" as const } : {}),
            localSeconds: i.devicePluginStartSeconds,
          },
          ...(imageStep ? [imageStep] : []),
          {
            id: "model-load",
            what: "inference pods: model load to /health/ready",
            after: ["device-plugin", "platform", ...imageAt],
            localSeconds: i.modelLoadSeconds,
          },
        ];

  if (mode === "online") {
    if (order === "current") {
      return [
        ...common,
        {
          id: "k3s",
          what: "K3s step: download installer + binary, install, start",
          after: ["toolkit"],
          bytes: i.k3sBinaryMB * MB,
          link: "uplink",
          localSeconds: i.k3sStartSeconds,
        },
        ...tail("k3s", ["image-pull"], {
          id: "image-pull",
          what: "kubelet pulls the inference image",
          after: ["platform"],
          bytes: img,
          link: "uplink",
          localSeconds: 0,
        }).map((s) => (s.id === "model-load" ? { ...s, after: ["image-pull"] } : s)),
      ];
    }
    return [
      ...common,
      {
        id: "k3s-fetch",
        what: "k3s-fetch: installer + binary (sha256-checked)",
        after: ["probe"],
        bytes: i.k3sBinaryMB * MB,
        link: "uplink",
        localSeconds: 0,
      },
      {
        id: "k3s",
        what: "K3s step: install, start",
        after: ["toolkit", "k3s-fetch"],
        localSeconds: i.k3sStartSeconds,
      },
      ...tail("k3s", ["image-pull"], {
        id: "image-pull",
        what: "K3s pre-pull list: inference image in the background",
        after: ["k3s"],
        bytes: img,
        link: "uplink",
        localSeconds: 0,
      }),
    ];
  }

  const stage: Step = { id: "stage", what: "air-gap staging dir", after: ["probe"], localSeconds: 1 };
  const k3sCopies: Step = {
    id: "copy-k3s",
    what: "SFTP: K3s binary, installer, K3s images",
    after: ["stage"],
    bytes: (i.k3sBinaryMB + i.k3sImagesMB) * MB,
    link: "lan",
    localSeconds: 0,
  };
  const stackCopies: Step = {
    id: "copy-stack-images",
    what: "SFTP: device plugin + inference image tarballs",
    after: ["stage"],
    bytes: img + dp,
    link: "lan",
    localSeconds: 0,
  };
  if (order === "current") {
    return [
      ...common,
      stage,
      k3sCopies,
      stackCopies,
      {
        id: "k3s",
        what: "K3s step: start, import every tarball before the kubelet",
        after: ["toolkit", "copy-k3s", "copy-stack-images"],
        localSeconds: i.k3sStartSeconds + importS(i.k3sImagesMB * MB + img + dp),
      },
      ...tail("k3s", [], undefined),
    ];
  }
  return [
    ...common,
    stage,
    k3sCopies,
    stackCopies,
    {
      id: "k3s",
      what: "K3s step: start, import K3s's own images",
      after: ["toolkit", "copy-k3s"],
      localSeconds: i.k3sStartSeconds + importS(i.k3sImagesMB * MB),
    },
    {
      id: "image-import",
      what: "airgap-import: place stack tarballs; K3s's watcher imports them",
      after: ["k3s", "copy-stack-images"],
      localSeconds: WATCHER_DELAY_SECONDS + importS(img + dp),
    },
    ...tail("image-import", [], undefined),
  ];
}

/**
 * Plays the graph out: transfers on one link share its bandwidth equally (processor sharing), local parts run
 * in parallel. Throws on an unknown dependency or a cycle.
 */
export function simulate(steps: readonly Step[], i: Pick<Inputs, "uplinkMbps" | "lanMbps">): Timing[] {
  const byId = new Map(steps.map((s) => [s.id, s]));
  for (const s of steps) {
    for (const d of s.after) if (!byId.has(d)) throw new Error(`step ${s.id} depends on unknown step ${d}`);
  }
  const rate: Record<Link, number> = { uplink: (i.uplinkMbps * 1e6) / 8, lan: (i.lanMbps * 1e6) / 8 };
  const start = new Map<string, number>();
  const end = new Map<string, number>();
  /** Bytes left of each running transfer; local seconds left of each running local part. */
  const bytesLeft = new Map<string, number>();
  const localLeft = new Map<string, number>();
  let now = 0;

  const EPS = 1e-9;
  /** Starts every step whose dependencies are done; a step with nothing left to do ends at once. */
  const launch = (): void => {
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (const s of steps) {
        if (start.has(s.id) || !s.after.every((d) => end.has(d))) continue;
        start.set(s.id, now);
        progressed = true;
        if ((s.bytes ?? 0) > 0) bytesLeft.set(s.id, s.bytes!);
        else if (s.localSeconds > 0) localLeft.set(s.id, s.localSeconds);
        else end.set(s.id, now);
      }
    }
  };
  const linkOf = (id: string): Link => byId.get(id)!.link ?? "uplink";
  launch();
  while (end.size < steps.length) {
    const sharing = new Map<Link, number>();
    for (const id of bytesLeft.keys()) sharing.set(linkOf(id), (sharing.get(linkOf(id)) ?? 0) + 1);
    const speed = (id: string): number => rate[linkOf(id)] / sharing.get(linkOf(id))!;
    let dt = Infinity;
    for (const [id, b] of bytesLeft) dt = Math.min(dt, b / speed(id));
    for (const l of localLeft.values()) dt = Math.min(dt, l);
    if (!Number.isFinite(dt)) throw new Error("the step graph has a cycle");
    now += dt;
    // Local parts first: a transfer finishing in this interval starts its local part only now.
    for (const [id, l] of [...localLeft]) {
      if (l - dt > EPS) localLeft.set(id, l - dt);
      else {
        localLeft.delete(id);
        end.set(id, now);
      }
    }
    for (const [id, b] of [...bytesLeft]) {
      const left = b - speed(id) * dt;
      if (left > EPS * b) {
        bytesLeft.set(id, left);
        continue;
      }
      bytesLeft.delete(id);
      const local = byId.get(id)!.localSeconds;
      if (local > 0) localLeft.set(id, local);
      else end.set(id, now);
    }
    launch();
  }
  return steps.map((s) => ({ id: s.id, start: start.get(s.id)!, end: end.get(s.id)! }));
}

/** The chain that set the end: from the last step back through the dependency that finished last. */
export function criticalPath(steps: readonly Step[], timings: readonly Timing[]): string[] {
  const t = new Map(timings.map((x) => [x.id, x]));
  const byId = new Map(steps.map((s) => [s.id, s]));
  let cur: string | undefined = [...timings].sort((a, b) => b.end - a.end || a.id.localeCompare(b.id))[0]?.id;
  const path: string[] = [];
  while (cur !== undefined) {
    path.unshift(cur);
    const deps: readonly string[] = byId.get(cur)!.after;
    cur = deps.length
      ? [...deps].sort((a, b) => t.get(b)!.end - t.get(a)!.end || a.localeCompare(b))[0]
      : undefined;
  }
  return path;
}

export interface Scenario {
  mode: Mode;
  order: Order;
  /** Seconds from `up` to the inference server ready. */
  seconds: number;
  criticalPath: string[];
  steps: (Timing & { what: string })[];
}

export interface TimeToServing {
  inputs: Inputs;
  scenarios: Scenario[];
}

/** Every mode, before and after the restructure, for the given inputs. */
export function timeToServing(inputs: Inputs = defaultInputs()): TimeToServing {
  const scenarios: Scenario[] = [];
  for (const mode of ["online", "airgap"] as const) {
    for (const order of ["current", "restructured"] as const) {
      const steps = bootstrapSteps(mode, order, inputs);
      const timings = simulate(steps, inputs);
      const what = new Map(steps.map((s) => [s.id, s.what]));
      scenarios.push({
        mode,
        order,
        seconds: Math.max(...timings.map((x) => x.end)),
        criticalPath: criticalPath(steps, timings),
        steps: timings.map((x) => ({ ...x, what: what.get(x.id)! })),
      });
    }
  }
  return { inputs, scenarios };
}

// ---------------------------------------------------------------------------------------------------------------
// bench-results.json's `timeToServing` key and the README's "Time to serving" table (npm run bench:readme).
// ---------------------------------------------------------------------------------------------------------------

export interface TimeToServingResults {
  date: string;
  /** What produced the figures: the model, with these inputs (none measured on hardware yet). */
  source: string;
  inputs: Inputs;
  /** The inputs that are assumptions, not sourced figures. */
  assumed: (keyof Inputs)[];
  /** `criticalPath`: step ids joined by " → " (a string keeps the JSON file in Prettier's layout). */
  scenarios: { mode: Mode; order: Order; seconds: number; criticalPath: string }[];
}

export function timeToServingResults(inputs: Inputs, date: Date): TimeToServingResults {
  const r = timeToServing(inputs);
  return {
    date: date.toISOString(),
    source: "the model in harness/timeToServing.ts (the bootstrap's step graph, links shared)",
    inputs,
    assumed: (Object.keys(DEFAULTS) as (keyof Inputs)[]).filter(
      (k) => DEFAULTS[k].assumed && inputs[k] === DEFAULTS[k].value,
    ),
    scenarios: r.scenarios.map((s) => ({
      mode: s.mode,
      order: s.order,
      seconds: Math.round(s.seconds * 10) / 10,
      criticalPath: s.criticalPath.join(" → "),
    })),
  };
}

export const TTS_SECTION = new ReadmeSection("bench-tts");
export const TTS_BEGIN = TTS_SECTION.begin;
export const TTS_END = TTS_SECTION.end;

const MODE_NAME: Record<Mode, string> = {
  online: "online (K3s from GitHub, images from registries)",
  airgap: "air gap (SFTP-staged bundle)",
};

/** The README table (Markdown, before Prettier lays it out). */
export function renderTimeToServing(r: TimeToServingResults): string {
  const fmt = (s: number): string => s.toFixed(1);
  const rows = (["online", "airgap"] as const).map((mode) => {
    const cur = r.scenarios.find((s) => s.mode === mode && s.order === "current")!;
    const re = r.scenarios.find((s) => s.mode === mode && s.order === "restructured")!;
    return `| ${MODE_NAME[mode]} | ${fmt(cur.seconds)} | ${fmt(re.seconds)} | ${fmt(cur.seconds - re.seconds)} | ${re.criticalPath} |`;
  });
  const i = r.inputs;
  const mark = (k: keyof Inputs): string => (r.assumed.includes(k) ? "†" : "");
  return [
    `Modelled ${r.date.slice(0, 16).replace("T", " ")} UTC by ${r.source}; one node, seconds from \`up\` to ` +
      "`/health/ready`. Inputs († an assumption, not a sourced figure): " +
      `uplink ${i.uplinkMbps} Mbit/s${mark("uplinkMbps")}, LAN ${i.lanMbps} Mbit/s${mark("lanMbps")}, ` +
      `inference image ${i.inferenceImageGB} GB${mark("inferenceImageGB")}, device plugin image ` +
      `${i.devicePluginImageMB} MB${mark("devicePluginImageMB")}, K3s binary ${i.k3sBinaryMB} MB${mark("k3sBinaryMB")}, ` +
      `K3s images ${i.k3sImagesMB} MB${mark("k3sImagesMB")}, toolkit ${i.toolkitDownloadMB} MB${mark("toolkitDownloadMB")} ` +
      `+ ${i.toolkitLocalSeconds} s${mark("toolkitLocalSeconds")}, import ${i.importMBps} MB/s${mark("importMBps")}, ` +
      `K3s start ${i.k3sStartSeconds} s${mark("k3sStartSeconds")}, device plugin start ` +
      `${i.devicePluginStartSeconds} s${mark("devicePluginStartSeconds")}, objects ${i.platformSeconds} s${mark("platformSeconds")}, ` +
      `model load ${i.modelLoadSeconds} s${mark("modelLoadSeconds")}.`,
    "",
    "| install | order before issue 12 | today's order | saved | critical path today |",
    "| --- | ---: | ---: | ---: | --- |",
    ...rows,
  ].join("\n");
}

export const replaceTimeToServingSection = (readme: string, body: string): string =>
  TTS_SECTION.replace(readme, body);
export const currentTimeToServingSection = (readme: string): string => TTS_SECTION.current(readme);
/** The table as README.md must hold it: rendered, then laid out by Prettier. */
export const formattedTimeToServing = (r: TimeToServingResults, readmePath: string): Promise<string> =>
  formatMarkdown(renderTimeToServing(r), readmePath);
