/**
 * The node scripts run for real, as root, in a copy-on-write sandbox of this machine (tests/unit/nodeSandbox.ts)
 * with stub commands for the driver, the toolkit, apt, systemd and K3s: the containerd template for each K3s
 * generation (rendered with Go's text/template the way K3s renders it), the post-start check, the toolkit policy,
 * secrets on failure, drain with a bare pod, and bounded waits.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

import { k3sParams, runtimeParams } from "../../components/edgeNode";
import { SKUS } from "../../config/skus";
import { NodeConfig } from "../../config/stack";
import { renderScript } from "../../scripts/render";
import { NodeSandbox, requireSandbox } from "./nodeSandbox";
import { ROOT } from "./support";

const node: NodeConfig = { name: "n1", host: "192.0.2.10", port: 22, user: "root", role: "server", gpus: 1 };
const TMPL_DIR = "/var/lib/rancher/k3s/agent/etc/containerd";
const RENDERED = `${TMPL_DIR}/config.toml`;
const TOKEN = "K10tok3n-s3cr3t-value-0123456789";

function runtimeScript(k3sVersion: string, toolkitVersion = "1.20.0"): string {
  return renderScript("nvidia-runtime", runtimeParams(node, { sku: SKUS.p40, toolkitVersion, k3sVersion }));
}

/** Driver, toolkit (version in state/toolkit), apt (installs by writing it), systemd and K3s stubs. */
function gpuNode(sb: NodeSandbox, opts: { toolkit?: string } = {}): void {
  sb.stub("nvidia-smi", `echo "Tesla P40, 24576, 580.95.05, 6.1"`);
  sb.stub(
    "nvidia-ctk",
    `[ -s "$STATE/toolkit" ] || exit 1; echo "NVIDIA Container Toolkit CLI version $(cat "$STATE/toolkit")"`,
  );
  sb.stub(
    "apt-get",
    `echo "apt-get $*" >>"$STATE/apt.log"
for a in "$@"; do
  case $a in
    nvidia-container-toolkit=*) v=\${a#*=}; echo "\${v%-1}" >"$STATE/toolkit"
      printf '#!/bin/sh\\n' >/usr/bin/nvidia-container-runtime; chmod 755 /usr/bin/nvidia-container-runtime ;;
    remove) rm -f "$STATE/toolkit" /usr/bin/nvidia-container-runtime ;;
  esac
done`,
  );
  sb.stub("curl", `echo "deb https://nvidia.github.io/libnvidia-container/stable/deb/\\$(ARCH) /"`);
  sb.stub("gpg", `while [ $# -gt 0 ]; do [ "$1" = -o ] && { cat >"$2"; exit 0; }; shift; done`);
  sb.stub(
    "systemctl",
    `echo "systemctl $*" >>"$STATE/systemctl.log"; [ "$1" != is-active ] || [ -e "$STATE/active-\${!#}" ]`,
  );
  if (opts.toolkit) {
    writeFileSync(path.join(sb.state, "toolkit"), `${opts.toolkit}\n`);
    sb.put("/usr/bin/nvidia-container-runtime", "#!/bin/sh\n", 0o755);
  }
}

/** The K3s base templates, reduced to what matters here: the runc runtime and K3s's ExtraRuntimes loop. */
const GO_RENDER = `package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type ContainerdRuntimeConfig struct{ RuntimeType, BinaryName string }
type ContainerdConfig struct {
	SystemdCgroup bool
	ExtraRuntimes map[string]ContainerdRuntimeConfig
}

const v2 = \`version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{{ range $k, $v := .ExtraRuntimes }}
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."{{ $k }}"]
  runtime_type = "{{ $v.RuntimeType }}"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."{{ $k }}".options]
  BinaryName = "{{ $v.BinaryName }}"
  SystemdCgroup = {{ $.SystemdCgroup }}
{{ end }}\`

const v3 = \`version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{{ range $k, $v := .ExtraRuntimes }}
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'{{ $k }}']
  runtime_type = "{{ $v.RuntimeType }}"
{{ with $v.BinaryName }}
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'{{ $k }}'.options]
  BinaryName = {{ printf "%q" . }}
  SystemdCgroup = {{ $.SystemdCgroup }}
{{ end }}{{ end }}\`

// render <template file> <2|3> <ExtraRuntimes JSON>: like K3s's ParseTemplateFromConfig.
func main() {
	user, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	base := v3
	if os.Args[2] == "2" {
		base = v2
	}
	cfg := ContainerdConfig{SystemdCgroup: true}
	if err := json.Unmarshal([]byte(os.Args[3]), &cfg.ExtraRuntimes); err != nil {
		panic(err)
	}
	t := template.Must(template.New("compiled_template").Parse(string(user)))
	template.Must(t.New("base").Parse(base))
	if err := t.Execute(os.Stdout, cfg); err != nil {
		panic(err)
	}
}
`;

