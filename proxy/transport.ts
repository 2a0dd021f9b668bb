// The hop from this proxy to an upstream (another sidecar, or the local app at inbound): every
// connection the proxy opens goes through here. To a meshed endpoint with an identity, when the
// proxy has its own workload identity and mTLS is not disabled for the destination, the hop is
// mutual TLS 1.3 (WorkloadIdentity.connect) with ALPN naming the inner protocol (weft-http/1.1,
// weft-h2, weft-tcp), and the peer must present the endpoint's SPIFFE ID. Otherwise plain TCP.
// HTTP/1.1 keep-alive pools and HTTP/2 sessions, one pool per upstream endpoint (and per mode).
// The mux: an HTTP/1.1 app's requests to a peer sidecar as HTTP/2 streams (ALPN weft-h2-http/1.1)
// on a few long-lived mTLS connections per endpoint; a peer that answers weft-http/1.1 instead (an
// older sidecar) is remembered and served HTTP/1.1 over mTLS. New mTLS connections resume the
// last TLS session made with the same peer under the same identity (TLS 1.3 tickets).
import type HttpTypes from 'node:http';
import type http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import { http, isTlsSocket, http2 as lazyHttp2 } from './builtins.ts';
import { ALPN, type InnerProtocol, type WorkloadIdentity } from './identity/tls.ts';

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
  /** HTTP/2 connections per peer sidecar carrying HTTP/1.1 requests (0: no mux, HTTP/1.1 over mTLS). */
  muxConnections?: number;
  /** Streams open on a mux connection before another one is opened (up to muxConnections). */
  muxStreams?: number;
}

