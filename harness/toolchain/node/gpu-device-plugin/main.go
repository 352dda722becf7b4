// Command gpu-device-plugin is the simulated site's stand-in for the NVIDIA device plugin, one implementation with
// two entry modes:
//
//   - image mode (the stack's DaemonSet runs it as nvcr.io/nvidia/k8s-device-plugin:<version>): configured like
//     the real plugin (its flags and env vars, CONFIG_FILE parsed by NVIDIA's api/config/v1), it advertises the
//     GPUs the nvidia runtime exposed in the container (gpus.go) x the time-slicing replicas. With no GPUs exposed
//     (the pod did not go through the nvidia runtime) it fails like the real plugin's NVML init when
//     FAIL_ON_INIT_ERROR=true, else waits with no devices.
//   - host mode (--gpus N [--replicas R --node NAME]; harness/doubles/k3s-node.sh without the stack): N x R devices
//     named after the node, no config file.
//
// Both register the resource through the kubelet's device-plugin gRPC API (plugin.go).
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	cli "github.com/urfave/cli/v2"
	dp "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

func main() {
	flags := append(pluginFlags(),
		&cli.StringFlag{Name: "dir", Value: dp.DevicePluginPath, Usage: "the kubelet's device-plugin directory"},
		&cli.IntFlag{Name: "gpus", Usage: "host mode: physical GPUs to advertise"},
		&cli.IntFlag{Name: "replicas", Value: 1, Usage: "host mode: time-slicing replicas per GPU"},
		&cli.StringFlag{Name: "node", Value: "node", Usage: "host mode: node name (part of the simulated GPU UUIDs)"},
		&cli.StringFlag{Name: "resource", Value: "nvidia.com/gpu", Usage: "host mode: resource name"},
	)
	app := &cli.App{Name: "nvidia-device-plugin", Usage: "forge-edge device-plugin stand-in", Flags: flags, Action: run}
	if err := app.Run(os.Args); err != nil {
		log.Fatal(err)
	}
}

func run(c *cli.Context) error {
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; close(stop) }()

	if c.IsSet("gpus") {
		p, endpoint := hostPlugin(c.String("node"), c.Int("gpus"), c.Int("replicas"))
		return serve(p, c.String("dir"), endpoint, c.String("resource"), stop)
	}
	sh, err := LoadConfig(c)
	if err != nil {
		return err
	}
	log.Printf("config %s: resource %s, replicas %d, failRequestsGreaterThanOne %t, failOnInitError %t",
		c.String("config-file"), sh.Resource, sh.Replicas, sh.FailRequestsGreaterThanOne, sh.FailOnInitError)
	path := os.Getenv(GPUFileEnv)
	if path == "" {
		path = DefaultGPUFile
	}
	f, err := ReadGPUFile(path)
	if errors.Is(err, errNoNVML) {
		// The real plugin's messages (internal/plugin/factory.go getResourceManagers, v0.20.0).
		log.Printf("Failed to initialize NVML: %v.", errNoNVML)
		log.Printf("If this is a GPU node, did you set the docker default runtime to `nvidia`?")
		log.Printf("If this is not a GPU node, you should set up a toleration or nodeSelector to only deploy this plugin on GPU nodes")
		if sh.FailOnInitError {
			return fmt.Errorf("nvml init failed: %v", errNoNVML)
		}
		f = GPUFile{}
	} else if err != nil {
		return err
	}
	p := &plugin{devices: Devices(f.GPUs, sh.Replicas, sh.DeviceIDStrategy), failRequestsGreaterThanOne: sh.FailRequestsGreaterThanOne}
	if len(p.devices) == 0 {
		log.Printf("No devices found. Waiting indefinitely.")
		<-stop
		return nil
	}
	return serve(p, c.String("dir"), SocketName(sh.Resource), sh.Resource, stop)
}

// SocketName is the plugin's socket for a resource: nvidia-<name>.sock (internal/plugin/server.go).
func SocketName(resource string) string {
	_, name, _ := strings.Cut(resource, "/")
	return "nvidia-" + name + ".sock"
}

// hostPlugin: gpus x replicas devices with UUIDs derived from the node name.
func hostPlugin(node string, gpus, replicas int) (*plugin, string) {
	var list []GPU
	for g := 0; g < gpus; g++ {
		list = append(list, GPU{Index: g, UUID: fmt.Sprintf("GPU-%s-%d", node, g)})
	}
	return &plugin{devices: Devices(list, replicas, "uuid")}, "forge-edge-gpu.sock"
}
