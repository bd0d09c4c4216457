// CoreDNS with the plugins the test node's Corefile names (e2e/src/node/dns.rs) and no others,
// as CoreDNS's own plugin.cfg builds a custom server: the full build also compiles the cloud
// SDKs of route53, azure and clouddns, etcd's client, dnstap, tracing and QUIC.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
