#!/usr/bin/env bash
# Builds the real Kubernetes control plane and node used by Weft's tests and local demo:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl from
# the k8s.io/kubernetes Go module, etcd from go.etcd.io/etcd/server/v3, CoreDNS from
# github.com/coredns/coredns (hack/coredns). Binaries land in a cache outside the repository
# (WEFT_CACHE, default ~/.cache/weft) and are reused when already built.
#
#   hack/build-control-plane.sh          build what is missing, print the bin directory
#   hack/build-control-plane.sh --print  print the bin directory only (no build)
set -euo pipefail

PINNED_K8S=v1.34.4
PINNED_ETCD=v3.6.16
PINNED_COREDNS=v1.15.0   # hack/coredns/go.mod pins it; change both together
K8S_VERSION="${WEFT_K8S_VERSION:-$PINNED_K8S}"
ETCD_VERSION="${WEFT_ETCD_VERSION:-$PINNED_ETCD}"
# go.mod and go.sum of the pinned versions live in the repository (hack/controlplane/), so every
# machine builds the same module graph; other versions are resolved with `go mod tidy`.
PINS="$(cd "$(dirname "$0")" && pwd)/controlplane"
CACHE="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
BIN="$CACHE/controlplane/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}/bin"

if [[ "${1:-}" == "--print" ]]; then echo "$BIN"; exit 0; fi

log() { printf '[control-plane] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "error: '$1' is not installed; $2"; exit 1; }; }
need go "install Go 1.24 or newer (the project's .ci/run uses the system Go)"

mkdir -p "$BIN"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"   # v1.34.4 -> v0.34.4

# Stream `go build -v` output as a progress line every 50 packages.
progress() {
  local what="$1" n=0 line
  while IFS= read -r line; do
    n=$((n + 1))
    if (( n % 50 == 0 )); then log "$what: compiled $n packages (last: $line)"; fi
  done
  log "$what: compiled $n packages"
}

build_k8s() {
  local src="$CACHE/src/kubernetes-$K8S_VERSION"
  mkdir -p "$src"
  cd "$src"
  if [[ "$K8S_VERSION" == "$PINNED_K8S" ]]; then
    cp "$PINS/kubernetes/go.mod" "$PINS/kubernetes/go.sum" "$PINS/kubernetes/tools.go" .
    log "module graph pinned by hack/controlplane/kubernetes (downloading what is missing)"
    go mod download >&2
  elif [[ ! -f go.sum ]]; then
    log "resolving k8s.io/kubernetes@$K8S_VERSION (staging modules pinned to $STAGING_VERSION)"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f "$gomod" ]] || { log "error: could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
    {
      echo "module weft.dev/controlplane"
      echo
      echo "go 1.24.0"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      # Every staging module that k8s.io/kubernetes replaces with ./staging/... gets the
      # published module of the matching version instead.
      grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
    } > go.mod
    cat > tools.go <<'GO'
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
    log "downloading module graph (go mod tidy)"
    go mod tidy >&2
  fi
  local pkg="k8s.io/component-base/version" cpkg="k8s.io/client-go/pkg/version"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for p in "$pkg" "$cpkg"; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    if [[ -x "$BIN/$cmd" ]]; then log "$cmd: cached"; continue; fi
    log "$cmd: building $K8S_VERSION (a cold build takes several minutes on 2 cores)"
    local t0=$SECONDS
    CGO_ENABLED=0 go build -v -trimpath -ldflags "$ld" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" 2>&1 | progress "$cmd"
    [[ -x "$BIN/$cmd.tmp" ]] || { log "error: go build of $cmd failed (run it again to see the compiler output)"; exit 1; }
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
    log "$cmd: built in $((SECONDS - t0)) s"
  done
}

build_etcd() {
  if [[ -x "$BIN/etcd" ]]; then log "etcd: cached"; return; fi
  local src="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$src"
  cd "$src"
  if [[ "$ETCD_VERSION" == "$PINNED_ETCD" ]]; then
    cp "$PINS/etcd/go.mod" "$PINS/etcd/go.sum" "$PINS/etcd/main.go" .
    go mod download >&2
  elif [[ ! -f go.sum ]]; then
    log "resolving go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    printf 'module weft.dev/etcd\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
    go mod tidy >&2
  fi
  log "etcd: building $ETCD_VERSION"
  local t0=$SECONDS
  CGO_ENABLED=0 go build -v -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" . 2>&1 | progress etcd
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  log "etcd: built in $((SECONDS - t0)) s"
}

build_coredns() {
  if [[ -x "$BIN/coredns" ]]; then log "coredns: cached"; return; fi
  local src="$CACHE/src/coredns-$PINNED_COREDNS"
  mkdir -p "$src"
  cd "$src"
  cp "$PINS/../coredns/go.mod" "$PINS/../coredns/go.sum" "$PINS/../coredns/main.go" .
  go mod download >&2
  log "coredns: building $PINNED_COREDNS"
  local t0=$SECONDS
  CGO_ENABLED=0 go build -v -trimpath -ldflags "-s -w" -o "$BIN/coredns.tmp" . 2>&1 | progress coredns
  [[ -x "$BIN/coredns.tmp" ]] || { log "error: go build of coredns failed (run it again to see the compiler output)"; exit 1; }
  mv "$BIN/coredns.tmp" "$BIN/coredns"
  log "coredns: built in $((SECONDS - t0)) s"
}

T0=$SECONDS
( build_etcd )
( build_k8s )
( build_coredns )
log "control plane ready in $BIN ($((SECONDS - T0)) s)"
echo "$BIN"