/** One mux connection to a peer sidecar: its session, its open streams, and whether the peer took the ALPN. */
export interface MuxSession {
  session: http2.ClientHttp2Session;
  streams: number;
  /** true once the peer chose weft-h2-http/1.1; false if it chose HTTP/1.1 (fall back); rejects if the connection failed. */
  ready: Promise<boolean>;
  /** Set once `ready` settled true. */
  muxed: boolean;
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

/** Socket error codes that say the address does not answer at all (no reset, no refusal). */
const UNREACHABLE_CODES: ReadonlySet<string | undefined> = new Set([
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** Whether a failed connection's error code says its address does not answer at all. */
export function unreachableCode(code: string | undefined): boolean {
  return UNREACHABLE_CODES.has(code);
}

/** Counts of the hop's TLS outcomes, for metrics. */
export interface TransportEvents {
  /** A mutual TLS connection to a peer was established. */
  secured?(peerId: string, tlsVersion: string): void;
  /** A mutual TLS connection failed: `code` is WEFT_PEER_IDENTITY, a TLS alert code, or a socket error. */
  tlsFailed?(peerId: string, code: string): void;
  /** A connection to a meshed endpoint went out in plaintext because this proxy has no identity yet. */
  plaintext?(peerId: string): void;
  /** A mutual TLS connection resumed an earlier session (no full handshake). */
  resumed?(peerId: string): void;
}

/** Most TLS sessions kept for resumption (one per peer endpoint). */
const MAX_TLS_SESSIONS = 4096;

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
  readonly #mux = new Map<string, MuxSession[]>();
  /** Peer endpoints that answered HTTP/1.1 to the mux ALPN (older sidecars). */
  readonly #noMux = new Set<string>();
  /** The last TLS session per peer endpoint, per client context: a reload of the identity starts afresh. */
  readonly #tlsSessions = new WeakMap<tls.SecureContext, Map<string, Buffer>>();
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

  #tls(to: UpstreamAddress, protocol: InnerProtocol | InnerProtocol[]): tls.TLSSocket {
    const peer = to.peerId!;
    const identity = this.identity!;
    let saved = this.#tlsSessions.get(identity.clientContext);
    if (!saved) {
      saved = new Map();
      this.#tlsSessions.set(identity.clientContext, saved);
    }
    const sessions = saved;
    const key = `${to.host}:${to.port}|${peer}`;
    const s = identity.connect({
      host: to.host,
      port: to.port,
      expectedId: peer,
      protocol,
      session: sessions.get(key),
    });
    s.on('session', (session: Buffer) => {
      if (sessions.size < MAX_TLS_SESSIONS || sessions.has(key)) sessions.set(key, session);
    });
    s.once('secureConnect', () => {
      established.add(s);
      this.#events.secured?.(peer, s.getProtocol() ?? 'unknown');
      if (s.isSessionReused()) this.#events.resumed?.(peer);
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (established.has(s)) return;
      sessions.delete(key);
      this.#events.tlsFailed?.(peer, e.code ?? 'TLS_ERROR');
    });
    return s;
  }

  /** A raw connection (opaque TCP, TLS passthrough, WebSocket after the upgrade). */
  connect(to: UpstreamAddress, protocol: InnerProtocol | InnerProtocol[] = 'tcp'): net.Socket {
    let s: net.Socket;
    if (this.secure(to)) s = this.#tls(to, protocol);
    else {
      if (to.peerId !== undefined) this.#events.plaintext?.(to.peerId);
      s = net.connect({ host: to.host, port: to.port, noDelay: true });
    }
    connectDeadline(s, this.#limits.connectTimeoutMs);
    return s;
  }

  /**
   * Whether anything answers a TCP connect to `to`'s address within the connect timeout: a
   * refusal is an answer (the host is there); a timeout or an unreachable host is not. Plain TCP,
   * closed at once (a peer sidecar sees a connection that sends nothing).
   */
  probe(to: UpstreamAddress): Promise<'answered' | 'unreachable'> {
    return new Promise((resolve) => {
      const s = net.connect({ host: to.host, port: to.port });
      connectDeadline(s, this.#limits.connectTimeoutMs);
      s.once('connect', () => {
        s.destroy();
        resolve('answered');
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        s.destroy();
        resolve(unreachableCode(e.code) ? 'unreachable' : 'answered');
      });
    });
  }

  /** Drops the idle connections and sessions to one endpoint (`host:port`) found unreachable. */
  forget(key: string): void {
    this.#drop((k) => k === key);
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

  /** Whether HTTP/1.1 requests to `to` go as streams on a mux connection (mTLS to a sidecar that takes the ALPN). */
  muxes(to: UpstreamAddress): boolean {
    return (
      (this.#limits.muxConnections ?? 0) > 0 &&
      this.secure(to) &&
      !this.#noMux.has(`${to.host}:${to.port}|${to.peerId}`)
    );
  }

  /** Whether mux is on at all (an identity and muxConnections > 0). */
  get muxing(): boolean {
    return (this.#limits.muxConnections ?? 0) > 0 && this.identity !== undefined;
  }

  /**
   * The mux connection for the next stream to `to`: the least busy one, or a new one while each
   * has muxStreams streams open and fewer than muxConnections are open.
   */
  mux(to: UpstreamAddress): MuxSession {
    const key = `${to.host}:${to.port}|${to.peerId}`;
    const list = (this.#mux.get(key) ?? []).filter((m) => !m.session.closed && !m.session.destroyed);
    this.#mux.set(key, list);
    let best: MuxSession | undefined;
    for (const m of list) if (!best || m.streams < best.streams) best = m;
    const maxStreams = this.#limits.muxStreams ?? 100;
    if (best && (best.streams < maxStreams || list.length >= (this.#limits.muxConnections ?? 1))) return best;
    let socket: net.Socket | undefined;
    const authority = `http://${to.host.includes(':') ? `[${to.host}]` : to.host}:${to.port}`;
    const session = lazyHttp2().connect(authority, {
      createConnection: () => {
        socket = this.connect(to, ['mux', 'http1']);
        return socket;
      },
    });
    const m: MuxSession = { session, streams: 0, muxed: false, ready: Promise.resolve(false) };
    m.ready = new Promise<boolean>((resolve, reject) => {
      const s = socket as tls.TLSSocket;
      s.once('secureConnect', () => {
        if (s.alpnProtocol === ALPN.mux) {
          m.muxed = true;
          resolve(true);
          return;
        }
        // An older sidecar: HTTP/1.1 over mTLS to it from now on.
        this.#noMux.add(key);
        resolve(false);
        session.destroy();
      });
      session.once('close', () => reject(new Error('connection closed before the TLS handshake')));
      session.once('error', reject);
    });
    m.ready.catch(() => {});
    session.on('error', () => {});
    session.on('close', () => {
      const l = this.#mux.get(key);
      const i = l?.indexOf(m) ?? -1;
      if (i >= 0) l!.splice(i, 1);
    });
    session.setTimeout(this.#limits.idleTimeoutMs, () => session.close());
    session.unref();
    list.push(m);
    return m;
  }

  /** GOAWAY on every mux and HTTP/2 connection: streams open finish, new ones go elsewhere. */
  goaway(): void {
    for (const l of this.#mux.values()) for (const m of l) m.session.close();
    for (const s of this.#sessions.values()) s.close();
  }

  /**
   * Drops pools of endpoints no longer in the config (keys are `host:port`). The local app's
   * (`localHost`, the inbound target) is never a Service endpoint and stays: closing its HTTP/2
   * session on every config change failed the streams still opening on it.
   */
  retain(keys: ReadonlySet<string>, localHost?: string): void {
    this.#drop((k) => !keys.has(k) && k.slice(0, k.lastIndexOf(':')) !== localHost);
  }

  /** Drops the pools of the endpoints (`host:port`) `gone` says yes to. */
  #drop(gone: (key: string) => boolean): void {
    const base = (k: string) => k.split('|', 1)[0]!;
    for (const [k, l] of this.#mux) {
      if (!gone(base(k))) continue;
      for (const m of l) m.session.close();
      this.#mux.delete(k);
    }
    for (const k of this.#noMux) if (gone(base(k))) this.#noMux.delete(k);
    const sessions = this.identity && this.#tlsSessions.get(this.identity.clientContext);
    if (sessions) for (const k of sessions.keys()) if (gone(base(k))) sessions.delete(k);
    for (const [k, a] of this.#agents) {
      if (gone(base(k))) {
        a.destroy();
        this.#agents.delete(k);
      }
    }
    for (const [k, s] of this.#sessions) {
      if (gone(base(k))) {
        s.close();
        this.#sessions.delete(k);
      }
    }
  }

  close(): void {
    for (const l of this.#mux.values()) for (const m of l) m.session.destroy();
    this.#mux.clear();
    for (const a of this.#agents.values()) a.destroy();
    for (const s of this.#sessions.values()) s.destroy();
    this.#agents.clear();
    this.#sessions.clear();
  }
}
