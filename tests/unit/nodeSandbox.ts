/**
 * Runs a rendered node script as root in a private mount namespace whose /etc, /var and /usr are copy-on-write
 * overlays of this machine's: everything the script writes lands in the sandbox's own upper directories, the real
 * machine is never touched. Stub commands (nvidia-smi, systemctl, k3s, apt-get, ...) come first on PATH; their
 * state lives in `state/`. Needs root and unshare/overlayfs (the CI machine and the dev container have both).
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

const LAYERS = ["etc", "var", "usr"] as const;

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Whether this machine can run the sandbox (root, mount namespaces, overlayfs). */
export function sandboxSupported(): boolean {
  const r = spawnSync("unshare", ["-m", "--", "true"], { encoding: "utf8" });
  return process.getuid?.() === 0 && r.status === 0;
}

/** The sandbox tests run as root with mount namespaces (as CI does); anywhere else they fail, never skip. */
export function requireSandbox(): void {
  if (!sandboxSupported()) {
    throw new Error(
      "the node-script sandbox needs root and `unshare -m` (run the unit suite as CI does, as root)",
    );
  }
}

export class NodeSandbox {
  readonly dir = mkdtempSync(path.join(tmpdir(), "forge-node-"));
  readonly bin = path.join(this.dir, "bin");
  readonly state = path.join(this.dir, "state");

  constructor() {
    for (const l of LAYERS) {
      mkdirSync(path.join(this.dir, "upper", l), { recursive: true });
      mkdirSync(path.join(this.dir, "work", l), { recursive: true });
    }
    mkdirSync(this.bin);
    mkdirSync(this.state);
  }

  /** Where a node path lives in the sandbox's upper layers (only /etc, /var and /usr are writable). */
  private upper(p: string): string {
    const [, top, ...rest] = p.split("/");
    if (!(LAYERS as readonly string[]).includes(top))
      throw new Error(`sandbox path outside /etc, /var, /usr: ${p}`);
    return path.join(this.dir, "upper", top, ...rest);
  }

  /** Places a file on the "node" (before a run). */
  put(p: string, content: string, mode = 0o644): void {
    const f = this.upper(p);
    mkdirSync(path.dirname(f), { recursive: true });
    writeFileSync(f, content);
    chmodSync(f, mode);
  }

  /** A stub command first on PATH: a bash body, with $STATE pointing at the sandbox's state directory. */
  stub(name: string, body: string): void {
    const f = path.join(this.bin, name);
    writeFileSync(f, `#!/usr/bin/env bash\nSTATE=${JSON.stringify(this.state)}\n${body}\n`);
    chmodSync(f, 0o755);
  }

  /** A file's content as the script left it, or undefined (absent, deleted, or never there). */
  read(p: string): string | undefined {
    const f = this.upper(p);
    if (!existsSync(f) || !lstatSync(f).isFile()) return undefined;
    return readFileSync(f, "utf8");
  }

  /** Whether a directory the script may have created exists in the sandbox. */
  isDir(p: string): boolean {
    const f = this.upper(p);
    return existsSync(f) && lstatSync(f).isDirectory();
  }

  stateFile(name: string): string | undefined {
    const f = path.join(this.state, name);
    return existsSync(f) ? readFileSync(f, "utf8") : undefined;
  }

  /** Runs a rendered script as root inside the sandbox. */
  run(
    script: string,
    opts: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {},
  ): RunResult {
    const scriptFile = path.join(this.dir, "script.sh");
    writeFileSync(scriptFile, script);
    const mounts = LAYERS.map(
      (l) =>
        `mount -t overlay overlay -o lowerdir=/${l},upperdir=${this.dir}/upper/${l},workdir=${this.dir}/work/${l} /${l}`,
    ).join(" && ");
    const setup = `set -e; mount --make-rprivate /; ${mounts}; exec bash ${scriptFile}`;
    const started = Date.now();
    const r = spawnSync(
      "unshare",
      ["--mount", "--pid", "--fork", "--kill-child=SIGKILL", "--", "bash", "-c", setup],
      {
        input: opts.stdin ?? "",
        encoding: "utf8",
        timeout: opts.timeoutMs ?? 60_000,
        killSignal: "SIGKILL",
        env: {
          PATH: `${this.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
          LANG: "C",
          HOME: this.dir,
          ...opts.env,
        },
      },
    );
    return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", ms: Date.now() - started };
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
