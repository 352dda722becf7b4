// Command pulumi-tfgen-random generates the provider schema (used at build time only:
// `pulumi-tfgen-random schema --out DIR` writes schema.json and bridge-metadata.json).
package main

import (
	"forge-edge/toolchain/random/provider"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"
)

func main() {
	tfgen.Main("random", provider.Provider(nil))
}
