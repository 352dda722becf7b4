// Package provider holds forge-edge's bridge mapping for the Terraform random provider.
//
// The pulumi-random provider module is not served by the Go module proxy here, so forge-edge
// builds an equivalent bridged provider from the served Terraform provider and bridge modules.
// Tokens follow the @pulumi/random SDK: every random_<name> resource becomes
// random:index/random<Name>:Random<Name> (package "random", single module "index").
package provider

import (
	"context"
	"errors"

	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/terraform-providers/terraform-provider-random/shim"
)

// Version is stamped with -ldflags "-X forge-edge/toolchain/random/provider.Version=...".
var Version = "0.0.0-dev"

// Provider returns the bridge ProviderInfo. metadata is the bridge-metadata.json produced by tfgen
// (nil while tfgen itself runs).
func Provider(metadata []byte) tfbridge.ProviderInfo {
	info := tfbridge.ProviderInfo{
		P:            pf.ShimProvider(shim.NewProvider()),
		Name:         "random",
		Description:  "A Pulumi package to safely use randomness in Pulumi programs.",
		Keywords:     []string{"pulumi", "random"},
		License:      "Apache-2.0",
		Homepage:     "https://pulumi.io",
		Repository:   "https://github.com/pulumi/pulumi-random",
		Version:      Version,
		MetadataInfo: tfbridge.NewProviderMetadata(metadata),
		Resources: map[string]*tfbridge.ResourceInfo{
			// random_string has a v0 -> v1 state upgrade with an unchanged shape.
			"random_string": {
				PreStateUpgradeHook: func(args tfbridge.PreStateUpgradeHookArgs) (int64, resource.PropertyMap, error) {
					if args.PriorStateSchemaVersion == 0 {
						return 1, args.PriorState, nil
					}
					return args.PriorStateSchemaVersion, args.PriorState, nil
				},
			},
			// random_bytes has no id attribute; use its base64 value.
			"random_bytes": {ComputeID: bytesID},
		},
		JavaScript:                  &tfbridge.JavaScriptInfo{RespectSchemaVersion: true},
		EnableAccurateBridgePreview: true,
	}
	info.MustComputeTokens(tokens.SingleModule("random_", "index", func(module, name string) (string, error) {
		return tokens.MakeStandard("random")(module, "Random"+name)
	}))
	info.MustApplyAutoAliases()
	return info
}

func bytesID(_ context.Context, state resource.PropertyMap) (resource.ID, error) {
	b, ok := state["base64"]
	if !ok {
		return "", errors.New("random_bytes: no base64 property in state")
	}
	if b.IsSecret() {
		b = b.SecretValue().Element
	}
	if !b.IsString() {
		return "", errors.New("random_bytes: base64 property is not a string")
	}
	return resource.ID(b.StringValue()), nil
}
