// Package config reproduces github.com/k3s-io/k3s/pkg/daemons/config's Node (v1.36: upstream main 469d009fb,
// pkg/daemons/config/types.go) as far as containerd templates can reach it: same package name, type names and
// field names (types outside K3s are stand-ins), so a template that works on K3s works here, and one that does
// not fails with K3s's error text.
package config

import (
	"net"

	"forge-edge/harness/checker/internal/registries"
)

// Node is config.Node.
type Node struct {
	Docker                   bool
	ContainerRuntimeEndpoint string
	ImageServiceEndpoint     string
	SELinux                  bool
	EnablePProf              bool
	SupervisorMetrics        bool
	EmbeddedRegistry         bool
	EgressSelectorMode       string
	Containerd               Containerd
	CRIDockerd               CRIDockerd
	Flannel                  Flannel
	Images                   string
	AgentConfig              Agent
	Token                    string
	ServerHTTPSPort          int
	SupervisorPort           int
	DefaultRuntime           string
}

// Containerd is config.Containerd.
type Containerd struct {
	Address        string
	Log            string
	Root           string
	State          string
	Config         string
	Opt            string
	Template       string
	BlockIOConfig  string
	RDTConfig      string
	Registry       string
	NoDefault      bool
	NonrootDevices bool
	SELinux        bool
	Debug          bool
	ConfigVersion  int
}

// CRIDockerd is config.CRIDockerd.
type CRIDockerd struct {
	Address string
	Root    string
	Debug   bool
}

// Flannel is config.Flannel.
type Flannel struct {
	Backend      string
	CNIConfFile  string
	ConfFile     string
	ConfOverride bool
	Iface        *net.Interface
	IPv6Masq     bool
	ExternalIP   bool
}

// Agent is config.Agent.
type Agent struct {
	PodManifests            string
	NodeName                string
	NodeConfigPath          string
	ClientKubeletCert       string
	ClientKubeletKey        string
	ServingKubeletCert      string
	ServingKubeletKey       string
	ServiceCIDR             *net.IPNet
	ServiceCIDRs            []*net.IPNet
	ServiceNodePortRange    PortRange
	ClusterCIDR             *net.IPNet
	ClusterCIDRs            []*net.IPNet
	ClusterDNS              net.IP
	ClusterDNSs             []net.IP
	ClusterDomain           string
	ResolvConf              string
	RootDir                 string
	KubeletConfigDir        string
	KubeConfigKubelet       string
	KubeConfigKubeProxy     string
	KubeConfigK3sController string
	NodeIP                  string
	NodeIPs                 []net.IP
	NodeExternalIP          string
	NodeExternalIPs         []net.IP
	NodeInternalDNSs        []string
	NodeExternalDNSs        []string
	RuntimeSocket           string
	ImageServiceSocket      string
	ListenAddress           string
	ClientCA                string
	CNIBinDir               string
	CNIConfDir              string
	ExtraKubeletArgs        []string
	ExtraKubeProxyArgs      []string
	PauseImage              string
	Snapshotter             string
	Systemd                 bool
	CNIPlugin               bool
	NodeTaints              []string
	NodeLabels              []string
	ImageCredProvBinDir     string
	ImageCredProvConfig     string
	IPSECPSK                string
	Registry                *registries.Registry
	SystemDefaultRegistry   string
	AirgapExtraRegistry     []string
	DisableCCM              bool
	DisableNPC              bool
	MinTLSVersion           string
	CipherSuites            []string
	Rootless                bool
	ProtectKernelDefaults   bool
	DisableServiceLB        bool
	EnableIPv4              bool
	EnableIPv6              bool
	VLevel                  int
	VModule                 string
	LogFile                 string
	AlsoLogToStderr         bool
}

// PortRange is k8s.io/apimachinery/pkg/util/net.PortRange.
type PortRange struct {
	Base int
	Size int
}