let goBinary: string | undefined;
/** K3s's rendering of a user template (Go text/template, K3s's data fields and `template "base"`). */
function k3sRender(template: string, generation: 2 | 3, extraRuntimes: Record<string, unknown>): string {
  if (!goBinary) {
    const dir = mkdtempSync(path.join(tmpdir(), "forge-k3s-render-"));
    writeFileSync(path.join(dir, "main.go"), GO_RENDER);
    goBinary = path.join(dir, "render");
    const b = spawnSync("go", ["build", "-o", goBinary, "main.go"], {
      cwd: dir,
      encoding: "utf8",
      env: { ...process.env, GO111MODULE: "off", GOFLAGS: "" },
    });
    assert.equal(b.status, 0, b.stderr);
  }
  const f = path.join(path.dirname(goBinary), "user.tmpl");
  writeFileSync(f, template);
  const r = spawnSync(goBinary, [f, String(generation), JSON.stringify(extraRuntimes)], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** Every directory of the template and state paths that this machine lacks is gone from the sandbox again. */
function assertLeftAsFound(sb: NodeSandbox): void {
  const paths: string[] = [];
  for (let d = TMPL_DIR; d !== "/var/lib"; d = path.posix.dirname(d)) paths.push(d);
  paths.push("/var/lib/forge-edge");
  for (const p of paths.filter((d) => !existsSync(d)))
    assert.notEqual(sb.run(`test -e ${p}`).status, 0, `${p} was created and is left behind`);
}

function tomlTables(toml: string): string[] {
  return toml
    .split("\n")
    .map((l) => /^\s*\[([^[\]]+)\]\s*$/.exec(l)?.[1])
    .filter((t): t is string => t !== undefined);
}

describe("node scripts, run in a sandbox", function () {
  let sb: NodeSandbox;
  before(requireSandbox);
  beforeEach(() => {
    sb = new NodeSandbox();
  });
  afterEach(() => sb?.dispose());

  describe("containerd template (issue 8.3)", () => {
    const cases: [string, 2 | 3][] = [
      ["v1.30.14+k3s1", 2],
      ["v1.31.5+k3s1", 2],
      ["v1.31.6+k3s1", 3],
      ["v1.32.1+k3s1", 2],
      ["v1.32.2+k3s1", 3],
      ["v1.33.0+k3s1", 3],
      ["v1.36.4+k3s1", 3],
    ];
    for (const [version, gen] of cases) {
      it(`K3s ${version}: writes ${gen === 3 ? "config-v3.toml.tmpl" : "config.toml.tmpl"} in the version-${gen} schema, which K3s renders to exactly one nvidia runtime`, () => {
        gpuNode(sb, { toolkit: "1.20.0" });
        const r = sb.run(runtimeScript(version));
        assert.equal(r.status, 0, r.stderr);
        const file = gen === 3 ? "config-v3.toml.tmpl" : "config.toml.tmpl";
        const other = gen === 3 ? "config.toml.tmpl" : "config-v3.toml.tmpl";
        const tmpl = sb.read(`${TMPL_DIR}/${file}`);
        assert.ok(tmpl, `${file} was not written`);
        assert.equal(sb.read(`${TMPL_DIR}/${other}`), undefined, `${other} must not be written`);
        const nvidia =
          gen === 3
            ? "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'"
            : 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"';
        // K3s found the runtime itself (ExtraRuntimes) or did not (a binary outside its search path).
        for (const extra of [
          {},
          {
            nvidia: { RuntimeType: "io.containerd.runc.v2", BinaryName: "/usr/bin/nvidia-container-runtime" },
          },
        ]) {
          const rendered = k3sRender(tmpl, gen, extra);
          const tables = tomlTables(rendered);
          assert.equal(new Set(tables).size, tables.length, `duplicate TOML tables:\n${rendered}`);
          assert.ok(tables.includes(nvidia), `no ${nvidia} in:\n${rendered}`);
          const foreign = gen === 3 ? "io.containerd.grpc.v1.cri" : "io.containerd.cri.v1.runtime";
          assert.ok(!tables.some((t) => t.includes(foreign)), `mixed schemas:\n${rendered}`);
          assert.match(rendered, /BinaryName = "\/usr\/bin\/nvidia-container-runtime"/);
          assert.match(rendered, /SystemdCgroup = true/);
        }
      });
    }

    it("an upgrade across containerd generations swaps the template; the revert removes exactly what was written", () => {
      gpuNode(sb, { toolkit: "1.20.0" });
      assert.equal(sb.run(runtimeScript("v1.31.5+k3s1")).status, 0);
      assert.ok(sb.read(`${TMPL_DIR}/config.toml.tmpl`));
      const r = sb.run(runtimeScript("v1.31.6+k3s1"));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(sb.read(`${TMPL_DIR}/config.toml.tmpl`), undefined);
      assert.ok(sb.read(`${TMPL_DIR}/config-v3.toml.tmpl`));
      // Idempotent: a second run changes nothing and restarts nothing.
      sb.put("/usr/local/bin/k3s", '#!/bin/sh\necho "k3s version v1.31.6+k3s1 (x)"\n', 0o755);
      writeFileSync(path.join(sb.state, "active-k3s"), "");
      assert.equal(sb.run(runtimeScript("v1.31.6+k3s1")).status, 0);
      assert.doesNotMatch(sb.stateFile("systemctl.log") ?? "", /restart/);

      const rv = sb.run(renderScript("nvidia-runtime-revert", {}));
      assert.equal(rv.status, 0, rv.stderr);
      for (const f of ["config.toml.tmpl", "config-v3.toml.tmpl"])
        assert.equal(sb.read(`${TMPL_DIR}/${f}`), undefined);
      assertLeftAsFound(sb);
      assert.doesNotMatch(sb.stateFile("apt.log") ?? "", /remove/, "the toolkit was there before: it stays");
    });

    it("refuses to overwrite a template forge-edge did not write", () => {
      gpuNode(sb, { toolkit: "1.20.0" });
      sb.put(`${TMPL_DIR}/config-v3.toml.tmpl`, '{{ template "base" . }}\n# the site admin\'s\n');
      const r = sb.run(runtimeScript("v1.36.4+k3s1"));
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /was not written by forge-edge/);
      assert.match(sb.read(`${TMPL_DIR}/config-v3.toml.tmpl`) ?? "", /site admin/);
    });
  });

  describe("toolkit: install when missing or older, never downgrade (issue 8.4)", () => {
    it("missing: installs the pin and marks it as forge-edge's; the revert removes the packages and apt files", () => {
      gpuNode(sb);
      const r = sb.run(runtimeScript("v1.36.4+k3s1"));
      assert.equal(r.status, 0, r.stderr);
      assert.match(sb.stateFile("apt.log") ?? "", /install .*nvidia-container-toolkit=1\.20\.0-1/);
      assert.ok(sb.read("/var/lib/forge-edge/toolkit-installed-by-forge"));
      assert.ok(sb.read("/etc/apt/sources.list.d/nvidia-container-toolkit.list"));
      const rv = sb.run(renderScript("nvidia-runtime-revert", {}));
      assert.equal(rv.status, 0, rv.stderr);
      assert.match(sb.stateFile("apt.log") ?? "", /remove .*nvidia-container-toolkit /);
      assert.equal(sb.read("/etc/apt/sources.list.d/nvidia-container-toolkit.list"), undefined);
      assert.equal(sb.read("/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"), undefined);
      assertLeftAsFound(sb);
    });

    it("older than the pin: upgrades it, but it is not forge-edge's: the revert leaves the packages", () => {
      gpuNode(sb, { toolkit: "1.17.8" });
      const r = sb.run(runtimeScript("v1.36.4+k3s1"));
      assert.equal(r.status, 0, r.stderr);
      assert.match(sb.stateFile("apt.log") ?? "", /install .*nvidia-container-toolkit=1\.20\.0-1/);
      assert.equal(sb.read("/var/lib/forge-edge/toolkit-installed-by-forge"), undefined);
      assert.equal(sb.run(renderScript("nvidia-runtime-revert", {})).status, 0);
      assert.doesNotMatch(sb.stateFile("apt.log") ?? "", /remove/);
    });

    for (const have of ["1.20.0", "1.21.1"]) {
      it(`${have} installed, pin 1.20.0: no apt at all (never a downgrade), no marker`, () => {
        gpuNode(sb, { toolkit: have });
        const r = sb.run(runtimeScript("v1.36.4+k3s1"));
        assert.equal(r.status, 0, r.stderr);
        assert.equal(sb.stateFile("apt.log"), undefined, sb.stateFile("apt.log"));
        assert.equal(sb.read("/var/lib/forge-edge/toolkit-installed-by-forge"), undefined);
      });
    }
  });

  describe("k3s-install.sh", () => {
    /** An air-gapped server install whose K3s stub renders config.toml with or without the nvidia runtime. */
    function k3sNode(opts: { nvidiaInConfig: boolean; serving?: boolean; hangingRestart?: boolean }): string {
      const nv = opts.nvidiaInConfig
        ? `[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']\\n  runtime_type = \\"io.containerd.runc.v2\\"\\n`
        : "";
      sb.stub(
        "systemctl",
        `echo "systemctl $*" >>"$STATE/systemctl.log"
case "$1" in
  is-active) [ -e "$STATE/active" ] ;;
  restart)
    ${opts.hangingRestart ? `[ "$2" = --no-block ] || sleep 3600` : ":"}
    mkdir -p ${TMPL_DIR}; printf "version = 3\\n${nv}" >${RENDERED}; touch "$STATE/active"
    mkdir -p /etc/rancher/k3s; printf 'x' >/etc/rancher/k3s/k3s.yaml ;;
esac`,
      );
      sb.put(
        "/var/lib/forge-edge/airgap/k3s",
        `#!/bin/sh\ncase "$1" in --version) echo "k3s version v1.36.4+k3s1 (x)";; kubectl) ${opts.serving === false ? "exit 1" : "exit 0"};; esac\n`,
        0o755,
      );
      sb.put("/var/lib/forge-edge/airgap/install.sh", "echo installer ran\n");
      return renderScript("k3s-install", {
        ...k3sParams(
          node,
          { sku: SKUS.p40, k3sVersion: "v1.36.4+k3s1" },
          { serverUrl: "", clusterInit: false },
        ),
        AIRGAP: true,
      });
    }

    it("fails the step unless the containerd config K3s rendered holds the nvidia runtime (issue 8.3)", () => {
      const r = sb.run(k3sNode({ nvidiaInConfig: false }), {
        stdin: `${TOKEN}\n`,
        env: { FORGE_RENDER_WAIT: "2" },
      });
      assert.notEqual(r.status, 0, "the step passed without the nvidia runtime");
      assert.match(r.stderr, /has no nvidia runtime after 2s/);

      const ok = new NodeSandbox();
      try {
        sb.dispose();
        sb = ok;
        const r2 = sb.run(k3sNode({ nvidiaInConfig: true }), { stdin: `${TOKEN}\n` });
        assert.equal(r2.status, 0, r2.stderr);
        assert.match(r2.stdout, /^k3s=v1\.36\.4\+k3s1 role=server node=n1\n$/);
      } finally {
        ok.dispose();
      }
    });

    it("no wait is unbounded: a service start that never returns and an API that never serves fail in time (issue 8.6)", () => {
      const r = sb.run(k3sNode({ nvidiaInConfig: true, serving: false, hangingRestart: true }), {
        stdin: `${TOKEN}\n`,
        env: { FORGE_READY_WAIT: "4" },
        timeoutMs: 40_000,
      });
      assert.notEqual(r.status, null, "the script hung (killed by the test's timeout)");
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /did not become ready in 4s/);
      assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
    });

    it("never prints the token, on success or on any failure path (issue 8.13)", () => {
      for (const variant of [
        { nvidiaInConfig: true },
        { nvidiaInConfig: false },
        { nvidiaInConfig: true, serving: false },
      ]) {
        const s = new NodeSandbox();
        const prev = sb;
        sb = s;
        try {
          const r = sb.run(k3sNode(variant), {
            stdin: `${TOKEN}\n`,
            env: { FORGE_READY_WAIT: "2", FORGE_RENDER_WAIT: "1" },
          });
          assert.ok(
            !`${r.stdout}${r.stderr}`.includes(TOKEN),
            `token in the output of ${JSON.stringify(variant)}`,
          );
          assert.ok(!`${r.stdout}${r.stderr}`.includes("s3cr3t"));
        } finally {
          s.dispose();
          sb = prev;
        }
      }
    });

    it("air gap: installs the staged binary and places every staged image tarball in K3s's images directory (issue 8.11)", () => {
      const script = k3sNode({ nvidiaInConfig: true });
      sb.put("/var/lib/forge-edge/airgap/images/k3s-airgap-images-amd64.tar.zst", "k3s images");
      sb.put("/var/lib/forge-edge/airgap/images/inference.tar", "inference image");
      const r = sb.run(
        script.replace(
          /^AIRGAP_IMAGES=.*$/m,
          "AIRGAP_IMAGES='k3s-airgap-images-amd64.tar.zst inference.tar'",
        ),
        { stdin: `${TOKEN}\n` },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(sb.read("/var/lib/rancher/k3s/agent/images/inference.tar"), "inference image");
      assert.equal(
        sb.read("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst"),
        "k3s images",
      );
      assert.match(sb.read("/usr/local/bin/k3s") ?? "", /k3s version/);

      const missing = sb.run(script.replace(/^AIRGAP_IMAGES=.*$/m, "AIRGAP_IMAGES='dcgm.tar'"), {
        stdin: `${TOKEN}\n`,
      });
      assert.notEqual(missing.status, 0);
      assert.match(missing.stderr, /air-gap image tarball .*dcgm\.tar is missing/);
    });
  });

  describe("read-kubeconfig.sh (issue 8.13)", () => {
    const full = readFileSync(path.join(ROOT, "tests/unit/fixtures/k3s.yaml"), "utf8");

    it("prints a complete kubeconfig as its last act", () => {
      sb.put("/etc/rancher/k3s/k3s.yaml", full, 0o600);
      const r = sb.run(renderScript("read-kubeconfig", {}));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, full.endsWith("\n") ? full : `${full}\n`);
    });

    it("refuses a kubeconfig K3s is still writing without printing any of it", () => {
      const partial = full.slice(0, full.indexOf("client-key-data"));
      sb.put("/etc/rancher/k3s/k3s.yaml", partial, 0o600);
      const r = sb.run(renderScript("read-kubeconfig", {}));
      assert.notEqual(r.status, 0, "a truncated kubeconfig was handed to the provider");
      assert.equal(r.stdout, "");
      assert.doesNotMatch(r.stderr, /TEST-CA-DATA|TEST-CLIENT/);
    });
  });

  describe("drain-node.sh (issue 8.14)", () => {
    /** kubectl as K3s runs it: drain refuses unmanaged pods unless --force, like the real one. */
    function cluster(pods: string): void {
      sb.stub(
        "k3s",
        `echo "k3s $*" >>"$STATE/k3s.log"
shift
args=" $* "
case "$args" in
  *" get node "*) echo node/n2 ;;
  *" get pods "*) printf '%b\\n' ${JSON.stringify(pods)} ;;
  *" drain "*)
    if printf '%s' ${JSON.stringify(pods)} | grep -q '<none>' && [[ $args != *" --force "* ]]; then
      echo "error: unable to drain node \\"n2\\" due to error: cannot delete Pods declare no controller (use --force to override): default/gpu-test" >&2
      exit 1
    fi
    echo "node/n2 drained" ;;
  *" delete node "*) echo 'node "n2" deleted' ;;
esac`,
      );
    }

    it("a bare pod (the design's gpu-test) does not block the removal: it is deleted, and named in the log", () => {
      cluster("default gpu-test <none>\nforge-cognition inference-server-abc ReplicaSet");
      const r = sb.run(renderScript("drain-node", { NODE_NAME: "n2", DRAIN_TIMEOUT: 30 }));
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /deleting pods no controller will recreate .*default\/gpu-test/);
      assert.doesNotMatch(r.stderr, /inference-server-abc/);
      const log = sb.stateFile("k3s.log") ?? "";
      assert.match(log, /drain n2 .*--force .*--timeout=30s/);
      assert.match(log, /delete node n2 .*--timeout=60s/);
    });

    it("a node already gone is fine; an unreachable API server is a clear failure", () => {
      sb.stub("k3s", `echo 'Error from server (NotFound): nodes "n2" not found' >&2; exit 1`);
      assert.equal(sb.run(renderScript("drain-node", { NODE_NAME: "n2", DRAIN_TIMEOUT: 30 })).status, 0);
      sb.stub("k3s", `echo 'The connection to the server 127.0.0.1:6443 was refused' >&2; exit 1`);
      const r = sb.run(renderScript("drain-node", { NODE_NAME: "n2", DRAIN_TIMEOUT: 30 }));
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /cannot reach the API server/);
    });
  });

  describe("air-gap staging and registries (issue 8.11)", () => {
    it("stages into a directory the (non-root) SSH user owns; the unstage removes it", () => {
      const r = sb.run(renderScript("airgap-stage", { OWNER: "nobody" }));
      assert.equal(r.status, 0, r.stderr);
      const owner = sb.run(`stat -c %U /var/lib/forge-edge/airgap /var/lib/forge-edge/airgap/images`);
      assert.equal(owner.stdout, "nobody\nnobody\n");
      assert.equal(sb.run(renderScript("airgap-unstage", {})).status, 0);
      assert.equal(sb.isDir("/var/lib/forge-edge"), false);
    });

    it("registries.yaml comes from stdin, is root-only, never printed, and is removed on delete", () => {
      sb.stub("systemctl", `echo "systemctl $*" >>"$STATE/systemctl.log"; [ "$1" != is-active ]`);
      const body = '{"configs": {"registry.site": {"auth": {"username": "u", "password": "pa55-s3cret"}}}}\n';
      const r = sb.run(renderScript("registries", {}), { stdin: body });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(!`${r.stdout}${r.stderr}`.includes("pa55-s3cret"));
      const written = sb.read("/etc/rancher/k3s/registries.yaml") ?? "";
      assert.match(written, /^# managed by forge-edge/);
      assert.ok(written.endsWith(body));
      assert.equal(sb.run("stat -c %a /etc/rancher/k3s/registries.yaml").stdout, "600\n");
      assert.equal(sb.run(renderScript("registries-remove", {})).status, 0);
      assert.equal(sb.read("/etc/rancher/k3s/registries.yaml"), undefined);
    });
  });
});

