// Package shim exposes the Terraform random provider (Plugin Framework) to the bridge.
package shim

import (
	tfpf "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/terraform-providers/terraform-provider-random/internal/provider"
)

// NewProvider returns the Terraform Plugin Framework random provider.
func NewProvider() tfpf.Provider { return provider.New() }
