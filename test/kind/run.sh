#!/usr/bin/env bash
# Runs Weft's end-to-end suite (test/e2e/mesh.test.ts, the same file hack/test.sh runs on the
# real node) and the CRD suite against a kind cluster: builds the images (npm run image), loads
# them into the kind node (`kind load image-archive`) and lets the suite `helm install` Weft
# there. Needs docker and kind (not available in Weft's CI, which uses the real node built
# from source). Usage: bash test/kind/run.sh [cluster-name]
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-weft}"
command -v kind >/dev/null || { echo "kind is not installed: see https://kind.sigs.k8s.io" >&2; exit 1; }
if ! kind get clusters | grep -qx "$name"; then
  echo "[kind] creating cluster $name (Kubernetes >= 1.29 for native sidecars)" >&2
  kind create cluster --name "$name" --config test/kind/cluster.yaml
fi
kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
kind get kubeconfig --name "$name" > "$kubeconfig"
bash hack/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH" WEFT_TEST_KUBECONFIG="$kubeconfig"
echo "[kind] building the images and loading them into the kind node" >&2
node hack/image/build.ts weft demo
for image in weft demo; do kind load image-archive "dist/images/$image.oci.tar" --name "$name"; done
node --test --test-reporter=spec --test-concurrency=1 test/integration/crds.test.ts test/e2e/mesh.test.ts
