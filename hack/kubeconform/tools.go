// Pins the module graph kubeconform is built from: hack/go-tool.sh kubeconform github.com/yannh/kubeconform/cmd/kubeconform hack/kubeconform
// (test/integration/chart.test.ts validates the rendered chart with it, against offline schemas).
//go:build tools

package tools

import _ "github.com/yannh/kubeconform/cmd/kubeconform"
