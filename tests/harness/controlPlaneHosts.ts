/**
 * The harness suites' shared set-up: a temporary dir, an SSH key pair (its private key in the dir) and a control
 * plane (harness/controlPlane.ts); the SSH hosts a suite starts are stopped after it, then the control plane.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from "../../harness/controlPlane";
import { KubeClient } from "../../harness/kubeClient";
import {
  makeKeyPair,
  startSshHost,
  type KeyPair,
  type SshHost,
  type SshHostOptions,
} from "../../harness/sshHost";

export interface ControlPlaneHosts {
  /** The suite's temporary dir: the control plane's in `cp/`, the hosts' beside it. */
  tmp: string;
  /** The key pair the hosts authorize (key.publicKeyLine); its private key file for sshRun. */
  key: KeyPair;
  keyFile: string;
  cp: ControlPlane;
  kube: KubeClient;
  /** The suite's hosts: the after hook stops them. */
  hosts: SshHost[];
  /**
   * Starts a host in `<tmp>/<name>` with a Tesla P40, authorizing `key`, against `cp`; `extra` adds or overrides
   * options. Added to `hosts`.
   */
  startHost(name: string, ip: string, extra?: Partial<SshHostOptions>): Promise<SshHost>;
}

/**
 * Registers the suite's before hook (temporary dir `<tmpPrefix>XXXXXX`, key file, control plane) and after hook
 * (hosts, control plane, dir). The returned object's fields are set once the before hook ran.
 */
export function useControlPlaneHosts(
  suite: Mocha.Suite,
  opts: { tmpPrefix: string } & Omit<ControlPlaneOptions, "dir">,
): ControlPlaneHosts {
  const { tmpPrefix, ...cpOpts } = opts;
  const f = {
    tmp: "",
    key: makeKeyPair(),
    keyFile: "",
    hosts: [] as SshHost[],
    startHost: async (name: string, ip: string, extra: Partial<SshHostOptions> = {}): Promise<SshHost> => {
      const h = await startSshHost({
        name,
        ip,
        dir: path.join(f.tmp, name),
        authorizedKey: f.key.publicKeyLine,
        gpu: { name: "Tesla P40", memoryMiB: 24576, driver: "580.95.05", computeCap: "6.1", count: 1 },
        controlPlane: { kubeconfigPath: f.cp.kubeconfigPath, apiPort: f.cp.apiPort },
        ...extra,
      });
      f.hosts.push(h);
      return h;
    },
  } as ControlPlaneHosts;
  let cp: ControlPlane | undefined;
  suite.beforeAll(async () => {
    f.tmp = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    f.keyFile = path.join(f.tmp, "id_test");
    fs.writeFileSync(f.keyFile, f.key.privateKeyPem, { mode: 0o600 });
    cp = await startControlPlane({ ...cpOpts, dir: path.join(f.tmp, "cp") });
    f.cp = cp;
    f.kube = KubeClient.fromKubeconfig(cp.kubeconfigPath);
  });
  suite.afterAll(async () => {
    for (const h of f.hosts) await h.stop();
    await cp?.stop();
    if (f.tmp !== "") fs.rmSync(f.tmp, { recursive: true, force: true });
  });
  return f;
}
