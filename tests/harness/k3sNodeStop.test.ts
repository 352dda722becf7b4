import * as assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const NODE_SCRIPT = path.resolve(__dirname, "../../harness/doubles/k3s-node.sh");
const SOCK = "/run/k3s/containerd/containerd.sock";

/** Running, not a zombie waiting for its parent (this process) to reap it. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function mountNs(pid: number): string {
  return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
}

/**
 * Every real node's containerd socket has the same path inside its own mount namespace, so the shims of two nodes
 * started at once carry the same `-address`. One node's `k3s-node.sh stop` once killed the other's shims (and so its
 * running pods): seen as `ttrpc: closed` and exit 255/137 in a concurrent drill.
 */
describe("harness/doubles/k3s-node.sh stop", function () {
  this.timeout(30_000);
  let dir: string;
  const pids: number[] = [];

  before(function () {
    if (process.getuid?.() !== 0) this.skip();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-node-stop-"));
    // A "shim": its exe path is the one stop looks for (a loop keeps bash from exec-ing sleep: the exe would change).
    fs.copyFileSync("/bin/bash", path.join(dir, "containerd-shim-runc-v2"));
    fs.chmodSync(path.join(dir, "containerd-shim-runc-v2"), 0o755);
  });

  after(() => {
    for (const p of pids) if (alive(p)) process.kill(p, "SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("kills the shims of its own node only, never another node's with the same socket path", async () => {
    const shim = path.join(dir, "containerd-shim-runc-v2");
    const shimArgs = ["-c", "while :; do sleep 1; done", "-namespace", "k8s.io", "-address", SOCK];
    // The other node: its own mount namespace (as realNode.ts and an SSH host give every node).
    const other = spawn("unshare", ["--mount", "--propagation", "private", shim, ...shimArgs], {
      stdio: "ignore",
    });
    pids.push(other.pid!);
    // This node: a private mount namespace with tmpfs over the node's state paths, so stop touches nothing real.
    const pidFile = path.join(dir, "own.pid");
    const script = [
      "set -euo pipefail",
      "mkdir -p /run/k3s && mount -t tmpfs none /run/k3s",
      `${JSON.stringify(shim)} ${shimArgs.map((a) => JSON.stringify(a)).join(" ")} </dev/null >/dev/null 2>&1 & echo $! >${JSON.stringify(pidFile)}`,
      "sleep 0.3",
      `FORGE_NODE_BIN=${JSON.stringify(dir)} FORGE_NODE_NAME=stop-test-${process.pid} bash ${JSON.stringify(NODE_SCRIPT)} stop`,
      "wait || true",
    ].join("\n");
    await new Promise((r) => setTimeout(r, 300));
    const otherShim = (() => {
      // unshare execs the shim: same pid, another mount namespace.
      assert.ok(alive(other.pid!), "the other node's shim runs");
      assert.notEqual(mountNs(other.pid!), mountNs(process.pid));
      return other.pid!;
    })();
    execFileSync("unshare", ["--mount", "--propagation", "private", "bash", "-c", script], { stdio: "pipe" });
    const own = Number(fs.readFileSync(pidFile, "utf8").trim());
    pids.push(own);
    assert.equal(alive(own), false, "this node's shim was killed");
    assert.equal(
      alive(otherShim),
      true,
      "the other node's shim (same -address, other mount namespace) survived",
    );
  });
});
