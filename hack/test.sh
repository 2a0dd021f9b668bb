#!/usr/bin/env bash
# Runs Weft's whole test suite: static checks, unit tests, integration tests against a real
# kube-apiserver, data-plane tests in network namespaces, and the end-to-end suite on the real
# one-node cluster with Weft installed by Helm from its image (test/e2e; root). The files that
# start a real cluster take a lock, so they run one after the other. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"

echo "== static checks: generated CRDs up to date, no import cycle, types, lint"
node hack/gen-crds.ts --check
node hack/check-cycles.ts
tsc -p tsconfig.json
biome check .

echo "== tests (unit, integration on a real control plane, network namespaces, e2e on the real node)"
files=()
while IFS= read -r f; do files+=("$f"); done < <(git ls-files --cached --others --exclude-standard '*.test.ts' | sort)
if [[ $(id -u) -ne 0 ]]; then
  echo "note: not root, so the network-namespace and real-node tests (test/netns, test/node, test/e2e) are left out" >&2
  filtered=(); for f in "${files[@]}"; do [[ "$f" == test/netns/* || "$f" == test/node/* || "$f" == test/e2e/* ]] || filtered+=("$f"); done; files=("${filtered[@]}")
fi
exec node --test --test-reporter=spec --test-concurrency=2 "${files[@]}"
