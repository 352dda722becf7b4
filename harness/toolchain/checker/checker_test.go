package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"forge-edge/harness/checker/internal/k3s/templates"
)

// TestMain lets the tests run the command itself (os.Args[0] with CHECKER_RUN_MAIN=1).
func TestMain(m *testing.M) {
	if os.Getenv("CHECKER_RUN_MAIN") == "1" {
		os.Args = append([]string{"forge-edge-checker"}, strings.Fields(os.Getenv("CHECKER_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHECKER_RUN_MAIN=1", "CHECKER_ARGS="+strings.Join(args, " "))
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// renderNoPanic is Render with K3s's template.Must panic turned into an error.
func renderNoPanic(o templates.RenderOptions) (res templates.RenderResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return templates.Render(o)
}

const nvidiaBin = "/usr/local/nvidia/toolkit/nvidia-container-runtime"

var withNvidia = map[string]templates.ContainerdRuntimeConfig{
	"nvidia": {RuntimeType: "io.containerd.runc.v2", BinaryName: nvidiaBin},
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func renderAndCheck(t *testing.T, version, dir string) (templates.RenderResult, ContainerdCheck) {
	t.Helper()
	res, err := renderNoPanic(templates.RenderOptions{K3sVersion: version, TemplateDir: dir, ExtraRuntimes: withNvidia, SystemdCgroup: true})
	if err != nil {
		t.Fatalf("render %s: %v", version, err)
	}
	out := write(t, filepath.Join(t.TempDir(), "config.toml"), res.Config)
	chk, err := CheckContainerd(context.Background(), out)
	if err != nil {
		t.Fatalf("containerd refuses what K3s %s renders: %v\n%s", version, err, res.Config)
	}
	return res, chk
}

func TestBundlesContainerd2(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.36.4+k3s1": true, "v1.33.0+k3s1": true, "v1.32.2+k3s1": true, "v1.32.1+k3s1": false,
		"v1.31.6+k3s1": true, "v1.31.5+k3s1": false, "v1.30.14+k3s1": false, "v1.36.4-k3s1": true,
	} {
		got, err := templates.BundlesContainerd2(v)
		if err != nil || got != want {
			t.Errorf("templates.BundlesContainerd2(%s) = %v, %v; want %v", v, got, err, want)
		}
	}
	if _, err := templates.BundlesContainerd2("latest"); err == nil {
		t.Error("templates.BundlesContainerd2(latest): want an error")
	}
}

func TestBaseTemplatesCarryNvidia(t *testing.T) {
	for _, tc := range []struct{ version string }{{"v1.36.4+k3s1"}, {"v1.31.5+k3s1"}} {
		t.Run(tc.version, func(t *testing.T) {
			res, chk := renderAndCheck(t, tc.version, t.TempDir())
			if res.TemplatePath != "" {
				t.Errorf("no user template, but rendered %s", res.TemplatePath)
			}
			wantFile := map[bool]int{true: 3, false: 2}[res.Containerd2]
			if chk.FileVersion != wantFile {
				t.Errorf("file version %d, want %d", chk.FileVersion, wantFile)
			}
			if got := chk.Runtimes["nvidia"].BinaryName; got != nvidiaBin {
				t.Errorf("nvidia BinaryName %q, want %q (runtimes %v)", got, nvidiaBin, chk.Runtimes)
			}
			if _, ok := chk.Runtimes["runc"]; !ok || chk.DefaultRuntime != "runc" {
				t.Errorf("runc missing or not default: %v / %q", chk.Runtimes, chk.DefaultRuntime)
			}
		})
	}
}

func TestTemplateChoiceFollowsTheK3sVersion(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "config-v3.toml.tmpl"), "{{ template \"base\" . }}\n# forge v3\n")
	write(t, filepath.Join(dir, "config.toml.tmpl"), "{{ template \"base\" . }}\n# forge v2\n")

	res, _ := renderAndCheck(t, "v1.36.4+k3s1", dir)
	if res.ConfigVersion != 3 || !strings.Contains(res.Config, "# forge v3") || !strings.Contains(res.Config, "version = 3") {
		t.Errorf("v1.36 should render config-v3.toml.tmpl:\n%s", res.Config)
	}
	res, _ = renderAndCheck(t, "v1.31.5+k3s1", dir)
	if res.ConfigVersion != 2 || !strings.Contains(res.Config, "# forge v2") || strings.Contains(res.Config, "version = 3") {
		t.Errorf("v1.31.5 (containerd 1.7) should render config.toml.tmpl:\n%s", res.Config)
	}

	// containerd 2 without config-v3.toml.tmpl falls back to config.toml.tmpl as a version 2 config,
	// which containerd migrates.
	if err := os.Remove(filepath.Join(dir, "config-v3.toml.tmpl")); err != nil {
		t.Fatal(err)
	}
	res, chk := renderAndCheck(t, "v1.36.4+k3s1", dir)
	if res.ConfigVersion != 2 || chk.FileVersion != 2 || chk.Runtimes["nvidia"].BinaryName != nvidiaBin {
		t.Errorf("v1.36 fallback: version %d/%d, runtimes %v", res.ConfigVersion, chk.FileVersion, chk.Runtimes)
	}
}

func TestBrokenTemplateIsRejected(t *testing.T) {
	dir := t.TempDir()
	// Parse error: K3s panics (template.Must).
	write(t, filepath.Join(dir, "config-v3.toml.tmpl"), "{{ template \"base\" . }}\n{{ if .SystemdCgroup }}\n")
	if _, err := renderNoPanic(templates.RenderOptions{K3sVersion: "v1.36.4+k3s1", TemplateDir: dir}); err == nil ||
		!strings.Contains(err.Error(), "panic: template: compiled_template") {
		t.Errorf("unclosed {{ if }}: want K3s's template panic, got %v", err)
	}
	out := filepath.Join(dir, "config.toml")
	stdout, code := runMain(t, "render-containerd", "--k3s-version", "v1.36.4+k3s1", "--tmpl-dir", dir, "--out", out, "--no-detect")
	if code != 2 || !strings.Contains(stdout, "panic: template: compiled_template:") {
		t.Errorf("the command should panic like K3s (exit 2); exit %d:\n%s", code, stdout)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed render must not write %s", out)
	}

	// Execution error: a field K3s does not pass fails the start.
	write(t, filepath.Join(dir, "config-v3.toml.tmpl"), "{{ template \"base\" . }}\n{{ .NodeConfig.NoFlannel }}\n")
	if _, err := renderNoPanic(templates.RenderOptions{K3sVersion: "v1.36.4+k3s1", TemplateDir: dir}); err == nil ||
		!strings.Contains(err.Error(), "can't evaluate field NoFlannel in type *config.Node") {
		t.Errorf("v1.36 has no NodeConfig.NoFlannel: want an execution error, got %v", err)
	}
	stdout, code = runMain(t, "render-containerd", "--k3s-version", "v1.36.4+k3s1", "--tmpl-dir", dir, "--out", out, "--no-detect")
	if code != 1 || !strings.Contains(stdout, "level=fatal") {
		t.Errorf("execution error: want exit 1 with level=fatal; exit %d:\n%s", code, stdout)
	}
	// ... which the containerd 1.7 releases still had.
	write(t, filepath.Join(dir, "config.toml.tmpl"), "{{ template \"base\" . }}\n# {{ .NodeConfig.NoFlannel }}\n")
	if _, err := renderNoPanic(templates.RenderOptions{K3sVersion: "v1.31.5+k3s1", TemplateDir: dir}); err != nil {
		t.Errorf("v1.31.5 has NodeConfig.NoFlannel: %v", err)
	}
}

func TestContainerdRejectsMisplacedRuntime(t *testing.T) {
	// A version 3 file with the runtime under the version 2 table: containerd ignores that table, so
	// there is no nvidia runtime.
	dir := t.TempDir()
	write(t, filepath.Join(dir, "config-v3.toml.tmpl"), `{{ template "base" . }}
[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.'nvidia']
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.'nvidia'.options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
`)
	res, err := renderNoPanic(templates.RenderOptions{K3sVersion: "v1.36.4+k3s1", TemplateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	out := write(t, filepath.Join(dir, "config.toml"), res.Config)
	chk, err := CheckContainerd(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := chk.Runtimes["nvidia"]; ok {
		t.Errorf("containerd 2 must not see a runtime under io.containerd.grpc.v1.cri in a version 3 file: %v", chk.Runtimes)
	}
	stdout, code := runMain(t, "check-containerd", out)
	if code != 1 || !strings.Contains(stdout, `configures no "nvidia" runtime`) {
		t.Errorf("check-containerd: exit %d\n%s", code, stdout)
	}
	// Not TOML at all.
	bad := write(t, filepath.Join(dir, "bad.toml"), "version = 3\n[plugins\n")
	if _, err := CheckContainerd(context.Background(), bad); err == nil {
		t.Error("containerd should refuse a file that is not TOML")
	}
}

func TestRuntimeDetection(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "nvidia-container-runtime"), "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(dir, "nvidia-container-runtime"), 0o755); err != nil {
		t.Fatal(err)
	}
	found := templates.FindContainerRuntimes(dir, func(string, ...any) {})
	if got := found["nvidia"]; got.BinaryName != filepath.Join(dir, "nvidia-container-runtime") || got.RuntimeType != "io.containerd.runc.v2" {
		t.Errorf("nvidia runtime not detected: %v", found)
	}
	if _, ok := found["nvidia-cdi"]; ok {
		t.Errorf("nvidia-cdi detected without its binary: %v", found)
	}
}

func TestTimeSlicingConfigs(t *testing.T) {
	dir := t.TempDir()
	good := write(t, filepath.Join(dir, "good.yaml"), `version: v1
flags:
  migStrategy: none
  deviceDiscoveryStrategy: tegra
sharing:
  timeSlicing:
    resources:
      - name: nvidia.com/gpu
        replicas: 4
`)
	res, err := CheckTimeSlicing(good)
	if err != nil {
		t.Fatal(err)
	}
	if res.Strategy != "time-slicing" || len(res.Resources) != 1 || res.Resources[0].Name != "nvidia.com/gpu" || res.Resources[0].Replicas != 4 {
		t.Errorf("good config: %+v", res)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"one replica":      {"version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 1\n", "number of replicas must be >= 2"},
		"no resources":     {"version: v1\nsharing:\n  timeSlicing:\n    resources: []\n", "no resources specified"},
		"no replicas":      {"version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n", "no replicas specified"},
		"bad version":      {"version: v2\n", "unknown version"},
		"bad discovery":    {"version: v1\nflags:\n  deviceDiscoveryStrategy: magic\n", "invalid --device-discovery-strategy"},
		"mps without root": {"version: v1\nsharing:\n  mps:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 2\n", "MPS requires --mps-root"},
		"not yaml":         {"version: v1\nsharing: [\n", "unmarshal error"},
	} {
		t.Run(name, func(t *testing.T) {
			p := write(t, filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml"), tc.body)
			if _, err := CheckTimeSlicing(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
	stdout, code := runMain(t, "check-timeslicing", good)
	if code != 0 || !strings.Contains(stdout, "sharing time-slicing: nvidia.com/gpu replicas=4") {
		t.Errorf("check-timeslicing: exit %d\n%s", code, stdout)
	}
}
