/** The SSH liveness probe (issue 8.6): a host that accepts TCP but never speaks SSH fails in bounded time, named. */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as net from "node:net";

import { sshProbeCommand } from "../../components/sshProbe";

function probe(port: number, seconds: number): Promise<{ code: number | null; stderr: string; ms: number }> {
  const started = Date.now();
  const cmd = sshProbeCommand({ name: "edge-01", host: "127.0.0.1", port }, seconds);
  return new Promise((resolve) => {
    const p = spawn("/bin/sh", ["-c", cmd]);
    let stderr = "";
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("close", (code) => resolve({ code, stderr, ms: Date.now() - started }));
  });
}

function server(onConn: (s: net.Socket) => void): Promise<net.Server> {
  return new Promise((resolve) => {
    const srv = net.createServer(onConn);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

describe("SSH liveness probe", () => {
  const servers: net.Server[] = [];
  const sockets: net.Socket[] = [];
  after(() => {
    sockets.forEach((s) => s.destroy());
    servers.forEach((s) => s.close());
  });

  it("a host that accepts TCP but never sends a version line fails within the bound, naming the node", async () => {
    const srv = await server((s) => sockets.push(s));
    servers.push(srv);
    const r = await probe(portOf(srv), 2);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /node edge-01 \(127\.0\.0\.1:\d+\) accepted no SSH session within 2s: it accepted TCP but sent no SSH version line/,
    );
    assert.ok(r.ms < 6000, `took ${r.ms} ms`);
  });

  it("a host that sends its version but never a key exchange fails within the bound", async () => {
    const srv = await server((s) => {
      sockets.push(s);
      s.write("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    });
    servers.push(srv);
    const r = await probe(portOf(srv), 2);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /sent its SSH version but no key exchange/);
  });

  it("an SSH server passes; a closed port fails at once", async () => {
    const srv = await server((s) => {
      sockets.push(s);
      s.write("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
      s.once("data", () => s.write(Buffer.from([0, 0, 0, 12, 4, 20, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0])));
    });
    servers.push(srv);
    assert.equal((await probe(portOf(srv), 5)).code, 0);
    const closed = await server(() => undefined);
    const port = portOf(closed);
    await new Promise((r) => closed.close(r));
    const r = await probe(port, 5);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /node edge-01 .* is unreachable over SSH: connect ECONNREFUSED/);
  });
});
