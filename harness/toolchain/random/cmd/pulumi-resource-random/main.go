// Command pulumi-resource-random serves forge-edge's bridged random provider. schema-embed.json
// and bridge-metadata.json are produced at build time by build-toolchain.sh (tfgen + gen.go).
package main

import (
	"context"
	_ "embed"

	"forge-edge/toolchain/random/provider"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed bridge-metadata.json
var bridgeMetadata []byte

func main() {
	meta := tfbridge.ProviderMetadata{PackageSchema: pulumiSchema, BridgeMetadata: bridgeMetadata}
	tfbridge.Main(context.Background(), "random", provider.Provider(bridgeMetadata), meta)
}
