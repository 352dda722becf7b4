/**
 * Realistic durations (issue 12, harness/ttsSim.ts) are one switch, off by default: a host started with `durations`
 * has the k3s double sleep K3s's start, then each import of a tarball in agent/images at the import rate, and record
 * both in its log; a host without it records no delay. kwok holds the readiness of the labelled pods only (the model load).
 * Asserted on what the double and kwok recorded, not on the wall time of the test.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

import { waitFor } from "../../harness/proc";
import { makeAirgapBundle, sshRun, type SshHost } from "../../harness/sshHost";
import { type DoublesDurations, recordedDelays } from "../../harness/ttsSim";
import { useControlPlaneHosts } from "./controlPlaneHosts";

const DURATIONS: DoublesDurations = {
  scale: 0.05,
  delays: { "k3s-start": { seconds: 0.4 }, "image-import": { bytesPerSecond: 1e6 } },
};
/** Bytes of the tarball in agent/images: its import takes 0.5 s at 1 MB/s, after the 0.4 s start. */
const TARBALL_BYTES = 500_000;
const DELAYED = { key: "app", value: "forge-delay-test" };
const MODEL_LOAD_MS = 3000;

interface PodObj {
  metadata: { creationTimestamp: string };
  status?: { conditions?: { type: string; status: string; lastTransitionTime: string }[] };
}

describe("harness: realistic durations are one switch, off by default (control plane)", function () {
  this.timeout(600_000);
  const f = useControlPlaneHosts(this, {
    tmpPrefix: "forge-durations-",
    hostIps: ["127.0.1.47", "127.0.1.48"],
    podReadyDelay: { label: DELAYED, milliseconds: MODEL_LOAD_MS },
  });

  /** A host whose K3s server (installed from the air-gap doubles) starts with a tarball in agent/images. */
  async function startK3s(name: string, ip: string, durations?: DoublesDurations): Promise<SshHost> {
    const h = await f.startHost(name, ip, durations ? { durations: JSON.stringify(durations) } : {});
    const bundle = makeAirgapBundle(path.join(f.tmp, `${name}-airgap`));
    const images = "/var/lib/rancher/k3s/agent/images";
    const put = (target: string, content: string): void => {
      const r = sshRun(h, f.keyFile, `cat > ${target} && chmod 755 ${target}`, content);
      assert.equal(r.status, 0, r.stderr);
    };
    assert.equal(sshRun(h, f.keyFile, `mkdir -p /var/lib/forge-edge/airgap ${images}`).status, 0);
    put("/usr/local/bin/k3s", fs.readFileSync(path.join(bundle, "k3s"), "utf8"));
    put("/var/lib/forge-edge/airgap/install.sh", fs.readFileSync(path.join(bundle, "install.sh"), "utf8"));
    put(`${images}/stack-image.tar`, "x".repeat(TARBALL_BYTES));
    const r = sshRun(
      h,
      f.keyFile,
      "INSTALL_K3S_EXEC=server INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=v1.36.4+k3s1 " +
        "sh /var/lib/forge-edge/airgap/install.sh",
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    return h;
  }

  it("switched on, the k3s double sleeps K3s's start, then the import of agent/images, and records both", async () => {
    const h = await startK3s("dur-on", "127.0.1.47", DURATIONS);
    const lines = h.calls().filter((l) => / delay /.test(l));
    assert.equal(lines.length, 2, lines.join("\n"));
    assert.match(lines[0], /^\d+ delay k3s-start 0\.4 bytes=0$/);
    assert.match(lines[1], new RegExp(`^\\d+ delay image-import 0\\.5 bytes=${TARBALL_BYTES}$`));
    assert.deepEqual(recordedDelays(h.calls()), { "k3s-start": 0.4, "image-import": 0.5 });
    assert.ok(await f.kube.get("/api/v1/nodes/dur-on"), "the node registered after the delay");
  });

  it("switched off (the default), no double records a delay", async () => {
    const h = await startK3s("dur-off", "127.0.1.48");
    assert.ok(
      h.calls().some((l) => / k3s server/.test(l) || / install\.sh/.test(l)),
      "the doubles ran",
    );
    assert.deepEqual(
      h.calls().filter((l) => / delay /.test(l)),
      [],
    );
    assert.deepEqual(recordedDelays(h.calls()), {});
    assert.ok(await f.kube.get("/api/v1/nodes/dur-off"));
  });

  it("kwok holds only the labelled pods' readiness, by the configured delay", async () => {
    const pod = (name: string, labels: Record<string, string>) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: "default", labels },
      spec: { nodeName: "dur-off", containers: [{ name: "c", image: "forge.test/model:1" }] },
    });
    await f.kube.send(
      "POST",
      "/api/v1/namespaces/default/pods",
      pod("loads-model", { [DELAYED.key]: DELAYED.value }),
    );
    await f.kube.send("POST", "/api/v1/namespaces/default/pods", pod("plain", { app: "other" }));
    const readyAfter = async (name: string): Promise<number> =>
      waitFor(`pod ${name} Ready`, 120_000, async () => {
        const p = (await f.kube.get(`/api/v1/namespaces/default/pods/${name}`)) as PodObj | undefined;
        const c = p?.status?.conditions?.find((x) => x.type === "Ready" && x.status === "True");
        return c && p
          ? Date.parse(c.lastTransitionTime) - Date.parse(p.metadata.creationTimestamp)
          : undefined;
      });
    // kwok stamps Ready when it plays the stage; API timestamps have one-second resolution.
    assert.ok((await readyAfter("loads-model")) >= MODEL_LOAD_MS - 1000, "the labelled pod was held");
    await readyAfter("plain");
    const stages = fs.readFileSync(path.join(f.tmp, "cp", "kwok-stages.yaml"), "utf8");
    assert.match(stages, new RegExp(`durationMilliseconds: ${MODEL_LOAD_MS}`));
  });
});
