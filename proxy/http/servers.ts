// The node:http and HTTP/2 servers of one listener. They never listen: the listener feeds them
// connections once detection (or the fast path's handoff) says HTTP/1.1 or h2c. Requests go to
// handleHttp, upgrades to handleUpgrade, malformed requests get node's status (400/408/431); an
// HTTP/2 header list over the limit gets 431 as HTTP/1.1 does.
import type http2 from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { http, http2 as lazyHttp2 } from '../builtins.ts';
import type { ConnContext, Direction, ProxyCore } from '../context.ts';
import { handleHttp } from './handle.ts';
import { type DownReq, type DownRes, sendError } from './relay.ts';
import { handleUpgrade } from './upgrade.ts';

export interface HttpServers {
  h1: ReturnType<typeof http.createServer>;
  /** Made at the first h2 connection (and node:http2 loaded then). */
  readonly h2: http2.Http2Server;
  /** Gives an h2c connection to the HTTP/2 server; its session gets `ctx`. */
  serveH2(conn: Duplex, ctx: ConnContext): void;
  /** The first request's header clock of an HTTP/1.1 socket (408 when it fires). */
  readonly headerTimers: WeakMap<object, NodeJS.Timeout>;
  /** A graceful GOAWAY on every HTTP/2 connection (drain): open streams finish. */
  goaway(): void;
}

/** The size of an HTTP/2 header list as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2). */
export function headerListSize(rawHeaders: string[]): number {
  let n = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2)
    n += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 32;
  return n;
}

export function makeHttpServers(core: ProxyCore, direction: Direction): HttpServers {
  const { limits, metrics, log } = core;
  const headerTimers = new WeakMap<object, NodeJS.Timeout>();
  const serve = (req: DownReq, res: DownRes) =>
    handleHttp(core, direction, req, res).catch((e) => {
      log('error', 'request failed in the proxy', { err: (e as Error).message });
      sendError(core, res, 502, 'WEFT_UPSTREAM_RESET', 'proxy error', direction);
    });
  const h1 = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: limits.idleTimeoutMs,
    connectionsCheckingInterval: Math.max(100, Math.min(30_000, limits.headersTimeoutMs / 4)),
  });
  h1.on('request', (req, res) => {
    const timer = headerTimers.get(req.socket);
    if (timer) {
      clearTimeout(timer);
      headerTimers.delete(req.socket);
    }
    serve(req, res);
  });
  h1.on('upgrade', (req, socket, head) => {
    clearTimeout(headerTimers.get(req.socket));
    handleUpgrade(core, direction, req, socket, head);
  });
  h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const code = err.code ?? '';
    const status =
      code === 'HPE_HEADER_OVERFLOW'
        ? 431
        : code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'HPE_HEADER_TIMEOUT'
          ? 408
          : 400;
    metrics.proxyErrors.inc({ direction, code: `HTTP_${status}` });
    if (socket.writable && !(socket as net.Socket).destroyed) {
      const reason = http.STATUS_CODES[status] ?? 'Error';
      socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    } else {
      socket.destroy();
    }
  });
  let h2: http2.Http2Server | undefined;
  let pendingH2Ctx: ConnContext | undefined;
  const sessions = new Set<http2.ServerHttp2Session>();
  const servers: HttpServers = {
    h1,
    headerTimers,
    goaway() {
      for (const s of sessions) s.close();
    },
    get h2(): http2.Http2Server {
      if (h2) return h2;
      h2 = lazyHttp2().createServer({
        maxSessionMemory: 10,
        settings: { maxHeaderListSize: limits.maxHeaderBytes },
      });
      h2.on('request', (req, res) => {
        // The SETTINGS limit binds only once the client acknowledged it: a request sent at once
        // on a new connection is not held to it by nghttp2, so the limit is checked here too.
        if (headerListSize(req.rawHeaders) <= limits.maxHeaderBytes) return void serve(req, res);
        metrics.proxyErrors.inc({ direction, code: 'HTTP_431' });
        res.writeHead(431, { 'content-length': 0 });
        res.end();
      });
      h2.on('sessionError', () => {});
      h2.on('session', (session) => {
        if (pendingH2Ctx) core.ctxOf.set(session, pendingH2Ctx);
        sessions.add(session);
        session.once('close', () => sessions.delete(session));
      });
      return h2;
    },
    serveH2(conn, ctx) {
      pendingH2Ctx = ctx;
      servers.h2.emit('connection', conn);
      pendingH2Ctx = undefined;
    },
  };
  return servers;
}
