#!/usr/bin/env bash
# Builds fortio (the load generator of bench/proxy.ts, with a fixed-rate mode) from its Go
# module into a cache outside the repository, and prints the binary's path. Reused when present.
set -euo pipefail
# v1.66.5: the last release whose dependencies all come from the Go module proxy (later ones need grol.io).
VERSION="${WEFT_FORTIO_VERSION:-v1.66.5}"
CACHE="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
BIN="$CACHE/bin/fortio-$VERSION"
if [[ ! -x "$BIN/fortio" ]]; then
  command -v go >/dev/null || { echo "[fortio] error: Go is not installed; install Go 1.22 or newer" >&2; exit 1; }
  echo "[fortio] building fortio.org/fortio@$VERSION into $BIN" >&2
  mkdir -p "$BIN"
  GOBIN="$BIN" go install "fortio.org/fortio@$VERSION" >&2
fi
echo "$BIN/fortio"
