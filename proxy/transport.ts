// The hop from this proxy to an upstream (another sidecar, or the local app at inbound): every
// connection the proxy opens goes through here. To a meshed endpoint with an identity, when the
// proxy has its own workload identity and mTLS is not disabled for the destination, the hop is
// mutual TLS 1.3 (WorkloadIdentity.connect) with ALPN naming the inner protocol (weft-http/1.1,
// weft-h2, weft-tcp), and the peer must present the endpoint's SPIFFE ID. Otherwise plain TCP.
// HTTP/1.1 keep-alive pools and HTTP/2 sessions, one pool per upstream endpoint (and per mode).
import type HttpTypes from 'node:http';
import type http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import { http, isTlsSocket, http2 as lazyHttp2 } from './builtins.ts';
import type { InnerProtocol, WorkloadIdentity } from './identity/tls.ts';

export interface UpstreamAddress {
  host: string;
  port: number;
  /** Whether a Weft sidecar runs beside the endpoint (mTLS becomes possible). */
  meshed: boolean;
  /** The SPIFFE ID the endpoint must present; set only when the hop should be mTLS. */
  peerId?: string;
}

export interface PoolLimits {
  maxConnectionsPerEndpoint: number;
  idleTimeoutMs: number;
  /** Time for the TCP connection to open (0: the kernel's); the socket is destroyed with ETIMEDOUT after. */
  connectTimeoutMs?: number;
}

/**
 * Destroys `s` with ETIMEDOUT when its TCP connection has not opened within `ms`. When the timer
 * fires, the connection may have opened while the event loop was busy (the timer phase runs before
 * I/O is polled): the verdict waits for the next check phase, after the poll, so a loaded proxy
 * does not time out connections that did open.
 */
export function connectDeadline(s: net.Socket, ms: number | undefined): void {
  if (!ms || ms <= 0 || !s.connecting) return;
  const timer = setTimeout(
    () =>
      setImmediate(() => {
        if (!s.connecting || s.destroyed) return;
        const e = Object.assign(new Error(`connect timed out after ${ms} ms`), { code: 'ETIMEDOUT' });
        s.destroy(e);
      }),
    ms,
  );
  timer.unref();
  const stop = () => clearTimeout(timer);
  s.once('connect', stop);
  s.once('close', stop);
}

/** Counts of the hop's TLS outcomes, for metrics. */
export interface TransportEvents {
  /** A mutual TLS connection to a peer was established. */
  secured?(peerId: string, tlsVersion: string): void;
  /** A mutual TLS connection failed: `code` is WEFT_PEER_IDENTITY, a TLS alert code, or a socket error. */
  tlsFailed?(peerId: string, code: string): void;
  /** A connection to a meshed endpoint went out in plaintext because this proxy has no identity yet. */
  plaintext?(peerId: string): void;
}

const established = new WeakSet<net.Socket>();

/** Calls `cb` once the connection is usable: TCP connected, and for mTLS the handshake done and the peer verified. */
export function whenEstablished(s: net.Socket, cb: () => void): void {
  if (isTlsSocket(s)) {
    if (established.has(s)) cb();
    else s.once('secureConnect', cb);
  } else if (s.connecting) s.once('connect', cb);
  else cb();
}

/** Whether the connection is usable yet (false until the mTLS handshake is done). */
export function isEstablished(s: net.Socket): boolean {
  return isTlsSocket(s) ? established.has(s) : !s.connecting;
}

export class Transport {
  readonly #agents = new Map<string, HttpTypes.Agent>();
  readonly #sessions = new Map<string, http2.ClientHttp2Session>();
  readonly #limits: PoolLimits;
  readonly #events: TransportEvents;
  /** This proxy's workload identity; undefined until the identity Secret is there (plaintext then). */
  identity: WorkloadIdentity | undefined;

  constructor(limits: PoolLimits, events: TransportEvents = {}) {
    this.#limits = limits;
    this.#events = events;
  }

  /** Whether a hop to this address will be mutual TLS. */
  secure(to: UpstreamAddress): boolean {
    return to.peerId !== undefined && this.identity !== undefined;
  }

  #tls(to: UpstreamAddress, protocol: InnerProtocol): tls.TLSSocket {
    const peer = to.peerId!;
    const s = this.identity!.connect({ host: to.host, port: to.port, expectedId: peer, protocol });
    s.once('secureConnect', () => {
      established.add(s);
      this.#events.secured?.(peer, s.getProtocol() ?? 'unknown');
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (!established.has(s)) this.#events.tlsFailed?.(peer, e.code ?? 'TLS_ERROR');
    });
    return s;
  }

  /** A raw connection (opaque TCP, TLS passthrough, WebSocket after the upgrade). */
  connect(to: UpstreamAddress, protocol: InnerProtocol = 'tcp'): net.Socket {
    let s: net.Socket;
    if (this.secure(to)) s = this.#tls(to, protocol);
    else {
      if (to.peerId !== undefined) this.#events.plaintext?.(to.peerId);
      s = net.connect({ host: to.host, port: to.port, noDelay: true });
    }
    connectDeadline(s, this.#limits.connectTimeoutMs);
    return s;
  }

  /** The keep-alive HTTP/1.1 pool for an endpoint. */
  agent(to: UpstreamAddress, maxConnections?: number): HttpTypes.Agent {
    const secure = this.secure(to);
    const key = `${to.host}:${to.port}${secure ? `|${to.peerId}` : ''}`;
    let a = this.#agents.get(key);
    const max = maxConnections ?? this.#limits.maxConnectionsPerEndpoint;
    if (!a || a.maxSockets !== max) {
      a?.destroy();
      a = new http.Agent({
        keepAlive: true,
        maxSockets: max,
        maxFreeSockets: Math.min(max, 256),
        timeout: this.#limits.idleTimeoutMs,
        scheduling: 'lifo',
      });
      const target = { ...to };
      a.createConnection = (() => this.connect(target, 'http1')) as unknown as typeof a.createConnection;
      this.#agents.set(key, a);
    }
    return a;
  }

  /** The shared HTTP/2 session to an endpoint (h2c prior knowledge, or weft-h2 inside mTLS), reconnected when closed. */
  session(to: UpstreamAddress): http2.ClientHttp2Session {
    const secure = this.secure(to);
    const key = `${to.host}:${to.port}${secure ? `|${to.peerId}` : ''}`;
    const existing = this.#sessions.get(key);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const authority = `http://${to.host.includes(':') ? `[${to.host}]` : to.host}:${to.port}`;
    const s = lazyHttp2().connect(authority, { createConnection: () => this.connect(to, 'h2') });
    s.on('error', () => {});
    s.on('close', () => {
      if (this.#sessions.get(key) === s) this.#sessions.delete(key);
    });
    s.setTimeout(this.#limits.idleTimeoutMs, () => s.close());
    s.unref();
    this.#sessions.set(key, s);
    return s;
  }

  /** Drops pools of endpoints no longer in the config (keys are `host:port`). */
  retain(keys: ReadonlySet<string>): void {
    const base = (k: string) => k.split('|', 1)[0]!;
    for (const [k, a] of this.#agents) {
      if (!keys.has(base(k))) {
        a.destroy();
        this.#agents.delete(k);
      }
    }
    for (const [k, s] of this.#sessions) {
      if (!keys.has(base(k))) {
        s.close();
        this.#sessions.delete(k);
      }
    }
  }

  close(): void {
    for (const a of this.#agents.values()) a.destroy();
    for (const s of this.#sessions.values()) s.destroy();
    this.#agents.clear();
    this.#sessions.clear();
  }
}
