// Command netprobe is the network policy drill's client inside a pod. It runs its probes every -interval for
// -rounds rounds; each result is one line on stdout, "<unix ms of the round> <result>", so a test can keep only the
// rounds after a point in time (e.g. after the policy controller synced). Exit status 0 whatever the results.
//
//	dns:SERVER:PORT:NAME   an A query over UDP, 2 s timeout: "dns SERVER:PORT NAME ok A1,A2" or "... fail REASON"
//	tcp:HOST:PORT          a TCP connect, 2 s timeout:         "tcp HOST:PORT ok" or "tcp HOST:PORT fail REASON"
package main

import (
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const timeout = 2 * time.Second

func main() {
	rounds := flag.Int("rounds", 1, "how many rounds of probes")
	interval := flag.Duration("interval", time.Second, "pause between rounds")
	flag.Parse()
	for r := 0; r < *rounds; r++ {
		if r > 0 {
			time.Sleep(*interval)
		}
		ts := time.Now().UnixMilli()
		for _, arg := range flag.Args() {
			fmt.Printf("%d %s\n", ts, probe(arg))
		}
	}
}

func probe(arg string) string {
	kind, rest, _ := strings.Cut(arg, ":")
	switch kind {
	case "dns":
		parts := strings.SplitN(rest, ":", 3)
		if len(parts) != 3 {
			return fmt.Sprintf("dns %s fail bad-argument", rest)
		}
		return queryA(net.JoinHostPort(parts[0], parts[1]), parts[2])
	case "tcp":
		c, err := net.DialTimeout("tcp", rest, timeout)
		if err != nil {
			return fmt.Sprintf("tcp %s fail %v", rest, err)
		}
		_ = c.Close()
		return fmt.Sprintf("tcp %s ok", rest)
	}
	return fmt.Sprintf("%s fail unknown-probe", arg)
}

func queryA(server, name string) string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return fmt.Sprintf("dns %s %s fail %v", server, name, err)
	}
	var as []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			as = append(as, a.A.String())
		}
	}
	if r.Rcode != dns.RcodeSuccess || len(as) == 0 {
		return fmt.Sprintf("dns %s %s fail rcode=%s answers=%d", server, name, dns.RcodeToString[r.Rcode], len(as))
	}
	return fmt.Sprintf("dns %s %s ok %s", server, name, strings.Join(as, ","))
}
