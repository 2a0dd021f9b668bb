// The upstream Gateway API conformance suite as one test binary (go test -c): the suite's
// own entry point, configured by its own flags (-conformance-profiles, -supported-features,
// -namespace-labels, -report-output, …). hack/conformance/run.ts builds and runs it.
package conformance

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
