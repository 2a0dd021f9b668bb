// Pins the module graph h2spec is built from: hack/go-tool.sh h2spec github.com/summerwind/h2spec/cmd/h2spec hack/h2spec
// (test/netns/h2spec.test.ts runs it against the proxy's HTTP/2 listeners).
//go:build tools

package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
