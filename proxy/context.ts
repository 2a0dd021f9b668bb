// What every transport of the proxy shares, passed to each as one object instead of being
// captured from startProxy's closure: the options made concrete (limits, clock, metrics,
// authorization), the live state (the routing table, in-flight count, draining), the upstream
// Transport and endpoint state, and the per-connection context keyed by socket. proxy.ts builds
// one ProxyCore per proxy; listen/, tcp/ and http/ take it as their first argument.
import type HttpTypes from 'node:http';
import type net from 'node:net';
import { SIDECAR_HEADERS } from '../api/constants.ts';
import type { AppProtocols } from './appproto.ts';
import type { Authorize } from './authz/matcher.ts';
import type { Now, Random } from './clock.ts';
import type { InboundConn } from './inbound/admission.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { NormalizedTarget } from './pathnorm.ts';
import type { Endpoints } from './resilience/endpoints.ts';
import type { RoutingTable, ServiceTarget } from './table.ts';
import type { AccessLog, FinishRecord } from './telemetry/finish.ts';
import type { Tracing } from './tracing.ts';
import type { Transport } from './transport.ts';

export type Direction = 'inbound' | 'outbound';

export interface Limits {
  /** Downstream connections per listener; beyond it new connections are refused. */
  maxConnections: number;
  /** Time for a client to send its request headers (408 after). */
  headersTimeoutMs: number;
  /** Most bytes of request headers (431 beyond). */
  maxHeaderBytes: number;
  /** Idle keep-alive connections are closed after this. */
  idleTimeoutMs: number;
  /**
   * Time to wait for the first bytes before giving up on detection: then opaque TCP if the
   * client sent something or the server spoke first; a connection where neither did is closed,
   * and so is an inbound one whose TLS ClientHello is still incomplete.
   */
  detectTimeoutMs: number;
  /** Time for an inbound mTLS handshake to finish once its ClientHello is read (closed after). */
  handshakeTimeoutMs: number;
  /** With no client bytes after this, the upstream connection is opened so a server-first protocol is not delayed. */
  serverFirstGraceMs: number;
  maxConnectionsPerEndpoint: number;
  /**
   * Time for a TCP connection to an upstream to open: an endpoint whose pod is gone drops SYNs,
   * and the kernel would retry them for over a minute. The try then fails as a connect failure
   * (retried once on another endpoint: nothing was sent).
   */
  connectTimeoutMs: number;
  /**
   * Outbound HTTP/1.1 to a peer sidecar over mTLS as HTTP/2 streams (ALPN weft-h2-http/1.1) on
   * at most `muxConnections` connections per upstream endpoint, a new one opened when each has
   * `muxStreams` streams open. 0 connections: HTTP/1.1 over mTLS, one request per connection.
   */
  muxConnections: number;
  muxStreams: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxConnections: 20_000,
  headersTimeoutMs: 10_000,
  maxHeaderBytes: 16 * 1024,
  idleTimeoutMs: 60_000,
  detectTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  serverFirstGraceMs: 50,
  maxConnectionsPerEndpoint: 1024,
  connectTimeoutMs: 1_000,
  // Off by default: at 1,000 rps the mux cost about twice the CPU per request of HTTP/1.1 over
  // mTLS (docs/proxy.md, HTTP/2 between sidecars).
  muxConnections: 0,
  muxStreams: 100,
};

/** Who the proxy serves: this pod. */
export interface Identity {
  namespace: string;
  podName: string;
  workload: string;
  labels: Record<string, string>;
}

/** Sidecar-to-sidecar metadata: who called (request) and who answered (response). Stripped at the edges. */
export const H_SRC_WORKLOAD = SIDECAR_HEADERS.srcWorkload;
export const H_SRC_NAMESPACE = SIDECAR_HEADERS.srcNamespace;
export const H_DST_WORKLOAD = 'weft-dst-workload';
export const H_DST_NAMESPACE = 'weft-dst-namespace';

/** One downstream connection, as the listener accepted it. */
export interface ConnContext {
  direction: Direction;
  dst: { address: string; port: number } | undefined;
  target: ServiceTarget | undefined;
  /** Caller's address. */
  sourceIp?: string;
  /** The peer sidecar's verified SPIFFE ID on an inbound mTLS connection. */
  peer?: string;
  /** Inbound HTTP/2 from a peer sidecar whose streams carry an HTTP/1.1 app's requests (ALPN weft-h2-http/1.1). */
  muxed?: boolean;
  /** Inbound opaque TCP from a peer sidecar that waits for TCP_ACK (ALPN weft-tcp-ack). */
  tcpAck?: boolean;
}

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

/** One proxy's shared state and dependencies: what each transport gets instead of a closure. */
export interface ProxyCore {
  readonly id: Identity;
  readonly limits: Limits;
  readonly now: Now;
  readonly random: Random;
  readonly metrics: ProxyMetrics;
  readonly log: Log;
  readonly authorize: Authorize;
  /** True in debug log level: denials carry `x-weft-authz: <explanation>`. */
  readonly debugHeaders: () => boolean;
  readonly tracing: Tracing | undefined;
  readonly accessLog: AccessLog | undefined;
  /** Where inbound connections are forwarded: the app's host. */
  readonly inboundTarget: string;
  readonly appProtocols: AppProtocols;
  readonly transport: Transport;
  readonly endpoints: Endpoints;
  /** The bound listener ports. */
  readonly ports: { outbound: number; inbound: number };
  /** Writes the metrics and access log of one finished request. */
  readonly reportFinish: (f: FinishRecord) => void;
  /** The applied config's table (undefined before the first config). */
  readonly table: RoutingTable | undefined;
  readonly draining: boolean;
  /** A request or stream starts; `done` when it ends (drain waits for them). */
  begin(): void;
  done(): void;
  /** The request target normalized by the mesh's pathNormalization (what authz, routing and the app see). */
  admit(target: string | undefined, host: string | undefined): NormalizedTarget;
  /** Every downstream socket of both listeners. */
  readonly sockets: Set<net.Socket>;
  /** The ConnContext of a downstream socket (plain or TLS). */
  readonly ctxOf: WeakMap<object, ConnContext>;
}

export function headerOf(h: HttpTypes.IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

export function serviceLabel(t: ServiceTarget | undefined): string {
  return t ? `${t.service.name}.${t.service.namespace}` : 'unknown';
}

/** The inbound connection's facts the admission needs. */
export function inboundConn(ctx: ConnContext | undefined): InboundConn {
  return { port: ctx?.dst?.port ?? 0, peer: ctx?.peer, sourceIp: ctx?.sourceIp };
}
