// Command gpu-device-plugin is the simulated site's stand-in for the NVIDIA device plugin: it registers a
// resource (nvidia.com/gpu) with the kubelet through the device-plugin gRPC API (k8s.io/kubelet deviceplugin
// v1beta1) and advertises -count devices, e.g. replicas x GPUs of a time-slicing config, named like the
// NVIDIA plugin's time-sliced replicas (<gpu uuid>::<n>). Allocate answers with NVIDIA_VISIBLE_DEVICES, the
// variable the NVIDIA runtime reads. It re-registers when the kubelet's socket is recreated (kubelet restart).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	dp "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	dp.UnimplementedDevicePluginServer
	devices []*dp.Device
}

func (p *plugin) GetDevicePluginOptions(context.Context, *dp.Empty) (*dp.DevicePluginOptions, error) {
	return &dp.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *dp.Empty, s grpc.ServerStreamingServer[dp.ListAndWatchResponse]) error {
	if err := s.Send(&dp.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *dp.AllocateRequest) (*dp.AllocateResponse, error) {
	resp := &dp.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		gpus := map[string]bool{}
		for _, id := range c.DevicesIds {
			gpus[strings.SplitN(id, "::", 2)[0]] = true
		}
		var ids []string
		for g := range gpus {
			ids = append(ids, g)
		}
		log.Printf("allocate %v", c.DevicesIds)
		resp.ContainerResponses = append(resp.ContainerResponses, &dp.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(ids, ",")},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *dp.PreStartContainerRequest) (*dp.PreStartContainerResponse, error) {
	return &dp.PreStartContainerResponse{}, nil
}

func register(dir, endpoint, resource string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = dp.NewRegistrationClient(conn).Register(ctx, &dp.RegisterRequest{
		Version: dp.Version, Endpoint: endpoint, ResourceName: resource, Options: &dp.DevicePluginOptions{},
	})
	return err
}

func main() {
	dir := flag.String("dir", dp.DevicePluginPath, "the kubelet's device-plugin directory")
	resource := flag.String("resource", "nvidia.com/gpu", "resource name")
	gpus := flag.Int("gpus", 1, "physical GPUs")
	replicas := flag.Int("replicas", 1, "time-slicing replicas per GPU")
	node := flag.String("node", "node", "node name (part of the simulated GPU UUIDs)")
	flag.Parse()

	p := &plugin{}
	for g := 0; g < *gpus; g++ {
		for r := 0; r < *replicas; r++ {
			id := fmt.Sprintf("GPU-%s-%d", *node, g)
			if *replicas > 1 {
				id = fmt.Sprintf("%s::%d", id, r)
			}
			p.devices = append(p.devices, &dp.Device{ID: id, Health: dp.Healthy})
		}
	}
	endpoint := "forge-edge-gpu.sock"
	sock := filepath.Join(*dir, endpoint)
	_ = os.Remove(sock)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	dp.RegisterDevicePluginServer(srv, p)
	go func() { log.Fatal(srv.Serve(lis)) }()

	kubeletSock := filepath.Join(*dir, "kubelet.sock")
	var registeredAt time.Time
	for {
		st, err := os.Stat(kubeletSock)
		if err == nil && st.ModTime().After(registeredAt) {
			if err := register(*dir, endpoint, *resource); err != nil {
				log.Printf("register: %v (retrying)", err)
			} else {
				registeredAt = st.ModTime()
				log.Printf("registered %s with %d devices", *resource, len(p.devices))
			}
		}
		time.Sleep(time.Second)
	}
}
