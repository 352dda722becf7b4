package main

// check-timeslicing: parse a device plugin config file (the ConfigMap value that the NVIDIA device plugin is
// given with --config-file) with NVIDIA's own api/config/v1 package at the pinned v0.20.0, through the same
// entry point the plugin uses (spec.NewConfig with the plugin's command-line flags and their defaults), then
// apply the checks the plugin's main.go validateFlags makes that do not need a GPU (it also refuses CDI
// device-list strategies without NVML, which needs the driver).

import (
	"errors"
	"fmt"
	"io"

	spec "github.com/NVIDIA/k8s-device-plugin/api/config/v1"
	cli "github.com/urfave/cli/v2"
)

// SharedResource is one resource a sharing config advertises.
type SharedResource struct {
	Name     string
	Rename   string
	Replicas int
}

// TimeSlicingCheck is what check-timeslicing found.
type TimeSlicingCheck struct {
	Strategy  string // "none", "time-slicing" or "mps" (spec.SharingStrategy*)
	Resources []SharedResource
	Flags     string
}

// pluginFlags are cmd/nvidia-device-plugin/main.go's flags (v0.20.0) that UpdateFromCLIFlags reads, with
// the plugin's defaults; a value the file leaves unset is taken from them, as in the plugin.
func pluginFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mig-strategy", Value: spec.MigStrategyNone},
		&cli.BoolFlag{Name: "fail-on-init-error", Value: true},
		&cli.StringFlag{Name: "driver-root", Aliases: []string{"nvidia-driver-root"}, Value: "/"},
		&cli.StringFlag{Name: "dev-root", Aliases: []string{"nvidia-dev-root"}},
		&cli.BoolFlag{Name: "pass-device-specs", Value: false},
		&cli.StringSliceFlag{Name: "device-list-strategy", Value: cli.NewStringSlice(string(spec.DeviceListStrategyEnvVar))},
		&cli.StringFlag{Name: "device-id-strategy", Value: spec.DeviceIDStrategyUUID},
		&cli.BoolFlag{Name: "gdrcopy-enabled"},
		&cli.BoolFlag{Name: "gds-enabled"},
		&cli.BoolFlag{Name: "mofed-enabled"},
		&cli.StringFlag{Name: "cdi-annotation-prefix", Value: spec.DefaultCDIAnnotationPrefix},
		&cli.StringFlag{Name: "nvidia-cdi-hook-path", Aliases: []string{"nvidia-ctk-path"}, Value: spec.DefaultNvidiaCTKPath},
		&cli.StringFlag{Name: "driver-root-ctr-path", Aliases: []string{"container-driver-root"}, Value: spec.DefaultContainerDriverRoot},
		&cli.StringFlag{Name: "mps-root"},
		&cli.StringFlag{Name: "shared-devices-allocation-policy", Value: spec.AllocationPolicyDistributed},
		&cli.StringFlag{Name: "device-discovery-strategy", Value: "auto"},
		&cli.IntSliceFlag{Name: "imex-channel-ids"},
		&cli.BoolFlag{Name: "imex-required"},
		&cli.StringFlag{Name: "config-file"},
	}
}

// validateFlags is main.go's validateFlags without the NVML probe.
func validateFlags(config *spec.Config) error {
	if _, err := spec.NewDeviceListStrategies(*config.Flags.Plugin.DeviceListStrategy); err != nil {
		return fmt.Errorf("invalid --device-list-strategy option: %v", err)
	}
	if *config.Flags.Plugin.DeviceIDStrategy != spec.DeviceIDStrategyUUID && *config.Flags.Plugin.DeviceIDStrategy != spec.DeviceIDStrategyIndex {
		return fmt.Errorf("invalid --device-id-strategy option: %v", *config.Flags.Plugin.DeviceIDStrategy)
	}
	if config.Flags.Plugin.SharedDevicesAllocationPolicy != nil {
		switch *config.Flags.Plugin.SharedDevicesAllocationPolicy {
		case spec.AllocationPolicyDistributed:
		case spec.AllocationPolicyPacked:
		default:
			return fmt.Errorf("invalid --shared-devices-allocation-policy option: %s", *config.Flags.Plugin.SharedDevicesAllocationPolicy)
		}
	}
	if config.Sharing.SharingStrategy() == spec.SharingStrategyMPS {
		if *config.Flags.MigStrategy == spec.MigStrategyMixed {
			return fmt.Errorf("using --mig-strategy=mixed is not supported with MPS")
		}
		if config.Flags.MpsRoot == nil || *config.Flags.MpsRoot == "" {
			return fmt.Errorf("using MPS requires --mps-root to be specified")
		}
	}
	switch *config.Flags.DeviceDiscoveryStrategy {
	case "auto", "nvml", "tegra":
	default:
		return fmt.Errorf("invalid --device-discovery-strategy option %v", *config.Flags.DeviceDiscoveryStrategy)
	}
	switch *config.Flags.MigStrategy {
	case spec.MigStrategyNone, spec.MigStrategySingle, spec.MigStrategyMixed:
	default:
		return fmt.Errorf("unknown MIG strategy: %v", *config.Flags.MigStrategy)
	}
	if err := spec.AssertChannelIDsValid(config.Imex.ChannelIDs); err != nil {
		return fmt.Errorf("invalid IMEX channel IDs: %w", err)
	}
	return nil
}

// CheckTimeSlicing loads the config file at path as the device plugin v0.20.0 does. extraArgs are plugin
// flags (e.g. "--mps-root=/run/nvidia/mps", as the chart passes for MPS).
func CheckTimeSlicing(path string, extraArgs ...string) (TimeSlicingCheck, error) {
	var res TimeSlicingCheck
	var config *spec.Config
	flags := pluginFlags()
	app := &cli.App{
		Name:      "nvidia-device-plugin",
		Flags:     flags,
		Writer:    io.Discard,
		ErrWriter: io.Discard,
		Action: func(c *cli.Context) error {
			var err error
			// loadConfig of cmd/nvidia-device-plugin/main.go, then the plugin's start: validateFlags and
			// DisableResourceNamingInConfig.
			config, err = spec.NewConfig(c, flags)
			if err != nil {
				return fmt.Errorf("unable to finalize config: %v", err)
			}
			config.Flags.GFD = nil
			if err := validateFlags(config); err != nil {
				return fmt.Errorf("unable to validate flags: %v", err)
			}
			spec.DisableResourceNamingInConfig(config)
			return nil
		},
	}
	args := append([]string{"nvidia-device-plugin", "--config-file", path}, extraArgs...)
	if err := app.Run(args); err != nil {
		return res, err
	}
	if config == nil {
		return res, errors.New("the device plugin's config loader returned nothing")
	}
	strategy := config.Sharing.SharingStrategy()
	res.Strategy = string(strategy)
	var rr *spec.ReplicatedResources
	switch strategy {
	case spec.SharingStrategyTimeSlicing:
		rr = &config.Sharing.TimeSlicing
	case spec.SharingStrategyMPS:
		rr = config.Sharing.MPS
	}
	if rr != nil {
		for _, r := range rr.Resources {
			res.Resources = append(res.Resources, SharedResource{Name: string(r.Name), Rename: string(r.Rename), Replicas: r.Replicas})
		}
	}
	if config.Flags.DeviceDiscoveryStrategy != nil {
		res.Flags = "deviceDiscoveryStrategy=" + *config.Flags.DeviceDiscoveryStrategy
	}
	return res, nil
}
