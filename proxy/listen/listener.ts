// The outbound (15001) and inbound (15006) listeners: each connection is checked to come through
// the pod's own redirect, gets its ConnContext (original destination, the service of a VIP), and
// its protocol is declared (appProtocol), assumed (server-first ports) or detected from the first
// bytes (HTTP/1.1, h2c, inbound TLS, else opaque TCP) before dispatch().
import net from 'node:net';
import { MAX_HELLO_BYTES, offersWeftAlpn, parseClientHello } from '../clienthello.ts';
import type { ConnContext, Direction, ProxyCore } from '../context.ts';
import {
  detectProtocol,
  H2_PREFACE_LENGTH,
  type Protocol,
  protocolForAppProtocol,
  SERVER_FIRST_PORTS,
} from '../detect.ts';
import { LocalAddresses } from '../localaddr.ts';
import { originalDst } from '../native/index.ts';
import { mtlsModeFor } from '../resilience/endpoints.ts';
import { proxyTcp, type TcpTarget, tcpTarget } from '../tcp/tcp.ts';
import { dispatch, type Transports } from './dispatch.ts';
import type { GatewayTls } from './gatewaytls.ts';
import type { InboundTls } from './tls.ts';

/**
 * A listener owned by the pod accepts only what the pod's own redirect sends it: outbound, a
 * connection of the pod's own processes (OUTPUT rule) to somewhere else; inbound, a connection to
 * one of the app's ports (PREROUTING rule). Never an open proxy for other hosts.
 */
export class RedirectGuard {
  readonly #core: ProxyCore;
  readonly #local: LocalAddresses;
  #lastLog = Number.NEGATIVE_INFINITY;
  constructor(core: ProxyCore) {
    this.#core = core;
    this.#local = new LocalAddresses(core.now);
  }

