// Package config (import path .../legacyconfig) reproduces github.com/k3s-io/k3s/pkg/daemons/config's Node of
// the K3s releases that bundle containerd 1.7 (release-1.32 57f4a479f = v1.32.1; v1.31.5 is of the same
// generation): same package name as in K3s, so template errors read as they do there.
package config

import (
	"net"

	config136 "forge-edge/harness/checker/internal/k3s/config"
)

// Node is config.Node of the containerd 1.7 releases (v1.31.5): it still had NoFlannel and the
// flat Flannel* fields, which their base template reads (.NodeConfig.NoFlannel).
type Node struct {
	Docker                   bool
	ContainerRuntimeEndpoint string
	ImageServiceEndpoint     string
	NoFlannel                bool
	SELinux                  bool
	EnablePProf              bool
	SupervisorMetrics        bool
	EmbeddedRegistry         bool
	FlannelBackend           string
	FlannelConfFile          string
	FlannelConfOverride      bool
	FlannelIface             *net.Interface
	FlannelIPv6Masq          bool
	FlannelExternalIP        bool
	EgressSelectorMode       string
	Containerd               Containerd
	CRIDockerd               config136.CRIDockerd
	Images                   string
	AgentConfig              Agent
	Token                    string
	ServerHTTPSPort          int
	SupervisorPort           int
	DefaultRuntime           string
}

// Agent is config136.Agent of the containerd 1.7 releases: v1.36's fields plus FlannelCniConfFile.
type Agent struct {
	config136.Agent
	FlannelCniConfFile string
}

// Containerd is config.Containerd of the containerd 1.7 releases (no ConfigVersion).
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
}
