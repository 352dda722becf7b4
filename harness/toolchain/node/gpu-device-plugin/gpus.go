package main

// The GPUs a container sees. The real plugin asks NVML, which the NVIDIA runtime makes visible in the container
// (driver libraries, /dev/nvidia*). On the simulated node the nvidia-container-runtime double bind-mounts a file
// describing the host's GPUs instead (contract in harness/doubles/nvidia-container-runtime); no file = no NVML.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	dp "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// GPUFileEnv names the in-container path of the GPU file; the runtime double sets it with the mount.
const GPUFileEnv = "FORGE_NVIDIA_GPU_FILE"

// DefaultGPUFile is where the runtime double mounts the file (read-only).
const DefaultGPUFile = "/run/forge-edge/nvidia/gpus.json"

// GPU is one entry of the GPU file, from the nvidia-smi double's data on the host.
type GPU struct {
	Index      int    `json:"index"`
	UUID       string `json:"uuid"`
	Name       string `json:"name"`
	MemoryMiB  int    `json:"memoryMiB"`
	ComputeCap string `json:"computeCap"`
}

// GPUFile is the whole file: the driver the host reports and the GPUs exposed to this container.
type GPUFile struct {
	Driver string `json:"driver"`
	GPUs   []GPU  `json:"gpus"`
}

// errNoNVML is what the real plugin's NVML init returns when the runtime did not inject the driver.
var errNoNVML = errors.New("ERROR_LIBRARY_NOT_FOUND")

// ReadGPUFile reads the GPU file at path; a missing file is errNoNVML.
func ReadGPUFile(path string) (GPUFile, error) {
	var f GPUFile
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, errNoNVML
	}
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	for i, g := range f.GPUs {
		if g.UUID == "" {
			return f, fmt.Errorf("%s: gpu %d has no uuid", path, i)
		}
	}
	return f, nil
}

// Devices are the devices advertised for gpus: replicas annotated IDs per GPU (<id>::<n>, the plugin's
// rm.NewAnnotatedID) when shared, the plain ID otherwise. idStrategy is the plugin's deviceIDStrategy.
func Devices(gpus []GPU, replicas int, idStrategy string) []*dp.Device {
	var out []*dp.Device
	for _, g := range gpus {
		id := g.UUID
		if idStrategy == "index" {
			id = strconv.Itoa(g.Index)
		}
		if replicas <= 1 {
			out = append(out, &dp.Device{ID: id, Health: dp.Healthy})
			continue
		}
		for r := 0; r < replicas; r++ {
			out = append(out, &dp.Device{ID: fmt.Sprintf("%s::%d", id, r), Health: dp.Healthy})
		}
	}
	return out
}
