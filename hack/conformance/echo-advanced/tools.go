// Pins the module graph of the echo server and client the Gateway API mesh conformance
// tests run (upstream's echo-advanced image is built from Istio's echo app):
// hack/conformance/build.ts builds both from it.
//go:build tools

package tools

import (
	_ "istio.io/istio/pkg/test/echo/cmd/client"
	_ "istio.io/istio/pkg/test/echo/cmd/server"
)
