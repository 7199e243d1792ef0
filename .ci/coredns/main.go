// Command coredns is CoreDNS v1.15.0 with only the plugins peerbridge's
// tests and benchmark use. The stock build compiles every plugin (the
// Kubernetes one alone is most of a cold CI run); this one builds in a
// fraction of that from the same module, verified against the same go.sum.
//
// The plugins and their order follow CoreDNS's plugin.cfg
// (core/dnsserver/zdirectives.go): a plugin sees the ones below it, so the
// order is the stock one with the others left out.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/secondary"
	_ "github.com/coredns/coredns/plugin/transfer"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// directives is plugin.cfg's order, restricted to the plugins imported
// above and to those they import (metadata, debug, prometheus and dnstap
// come with the server and forward, so they cost nothing more).
var directives = []string{
	"metadata",
	"bind",
	"debug",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"dnstap",
	"cache",
	"transfer",
	"file",
	"secondary",
	"forward",
	"whoami",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintln(os.Stderr, "coredns:", err)
		os.Exit(2)
	}
	coremain.Run()
}
