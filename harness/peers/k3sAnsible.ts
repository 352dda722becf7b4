/**
 * The peer our users would otherwise pick for the node part: k3s-ansible 1.2.2 (the pristine archive in
 * shared/third_party), its `playbooks/site.yml` with the air-gap role, run by trixie's ansible-core (harness/ansible.sh)
 * against the same simulated SSH hosts and the same air-gap artefacts as our `pulumi up`.
 *
 * What the hosts need for it, and nothing that makes Ansible's job easier:
 *   - `initComm: "systemd"`: Ansible's service-manager fact reads /proc/1/comm; a real edge box runs systemd as PID 1,
 *     the test hosts share the machine's PID 1, so the host's mount namespace shows "systemd" there (sshHost.ts);
 *   - a private /etc layer (`etcFiles`: the box's /etc/hostname): the prereq role writes /etc/sysctl.conf;
 *   - the controller's HOME is a temp dir (k3s-ansible merges the kubeconfig into ~/.kube/config).
 * Ansible logs in as root with the pinned host keys (StrictHostKeyChecking); the hosts have no sudo, so
 * `ansible_become` is false for root, which k3s-ansible supports (ansible_user: root).
 */
import { execFileSync, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { DEFAULT_K3S_VERSION } from "../../config/stack";
import { Site, SiteNode } from "../site";
import { SshHostOptions, knownHostsLine } from "../sshHost";
import { cacheDir, loadToolchain, pinnedVersions } from "../toolchain";

export class AnsibleMissingError extends Error {}

/** The host options the peer run needs (see the module comment); our own run gets the same for a fair comparison. */
export function peerHostOptions(node: SiteNode): Pick<SshHostOptions, "initComm" | "etcFiles"> {
  return { initComm: "systemd", etcFiles: { hostname: `${node.name}\n` } };
}

/** ansible-playbook unpacked by harness/ansible.sh. */
export function ansiblePlaybookPath(): string {
  const v = pinnedVersions();
  const bin = path.join(cacheDir(), `ansible-${v.ANSIBLE_CORE_VERSION}`, "bin", "ansible-playbook");
  if (!fs.existsSync(bin))
    throw new AnsibleMissingError(
      `${bin} is missing: run \`bash harness/ansible.sh\` (harness/setup.sh does)`,
    );
  return bin;
}

/** The k3s-ansible source, extracted from the pristine archive into the cache once per archive digest. */
export function k3sAnsibleDir(): string {
  const v = pinnedVersions();
  const thirdParty =
    process.env.FORGE_EDGE_THIRD_PARTY ?? path.resolve(__dirname, "..", "..", "..", "shared", "third_party");
  const archive = path.join(thirdParty, v.K3S_ANSIBLE_ARCHIVE);
  if (!fs.existsSync(archive))
    throw new AnsibleMissingError(
      `${archive} is missing (set FORGE_EDGE_THIRD_PARTY to the folder holding it)`,
    );
  const digest = crypto.createHash("sha256").update(fs.readFileSync(archive)).digest("hex").slice(0, 12);
  const dest = path.join(cacheDir(), `k3s-ansible-${v.K3S_ANSIBLE_VERSION}-${digest}`);
  const src = path.join(dest, `k3s-ansible-${v.K3S_ANSIBLE_VERSION}`);
  if (!fs.existsSync(path.join(src, "playbooks", "site.yml"))) {
    const tmp = `${dest}.tmp.${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    execFileSync("tar", ["-xzf", archive, "-C", tmp]);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(tmp, dest);
  }
  return src;
}

/** k3s-ansible's airgap_dir: the site's air-gap artefacts under the names its air-gap role looks for. */
export function peerAirgapDir(site: Site, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const from = path.join(site.dir, "airgap");
  for (const [src, dest] of [
    ["k3s", "k3s"],
    ["install.sh", "k3s-install.sh"],
    ["k3s-airgap-images.tar", "k3s-airgap-images.tar"],
  ]) {
    fs.copyFileSync(path.join(from, src), path.join(dir, dest));
    fs.chmodSync(path.join(dir, dest), 0o755);
  }
  return dir;
}

export interface PeerInventoryInput {
  nodes: SiteNode[];
  hosts: { name: string; host: string }[];
  keyFile: string;
  knownHostsFile: string;
  airgapDir: string;
  token: string;
  k3sVersion: string;
}

/** The inventory (YAML is a superset of JSON): groups server/agent under k3s_cluster, as inventory-sample.yml. */
export function peerInventory(i: PeerInventoryInput): string {
  const group = (role: SiteNode["role"]) =>
    Object.fromEntries(
      i.nodes
        .map((n, k) => [n, i.hosts[k]] as const)
        .filter(([n]) => n.role === role)
        .map(([n, h]) => [n.name, { ansible_host: h.host }]),
    );
  const server = i.nodes.findIndex((n) => n.role === "server");
  if (server < 0) throw new Error("k3s-ansible inventory: no server node");
  return JSON.stringify(
    {
      k3s_cluster: {
        children: { server: { hosts: group("server") }, agent: { hosts: group("agent") } },
        vars: {
          ansible_port: 22,
          ansible_user: "root",
          ansible_become: false,
          ansible_python_interpreter: "/usr/bin/python3",
          ansible_ssh_private_key_file: i.keyFile,
          ansible_ssh_common_args:
            `-o StrictHostKeyChecking=yes -o UserKnownHostsFile=${i.knownHostsFile} ` +
            "-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes",
          k3s_version: i.k3sVersion,
          token: i.token,
          api_endpoint: i.hosts[server].host,
          airgap_dir: i.airgapDir,
        },
      },
    },
    null,
    2,
  );
}

export interface PlaybookRun {
  /** Wall time of the ansible-playbook process, ms. */
  ms: number;
  /** PLAY RECAP per host: ok, changed, unreachable, failed, skipped. */
  recap: Record<string, Record<string, number>>;
  /** Tasks that ran (TASK headers in the output). */
  tasks: number;
  /** The full output (also in logFile). */
  output: string;
  logFile: string;
}

/** One k3s-ansible checkout, inventory and controller HOME for one site: run `site.yml` (or `--check`) on it. */
export class K3sAnsible {
  readonly dir: string;
  readonly home: string;
  readonly inventoryFile: string;
  readonly projectDir: string;
  private runs = 0;

  constructor(
    site: Site,
    private readonly nodes: SiteNode[],
    workDir: string,
  ) {
    this.projectDir = k3sAnsibleDir();
    this.dir = workDir;
    this.home = path.join(workDir, "home");
    fs.mkdirSync(path.join(this.home, ".kube"), { recursive: true });
    const keyFile = path.join(workDir, "id");
    fs.writeFileSync(keyFile, site.key.privateKeyPem, { mode: 0o600 });
    const knownHostsFile = path.join(workDir, "known_hosts");
    fs.writeFileSync(knownHostsFile, site.hosts.map((h) => `${knownHostsLine(h)}\n`).join(""));
    this.inventoryFile = path.join(workDir, "inventory.yml");
    fs.writeFileSync(
      this.inventoryFile,
      peerInventory({
        nodes,
        hosts: site.hosts,
        keyFile,
        knownHostsFile,
        airgapDir: peerAirgapDir(site, path.join(workDir, "airgap")),
        token: crypto.randomBytes(24).toString("hex"),
        k3sVersion: DEFAULT_K3S_VERSION,
      }),
    );
  }

  /** The controller's kubeconfig k3s-ansible merged (context k3s-ansible). */
  get kubeconfig(): string {
    return path.join(this.home, ".kube", "config");
  }

  /** `ansible-playbook playbooks/site.yml` (with `--check` when asked); rejects when it fails. */
  async playbook(opts: { check?: boolean } = {}): Promise<PlaybookRun> {
    const bin = ansiblePlaybookPath();
    const kubectlDir = path.dirname(loadToolchain(["kubectl"]).bin.kubectl);
    const logFile = path.join(this.dir, `run-${++this.runs}${opts.check ? "-check" : ""}.log`);
    const args = [
      "-i",
      this.inventoryFile,
      // One fork per node, as our engine runs every node's steps at once.
      "--forks",
      String(Math.max(5, this.nodes.length)),
      ...(opts.check ? ["--check"] : []),
      "playbooks/site.yml",
    ];
    const env: NodeJS.ProcessEnv = {
      PATH: `${kubectlDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      HOME: this.home,
      LANG: "C.UTF-8",
      ANSIBLE_CONFIG: path.join(this.projectDir, "ansible.cfg"),
      ANSIBLE_HOST_KEY_CHECKING: "True",
      ANSIBLE_NOCOLOR: "1",
      ANSIBLE_FORCE_COLOR: "0",
      ANSIBLE_RETRY_FILES_ENABLED: "False",
      ANSIBLE_LOCAL_TEMP: path.join(this.home, ".ansible", "tmp"),
    };
    const t0 = Date.now();
    const { code, output } = await new Promise<{ code: number; output: string }>((resolve, reject) => {
      const p = spawn(bin, args, { cwd: this.projectDir, env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      p.stdout.on("data", (d: Buffer) => (out += d.toString()));
      p.stderr.on("data", (d: Buffer) => (out += d.toString()));
      p.on("error", reject);
      p.on("close", (c) => resolve({ code: c ?? -1, output: out }));
    });
    const ms = Date.now() - t0;
    fs.writeFileSync(logFile, output);
    const run = {
      ms,
      recap: parseRecap(output),
      tasks: (output.match(/^TASK \[/gm) ?? []).length,
      output,
      logFile,
    };
    if (code !== 0) {
      const failed = output
        .split("\n")
        .filter((l) => /^(fatal|failed):|ERROR!|\[ERROR\]/.test(l))
        .slice(0, 5)
        .join("\n");
      throw new Error(
        `k3s-ansible site.yml${opts.check ? " --check" : ""} exited ${code}:\n${failed}\n(log: ${logFile})`,
      );
    }
    return run;
  }
}

/** PLAY RECAP lines "<host> : ok=N changed=N unreachable=N failed=N skipped=N ...". */
export function parseRecap(output: string): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  const recap = output.split(/^PLAY RECAP \**$/m)[1] ?? "";
  for (const line of recap.split("\n")) {
    const m = /^(\S+)\s+:\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    out[m[1]] = Object.fromEntries(
      [...m[2].matchAll(/(\w+)=(\d+)/g)].map((x) => [x[1], Number(x[2])] as [string, number]),
    );
  }
  return out;
}

/** A temp dir for one peer run (removed by the caller). */
export function peerWorkDir(parent = os.tmpdir()): string {
  return fs.mkdtempSync(path.join(parent, "forge-k3s-ansible-"));
}
