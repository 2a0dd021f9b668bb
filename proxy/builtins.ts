// Node's http, http2 and tls modules for the proxy, taken with process.getBuiltinModule rather
// than `import`: in Node 24 an ES import of node:http (its ES module facade reads every export)
// also loads tls, http2 and perf_hooks, about 14 MB of RSS, while the CommonJS module alone
// costs 3 MB. http2 (nghttp2, about 10 MB) and tls (OpenSSL's TLS layer, about 5 MB) are loaded
// on first use: a sidecar with plaintext HTTP/1.1 traffic only never needs them (docs/proxy.md,
// Memory). getBuiltinModule is synchronous, so a first h2 connection is not delayed by a tick.
import type Http from 'node:http';
import type Http2 from 'node:http2';
import type Tls from 'node:tls';

export const http: typeof Http = process.getBuiltinModule('node:http');

let h2: typeof Http2 | undefined;
let t: typeof Tls | undefined;

export function http2(): typeof Http2 {
  h2 ??= process.getBuiltinModule('node:http2');
  return h2;
}

export function tls(): typeof Tls {
  t ??= process.getBuiltinModule('node:tls');
  return t;
}

/** Whether a socket is a TLS socket, without loading tls to ask instanceof. */
export function isTlsSocket(s: object): s is Tls.TLSSocket {
  return (s as { encrypted?: unknown }).encrypted === true;
}
