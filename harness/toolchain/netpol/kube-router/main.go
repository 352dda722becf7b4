// Command k3s-netpol runs kube-router's network policy controller the way a K3s agent runs it in-process
// (k3s-io/k3s pkg/agent/netpol/netpol.go, Run): the firewall only (no router, no service proxy), IPv4, the cluster's
// service CIDR and NodePort range, the node's name as hostname override, metrics on without an HTTP server, the
// health controller fed by heartbeats, and shared informers for pods, namespaces and NetworkPolicies. It waits, as
// K3s does, until the Node exists without the external cloud provider's uninitialized taint (at most 60 s).
//
// One difference: K3s logs a warning and skips the controller when ipset is unusable; here that is an error, because
// the harness starts this binary only to enforce policies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/metrics"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/cloudnativelabs/kube-router/v2/pkg/utils"
	"github.com/cloudnativelabs/kube-router/v2/pkg/version"
	"github.com/coreos/go-iptables/iptables"
	v1core "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// The taint an external cloud provider removes once it initialized the Node (k8s.io/cloud-provider/api).
const uninitializedTaint = "node.cloudprovider.kubernetes.io/uninitialized"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the controller (K3s: the agent's system:k3s-controller)")
	nodeName := flag.String("node-name", "", "this node's name (K3s: AgentConfig.NodeName)")
	serviceCIDR := flag.String("service-cidr", "10.43.0.0/16", "service cluster IP range (K3s's default)")
	nodePorts := flag.String("service-node-port-range", "30000-32767", "NodePort range (K3s's default)")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *nodeName == "" {
		fmt.Fprintln(os.Stderr, "usage: k3s-netpol --kubeconfig FILE --node-name NAME [--service-cidr CIDR] [--service-node-port-range A-B]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *kubeconfig, *nodeName, *serviceCIDR, *nodePorts); err != nil {
		klog.Errorf("network policy controller: %v", err)
		os.Exit(1)
	}
	<-ctx.Done()
	klog.Info("network policy controller: stopping")
}

func run(ctx context.Context, kubeconfig, nodeName, serviceCIDR, nodePorts string) error {
	set, err := utils.NewIPSet(false)
	if err != nil {
		return fmt.Errorf("ipset unavailable: %w", err)
	}
	if err := set.Save(); err != nil {
		return fmt.Errorf("ipset save failed: %w", err)
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	// kube-router reads the node's addresses from the Node object: wait until it is there and initialized.
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 60*time.Second, true,
		func(ctx context.Context) (bool, error) {
			node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil {
				klog.Errorf("getting Node %s: %v", nodeName, err)
				return false, nil
			}
			for _, t := range node.Spec.Taints {
				if t.Key == uninitializedTaint {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
		return fmt.Errorf("waiting for Node %s: %w", nodeName, err)
	}

	kr := options.NewKubeRouterConfig()
	kr.ClusterIPCIDRs = []string{serviceCIDR}
	kr.EnableIPv4 = true
	kr.EnableIPv6 = false
	kr.NodePortRange = strings.ReplaceAll(nodePorts, "-", ":")
	kr.HostnameOverride = nodeName
	kr.MetricsEnabled = true
	kr.RunFirewall = true
	kr.RunRouter = false
	kr.RunServiceProxy = false

	stopCh := ctx.Done()
	healthCh := make(chan *healthcheck.ControllerHeartbeat)
	var wg sync.WaitGroup // kube-router's controllers require one; nothing waits on it

	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods().Informer()
	nsInformer := factory.Core().V1().Namespaces().Informer()
	npInformer := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(stopCh)
	factory.WaitForCacheSync(stopCh)

	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return fmt.Errorf("iptables handler: %w", err)
	}
	ips, err := utils.NewIPSet(false)
	if err != nil {
		return fmt.Errorf("ipset handler: %w", err)
	}
	iptHandlers := map[v1core.IPFamily]utils.IPTablesHandler{v1core.IPv4Protocol: ipt}
	ipsetHandlers := map[v1core.IPFamily]utils.IPSetHandler{v1core.IPv4Protocol: ips}

	hc, err := healthcheck.NewHealthController(kr)
	if err != nil {
		return err
	}
	mc, err := metrics.NewMetricsController(kr)
	if err != nil {
		return err
	}
	hc.SetAlive()
	wg.Add(2)
	go hc.RunCheck(healthCh, stopCh, &wg)
	go metricsHeartbeat(mc, healthCh, stopCh, &wg)

	npc, err := netpol.NewNetworkPolicyController(client, kr, podInformer, npInformer, nsInformer, &sync.Mutex{},
		iptHandlers, ipsetHandlers)
	if err != nil {
		return errors.Join(errors.New("unable to initialize network policy controller"), err)
	}
	if _, err := podInformer.AddEventHandler(npc.PodEventHandler); err != nil {
		return err
	}
	if _, err := nsInformer.AddEventHandler(npc.NamespaceEventHandler); err != nil {
		return err
	}
	if _, err := npInformer.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
		return err
	}
	wg.Add(1)
	klog.Infof("Starting network policy controller version %s, %s (forge-edge k3s-netpol)", version.Version, runtime.Version())
	go npc.Run(healthCh, stopCh, &wg)
	return nil
}

// metricsHeartbeat keeps the metrics controller's heartbeat alive without its HTTP server, as K3s does.
func metricsHeartbeat(_ *metrics.Controller, healthCh chan<- *healthcheck.ControllerHeartbeat, stopCh <-chan struct{},
	wg *sync.WaitGroup) {
	defer wg.Done()
	metrics.BuildInfo.WithLabelValues(runtime.Version(), version.Version).Set(1)
	metrics.DefaultRegisterer.MustRegister(metrics.BuildInfo)
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		healthcheck.SendHeartBeat(healthCh, "MC")
		select {
		case <-stopCh:
			return
		case <-t.C:
		}
	}
}
