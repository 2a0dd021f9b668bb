// Pins the module graph Prometheus is built from, with only the Kubernetes service discovery
// (build tags in ./tags): hack/go-tool.sh prometheus github.com/prometheus/prometheus/cmd/prometheus hack/prometheus
// (Debian's prometheus is built without it). hack/flagger/flagger.ts runs it for the Flagger e2e test.
//go:build tools

package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
