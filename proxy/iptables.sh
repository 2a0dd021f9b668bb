#!/bin/sh
# weft-init: the iptables rules that send a meshed pod's TCP traffic through weft-proxy.
# The injector's init container runs this script (one place for the rules); tests run it too,
# inside network namespaces. It is idempotent: re-running replaces Weft's chains.
#
#   outbound: every TCP connection the pod opens (except the proxy's own, by UID/GID, and
#             loopback) is REDIRECTed to WEFT_OUTBOUND_PORT; the proxy reads SO_ORIGINAL_DST.
#             The proxy's own connections to its pod's address go to the inbound listener.
#   inbound:  every TCP connection arriving for the pod (except the excluded ports: health,
#             admin) is REDIRECTed to WEFT_INBOUND_PORT, including those to the proxy's own
#             ports, which the proxy then refuses: no other host reaches the outbound listener.
#
# Environment (defaults in brackets; the ports and UID come from api/proxyconfig.ts PROXY):
#   WEFT_PROXY_UID [1337]  WEFT_PROXY_GID [1337]
#   WEFT_OUTBOUND_PORT [15001]  WEFT_INBOUND_PORT [15006]
#   WEFT_EXCLUDE_INBOUND_PORTS [15020,15000]   comma-separated
#   WEFT_EXCLUDE_OUTBOUND_PORTS []              comma-separated
#   WEFT_EXCLUDE_OUTBOUND_CIDRS []              comma-separated
#   WEFT_IPTABLES [iptables]                    the binary (iptables-legacy …)
#   WEFT_IPV6 [0]                               1: install the same rules with ip6tables too
# Usage: iptables.sh          install the rules
#        iptables.sh --clean  remove them
set -eu

UID_="${WEFT_PROXY_UID:-1337}"
GID_="${WEFT_PROXY_GID:-1337}"
OUT_PORT="${WEFT_OUTBOUND_PORT:-15001}"
IN_PORT="${WEFT_INBOUND_PORT:-15006}"
EXCL_IN="${WEFT_EXCLUDE_INBOUND_PORTS-15020,15000}"
EXCL_OUT="${WEFT_EXCLUDE_OUTBOUND_PORTS:-}"
EXCL_CIDRS="${WEFT_EXCLUDE_OUTBOUND_CIDRS:-}"
IPT="${WEFT_IPTABLES:-iptables}"
LOOPBACK=127.0.0.1/32

ipt() { "$IPT" -w 5 -t nat "$@"; }
log() { echo "[weft-init] $*" >&2; }

clean() {
  ipt -D PREROUTING -p tcp -j WEFT_INBOUND 2>/dev/null || true
  ipt -D OUTPUT -p tcp -j WEFT_OUTPUT 2>/dev/null || true
  for c in WEFT_INBOUND WEFT_IN_REDIRECT WEFT_OUTPUT WEFT_REDIRECT; do
    ipt -F "$c" 2>/dev/null || true
    ipt -X "$c" 2>/dev/null || true
  done
}

install() {
  clean
  for c in WEFT_INBOUND WEFT_IN_REDIRECT WEFT_OUTPUT WEFT_REDIRECT; do ipt -N "$c"; done

  # Inbound.
  ipt -A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports "$IN_PORT"
  ipt -A PREROUTING -p tcp -j WEFT_INBOUND
  # The proxy's own listeners are captured too (never excluded): a connection from elsewhere to
  # :$OUT_PORT or :$IN_PORT reaches the inbound listener with that port as its original
  # destination, and is refused there. Only the pod's own OUTPUT redirect reaches :$OUT_PORT.
  for p in $(echo "$EXCL_IN" | tr ',' ' '); do
    if [ "$p" = "$OUT_PORT" ] || [ "$p" = "$IN_PORT" ]; then
      log "warning: inbound port $p is the proxy's own listener and stays captured"
      continue
    fi
    ipt -A WEFT_INBOUND -p tcp --dport "$p" -j RETURN
  done
  ipt -A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT

  # Outbound.
  ipt -A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports "$OUT_PORT"
  ipt -A OUTPUT -p tcp -j WEFT_OUTPUT
  # The proxy's own connection to its pod's address (a Service whose endpoint is this pod: a
  # hairpin) leaves over lo: it goes to the inbound listener like any caller's, not straight to
  # the app's port (which would get an mTLS handshake it cannot answer). The inbound side reaches
  # the app on 127.0.0.1, which this rule leaves alone, so nothing loops.
  ipt -A WEFT_OUTPUT -o lo ! -d "$LOOPBACK" -m owner --uid-owner "$UID_" -j WEFT_IN_REDIRECT
  ipt -A WEFT_OUTPUT -m owner --uid-owner "$UID_" -j RETURN
  ipt -A WEFT_OUTPUT -m owner --gid-owner "$GID_" -j RETURN
  ipt -A WEFT_OUTPUT -o lo -j RETURN
  ipt -A WEFT_OUTPUT -d "$LOOPBACK" -j RETURN
  for p in $(echo "$EXCL_OUT" | tr ',' ' '); do ipt -A WEFT_OUTPUT -p tcp --dport "$p" -j RETURN; done
  for c in $(echo "$EXCL_CIDRS" | tr ',' ' '); do ipt -A WEFT_OUTPUT -d "$c" -j RETURN; done
  ipt -A WEFT_OUTPUT -j WEFT_REDIRECT
}

command -v "$IPT" >/dev/null 2>&1 || { log "error: $IPT not found; install the iptables package"; exit 1; }
if [ "${1:-}" = "--clean" ]; then
  clean
  if [ "${WEFT_IPV6:-0}" = 1 ]; then IPT=ip6tables; clean; fi
  log "removed Weft's rules"
  exit 0
fi
install
if [ "${WEFT_IPV6:-0}" = 1 ]; then
  # The CIDR exclusions are IPv4; IPv6 ones would go in a separate list.
  IPT=ip6tables; LOOPBACK=::1/128; EXCL_CIDRS=""
  install
fi

log "installed: outbound -> :$OUT_PORT, inbound -> :$IN_PORT, proxy uid $UID_ gid $GID_, inbound excluded: ${EXCL_IN:-none}"
