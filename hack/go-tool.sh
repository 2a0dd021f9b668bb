#!/usr/bin/env bash
# Builds a Go command-line tool once into Weft's cache (outside the repository) and prints
# its path: hack/go-tool.sh helm helm.sh/helm/v3/cmd/helm@v3.19.5
set -euo pipefail
name="$1" pkg="$2"
CACHE="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
dir="$CACHE/tools/${pkg//[\/@]/_}"
if [[ ! -x "$dir/$name" ]]; then
  printf '[go-tool] building %s from %s (once; cached in %s)\n' "$name" "$pkg" "$dir" >&2
  mkdir -p "$dir"
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$pkg" >&2
fi
echo "$dir/$name"
