#!/usr/bin/env bash
# Builds a Go command-line tool once into Weft's cache (outside the repository) and prints
# its path: hack/go-tool.sh helm helm.sh/helm/v3/cmd/helm@v3.19.5
# With a third argument, a directory holding go.mod and go.sum (and a tools.go importing the
# package), the package is built from that pinned module graph, so every machine builds the
# same dependencies: hack/go-tool.sh h2spec github.com/summerwind/h2spec/cmd/h2spec hack/h2spec
# A name ending in .test compiles the tests of a package of that directory's own module into one
# binary (go test -c; its *_test.go files count in the cache key too):
# hack/go-tool.sh conformance.test weft.dev/conformance hack/conformance
# A main.go there is a program of that module, built the same way (its source counts in the key):
# hack/go-tool.sh kstatus weft.dev/kstatus hack/kstatus (and hack/otelcol)
# A file `tags` in that directory holds build tags (comma-separated), part of the cache key too.
set -euo pipefail
name="$1" pkg="$2" pins="${3:-}"
CACHE="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
dir="$CACHE/tools/${pkg//[\/@]/_}"
if [[ -n "$pins" ]]; then
  pins="$(cd "$pins" && pwd)"
  tests=()
  [[ "$name" == *.test ]] && tests=("$pins"/*_test.go)
  # A program of the directory's own module (hack/kstatus): its source counts in the cache key.
  [[ -f "$pins/main.go" ]] && tests+=("$pins/main.go")
  tags="$(cat "$pins/tags" 2>/dev/null || true)"
  dir="$dir-$(cat "$pins/go.mod" "$pins/go.sum" "${tests[@]}" | sha256sum | cut -c1-12)"
  [[ -z "$tags" ]] || dir="$dir-$(sha256sum <<<"$tags" | cut -c1-8)"
fi
if [[ ! -x "$dir/$name" ]]; then
  printf '[go-tool] building %s from %s (once; cached in %s)\n' "$name" "$pkg" "$dir" >&2
  mkdir -p "$dir"
  if [[ "$name" == *.test ]]; then
    (cd "$pins" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go test -c -tags "$tags" -trimpath -ldflags "-s -w" -o "$dir/$name" "$pkg") >&2
  elif [[ -n "$pins" ]]; then
    (cd "$pins" && GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-mod=readonly go install -tags "$tags" -trimpath -ldflags "-s -w" "$pkg") >&2
  else
    GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$pkg" >&2
  fi
fi
echo "$dir/$name"
