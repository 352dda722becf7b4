// Command pulumi-resource-kubernetes: forge-edge's own main for the Pulumi Kubernetes provider.
//
// Upstream's cmd/pulumi-resource-kubernetes embeds schema-embed.json and
// terraform-mapping-embed.json, which are generated (and gitignored) upstream, so that main
// package cannot be built from the module zip. build-toolchain.sh copies the committed
// schema.json / terraform-mapping.json from the module cache into a build copy of this
// directory and runs gen.go to produce the two *-embed.json files before `go build`.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
