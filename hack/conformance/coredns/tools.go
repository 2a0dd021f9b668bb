// Pins the module graph of the DNS server the Gateway API conformance suite's gateway base
// manifests run (registry.k8s.io/coredns/coredns, used by its UDPRoute tests; its pod must be
// ready for any gateway profile): hack/conformance/build.ts builds it from these pins.
//go:build tools

package tools

import (
	_ "github.com/coredns/coredns"
)