  /** Why this connection is refused, or undefined when it came through the pod's redirect. */
  notRedirected(
    direction: Direction,
    socket: net.Socket,
    dst: { address: string; port: number } | undefined,
  ): string | undefined {
    const ports = this.#core.ports;
    if (!dst) return "no original destination (not redirected by the pod's iptables rules)";
    if (direction === 'outbound' && !this.#local.has(socket.remoteAddress))
      return "the outbound listener serves only the pod's own connections";
    if (direction === 'inbound' && (dst.port === ports.outbound || dst.port === ports.inbound))
      return `the original destination port ${dst.port} is the proxy's own listener`;
    return undefined;
  }

  refused(direction: Direction, socket: net.Socket, refusal: string, dst: unknown): void {
    const core = this.#core;
    core.metrics.proxyErrors.inc({ direction, code: 'WEFT_NOT_REDIRECTED' });
    // Logged at most every 10 s: whoever floods the port does not flood the log.
    if (core.now() - this.#lastLog >= 10_000) {
      this.#lastLog = core.now();
      core.log('warn', `${direction} connection refused: ${refusal}`, { source: socket.remoteAddress, dst });
    }
    socket.destroy();
  }
}

export interface ListenerDeps {
  transports: Transports;
  tls: InboundTls;
  guard: RedirectGuard;
}

/** Counts an accepted connection and forgets it when it closes. */
function track(core: ProxyCore, direction: Direction, socket: net.Socket): void {
  core.sockets.add(socket);
  core.metrics.tcpOpen.inc({ direction });
  socket.once('close', () => {
    core.sockets.delete(socket);
    core.metrics.tcpOpen.dec({ direction });
  });
  socket.on('error', () => socket.destroy());
}

/**
 * A gateway listener (docs/ingress.md): clients connect to it directly (no redirect, no original
 * destination); each connection is HTTP/1.1 or h2c to listener port `port`, served by the
 * outbound transports, which pick the virtual host by Host (outbound/plan.ts).
 */
export function makeGatewayListener(
  core: ProxyCore,
  transports: Transports,
  port: number,
  /** HTTPS: the port's TLS termination (gatewaytls.ts), when `bind` is one of its ports. */
  https?: { tls: GatewayTls; bind: number },
): net.Server {
  const server = net.createServer({ pauseOnConnect: true, noDelay: true });
  server.maxConnections = core.limits.maxConnections;
  server.on('connection', (socket) => {
    track(core, 'outbound', socket);
    const ctx: ConnContext = {
      direction: 'outbound',
      dst: { address: socket.localAddress ?? '', port },
      target: undefined,
      sourceIp: socket.remoteAddress,
    };
    core.ctxOf.set(socket, ctx);
    if (https?.tls.has(https.bind)) https.tls.accept(https.bind, socket, ctx);
    else serveGatewayHttp(core, transports, socket, ctx, undefined);
  });
  server.on('error', (e) => core.log('error', `gateway listener ${port} error: ${e.message}`));
  return server;
}

/** A gateway connection, plaintext or once TLS is terminated: ALPN's protocol, else h2c or HTTP/1.1 by its first bytes. */
export function serveGatewayHttp(
  core: ProxyCore,
  transports: Transports,
  socket: net.Socket,
  ctx: ConnContext,
  alpn: 'h2' | 'http1' | undefined,
): void {
  if (alpn) dispatch(core, transports, 'outbound', socket, ctx, alpn, Buffer.alloc(0));
  else
    peekH2Preface(core, socket, (h2, buf) =>
      dispatch(core, transports, 'outbound', socket, ctx, h2 ? 'h2' : 'http1', buf),
    );
}

export function makeListener(core: ProxyCore, direction: Direction, deps: ListenerDeps): net.Server {
  const { limits } = core;
  const server = net.createServer({ pauseOnConnect: true, noDelay: true });
  server.maxConnections = limits.maxConnections;
  server.on('connection', (socket) => {
    track(core, direction, socket);
    let dst: { address: string; port: number } | undefined;
    try {
      const od = originalDst(socket);
      // A direct connection to the listener (no REDIRECT) reports the listener itself.
      if (od && !(od.port === socket.localPort && od.address === socket.localAddress))
        dst = { address: od.address, port: od.port };
    } catch (e) {
      core.log('error', (e as Error).message);
      socket.destroy();
      return;
    }
    const refusal = deps.guard.notRedirected(direction, socket, dst);
    if (refusal) {
      deps.guard.refused(direction, socket, refusal, dst);
      return;
    }
    const ctx: ConnContext = { direction, dst, target: undefined, sourceIp: socket.remoteAddress };
    const t = core.table;
    if (direction === 'outbound' && dst && t) ctx.target = t.byVip(dst.address, dst.port);
    core.ctxOf.set(socket, ctx);
    const declared = protocolForAppProtocol(ctx.target?.port.appProtocol);
    // Inbound, a peer sidecar speaks first (its ClientHello) even on a server-first port, so
    // detection is skipped there only when mTLS is off for the port.
    const serverFirst =
      dst !== undefined &&
      SERVER_FIRST_PORTS.has(dst.port) &&
      (direction === 'outbound' || mtlsModeFor(t?.config, dst.port) === 'DISABLE');
    if (declared === 'http1' && !serverFirst) {
      // A port declared HTTP still takes h2c prior knowledge, as gRPC clients send it.
      peekH2Preface(core, socket, (h2, buf) =>
        dispatch(core, deps.transports, direction, socket, ctx, h2 ? 'h2' : 'http1', buf),
      );
      return;
    }
    if (declared || serverFirst) {
      dispatch(core, deps.transports, direction, socket, ctx, declared ?? 'tcp', Buffer.alloc(0));
      return;
    }
    detect(core, deps, direction, socket, ctx);
  });
  server.on('error', (e) => core.log('error', `${direction} listener error: ${e.message}`));
  return server;
}

/**
 * Reads until the first bytes are, or cannot be, the HTTP/2 preface; a silent client is
 * closed after the detection timeout, as in detect().
 */
function peekH2Preface(core: ProxyCore, socket: net.Socket, then: (h2: boolean, buf: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const p = detectProtocol(buf);
    if (p === 'more' && buf.length < H2_PREFACE_LENGTH) return;
    clearTimeout(giveUp);
    socket.off('data', onData);
    socket.pause();
    then(p === 'h2', buf);
  };
  const giveUp = setTimeout(() => {
    socket.off('data', onData);
    socket.destroy();
  }, core.limits.detectTimeoutMs);
  socket.on('data', onData);
  socket.resume();
}

function detect(
  core: ProxyCore,
  deps: ListenerDeps,
  direction: Direction,
  socket: net.Socket,
  ctx: ConnContext,
): void {
  const { limits, metrics } = core;
  let buf: Buffer = Buffer.alloc(0);
  let settled = false;
  let pre: net.Socket | undefined;
  let preTarget: TcpTarget | undefined;
  const cleanup = () => {
    settled = true;
    clearTimeout(grace);
    clearTimeout(giveUp);
    socket.off('data', onData);
  };
  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (direction === 'inbound' && buf[0] === 0x16) {
      // TLS: read the whole ClientHello to see whether a peer sidecar (weft-* ALPN) is calling.
      const hello = parseClientHello(buf);
      if (hello.kind === 'more' && hello.need <= MAX_HELLO_BYTES) return;
      cleanup();
      socket.pause();
      deps.tls.accept(socket, ctx, buf, hello.kind === 'hello' && offersWeftAlpn(hello.alpn), pre, preTarget);
      return;
    }
    const p = detectProtocol(buf);
    if (p === 'more' && buf.length < 64) return;
    cleanup();
    socket.pause();
    const proto: Protocol = p === 'more' ? 'tcp' : p;
    if (direction === 'inbound' && !deps.tls.admitPlaintext(socket, ctx, proto)) {
      pre?.destroy();
      return;
    }
    if (pre && proto === 'tcp') {
      proxyTcp(core, direction, socket, ctx, buf, pre, preTarget);
      return;
    }
    pre?.destroy();
    dispatch(core, deps.transports, direction, socket, ctx, proto, buf);
  };
  // No client bytes yet: open the upstream connection now; if the server speaks first, this is TCP.
  const grace = setTimeout(() => {
    if (settled || !ctx.dst) return;
    // Under STRICT the app is not reached before the caller proved it is a sidecar.
    if (direction === 'inbound' && mtlsModeFor(core.table?.config, ctx.dst.port) === 'STRICT') return;
    preTarget = tcpTarget(core, direction, ctx);
    if (!preTarget) return;
    pre = core.transport.connect(preTarget.to);
    pre.on('error', () => {});
    pre.once('readable', () => {
      if (settled) return;
      cleanup();
      proxyTcp(core, direction, socket, ctx, buf, pre, preTarget);
    });
  }, limits.serverFirstGraceMs);
  const giveUp = setTimeout(() => {
    if (settled) return;
    cleanup();
    // Nothing from either side (the server would have spoken first by now), or inbound, a
    // TLS ClientHello still incomplete: a stalled connection, closed so it cannot hold one of
    // the listener's connections (nor the app's) for ever.
    const stalledHello = direction === 'inbound' && buf[0] === 0x16;
    if ((buf.length === 0 && (direction === 'inbound' || !pre)) || stalledHello) {
      metrics.proxyErrors.inc({ direction, code: 'WEFT_DETECT_TIMEOUT' });
      pre?.destroy();
      socket.destroy();
      return;
    }
    if (direction === 'inbound' && !deps.tls.admitPlaintext(socket, ctx, 'tcp')) {
      pre?.destroy();
      return;
    }
    proxyTcp(core, direction, socket, ctx, buf, pre, preTarget);
  }, limits.detectTimeoutMs);
  socket.on('data', onData);
  socket.once('close', () => {
    if (!settled) {
      cleanup();
      pre?.destroy();
    }
  });
  socket.resume();
}
