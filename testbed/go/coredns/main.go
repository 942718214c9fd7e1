// CoreDNS with only the plugins the test bed's real node uses: Service and pod names from the API server
// (kubernetes), an immediate NXDOMAIN for everything else (template), and bind, errors, cache. Building
// upstream's main instead compiles every plugin (cloud DNS providers included) for nothing.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/template"
)

// The order plugins run in, as upstream's plugin.cfg orders them.
var directives = []string{"bind", "errors", "cache", "template", "kubernetes"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
