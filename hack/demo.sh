#!/usr/bin/env bash
# Quick start: brings Weft up with its demo, installed by Helm from the locally built image.
# Uses the cluster in $KUBECONFIG (or --kubeconfig) when given, otherwise the embedded real
# one-node cluster (needs root). Installs what is missing first. `--progressive` then runs a
# built-in canary progression of reviews-v2 (docs/progressive-delivery.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
exec node_modules/.bin/node hack/demo.ts "$@"
