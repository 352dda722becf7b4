/**
 * A bounded SSH liveness probe, run on the machine running Pulumi before a node's remote steps.
 *
 * Why: pulumi-command v1.2.1 dials with golang.org/x/crypto/ssh `ssh.Dial`, whose `ClientConfig.Timeout`
 * (`perDialTimeout`) bounds only the TCP connect; the version exchange and key exchange that follow
 * (`NewClientConn`) have no deadline, no context, and `customTimeouts` is ignored
 * (provider/pkg/provider/remote/connection.go at v1.2.1). A host that accepts TCP but never speaks SSH therefore
 * hangs the step, and the whole `pulumi up`, forever. No connection option bounds it.
 *
 * The probe does what the provider's dial does up to the point where it could hang — TCP connect, the server's
 * version line, our version line, the server's first key-exchange packet (SSH_MSG_KEXINIT) — each under one
 * overall deadline, and fails with a message naming the node. It runs as a local command (`node -e`), so its
 * command line is the same on every machine and `pulumi preview` shows no spurious diff.
 */
import { NodeConfig } from "../config/stack";

/** Overall bound of one probe, seconds. */
export const SSH_PROBE_SECONDS = 20;

const PROBE_JS = `
const [host, port, seconds, name] = process.argv.slice(1);
const net = require("net");
const where = name + " (" + host + ":" + port + ")";
const fail = (why) => { process.stderr.write("forge-edge: node " + where + " " + why + "\\n"); process.exit(1); };
const timer = setTimeout(() => fail("accepted no SSH session within " + seconds + "s: it " +
  (stage === 0 ? "did not accept the TCP connection" : stage === 1 ? "accepted TCP but sent no SSH version line" :
   "sent its SSH version but no key exchange") + "; is sshd alive on that host?"), Number(seconds) * 1000);
let stage = 0;
let buf = Buffer.alloc(0);
const sock = net.connect({ host, port: Number(port) }, () => { stage = 1; });
sock.on("error", (e) => fail("is unreachable over SSH: " + e.message));
sock.on("data", (d) => {
  buf = Buffer.concat([buf, d]);
  if (stage === 1) {
    const nl = buf.indexOf(10);
    if (nl < 0) { if (buf.length > 8192) fail("sent no SSH version line"); return; }
    const line = buf.subarray(0, nl).toString("latin1");
    if (!line.startsWith("SSH-")) { buf = buf.subarray(nl + 1); return; }
    if (!/^SSH-2\\.0-/.test(line)) fail("speaks " + line.trim() + ", not SSH 2.0");
    stage = 2;
    buf = buf.subarray(nl + 1);
    sock.write("SSH-2.0-forge-edge-probe\\r\\n");
  }
  if (stage === 2 && buf.length >= 6) {
    if (buf[5] !== 20) fail("sent no SSH key exchange");
    clearTimeout(timer);
    sock.destroy();
    process.exit(0);
  }
});
`;

/** POSIX single-quote quoting. */
function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The local command that probes a node's SSH endpoint within `seconds` (exit 1 and a message naming the node
 * otherwise). Proposed wiring: a `command.local.Command` per node, `create` = this, `triggers` = the node's remote
 * steps' commands, and each remote step `dependsOn` it, so every `up` that will run a step on the node first proves,
 * within the bound, that the node speaks SSH.
 */
export function sshProbeCommand(
  node: Pick<NodeConfig, "name" | "host" | "port">,
  seconds = SSH_PROBE_SECONDS,
): string {
  const js = PROBE_JS.trim().replace(/\n\s*/g, " ");
  return `node -e ${q(js)} ${q(node.host)} ${node.port} ${seconds} ${q(node.name)}`;
}
