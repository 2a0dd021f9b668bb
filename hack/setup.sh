#!/usr/bin/env bash
# Installs everything Weft's demo and tests need on a fresh machine, and reuses what is
# there: Debian packages (hack/apt-packages.txt), Node.js 24 and the npm dependencies
# (node_modules, from the lock file), and the control plane built with Go (cached outside
# the repository). Safe to run again; prints what it does.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
say() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages (iptables, iproute2, nginx, …) for the network-namespace tests, and
#    containerd, runc, the CNI plugins, … for the real node.
missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < hack/apt-packages.txt
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# 2. npm dependencies, including Node.js 24 itself (the `node` package): the system Node may be 20.
command -v npm >/dev/null || { say "error: npm is not installed; install Node.js (any version >= 18) with npm first"; exit 1; }
stamp=node_modules/.weft-lock-hash
want=$(sha256sum package-lock.json | cut -c1-64)
# A clean clone takes node_modules from the cache of its lock file: hard links to the tree an
# earlier `npm ci` made (5 s, where `npm ci` takes 45-60 s with npm's own cache warm). npm ci
# removes node_modules before it writes, so a later install never changes the cached files.
snap="$CACHE/node_modules/$want"
if [[ ! -e node_modules && -f "$snap/.weft-lock-hash" ]]; then
  rm -rf node_modules.tmp
  if cp -al "$snap" node_modules.tmp 2>/dev/null && mv node_modules.tmp node_modules; then
    say "node_modules linked from the cache of this package-lock.json ($snap)"
  else rm -rf node_modules.tmp; fi
fi
if [[ ! -x node_modules/.bin/node || ! -f $stamp || "$(cat $stamp)" != "$want" ]]; then
  say "installing npm dependencies and Node.js 24 (npm ci)"
  # re2 (an optional dependency, a native addon) installs from the addon hack/build-re2.sh built
  # and cached, its installer pointed at the cache as at a download mirror. npm leaves out an
  # optional dependency whose engines the running Node.js does not satisfy, so when the system's
  # Node.js is older than 24, npm runs again on the Node.js 24 the first run brought.
  RE2_DOWNLOAD_MIRROR="$CACHE/re2/$(node -p 'require("./package-lock.json").packages["node_modules/re2"].version')"
  export RE2_DOWNLOAD_MIRROR RE2_DOWNLOAD_SKIP_PATH=1 RE2_DOWNLOAD_SKIP_VER=1
  npm ci --no-audit --no-fund >&2
  if [[ ! -f node_modules/re2/build/Release/re2.node ]]; then
    bash hack/build-re2.sh
    PATH="$PWD/node_modules/.bin:$PATH" npm ci --no-audit --no-fund >&2
  fi
  echo "$want" > $stamp
  # Kept for the next clean clone (hard links: no copy; a file system that has none: no cache).
  mkdir -p "$CACHE/node_modules"
  rm -rf "$snap.tmp"
  if cp -al node_modules "$snap.tmp" 2>/dev/null; then rm -rf "$snap" && mv "$snap.tmp" "$snap"; else rm -rf "$snap.tmp"; fi
fi
export PATH="$PWD/node_modules/.bin:$PATH"
v=$(node --version)
[[ "$v" == v24.* ]] || { say "error: expected Node.js 24 from node_modules/.bin, got $v"; exit 1; }

# 3. The control plane and the real node (etcd, kube-apiserver, kube-controller-manager,
#    kube-scheduler, kubelet, kube-proxy, kubectl, CoreDNS), built with Go.
command -v go >/dev/null || { say "error: Go is not installed; install Go 1.24 or newer"; exit 1; }
bash hack/build-control-plane.sh >/dev/null
say "ready: Node.js $v, control plane in $(bash hack/build-control-plane.sh --print)"
