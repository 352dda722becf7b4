package main

// The kubelet side: a device-plugin gRPC server (k8s.io/kubelet pkg/apis/deviceplugin/v1beta1) registered with the
// kubelet's Registration service, re-registered whenever the kubelet recreates its socket (kubelet restart).

import (
	"context"
	"errors"
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
	devices                    []*dp.Device
	failRequestsGreaterThanOne bool
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

// Allocate answers as the plugin's envvar device-list strategy does: NVIDIA_VISIBLE_DEVICES with the GPUs behind
// the requested replicas. A time-sliced request for more than one replica fails when failRequestsGreaterThanOne
// (the plugin's rm.ValidateRequest).
func (p *plugin) Allocate(_ context.Context, req *dp.AllocateRequest) (*dp.AllocateResponse, error) {
	resp := &dp.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		if err := p.validate(c.DevicesIds); err != nil {
			return nil, err
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &dp.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(VisibleDevices(c.DevicesIds), ",")},
		})
		log.Printf("allocate %v", c.DevicesIds)
	}
	return resp, nil
}

var errInvalidRequest = errors.New("invalid request")

func (p *plugin) validate(ids []string) error {
	known := map[string]bool{}
	for _, d := range p.devices {
		known[d.ID] = true
	}
	replicas := false
	for _, id := range ids {
		if !known[id] {
			return fmt.Errorf("%w: unknown device: %s", errInvalidRequest, id)
		}
		replicas = replicas || strings.Contains(id, "::")
	}
	if replicas && len(ids) > 1 && p.failRequestsGreaterThanOne {
		return fmt.Errorf("%w: maximum request size for shared resources is 1; found %d", errInvalidRequest, len(ids))
	}
	return nil
}

// VisibleDevices are the distinct GPU IDs behind device IDs (<id>::<replica>), in request order.
func VisibleDevices(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		g, _, _ := strings.Cut(id, "::")
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

func (p *plugin) PreStartContainer(context.Context, *dp.PreStartContainerRequest) (*dp.PreStartContainerResponse, error) {
	return &dp.PreStartContainerResponse{}, nil
}

func register(kubeletSock, endpoint, resource string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+kubeletSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = dp.NewRegistrationClient(conn).Register(ctx, &dp.RegisterRequest{
		Version: dp.Version, Endpoint: endpoint, ResourceName: resource, Options: &dp.DevicePluginOptions{},
	})
	return err
}

// serve listens on dir/endpoint and keeps the plugin registered with dir/kubelet.sock until stop is closed.
func serve(p *plugin, dir, endpoint, resource string, stop <-chan struct{}) error {
	sock := filepath.Join(dir, endpoint)
	_ = os.Remove(sock)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	dp.RegisterDevicePluginServer(srv, p)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		_ = os.Remove(sock)
	}()
	kubeletSock := filepath.Join(dir, "kubelet.sock")
	var registeredAt time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		st, err := os.Stat(kubeletSock)
		if err == nil && st.ModTime().After(registeredAt) {
			if err := register(kubeletSock, endpoint, resource); err != nil {
				log.Printf("register: %v (retrying)", err)
			} else {
				registeredAt = st.ModTime()
				log.Printf("registered %s with %d devices", resource, len(p.devices))
			}
		}
		select {
		case <-stop:
			return nil
		case err := <-served:
			return err
		case <-tick.C:
		}
	}
}
