#!/usr/bin/env bash
# Runs Weft's integration suites against a kind cluster instead of the local control plane.
# Needs docker and kind on the machine (not available in Weft's CI, which uses the local
# control plane built from source). Usage: bash test/kind/run.sh [cluster-name]
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-weft}"
command -v kind >/dev/null || { echo "kind is not installed: see https://kind.sigs.k8s.io" >&2; exit 1; }
if ! kind get clusters | grep -qx "$name"; then
  echo "[kind] creating cluster $name (Kubernetes >= 1.29 for native sidecars)" >&2
  kind create cluster --name "$name" --config test/kind/cluster.yaml
fi
kubeconfig=$(mktemp)
kind get kubeconfig --name "$name" > "$kubeconfig"
bash hack/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH" WEFT_TEST_KUBECONFIG="$kubeconfig"
node --test --test-reporter=spec --test-concurrency=1 test/integration/crds.test.ts
