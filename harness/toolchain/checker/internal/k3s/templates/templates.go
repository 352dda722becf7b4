// Package templates reproduces what the K3s agent does when it writes containerd's config.toml (K3s's own
// package of that name holds the data types and base templates; same names here, so template errors read alike).
package templates

// What the K3s agent does when it writes containerd's config.toml, reproduced from K3s's own source
// (github.com/k3s-io/k3s is not served by the module proxy, so it cannot be imported):
//
//   - pkg/agent/containerd/config.go writeContainerdConfig + templateGenerations (v1.36): the first of
//     <template dir>/config-v3.toml.tmpl, <template dir>/config.toml.tmpl that exists is the user template,
//     rendered with the base template of its own generation (ContainerdConfigTemplateV3 or
//     ContainerdConfigTemplate) defined as "base"; with neither, the v3 base template is rendered.
//     K3s releases that bundle containerd 1.7 (v1.31.5 and older, v1.32.0-v1.32.1) only know
//     config.toml.tmpl (Containerd.Template is that file) and ContainerdConfigTemplateLegacy.
//   - pkg/agent/templates/templates.go ParseTemplateFromConfig: template.Must(...Parse(user)),
//     template.Must(t.New("base").Parse(base)) -- a parse error PANICS the agent -- then Execute, whose
//     error fails the agent's start; v1.36 then drops blank lines (trimEmpty).
//   - pkg/agent/containerd/config_linux.go SetupContainerdConfig + runtimes.go findContainerRuntimes:
//     PATH is prefixed with /usr/local/nvidia/toolkit:/opt/kwasm/bin and every known runtime binary
//     found by exec.LookPath becomes an ExtraRuntimes entry (BinaryName = the full path found).
//   - the data passed to the template: templates.ContainerdConfig with NodeConfig *config.Node
//     (pkg/daemons/config/types.go), filled as pkg/agent/config/config.go does for the default data dir.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"forge-edge/harness/checker/internal/k3s/config"
	legacy "forge-edge/harness/checker/internal/k3s/legacyconfig"
	legacytemplates "forge-edge/harness/checker/internal/k3s/legacytemplates"
	"forge-edge/harness/checker/internal/registries"
)

// Program is version.Program of K3s.
const Program = "k3s"

// runtimesPath is config_linux.go's runtimesPath, prepended to PATH while runtimes are searched.
const runtimesPath = "/usr/local/nvidia/toolkit:/opt/kwasm/bin"

// DataDir is K3s's default --data-dir for root.
const DataDir = "/var/lib/rancher/k3s"

// ---- github.com/k3s-io/k3s/pkg/agent/templates ----

// ContainerdRuntimeConfig is templates.ContainerdRuntimeConfig.
type ContainerdRuntimeConfig struct {
	RuntimeType string
	BinaryName  string
}

// ContainerdConfig is templates.ContainerdConfig, the data every containerd template is executed with.
// (The containerd 1.7 releases' data type is legacytemplates.ContainerdConfig.)
type ContainerdConfig struct {
	NodeConfig            *config.Node
	DisableCgroup         bool
	SystemdCgroup         bool
	IsRunningInUserNS     bool
	EnableUnprivileged    bool
	NoDefaultEndpoint     bool
	NonrootDevices        bool
	PrivateRegistryConfig *registries.Registry
	ExtraRuntimes         map[string]ContainerdRuntimeConfig
	Program               string
}

// templateFuncs is templates_linux.go's templateFuncs (v1.36); the legacy release had only deschemify.
var templateFuncs = template.FuncMap{
	"deschemify": func(s string) string {
		return s
	},
	"toJson": func(v any) string {
		output, _ := json.Marshal(v)
		return string(output)
	},
	"filepathjoin": filepath.Join,
}

var legacyTemplateFuncs = template.FuncMap{
	"deschemify": func(s string) string {
		return s
	},
}

// ---- K3s versions ----

var k3sVersionRE = regexp.MustCompile(`^v?1\.(\d+)\.(\d+)(?:[-+]k3s(\d+))?$`)

// BundlesContainerd2 tells whether a K3s release embeds containerd 2 (and so knows config-v3.toml.tmpl):
// v1.31.6+ and v1.32.2+ (February 2025: "Upgrade containerd to v2.0.2" / "Update containerd config
// schema to version 3", k3s-io/k3s PR #11626), and every minor after; v1.30 and older stayed on 1.7.
func BundlesContainerd2(k3sVersion string) (bool, error) {
	m := k3sVersionRE.FindStringSubmatch(strings.TrimSpace(k3sVersion))
	if m == nil {
		return false, fmt.Errorf("not a K3s version: %q (want e.g. v1.36.4+k3s1)", k3sVersion)
	}
	minor, _ := strconv.Atoi(m[1])
	patch, _ := strconv.Atoi(m[2])
	switch {
	case minor >= 33:
		return true, nil
	case minor == 32:
		return patch >= 2, nil
	case minor == 31:
		return patch >= 6, nil
	default:
		return false, nil
	}
}

