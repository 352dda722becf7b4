// Command coredns is CoreDNS built with the plugins of K3s's Corefile (manifests/coredns.yaml) that work on an
// offline node without API access from the DNS pod: errors, health, ready, hosts (K3s's NodeHosts), cache, loop,
// reload, loadbalance, plus log. Left out: kubernetes (would need the coredns ServiceAccount's API access and
// adds client-go to the build), prometheus, forward (no upstream resolver offline).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The plugins' order in a server block is CoreDNS's (core/dnsserver/zdirectives.go); only those built in remain.
func init() {
	keep := map[string]bool{"errors": true, "health": true, "ready": true, "hosts": true, "cache": true,
		"loop": true, "reload": true, "loadbalance": true, "log": true}
	var d []string
	for _, n := range dnsserver.Directives {
		if keep[n] {
			d = append(d, n)
		}
	}
	dnsserver.Directives = d
}

func main() { coremain.Run() }
