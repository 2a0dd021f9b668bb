#!/usr/bin/env bash
# Runs Weft's whole test suite: static checks, unit tests, integration tests against a real
# kube-apiserver, data-plane tests in network namespaces, and the end-to-end suite on the real
# one-node cluster with Weft installed by Helm from its image (test/e2e; root). The files that
# start a real cluster take a lock, so they run one after the other. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"

static_checks() {
  echo "== static checks: generated CRDs up to date, no import cycle, types, lint"
  node hack/gen-crds.ts --check
  node hack/check-cycles.ts
  tsc -p tsconfig.json
  biome check .
}

echo "== tests (unit, integration on a real control plane, network namespaces, e2e on the real node)"
files=()
while IFS= read -r f; do files+=("$f"); done < <(git ls-files --cached --others --exclude-standard '*.test.ts' | sort)
if [[ $(id -u) -ne 0 ]]; then
  echo "note: not root, so the network-namespace and real-node tests (test/netns, test/node, test/e2e) are left out" >&2
  filtered=(); for f in "${files[@]}"; do [[ "$f" == test/netns/* || "$f" == test/node/* || "$f" == test/e2e/* ]] || filtered+=("$f"); done; files=("${filtered[@]}")
fi
# The files that start a real cluster (test/node, test/e2e) hold one lock per host, so they run
# one after the other anyway: they get a runner of their own, started first (before the static
# checks: it is the longest), beside a runner of two for everything else. The longer of the two
# is the run's length. (In one shared runner the e2e files came last, and a file waiting for the
# lock kept one of its two places.)
real=(); rest=()
for f in "${files[@]}"; do
  if [[ "$f" == test/node/* || "$f" == test/e2e/* ]]; then real+=("$f"); else rest+=("$f"); fi
done
if ((${#real[@]} == 0)); then
  static_checks
  exec node --test --test-reporter=spec --test-concurrency=2 "${rest[@]}"
fi
echo "== ${#real[@]} real-cluster files in one runner, ${#rest[@]} other files in another, side by side"
start=$SECONDS
node --test --test-reporter=spec --test-concurrency=1 "${real[@]}" &
real_pid=$!
trap 'kill "$real_pid" 2>/dev/null || true' EXIT
static_checks
rest_rc=0
node --test --test-reporter=spec --test-concurrency=2 "${rest[@]}" || rest_rc=$?
echo "== the other files ended (exit $rest_rc) after $((SECONDS - start)) s; waiting for the real-cluster files"
real_rc=0
wait "$real_pid" || real_rc=$?
trap - EXIT
echo "== the real-cluster files ended (exit $real_rc) after $((SECONDS - start)) s"
((rest_rc == 0 && real_rc == 0))
