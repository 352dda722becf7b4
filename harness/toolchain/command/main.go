// pulumi-resource-command: forge-edge's STAND-IN for pulumi-command v1.2.1 (a test double, not the real
// provider). The real provider's Go modules are refused by the module proxy here, so this implements the
// subset forge-edge uses — command:remote:Command and command:remote:CopyToRemote over real SSH — with the
// same inputs, outputs and semantics. See harness/COMMAND-PROVIDER.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

const (
	providerName    = "command"
	providerVersion = "1.2.1"
	standInNotice   = "pulumi-resource-command 1.2.1: forge-edge's stand-in for pulumi-command v1.2.1 " +
		"(test double implementing command:remote:Command and command:remote:CopyToRemote over SSH; " +
		"not the real provider — see harness/COMMAND-PROVIDER.md)"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "-version" || os.Args[1] == "version") {
		fmt.Println(standInNotice)
		return
	}
	fmt.Fprintln(os.Stderr, standInNotice)
	err := provider.Main(providerName, func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return newProvider(func(ctx context.Context, sev diag.Severity, urn resource.URN, msg string) {
			_ = host.Log(ctx, sev, urn, msg)
		}), nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}
