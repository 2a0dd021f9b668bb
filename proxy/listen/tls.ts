// Inbound TLS and the mTLS mode: a peer sidecar's TLS (weft-* ALPN) is terminated with this
// pod's workload identity and its SPIFFE ID checked against the mesh's trust domain; the app's
// own TLS passes through as opaque TCP; plaintext is refused under STRICT (HTTP/1.1 with a 403
// saying why) and counted otherwise.
import { AsyncLocalStorage } from 'node:async_hooks';
import type net from 'node:net';
import type tls from 'node:tls';
import { tls as lazyTls } from '../builtins.ts';
import type { ConnContext, ProxyCore } from '../context.ts';
import type { Protocol } from '../detect.ts';
import { ALPN, peerSpiffeId, protocolOfAlpn, type WorkloadIdentity } from '../identity/tls.ts';
import { mtlsModeFor } from '../resilience/endpoints.ts';
import { proxyTcp, type TcpTarget } from '../tcp/tcp.ts';

/** The trust domain in a SPIFFE ID spiffe://<td>/…. */
function trustDomainOf(id: string): string | undefined {
  return /^spiffe:\/\/([^/]+)\//.exec(id)?.[1];
}

/** Where a terminated mTLS connection goes next, with the protocol its ALPN named. */
export type OnSecure = (socket: tls.TLSSocket, ctx: ConnContext, proto: Protocol) => void;

export class InboundTls {
  readonly #core: ProxyCore;
  readonly #onSecure: OnSecure;
  #server: tls.Server | undefined;
  // The inbound connection a TLS handshake belongs to: tls.Server creates the TLSSocket inside
  // emit('connection') and its handshake callbacks run in that async context.
  readonly #conn = new AsyncLocalStorage<ConnContext>();

  constructor(core: ProxyCore, onSecure: OnSecure) {
    this.#core = core;
    this.#onSecure = onSecure;
  }

  /** Starts (or replaces) termination with this identity; outbound origination uses it too. */
  setWorkloadIdentity(wi: WorkloadIdentity): void {
    const { metrics, log } = this.#core;
    this.#core.transport.identity = wi;
    // With the mux off (muxConnections 0) the mux ALPN is not offered either: callers speak
    // HTTP/1.1 over mTLS to this sidecar, as to one that predates the mux.
    const alpn = Object.values(ALPN).filter((a) => this.#core.limits.muxConnections > 0 || a !== ALPN.mux);
    const server = new (lazyTls().Server)({
      ...wi.serverOptions(alpn),
      handshakeTimeout: this.#core.limits.handshakeTimeoutMs,
    });
    wi.track(server);
    server.on('secureConnection', (t: tls.TLSSocket) => {
      const ctx = this.#conn.getStore();
      const peer = peerSpiffeId(t);
      // The chain is verified against the trust bundle; the SPIFFE ID must also be of this
      // mesh's trust domain (a CA may sign for several: its other domains are not this mesh).
      const trustDomain = this.#core.table?.config.mesh.trustDomain ?? trustDomainOf(wi.id);
      if (!ctx || !peer || trustDomainOf(peer) !== trustDomain) {
        metrics.mtlsFailures.inc({ direction: 'inbound', reason: 'WEFT_PEER_IDENTITY' });
        log('warn', 'inbound mTLS peer refused: no SPIFFE ID of this trust domain', { peer, trustDomain });
        t.destroy();
        return;
      }
      const alpn = protocolOfAlpn(t.alpnProtocol);
      // weft-h2-http/1.1: HTTP/2 streams carrying an HTTP/1.1 app's requests (spoken HTTP/1.1 to the app).
      const inner: ConnContext =
        alpn === 'mux'
          ? { ...ctx, peer, muxed: true }
          : alpn === 'tcpAck'
            ? { ...ctx, peer, tcpAck: true }
            : { ...ctx, peer };
      metrics.mtlsConnections.inc({ direction: 'inbound', tls_version: t.getProtocol() ?? 'unknown', peer });
      if (t.isSessionReused()) metrics.mtlsResumed.inc({ direction: 'inbound' });
      this.#core.ctxOf.set(t, inner);
      t.on('error', () => t.destroy());
      this.#onSecure(t, inner, alpn === 'h2' || alpn === 'mux' ? 'h2' : alpn === 'http1' ? 'http1' : 'tcp');
    });
    server.on('tlsClientError', (e: NodeJS.ErrnoException, t: tls.TLSSocket) => {
      // With a listener here node leaves the socket open: a handshake that failed or timed out
      // (handshakeTimeout, e.g. a caller that stopped after its ClientHello) is closed now.
      t.destroy();
      metrics.mtlsFailures.inc({ direction: 'inbound', reason: e.code ?? 'TLS_ERROR' });
      log('warn', 'inbound mTLS handshake failed', { code: e.code, err: e.message });
    });
    const old = this.#server;
    this.#server = server;
    old?.close();
  }

  #refuse(socket: net.Socket, reason: string, httpPort: number | undefined): void {
    this.#core.metrics.mtlsRefused.inc({ reason });
    if (httpPort !== undefined) {
      const body = `mutual TLS is required on port ${httpPort} (mTLS mode STRICT): plaintext refused\n`;
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: WEFT_MTLS_REQUIRED\r\nconnection: close\r\n\r\n${body}`,
      );
      socket.destroySoon();
      return;
    }
    socket.destroy();
  }

  /** Plaintext inbound: refused under STRICT (HTTP/1.1 gets a 403 saying why), else served. */
  admitPlaintext(socket: net.Socket, ctx: ConnContext, proto: Protocol): boolean {
    const mode = mtlsModeFor(this.#core.table?.config, ctx.dst?.port);
    if (mode === 'STRICT') {
      this.#refuse(socket, 'plaintext', proto === 'http1' ? (ctx.dst?.port ?? 0) : undefined);
      return false;
    }
    this.#core.metrics.plaintextHops.inc({
      direction: 'inbound',
      reason: mode === 'DISABLE' ? 'disabled' : 'permissive',
    });
    return true;
  }

  /** Inbound TLS: a peer sidecar's is terminated with the workload identity; the app's own passes through. */
  accept(
    socket: net.Socket,
    ctx: ConnContext,
    initial: Buffer,
    fromSidecar: boolean,
    pre: net.Socket | undefined,
    preTarget: TcpTarget | undefined,
  ): void {
    const mode = mtlsModeFor(this.#core.table?.config, ctx.dst?.port);
    if (!fromSidecar) {
      if (mode === 'STRICT') {
        pre?.destroy();
        this.#refuse(socket, 'app_tls', undefined);
        return;
      }
      proxyTcp(this.#core, 'inbound', socket, ctx, initial, pre, preTarget);
      return;
    }
    pre?.destroy();
    if (mode === 'DISABLE' || !this.#server) {
      this.#refuse(socket, mode === 'DISABLE' ? 'mtls_disabled' : 'no_identity', undefined);
      return;
    }
    const server = this.#server;
    // The ClientHello already read goes back into the socket: the TLSSocket the server wraps
    // around it takes over the socket's native handle (no JavaScript stream in between) and
    // first replays what the socket has buffered.
    socket.pause();
    if (initial.length > 0) socket.unshift(initial);
    this.#conn.run(ctx, () => server.emit('connection', socket));
  }
}