// ---- runtime detection (runtimes.go) ----

type runtimeCandidate struct {
	name string
	ContainerdRuntimeConfig
}

// knownRuntimes is findCRunContainerRuntime + findNvidiaContainerRuntimes + findWasiRuntimes.
var knownRuntimes = []runtimeCandidate{
	{"crun", ContainerdRuntimeConfig{"io.containerd.runc.v2", "crun"}},
	{"nvidia", ContainerdRuntimeConfig{"io.containerd.runc.v2", "nvidia-container-runtime"}},
	{"nvidia-experimental", ContainerdRuntimeConfig{"io.containerd.runc.v2", "nvidia-container-runtime-experimental"}},
	{"nvidia-cdi", ContainerdRuntimeConfig{"io.containerd.runc.v2", "nvidia-container-runtime.cdi"}},
	{"lunatic", ContainerdRuntimeConfig{"io.containerd.lunatic.v1", "containerd-shim-lunatic-v1"}},
	{"slight", ContainerdRuntimeConfig{"io.containerd.slight.v1", "containerd-shim-slight-v1"}},
	{"spin", ContainerdRuntimeConfig{"io.containerd.spin.v2", "containerd-shim-spin-v2"}},
	{"wws", ContainerdRuntimeConfig{"io.containerd.wws.v1", "containerd-shim-wws-v1"}},
	{"wasmedge", ContainerdRuntimeConfig{"io.containerd.wasmedge.v1", "containerd-shim-wasmedge-v1"}},
	{"wasmer", ContainerdRuntimeConfig{"io.containerd.wasmer.v1", "containerd-shim-wasmer-v1"}},
	{"wasmtime", ContainerdRuntimeConfig{"io.containerd.wasmtime.v1", "containerd-shim-wasmtime-v1"}},
}

// FindContainerRuntimes searches PATH (prefixed with runtimesPath, like K3s) for every known runtime.
func FindContainerRuntimes(path string, logf func(string, ...any)) map[string]ContainerdRuntimeConfig {
	original := os.Getenv("PATH")
	_ = os.Setenv("PATH", runtimesPath+string(os.PathListSeparator)+path)
	defer func() { _ = os.Setenv("PATH", original) }()
	found := map[string]ContainerdRuntimeConfig{}
	for _, c := range knownRuntimes {
		p, err := exec.LookPath(c.BinaryName)
		if err != nil {
			continue
		}
		logf("Found %s container runtime at %s", c.name, p)
		rc := c.ContainerdRuntimeConfig
		rc.BinaryName = p
		found[c.name] = rc
	}
	return found
}

// ---- rendering ----

// RenderOptions are the inputs of one render.
type RenderOptions struct {
	K3sVersion    string
	TemplateDir   string // <data-dir>/agent/etc/containerd: where the user templates are looked up
	ExtraRuntimes map[string]ContainerdRuntimeConfig
	SystemdCgroup bool
	Registry      *registries.Registry
	Logf          func(string, ...any)
}

// RenderResult is what K3s writes to config.toml, and which template it used.
type RenderResult struct {
	Config        string
	TemplatePath  string // "" when no user template exists (the base template is rendered)
	ConfigVersion int
	Containerd2   bool
}

// agentConfig fills config.Agent as pkg/agent/config/config.go does for the default data dir.
func agentConfig() config.Agent {
	return config.Agent{
		PauseImage:  "rancher/mirrored-pause:3.10.2",
		Snapshotter: "overlayfs",
		CNIBinDir:   filepath.Join(DataDir, "data", "cni"),
		CNIConfDir:  filepath.Join(DataDir, "agent", "etc", "cni", "net.d"),
		Systemd:     true,
		Registry:    &registries.Registry{},
	}
}

const containerdState = "/run/k3s/containerd"

// nodeConfig fills config.Node (v1.36) as pkg/agent/config/config.go does for the default data dir.
func nodeConfig(templateDir string) *config.Node {
	return &config.Node{
		Containerd: config.Containerd{
			Address:  filepath.Join(containerdState, "containerd.sock"),
			Log:      filepath.Join(DataDir, "agent", "containerd", "containerd.log"),
			Root:     filepath.Join(DataDir, "agent", "containerd"),
			State:    containerdState,
			Config:   filepath.Join(templateDir, "config.toml"),
			Opt:      filepath.Join(DataDir, "agent", "containerd"),
			Template: templateDir,
			Registry: filepath.Join(templateDir, "certs.d"),
		},
		Images:      filepath.Join(DataDir, "agent", "images"),
		AgentConfig: agentConfig(),
	}
}

