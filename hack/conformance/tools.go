// Pins the module graph of the Gateway API conformance suite and its echo-basic image
// (sigs.k8s.io/gateway-api/conformance); hack/conformance/build.ts builds both from it.
//go:build tools

package tools

import _ "sigs.k8s.io/gateway-api/conformance/echo-basic"
