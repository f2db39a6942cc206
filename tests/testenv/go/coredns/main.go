// CoreDNS for the real node of the Sentinel test environment (tests/testenv/node.py), with only the
// plugins it uses: a small main package instead of CoreDNS's own, which compiles in every plugin.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

// The order in which the plugins handle a query: the order of CoreDNS's plugin.cfg.
var directives = []string{"bind", "errors", "cache", "kubernetes", "forward"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
