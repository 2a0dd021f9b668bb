// The hop from this proxy to an upstream (another sidecar, or the local app at inbound): every
// connection the proxy opens goes through here, so mutual TLS 1.3 with ALPN (a later issue)
// plugs in at this one module. Today: plain TCP, HTTP/1.1 keep-alive pools and HTTP/2 sessions,
// one pool per upstream endpoint.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

export interface UpstreamAddress {
  host: string;
  port: number;
  /** Whether a Weft sidecar runs beside the endpoint (mTLS becomes possible). */
  meshed: boolean;
}

export interface PoolLimits {
  maxConnectionsPerEndpoint: number;
  idleTimeoutMs: number;
}

export class Transport {
  readonly #agents = new Map<string, http.Agent>();
  readonly #sessions = new Map<string, http2.ClientHttp2Session>();
  readonly #limits: PoolLimits;

  constructor(limits: PoolLimits) {
    this.#limits = limits;
  }

  /** A raw TCP connection (opaque TCP, TLS passthrough, WebSocket after the upgrade). */
  connect(to: UpstreamAddress): net.Socket {
    const s = net.connect({ host: to.host, port: to.port, noDelay: true });
    return s;
  }

  /** The keep-alive HTTP/1.1 pool for an endpoint. */
  agent(to: UpstreamAddress, maxConnections?: number): http.Agent {
    const key = `${to.host}:${to.port}`;
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
      this.#agents.set(key, a);
    }
    return a;
  }

  /** The shared HTTP/2 (h2c prior knowledge) session to an endpoint, reconnected when closed. */
  session(to: UpstreamAddress): http2.ClientHttp2Session {
    const key = `${to.host}:${to.port}`;
    const existing = this.#sessions.get(key);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const s = http2.connect(`http://${to.host.includes(':') ? `[${to.host}]` : to.host}:${to.port}`);
    s.on('error', () => {});
    s.on('close', () => {
      if (this.#sessions.get(key) === s) this.#sessions.delete(key);
    });
    s.setTimeout(this.#limits.idleTimeoutMs, () => s.close());
    s.unref();
    this.#sessions.set(key, s);
    return s;
  }

  /** Drops pools of endpoints no longer in the config. */
  retain(keys: ReadonlySet<string>): void {
    for (const [k, a] of this.#agents) {
      if (!keys.has(k)) {
        a.destroy();
        this.#agents.delete(k);
      }
    }
    for (const [k, s] of this.#sessions) {
      if (!keys.has(k)) {
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
