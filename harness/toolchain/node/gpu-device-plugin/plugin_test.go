package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cli "github.com/urfave/cli/v2"
	dp "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// The shape components/gpuSharing.ts timeSlicingConfig writes.
const stackConfig = `version: v1
flags:
  migStrategy: none
  failOnInitError: true
  deviceDiscoveryStrategy: auto
  plugin:
    passDeviceSpecs: false
    deviceListStrategy: envvar
    deviceIDStrategy: uuid
sharing:
  timeSlicing:
    renameByDefault: false
    failRequestsGreaterThanOne: true
    resources:
      - name: nvidia.com/gpu
        replicas: 4
`

func load(t *testing.T, config string, args ...string) (Sharing, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var got Sharing
	var lerr error
	app := &cli.App{Flags: pluginFlags(), Action: func(c *cli.Context) error { got, lerr = LoadConfig(c); return nil }}
	if err := app.Run(append([]string{"x", "--config-file", f}, args...)); err != nil {
		t.Fatal(err)
	}
	return got, lerr
}

func TestStackConfig(t *testing.T) {
	s, err := load(t, stackConfig)
	if err != nil {
		t.Fatal(err)
	}
	if s.Resource != "nvidia.com/gpu" || s.Replicas != 4 || !s.FailRequestsGreaterThanOne || !s.FailOnInitError {
		t.Fatalf("got %+v", s)
	}
}

func TestRenameByDefaultAndFlagPrecedence(t *testing.T) {
	cfg := strings.Replace(stackConfig, "renameByDefault: false", "renameByDefault: true", 1)
	s, err := load(t, cfg, "--fail-on-init-error=false")
	if err != nil {
		t.Fatal(err)
	}
	// The command line wins over the file (the plugin's precedence), and renameByDefault names <name>.shared.
	if s.Resource != "nvidia.com/gpu.shared" || s.FailOnInitError || SocketName(s.Resource) != "nvidia-gpu.shared.sock" {
		t.Fatalf("got %+v", s)
	}
}

func TestBadConfigRefused(t *testing.T) {
	if _, err := load(t, "version: v2\n"); err == nil {
		t.Fatal("version v2 accepted")
	}
	if _, err := load(t, strings.Replace(stackConfig, "replicas: 4", "replicas: 0", 1)); err == nil {
		t.Fatal("0 replicas accepted")
	}
}

func TestDevicesAndAllocate(t *testing.T) {
	gpus := []GPU{{Index: 0, UUID: "GPU-a"}, {Index: 1, UUID: "GPU-b"}}
	devs := Devices(gpus, 4, "uuid")
	if len(devs) != 8 || devs[0].ID != "GPU-a::0" || devs[7].ID != "GPU-b::3" || devs[0].Health != dp.Healthy {
		t.Fatalf("devices %v", devs)
	}
	if d := Devices(gpus, 1, "index"); len(d) != 2 || d[1].ID != "1" {
		t.Fatalf("index devices %v", d)
	}
	p := &plugin{devices: devs, failRequestsGreaterThanOne: true}
	r, err := p.Allocate(context.Background(), &dp.AllocateRequest{ContainerRequests: []*dp.ContainerAllocateRequest{{DevicesIds: []string{"GPU-b::2"}}}})
	if err != nil || r.ContainerResponses[0].Envs["NVIDIA_VISIBLE_DEVICES"] != "GPU-b" {
		t.Fatalf("allocate: %v %v", r, err)
	}
	_, err = p.Allocate(context.Background(), &dp.AllocateRequest{ContainerRequests: []*dp.ContainerAllocateRequest{{DevicesIds: []string{"GPU-a::0", "GPU-b::0"}}}})
	if !errors.Is(err, errInvalidRequest) || !strings.Contains(err.Error(), "maximum request size for shared resources is 1; found 2") {
		t.Fatalf("two slices: %v", err)
	}
	if _, err := p.Allocate(context.Background(), &dp.AllocateRequest{ContainerRequests: []*dp.ContainerAllocateRequest{{DevicesIds: []string{"GPU-x::0"}}}}); !errors.Is(err, errInvalidRequest) {
		t.Fatalf("unknown device: %v", err)
	}
}

func TestGPUFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadGPUFile(filepath.Join(dir, "none.json")); !errors.Is(err, errNoNVML) {
		t.Fatalf("missing file: %v", err)
	}
	f := filepath.Join(dir, "gpus.json")
	_ = os.WriteFile(f, []byte(`{"driver":"580.95.05","gpus":[{"index":0,"uuid":"GPU-1","name":"NVIDIA RTX PRO 4000","memoryMiB":24463,"computeCap":"12.0"}]}`), 0o644)
	g, err := ReadGPUFile(f)
	if err != nil || len(g.GPUs) != 1 || g.GPUs[0].UUID != "GPU-1" || g.Driver != "580.95.05" {
		t.Fatalf("%+v %v", g, err)
	}
	_ = os.WriteFile(f, []byte(`{"gpus":[{"index":0}]}`), 0o644)
	if _, err := ReadGPUFile(f); err == nil {
		t.Fatal("gpu without uuid accepted")
	}
}
