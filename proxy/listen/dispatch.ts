// Once the protocol of a downstream connection is known, it goes to its transport: HTTP/1.1 to
// the fast path of its direction (proxy/http1/; it hands a request it does not serve to node:http) or to node:http, h2c to the HTTP/2 server, anything else to opaque TCP.
import type net from 'node:net';
import { Duplex } from 'node:stream';
import type { ConnContext, Direction, ProxyCore } from '../context.ts';
import type { Protocol } from '../detect.ts';
import type { HttpServers } from '../http/servers.ts';
import { proxyTcp } from '../tcp/tcp.ts';

/** A raw HTTP/1.1 adapter: serves `socket`, calls onHead when a request head is read, hands off to node:http. */
export type FastPath = (
  socket: net.Socket,
  ctx: ConnContext,
  initial: Buffer,
  onHead: () => void,
  handoff: (buffered: Buffer) => void,
) => void;

/** The transports a listener dispatches to, per direction. */
export interface Transports {
  servers: Record<Direction, HttpServers>;
  /** The HTTP/1.1 fast paths; absent when turned off. */
  fast: Partial<Record<Direction, FastPath>>;
}

/** A socket whose first bytes, already read for detection, are replayed before the rest. */
class Replay extends Duplex {
  readonly #socket: net.Socket;
  constructor(socket: net.Socket, initial: Buffer) {
    super();
    this.#socket = socket;
    this.push(initial);
    socket.on('data', (d: Buffer) => {
      if (!this.push(d)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('close', () => this.destroy());
  }
  override _read(): void {
    this.#socket.resume();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.#socket.write(chunk, cb);
  }
  override _final(cb: () => void): void {
    this.#socket.end();
    cb();
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#socket.destroy();
    cb(err);
  }
}

export function dispatch(
  core: ProxyCore,
  transports: Transports,
  direction: Direction,
  socket: net.Socket,
  ctx: ConnContext,
  proto: Protocol,
  initial: Buffer,
): void {
  const servers = transports.servers[direction];
  if (proto === 'http1') {
    // The first request's headers must arrive within headersTimeoutMs (slow clients get 408).
    // Node's own check runs only for servers that listen, and this one is fed connections.
    const timer = setTimeout(() => {
      if (socket.destroyed) return;
      core.metrics.proxyErrors.inc({ direction, code: 'HTTP_408' });
      socket.end('HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      socket.destroySoon();
    }, core.limits.headersTimeoutMs);
    timer.unref();
    servers.headerTimers.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
    const handoff = (buffered: Buffer) => {
      if (buffered.length > 0) socket.unshift(buffered);
      servers.h1.emit('connection', socket);
      socket.resume();
    };
    const fast = transports.fast[direction];
    // Inbound, the fast path needs the app's port (the original destination).
    if (fast && (direction === 'outbound' || ctx.dst)) {
      fast(socket, ctx, initial, () => clearTimeout(timer), handoff);
      socket.resume();
      return;
    }
    handoff(initial);
    return;
  }
  if (proto === 'h2') {
    // nghttp2 reads the socket's handle directly and would miss bytes put back with unshift,
    // so the bytes already read are replayed through a stream wrapper.
    servers.serveH2(initial.length > 0 ? new Replay(socket, initial) : socket, ctx);
    socket.resume();
    return;
  }
  proxyTcp(core, direction, socket, ctx, initial);
}