// legacyNodeConfig fills the containerd 1.7 releases' config.Node (Containerd.Template is the file there).
func legacyNodeConfig(templateDir string) *legacy.Node {
	agent := agentConfig()
	agent.PauseImage = "rancher/mirrored-pause:3.6"
	agent.CNIBinDir = filepath.Join(DataDir, "data", "current", "bin")
	return &legacy.Node{
		Containerd: legacy.Containerd{
			Address:  filepath.Join(containerdState, "containerd.sock"),
			Log:      filepath.Join(DataDir, "agent", "containerd", "containerd.log"),
			Root:     filepath.Join(DataDir, "agent", "containerd"),
			State:    containerdState,
			Config:   filepath.Join(templateDir, "config.toml"),
			Opt:      filepath.Join(DataDir, "agent", "containerd"),
			Template: filepath.Join(templateDir, "config.toml.tmpl"),
			Registry: filepath.Join(templateDir, "certs.d"),
		},
		Images:      filepath.Join(DataDir, "agent", "images"),
		AgentConfig: legacy.Agent{Agent: agent},
	}
}

// Render does what the agent does before it starts containerd. A template that does not parse panics
// (template.Must), as it does in K3s; an execution error is returned.
func Render(o RenderOptions) (RenderResult, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cd2, err := BundlesContainerd2(o.K3sVersion)
	if err != nil {
		return RenderResult{}, err
	}
	registry := o.Registry
	if registry == nil {
		registry = &registries.Registry{}
	}
	data := ContainerdConfig{
		NodeConfig:            nodeConfig(o.TemplateDir),
		SystemdCgroup:         o.SystemdCgroup,
		EnableUnprivileged:    true,
		PrivateRegistryConfig: registry,
		ExtraRuntimes:         o.ExtraRuntimes,
		Program:               Program,
	}
	if data.ExtraRuntimes == nil {
		data.ExtraRuntimes = map[string]ContainerdRuntimeConfig{}
	}

	if !cd2 {
		// writeContainerdConfig of the containerd 1.7 releases.
		res := RenderResult{ConfigVersion: 2}
		user := ContainerdConfigTemplateLegacy
		p := filepath.Join(o.TemplateDir, "config.toml.tmpl")
		b, err := os.ReadFile(p)
		if err == nil {
			logf("Using containerd template at %s", p)
			user = string(b)
			res.TemplatePath = p
		} else if !os.IsNotExist(err) {
			return res, err
		}
		out := new(bytes.Buffer)
		ldata := legacytemplates.ContainerdConfig{
			NodeConfig:            legacyNodeConfig(o.TemplateDir),
			DisableCgroup:         data.DisableCgroup,
			SystemdCgroup:         data.SystemdCgroup,
			IsRunningInUserNS:     data.IsRunningInUserNS,
			EnableUnprivileged:    data.EnableUnprivileged,
			PrivateRegistryConfig: data.PrivateRegistryConfig,
			ExtraRuntimes:         map[string]legacytemplates.ContainerdRuntimeConfig{},
			Program:               data.Program,
		}
		for k, v := range data.ExtraRuntimes {
			ldata.ExtraRuntimes[k] = legacytemplates.ContainerdRuntimeConfig(v)
		}
		t := template.Must(template.New("compiled_template").Funcs(legacyTemplateFuncs).Parse(user))
		template.Must(t.New("base").Parse(ContainerdConfigTemplateLegacy))
		if err := t.Execute(out, ldata); err != nil {
			return res, err
		}
		res.Config = out.String()
		return res, nil
	}

	// writeContainerdConfig + templateGenerations of v1.36.
	generations := []struct {
		version  int
		filename string
		base     string
	}{
		{3, "config-v3.toml.tmpl", ContainerdConfigTemplateV3},
		{2, "config.toml.tmpl", ContainerdConfigTemplate},
	}
	res := RenderResult{ConfigVersion: 3, Containerd2: true}
	user, base := ContainerdConfigTemplateV3, ContainerdConfigTemplateV3
	for _, g := range generations {
		p := filepath.Join(o.TemplateDir, g.filename)
		b, err := os.ReadFile(p)
		if err == nil {
			logf("Using containerd config template at %s", p)
			base, user, res.ConfigVersion, res.TemplatePath = g.base, string(b), g.version, p
			break
		} else if !os.IsNotExist(err) {
			return res, err
		}
	}
	data.NodeConfig.Containerd.ConfigVersion = res.ConfigVersion
	out := new(bytes.Buffer)
	t := template.Must(template.New("compiled_template").Funcs(templateFuncs).Parse(user))
	template.Must(t.New("base").Parse(base))
	if err := t.Execute(out, data); err != nil {
		return res, err
	}
	res.Config, err = trimEmpty(out)
	return res, err
}

// trimEmpty is templates.go's trimEmpty: drops blank lines, and puts one before every table header.
func trimEmpty(r io.Reader) (string, error) {
	builder := strings.Builder{}
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.TrimSpace(line) != "" {
			if strings.HasPrefix(line, "[") {
				builder.WriteString("\n")
			}
			builder.WriteString(line + "\n")
		}
	}
	return builder.String(), scanner.Err()
}
