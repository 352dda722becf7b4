// Package templates (import path .../legacytemplates) holds the template data types of the K3s releases that
// bundle containerd 1.7 (github.com/k3s-io/k3s/pkg/agent/templates at release-1.32 57f4a479f): same package and
// type names as there, so template errors read as they do in those releases.
package templates

import (
	config "forge-edge/harness/checker/internal/k3s/legacyconfig"
	"forge-edge/harness/checker/internal/registries"
)

// ContainerdRuntimeConfig is templates.ContainerdRuntimeConfig.
type ContainerdRuntimeConfig struct {
	RuntimeType string
	BinaryName  string
}

// ContainerdConfig is templates.ContainerdConfig of those releases.
type ContainerdConfig struct {
	NodeConfig            *config.Node
	DisableCgroup         bool
	SystemdCgroup         bool
	IsRunningInUserNS     bool
	EnableUnprivileged    bool
	NoDefaultEndpoint     bool
	NonrootDevices        bool
	PrivateRegistryConfig *registries.Registry
	ExtraRuntimes         map[string]ContainerdRuntimeConfig
	Program               string
}
