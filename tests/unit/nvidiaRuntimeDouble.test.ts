/**
 * harness/doubles/nvidia-container-runtime: the OCI spec edit it makes on `create` before exec'ing runc (the GPU
 * file contract in its header). runc here is a recorder that keeps the bundle's config.json and its arguments; the
 * real runc runs it in tests/realnode/ (devicePlugin.test.ts, realNode.test.ts). Runs in a private mount namespace
 * with a tmpfs on /var/log/forge-edge, so the doubles' log never touches the machine's.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const REPO = path.resolve(__dirname, "../..");
const DOUBLE = path.join(REPO, "harness/doubles/nvidia-container-runtime");

interface Spec {
  process: { env: string[] };
  mounts?: Array<{ destination: string; type: string; source: string; options: string[] }>;
}

describe("nvidia-container-runtime double", () => {
  let dir: string;
  let fh: string;
  let bin: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-nvrt-"));
    fh = path.join(dir, "fh");
    bin = path.join(dir, "bin");
    fs.mkdirSync(fh);
    fs.mkdirSync(bin);
    fs.symlinkSync(path.join(REPO, "harness/doubles"), path.join(fh, "doubles"));
    fs.writeFileSync(path.join(fh, "env"), "FORGE_HOST_NAME='edge-1'\n");
    gpuFile(2, true);
    // The recorder runc: its arguments and the bundle's config.json as runc received them.
    fs.writeFileSync(
      path.join(bin, "runc"),
      [
        "#!/bin/bash",
        'printf "%s\\n" "$*" >"$OUT/runc.args"',
        'b=.; p=""; for a in "$@"; do [[ $p == --bundle ]] && b=$a; p=$a; done',
        '[[ ! -f $b/config.json ]] || cp "$b/config.json" "$OUT/config.seen.json"',
        "",
      ].join("\n"),
      { mode: 0o755 },
    );
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function gpuFile(count: number, loaded: boolean): void {
    fs.writeFileSync(
      path.join(fh, "gpu"),
      `GPU_NAME='NVIDIA RTX PRO 4000 Blackwell'\nGPU_MEMORY_MIB='24463'\nGPU_DRIVER='580.95.05'\n` +
        `GPU_COMPUTE_CAP='12.0'\nGPU_COUNT='${count}'\nGPU_DRIVER_LOADED='${loaded}'\n`,
    );
  }

  /** Runs the double (or another double) as containerd's shim would, in a private mount namespace. */
  function run(
    args: string[],
    env: string[] = [],
    tool = DOUBLE,
  ): { status: number | null; stdout: string; stderr: string; log: string; record: string } {
    const bundle = path.join(dir, "bundle");
    fs.mkdirSync(bundle, { recursive: true });
    fs.writeFileSync(
      path.join(bundle, "config.json"),
      JSON.stringify({ process: { env: ["PATH=/bin", ...env] } }),
    );
    const script = [
      "set -e",
      "mkdir -p /var/log/forge-edge && mount -t tmpfs forge-test /var/log/forge-edge",
      `cd ${JSON.stringify(bundle)}`,
      '"$@" && rc=0 || rc=$?',
      'cp /var/log/forge-edge/doubles.log "$OUT/doubles.log" 2>/dev/null || true',
      'cp /var/log/forge-edge/nvidia-container-runtime.log "$OUT/record.log" 2>/dev/null || true',
      "exit $rc",
    ].join("\n");
    const r = spawnSync(
      "unshare",
      ["--mount", "--propagation", "private", "bash", "--norc", "-c", script, "_", tool, ...args],
      {
        encoding: "utf8",
        env: { PATH: `${bin}:/usr/bin:/bin`, FORGE_HARNESS_DIR: fh, OUT: dir },
      },
    );
    const read = (f: string): string =>
      fs.existsSync(path.join(dir, f)) ? fs.readFileSync(path.join(dir, f), "utf8") : "";
    return {
      status: r.status,
      stdout: r.stdout,
      stderr: r.stderr,
      log: read("doubles.log"),
      record: read("record.log"),
    };
  }

  const create = (id: string): string[] => [
    "--root",
    "/run/containerd/runc/k8s.io",
    "--log",
    "log.json",
    "--log-format",
    "json",
    "create",
    "--bundle",
    path.join(dir, "bundle"),
    "--pid-file",
    "init.pid",
    id,
  ];
  const seen = (): Spec => JSON.parse(fs.readFileSync(path.join(dir, "config.seen.json"), "utf8")) as Spec;
  const exposed = (): {
    driver: string;
    gpus: Array<{ index: number; uuid: string; name: string; memoryMiB: number }>;
  } => JSON.parse(fs.readFileSync(path.join(dir, "bundle/forge-nvidia-gpus.json"), "utf8"));

  it("mounts the host's GPUs read-only into a GPU container, with the env the stand-ins read, then runs runc", () => {
    const r = run(create("c1"), ["NVIDIA_VISIBLE_DEVICES=all"]);
    assert.equal(r.status, 0, r.stderr);
    const spec = seen();
    assert.deepEqual(spec.mounts, [
      {
        destination: "/run/forge-edge/nvidia/gpus.json",
        type: "bind",
        source: path.join(dir, "bundle/forge-nvidia-gpus.json"),
        options: ["rbind", "ro", "nosuid", "nodev", "noexec"],
      },
    ]);
    assert.ok(spec.process.env.includes("FORGE_NVIDIA_GPU_FILE=/run/forge-edge/nvidia/gpus.json"));
    const f = exposed();
    assert.equal(f.driver, "580.95.05");
    assert.deepEqual(
      f.gpus.map((g) => [g.index, g.name, g.memoryMiB]),
      [
        [0, "NVIDIA RTX PRO 4000 Blackwell", 24463],
        [1, "NVIDIA RTX PRO 4000 Blackwell", 24463],
      ],
    );
    // The same UUIDs the nvidia-smi double reports for this host.
    const smi = run(["-L"], [], path.join(REPO, "harness/doubles/nvidia-smi"));
    assert.deepEqual(
      f.gpus.map((g) => g.uuid),
      [...smi.stdout.matchAll(/UUID: (GPU-[0-9a-f-]+)/g)].map((m) => m[1]),
    );
    assert.match(
      r.record,
      new RegExp(`^\\d+ create c1 gpu=true devices=${f.gpus[0].uuid},${f.gpus[1].uuid}$`, "m"),
    );
    // runc got the shim's arguments unchanged.
    assert.equal(fs.readFileSync(path.join(dir, "runc.args"), "utf8").trim(), create("c1").join(" "));
  });

  it("selects the GPUs the device plugin allocated (by UUID or index)", () => {
    run(["-L"], [], path.join(REPO, "harness/doubles/nvidia-smi"));
    const all = run(create("c0"), ["NVIDIA_VISIBLE_DEVICES=all"]);
    assert.equal(all.status, 0, all.stderr);
    const second = exposed().gpus[1].uuid;
    const r = run(create("c2"), [`NVIDIA_VISIBLE_DEVICES=${second}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      exposed().gpus.map((g) => [g.index, g.uuid]),
      [[1, second]],
    );
    assert.equal(run(create("c3"), ["NVIDIA_VISIBLE_DEVICES=0"]).status, 0);
    assert.deepEqual(
      exposed().gpus.map((g) => g.index),
      [0],
    );
  });

  it("leaves non-GPU containers alone (void, none, empty, unset) and records them", () => {
    for (const [i, env] of [
      ["NVIDIA_VISIBLE_DEVICES=void"],
      ["NVIDIA_VISIBLE_DEVICES=none"],
      ["NVIDIA_VISIBLE_DEVICES="],
      [],
    ].entries()) {
      const r = run(create(`plain${i}`), env);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(seen().mounts, undefined);
      assert.match(r.record, new RegExp(`create plain${i} gpu=false`));
    }
  });

  it("treats a legacy CUDA image without the variable as 'all' (internal/config/image)", () => {
    const r = run(create("legacy"), ["CUDA_VERSION=12.2.0"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(exposed().gpus.length, 2);
  });

  it("fails the create like nvidia-container-cli on an unknown device or an unloaded driver", () => {
    const unknown = run(create("bad"), ["NVIDIA_VISIBLE_DEVICES=GPU-nope"]);
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /device error: GPU-nope: unknown device/);
    assert.ok(!fs.existsSync(path.join(dir, "runc.args")), "runc ran");
    gpuFile(1, false);
    const noDriver = run(create("nodrv"), ["NVIDIA_VISIBLE_DEVICES=all"]);
    assert.notEqual(noDriver.status, 0);
    assert.match(noDriver.stderr, /nvml error: driver not loaded/);
  });

  it("passes a GPU container through unmodified where the host has no GPU file", () => {
    fs.rmSync(path.join(fh, "gpu"));
    const r = run(create("nofile"), ["NVIDIA_VISIBLE_DEVICES=all"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(seen().mounts, undefined);
    assert.match(r.record, /create nofile gpu=unmodelled/);
  });

  it("passes every other command straight to runc and logs the call", () => {
    const r = run(["--root", "/x", "state", "c1"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(fs.readFileSync(path.join(dir, "runc.args"), "utf8").trim(), "--root /x state c1");
    assert.match(r.log, /nvidia-container-runtime --root \/x state c1/);
    assert.equal(r.record, "");
  });
});