describe("no node script waits without a bound (issue 8.6)", () => {
  const scripts = readdirSync(path.join(ROOT, "scripts")).filter((f) => f.endsWith(".sh"));
  const lines = (f: string) =>
    readFileSync(path.join(ROOT, "scripts", f), "utf8")
      .split("\n")
      .map((l, i) => ({ l, n: i + 1 }))
      .filter(({ l }) => !/^\s*#/.test(l));

  it("curl always has --max-time (directly or through CURL_OPTS)", () => {
    for (const f of scripts)
      for (const { l, n } of lines(f))
        if (/(^|[\s|(])curl\s/.test(l)) assert.match(l, /--max-time|CURL_OPTS/, `${f}:${n}: ${l.trim()}`);
  });

  it("systemctl start/restart is --no-block or under timeout; apt-get, nvidia-smi queries and installers under timeout", () => {
    for (const f of scripts)
      for (const { l, n } of lines(f)) {
        if (/systemctl (re)?start/.test(l)) assert.match(l, /--no-block|timeout /, `${f}:${n}: ${l.trim()}`);
        if (/(^\s*|[;&|]\s*)(DEBIAN_FRONTEND=\S+\s+)?apt-get\s/.test(l))
          assert.fail(`${f}:${n}: apt-get without timeout: ${l.trim()}`);
        if (/nvidia-smi --query/.test(l)) assert.match(l, /timeout /, `${f}:${n}: ${l.trim()}`);
      }
  });

  it("the K3s installer and uninstaller run under timeout", () => {
    const src = (f: string) => readFileSync(path.join(ROOT, "scripts", f), "utf8");
    assert.match(
      src("k3s-install.sh"),
      /timeout "\$INSTALLER_TIMEOUT" env [^\n]*\\\n[^\n]*\\\n[^\n]*sh "\$installer"/,
    );
    assert.match(src("k3s-uninstall.sh"), /timeout "\$UNINSTALL_TIMEOUT" "\$script"/);
  });

  it("loops are counted, never `while true`; kubectl calls carry a timeout", () => {
    for (const f of scripts)
      for (const { l, n } of lines(f)) {
        assert.doesNotMatch(l, /while (true|:)(\s|;|$)|until /, `${f}:${n}: ${l.trim()}`);
        if (/kubectl (get|drain|delete)/.test(l) && !/^\s*kc\(\)/.test(l))
          assert.match(l, /--request-timeout|--timeout|timeout |^\s*kc /, `${f}:${n}: ${l.trim()}`);
      }
  });
});
