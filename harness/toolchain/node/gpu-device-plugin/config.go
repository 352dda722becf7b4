package main

// The plugin's configuration, loaded as cmd/nvidia-device-plugin/main.go (v0.20.0) loads it: its flags with their
// env vars and defaults, then spec.NewConfig (NVIDIA's api/config/v1) merging CONFIG_FILE under the flags.

import (
	"fmt"

	spec "github.com/NVIDIA/k8s-device-plugin/api/config/v1"
	cli "github.com/urfave/cli/v2"
)

// pluginFlags are the real plugin's flags that spec.NewConfig reads (names, env vars, defaults of v0.20.0).
func pluginFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mig-strategy", Value: spec.MigStrategyNone, EnvVars: []string{"MIG_STRATEGY"}},
		&cli.BoolFlag{Name: "fail-on-init-error", Value: true, EnvVars: []string{"FAIL_ON_INIT_ERROR"}},
		&cli.StringFlag{Name: "driver-root", Aliases: []string{"nvidia-driver-root"}, Value: "/", EnvVars: []string{"NVIDIA_DRIVER_ROOT"}},
		&cli.StringFlag{Name: "dev-root", Aliases: []string{"nvidia-dev-root"}, EnvVars: []string{"NVIDIA_DEV_ROOT"}},
		&cli.BoolFlag{Name: "pass-device-specs", Value: false, EnvVars: []string{"PASS_DEVICE_SPECS"}},
		&cli.StringSliceFlag{Name: "device-list-strategy", Value: cli.NewStringSlice(string(spec.DeviceListStrategyEnvVar)), EnvVars: []string{"DEVICE_LIST_STRATEGY"}},
		&cli.StringFlag{Name: "device-id-strategy", Value: spec.DeviceIDStrategyUUID, EnvVars: []string{"DEVICE_ID_STRATEGY"}},
		&cli.BoolFlag{Name: "gdrcopy-enabled", EnvVars: []string{"GDRCOPY_ENABLED"}},
		&cli.BoolFlag{Name: "gds-enabled", EnvVars: []string{"GDS_ENABLED"}},
		&cli.BoolFlag{Name: "mofed-enabled", EnvVars: []string{"MOFED_ENABLED"}},
		&cli.StringFlag{Name: "cdi-annotation-prefix", Value: spec.DefaultCDIAnnotationPrefix, EnvVars: []string{"CDI_ANNOTATION_PREFIX"}},
		&cli.StringFlag{Name: "nvidia-cdi-hook-path", Aliases: []string{"nvidia-ctk-path"}, Value: spec.DefaultNvidiaCTKPath, EnvVars: []string{"NVIDIA_CDI_HOOK_PATH", "NVIDIA_CTK_PATH"}},
		&cli.StringFlag{Name: "driver-root-ctr-path", Aliases: []string{"container-driver-root"}, Value: spec.DefaultContainerDriverRoot, EnvVars: []string{"DRIVER_ROOT_CTR_PATH", "CONTAINER_DRIVER_ROOT"}},
		&cli.StringFlag{Name: "mps-root", EnvVars: []string{"MPS_ROOT"}},
		&cli.StringFlag{Name: "shared-devices-allocation-policy", Value: spec.AllocationPolicyDistributed, EnvVars: []string{"SHARED_DEVICES_ALLOCATION_POLICY"}},
		&cli.StringFlag{Name: "device-discovery-strategy", Value: "auto", EnvVars: []string{"DEVICE_DISCOVERY_STRATEGY"}},
		&cli.IntSliceFlag{Name: "imex-channel-ids", EnvVars: []string{"IMEX_CHANNEL_IDS"}},
		&cli.BoolFlag{Name: "imex-required", EnvVars: []string{"IMEX_REQUIRED"}},
		&cli.StringFlag{Name: "config-file", EnvVars: []string{"CONFIG_FILE"}},
	}
}

// Sharing is what the stand-in takes from the config: the resource to advertise and how it is shared.
type Sharing struct {
	Resource                   string
	Replicas                   int
	FailRequestsGreaterThanOne bool
	FailOnInitError            bool
	DeviceIDStrategy           string
}

// LoadConfig is the plugin's loadConfig (spec.NewConfig on the command line and env), reduced to Sharing.
func LoadConfig(c *cli.Context) (Sharing, error) {
	cfg, err := spec.NewConfig(c, pluginFlags())
	if err != nil {
		return Sharing{}, fmt.Errorf("unable to finalize config: %v", err)
	}
	return SharingOf(cfg)
}

// SharingOf picks nvidia.com/gpu's entry of the time-slicing (or MPS) resources; no sharing = 1 replica.
func SharingOf(cfg *spec.Config) (Sharing, error) {
	s := Sharing{Resource: "nvidia.com/gpu", Replicas: 1, FailOnInitError: true, DeviceIDStrategy: spec.DeviceIDStrategyUUID}
	if cfg.Flags.FailOnInitError != nil {
		s.FailOnInitError = *cfg.Flags.FailOnInitError
	}
	if cfg.Flags.Plugin != nil && cfg.Flags.Plugin.DeviceIDStrategy != nil {
		s.DeviceIDStrategy = *cfg.Flags.Plugin.DeviceIDStrategy
	}
	var rr *spec.ReplicatedResources
	switch cfg.Sharing.SharingStrategy() {
	case spec.SharingStrategyTimeSlicing:
		rr = &cfg.Sharing.TimeSlicing
	case spec.SharingStrategyMPS:
		rr = cfg.Sharing.MPS
	}
	if rr == nil {
		return s, nil
	}
	for _, r := range rr.Resources {
		if string(r.Name) != "nvidia.com/gpu" {
			continue
		}
		if !r.Devices.All && (r.Devices.Count > 0 || len(r.Devices.List) > 0) {
			return s, fmt.Errorf("replicating a subset of the GPUs (devices: %+v) is not simulated", r.Devices)
		}
		s.Replicas = r.Replicas
		if r.Rename != "" {
			s.Resource = string(r.Rename)
		}
		s.FailRequestsGreaterThanOne = rr.FailRequestsGreaterThanOne != nil && *rr.FailRequestsGreaterThanOne
	}
	return s, nil
}
