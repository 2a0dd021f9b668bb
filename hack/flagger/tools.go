// Pins the module graph Flagger is built from: hack/go-tool.sh flagger github.com/fluxcd/flagger/cmd/flagger hack/flagger
// (test/e2e/flagger.test.ts runs it as a host process against the real node).
//go:build tools

package tools

import _ "github.com/fluxcd/flagger/cmd/flagger"
