// HTTPS listeners of the gateway (docs/ingress.md): per bound port, one tls.Server that picks a
// listener's certificate by SNI (exact hostname, then the longest wildcard, then the listener
// without hostname; a client without SNI gets the least specific). Certificates are PEM files the
// operator writes to the gateway's `-tls` Secret; a new set replaces the contexts in place, so new
// handshakes use it and open connections keep theirs (no listener restart). A certificate that
// does not load keeps the last good one for its hostname.
import { AsyncLocalStorage } from 'node:async_hooks';
import type net from 'node:net';
import type tls from 'node:tls';
import { hostnameCovers } from '../../api/hostname.ts';
import type { GatewayConfig } from '../../api/proxyconfig.ts';
import { tls as lazyTls } from '../builtins.ts';
import type { ConnContext, ProxyCore } from '../context.ts';

/** Where a terminated connection goes next, with the protocol ALPN chose (undefined: none). */
export type OnGatewaySecure = (
  socket: tls.TLSSocket,
  ctx: ConnContext,
  alpn: 'h2' | 'http1' | undefined,
) => void;

interface PortTls {
  server: tls.Server;
  /** Most specific first, as the GatewayConfig orders them. */
  contexts: { hostname: string; cert: string; key: string; context: tls.SecureContext }[];
}

export class GatewayTls {
  readonly #core: ProxyCore;
  readonly #onSecure: OnGatewaySecure;
  readonly #ports = new Map<number, PortTls>();
  readonly #conn = new AsyncLocalStorage<ConnContext>();

  constructor(core: ProxyCore, onSecure: OnGatewaySecure) {
    this.#core = core;
    this.#onSecure = onSecure;
  }

  /**
   * Applies the TLS part of `gw`: `files` holds the certificate directory's files by name.
   * Returns what could not be loaded (each kept its last good certificate, if it had one).
   */
  update(gw: GatewayConfig, files: ReadonlyMap<string, string>): string[] {
    const problems: string[] = [];
    const wanted = new Set<number>();
    for (const p of gw.ports) {
      if (!p.tls?.length) continue;
      wanted.add(p.bind);
      const prev = this.#ports.get(p.bind);
      const contexts: PortTls['contexts'] = [];
      for (const t of p.tls) {
        const cert = files.get(t.cert);
        const key = files.get(t.key);
        const old = prev?.contexts.find((c) => c.hostname === t.hostname);
        if (old && old.cert === cert && old.key === key) {
          contexts.push(old);
          continue;
        }
        try {
          if (cert === undefined || key === undefined) throw new Error(`${t.cert} or ${t.key} is missing`);
          contexts.push({
            hostname: t.hostname,
            cert,
            key,
            context: lazyTls().createSecureContext({ cert, key }),
          });
        } catch (e) {
          problems.push(
            `port ${p.port} hostname ${t.hostname}: ${(e as Error).message}${old ? '; keeping the last good certificate' : ''}`,
          );
          if (old) contexts.push(old);
        }
      }
      const state = prev ?? { server: this.#server(p.port, p.bind), contexts };
      state.contexts = contexts;
      this.#ports.set(p.bind, state);
      // A client without SNI gets the server's own context: the least specific listener's.
      const fallback = contexts.at(-1);
      if (fallback) state.server.setSecureContext({ cert: fallback.cert, key: fallback.key });
    }
    for (const bind of [...this.#ports.keys()]) if (!wanted.has(bind)) this.#ports.delete(bind);
    return problems;
  }

  /** Whether connections to this bound port are TLS. */
  has(bind: number): boolean {
    return this.#ports.has(bind);
  }

  /** Terminates TLS on `socket` (a connection to bound port `bind`), then hands it on. */
  accept(bind: number, socket: net.Socket, ctx: ConnContext): void {
    const port = this.#ports.get(bind);
    if (!port) {
      socket.destroy();
      return;
    }
    this.#conn.run(ctx, () => port.server.emit('connection', socket));
  }

  #pick(bind: number, servername: string | undefined): tls.SecureContext | undefined {
    const contexts = this.#ports.get(bind)?.contexts ?? [];
    if (!servername) return contexts.at(-1)?.context;
    const name = servername.toLowerCase();
    return contexts.find((c) => hostnameCovers(c.hostname, name))?.context;
  }

  #server(port: number, bind: number): tls.Server {
    const { metrics, log } = this.#core;
    const server = new (lazyTls().Server)({
      ALPNProtocols: ['h2', 'http/1.1'],
      handshakeTimeout: this.#core.limits.handshakeTimeoutMs,
      SNICallback: (servername, cb) => {
        const context = this.#pick(bind, servername);
        if (context) cb(null, context);
        else cb(new Error(`no HTTPS listener on port ${port} for server name ${servername}`));
      },
    });
    server.on('secureConnection', (t: tls.TLSSocket) => {
      const ctx = this.#conn.getStore();
      if (!ctx) {
        t.destroy();
        return;
      }
      const inner: ConnContext = { ...ctx };
      this.#core.ctxOf.set(t, inner);
      t.on('error', () => t.destroy());
      this.#onSecure(
        t,
        inner,
        t.alpnProtocol === 'h2' ? 'h2' : t.alpnProtocol === 'http/1.1' ? 'http1' : undefined,
      );
    });
    server.on('tlsClientError', (e: NodeJS.ErrnoException, t: tls.TLSSocket) => {
      t.destroy();
      metrics.proxyErrors.inc({ direction: 'outbound', code: 'WEFT_GATEWAY_TLS' });
      log('warn', `gateway HTTPS handshake failed on port ${port}`, { code: e.code, err: e.message });
    });
    return server;
  }
}
