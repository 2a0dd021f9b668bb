// weft-proxy's data plane, wired: `startProxy` takes ports (0 for tests), builds the ProxyCore
// every transport shares (proxy/context.ts), the HTTP servers, inbound TLS and the two
// listeners, and returns the bound ports, `apply` for a new config and a graceful `drain`.
// Request policy is not decided here: outbound/plan.ts (the plan), inbound/admission.ts (the
// authorization request), resilience/ (endpoint state, retries), telemetry/finish.ts (metrics and
// access log). Transports: listen/ (listeners, detection, dispatch, inbound TLS), tcp/ (opaque
// TCP), http/ (node:http and HTTP/2 servers, requests both ways, responses, upgrades), http1/
// (the HTTP/1.1 fast paths: codec, pool, connection loop, inbound and outbound adapters).
import type net from 'node:net';
import type { ProxyConfig } from '../api/index.ts';
import type { GatewayConfig } from '../api/proxyconfig.ts';
import { AppProtocols } from './appproto.ts';
import { type Authorize, allowAll } from './authz/matcher.ts';
import type { Now, Random } from './clock.ts';
import { systemNow, systemRandom } from './clock.ts';
import {
  type ConnContext,
  DEFAULT_LIMITS,
  type Direction,
  type Identity,
  type Limits,
  type Log,
  type ProxyCore,
} from './context.ts';
import { makeHttpServers } from './http/servers.ts';
import { inboundFastPath } from './http1/inbound.ts';
import { outboundFastPath } from './http1/outbound.ts';
import type { WorkloadIdentity } from './identity/tls.ts';
import { dispatch, type Transports } from './listen/dispatch.ts';
import { GatewayTls } from './listen/gatewaytls.ts';
import { makeGatewayListener, makeListener, RedirectGuard, serveGatewayHttp } from './listen/listener.ts';
import { InboundTls } from './listen/tls.ts';
import type { ProxyMetrics } from './metrics.ts';
import { DEFAULT_PATH_NORMALIZATION, type NormalizedTarget, normalizeTarget } from './pathnorm.ts';
import { Endpoints } from './resilience/endpoints.ts';
import { RoutingTable } from './table.ts';
import { type AccessLog, finishReporter } from './telemetry/finish.ts';
import type { Tracing } from './tracing.ts';
import { Transport } from './transport.ts';

export { type Authorize, type AuthzRequest, type AuthzVerdict, allowAll } from './authz/matcher.ts';
export { DEFAULT_LIMITS, type Identity, type Limits } from './context.ts';

/** How long the local app has to answer the HTTP/2 preface when its protocol is learnt (proxy/appproto.ts). */
const APP_PROBE_TIMEOUT_MS = 1_000;

export interface ProxyOptions {
  identity: Identity;
  ports: { outbound: number; inbound: number };
  host?: string;
  /** Where inbound connections are forwarded: the app on loopback by default. */
  inboundTarget?: string;
  limits?: Partial<Limits>;
  metrics: ProxyMetrics;
  tracing?: Tracing;
  /** JSON access logs; asked per request so the entry is built only when logging is on. */
  accessLog?: AccessLog;
  authorize?: Authorize;
  /** Inbound HTTP/1.1 on raw sockets (proxy/http1/) instead of node:http; default true. */
  inboundFastPath?: boolean;
  /** Outbound HTTP/1.1 on raw sockets (proxy/http1/) instead of node:http; default true. */
  outboundFastPath?: boolean;
  /** This pod's workload certificate (mTLS); can also come later through ProxyHandle.setWorkloadIdentity. */
  workloadIdentity?: WorkloadIdentity;
  /** True in debug log level: denials carry `x-weft-authz: <explanation>`. */
  debugHeaders?: () => boolean;
  now?: Now;
  random?: Random;
  log?: Log;
}

export interface ProxyHandle {
  ports: { outbound: number; inbound: number };
  /** Starts (or replaces) mTLS with this workload identity: inbound termination and outbound origination. */
  setWorkloadIdentity(identity: WorkloadIdentity): void;
  /** Swaps the whole config at once; in-flight requests finish on the table they started with. */
  apply(config: ProxyConfig): void;
  /**
   * Gateway mode (docs/ingress.md): serve this Gateway's listeners (a listener per `bind` port,
   * opened or closed to match) with its virtual hosts over the current config. A port that
   * cannot be bound is logged and left out; the others serve. `certificates`: the HTTPS
   * listeners' PEM files by name (gatewaytls.ts); one that does not load keeps its last good one.
   */
  setGateway(gateway: GatewayConfig, certificates?: ReadonlyMap<string, string>): Promise<void>;
  table(): RoutingTable | undefined;
  stats(): Record<string, unknown>;
  /** Stops accepting, lets in-flight requests finish (up to timeoutMs), then closes everything. */
  drain(timeoutMs: number): Promise<void>;
  close(): void;
}

/**
 * The listen backlog of the sidecar's and gateway's listeners: a burst of new connections (a
 * client opening thousands at once, callers reconnecting after a restart) waits in the kernel's
 * accept queue while the event loop is busy. Node's default, 511, dropped the SYNs past it, and
 * each dropped connection waited a second or more for the SYN retransmit (a steady TCP client
 * timed out during a 2,000-connection flood). 4096 is the kernel's somaxconn default.
 */
export const LISTEN_BACKLOG = 4096;

export async function startProxy(opts: ProxyOptions): Promise<ProxyHandle> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const now = opts.now ?? systemNow;
  const random = opts.random ?? systemRandom;
  const metrics = opts.metrics;
  const log: Log = opts.log ?? (() => {});
  const authorize = opts.authorize ?? allowAll;
  const inboundTarget = opts.inboundTarget ?? '127.0.0.1';
  const appProtocols = new AppProtocols(inboundTarget, APP_PROBE_TIMEOUT_MS);
  const transport = new Transport(
    {
      maxConnectionsPerEndpoint: limits.maxConnectionsPerEndpoint,
      idleTimeoutMs: limits.idleTimeoutMs,
      connectTimeoutMs: limits.connectTimeoutMs,
      muxConnections: limits.muxConnections,
      muxStreams: limits.muxStreams,
    },
    {
      secured: (peer, version) =>
        metrics.mtlsConnections.inc({ direction: 'outbound', tls_version: version, peer }),
      plaintext: () => metrics.plaintextHops.inc({ direction: 'outbound', reason: 'no_identity' }),
      resumed: () => metrics.mtlsResumed.inc({ direction: 'outbound' }),
      tlsFailed: (peer, code) => {
        metrics.mtlsFailures.inc({ direction: 'outbound', reason: code });
        log('warn', 'mTLS connection to a peer sidecar failed', { peer, code });
      },
    },
  );
  const debugHeaders = opts.debugHeaders ?? (() => false);
  const ctxOf = new WeakMap<object, ConnContext>();
  const sockets = new Set<net.Socket>();
  let table: RoutingTable | undefined;
  let inflight = 0;
  let draining = false;
  let drained: (() => void) | undefined;
  const id = opts.identity;
  /** The bound listener ports (known once listening; opts.ports may say 0). */
  const ports = { ...opts.ports };

  const done = () => {
    inflight--;
    if (draining && inflight === 0) drained?.();
  };

  // Endpoints: live state behind the plan (proxy/resilience/endpoints.ts).
  const endpoints = new Endpoints(now, random, metrics, log);
  const { planState } = endpoints;
  const reportFinish = finishReporter(metrics, opts.accessLog, now);

  /**
   * Where every request is admitted, whatever its transport: the target normalized by the mesh's
   * pathNormalization, the one authorization, routing and the app all see.
   */
  function admit(target: string | undefined, host: string | undefined): NormalizedTarget {
    return normalizeTarget(
      target ?? '/',
      table?.config.mesh.pathNormalization ?? DEFAULT_PATH_NORMALIZATION,
      host,
    );
  }

  const core: ProxyCore = {
    id,
    limits,
    now,
    random,
    metrics,
    log,
    authorize,
    debugHeaders,
    tracing: opts.tracing,
    accessLog: opts.accessLog,
    inboundTarget,
    appProtocols,
    transport,
    endpoints,
    ports,
    reportFinish,
    get table() {
      return table;
    },
    get draining() {
      return draining;
    },
    begin: () => {
      inflight++;
    },
    done,
    admit,
    sockets,
    ctxOf,
  };

  // ---- HTTP/1.1 fast paths (proxy/http1/) ---------------------------------------------------
  const fastDeps = {
    connLimits: limits,
    identity: id,
    now,
    tracingActive: () => opts.tracing?.active() === true,
    admit,
    draining: () => draining,
    started: core.begin,
    ended: done,
    report: reportFinish,
    error: (direction: Direction, code: string) => metrics.proxyErrors.inc({ direction, code }),
  };
  const fastInbound =
    (opts.inboundFastPath ?? true)
      ? inboundFastPath({
          ...fastDeps,
          appHost: inboundTarget,
          authorize: opts.authorize,
          config: () => table?.config,
          debugHeaders,
        })
      : undefined;
  const fastOutbound =
    (opts.outboundFastPath ?? true)
      ? outboundFastPath({
          ...fastDeps,
          table: () => table,
          planState,
          endpoints,
          transport,
          retries: metrics.retries,
        })
      : undefined;
  // An endpoint whose tries wait is checked with a connect of its own; one found unreachable
  // loses its idle connections too (they lead nowhere).
  endpoints.probe = (to) => transport.probe(to);
  endpoints.onUnreachable = (key) => {
    transport.forget(key);
    fastOutbound?.retain((k) => k !== key);
  };

  // ---- wiring: servers, fast paths, inbound TLS, listeners -----------------------------------
  const transports: Transports = {
    servers: {
      outbound: makeHttpServers(core, 'outbound'),
      inbound: makeHttpServers(core, 'inbound'),
    },
    fast: {},
  };
  if (fastInbound)
    transports.fast.inbound = (socket, ctx, initial, onHead, handoff) =>
      fastInbound.serve(
        socket,
        { port: ctx.dst?.port ?? 0, peer: ctx.peer, sourceIp: ctx.sourceIp },
        initial,
        onHead,
        handoff,
      );
  if (fastOutbound)
    transports.fast.outbound = (socket, ctx, initial, onHead, handoff) =>
      fastOutbound.serve(socket, ctx.dst, initial, onHead, handoff);
  const inboundTls = new InboundTls(core, (socket, ctx, proto) =>
    dispatch(core, transports, 'inbound', socket, ctx, proto, Buffer.alloc(0)),
  );
  const setWorkloadIdentity = (wi: WorkloadIdentity) => inboundTls.setWorkloadIdentity(wi);
  if (opts.workloadIdentity) setWorkloadIdentity(opts.workloadIdentity);
  const listenerDeps = { transports, tls: inboundTls, guard: new RedirectGuard(core) };
  const outbound = makeListener(core, 'outbound', listenerDeps);
  const inbound = makeListener(core, 'inbound', listenerDeps);
  const host = opts.host ?? '0.0.0.0';
  await Promise.all([
    new Promise<void>((r, j) =>
      outbound
        .once('error', j)
        .listen({ port: opts.ports.outbound, host, backlog: LISTEN_BACKLOG }, () => r()),
    ),
    new Promise<void>((r, j) =>
      inbound.once('error', j).listen({ port: opts.ports.inbound, host, backlog: LISTEN_BACKLOG }, () => r()),
    ),
  ]);
  ports.outbound = (outbound.address() as net.AddressInfo).port;
  ports.inbound = (inbound.address() as net.AddressInfo).port;

  const gatewayTls = new GatewayTls(core, (t, ctx, alpn) => serveGatewayHttp(core, transports, t, ctx, alpn));
  let gateway: GatewayConfig | undefined;
  /** Gateway listeners by bound port, with the listener port they serve. */
  const gatewayListeners = new Map<number, { server: net.Server; port: number }>();
  const closeGateway = () => {
    for (const l of gatewayListeners.values()) l.server.close();
  };

  const handle: ProxyHandle = {
    ports: { ...ports },
    setWorkloadIdentity,
    async setGateway(gw, certificates = new Map()) {
      gateway = gw;
      for (const p of gatewayTls.update(gw, certificates)) log('error', `gateway certificate refused: ${p}`);
      if (table) table = new RoutingTable(table.config, gw);
      const wanted = new Map(gw.ports.map((p) => [p.bind, p.port]));
      for (const [bind, l] of gatewayListeners)
        if (wanted.get(bind) !== l.port) {
          l.server.close();
          gatewayListeners.delete(bind);
        }
      for (const [bind, port] of wanted) {
        if (gatewayListeners.has(bind)) continue;
        const server = makeGatewayListener(core, transports, port, { tls: gatewayTls, bind });
        try {
          await new Promise<void>((r, j) =>
            server.once('error', j).listen({ port: bind, host, backlog: LISTEN_BACKLOG }, () => r()),
          );
          gatewayListeners.set(bind, { server, port });
        } catch (e) {
          log('error', `gateway listener for port ${port} cannot bind ${bind}: ${(e as Error).message}`);
        }
      }
    },
    apply(config) {
      table = new RoutingTable(config, gateway);
      appProtocols.clear();
      const keys = new Set<string>();
      for (const s of config.services)
        for (const e of s.endpoints) for (const p of Object.values(e.ports)) keys.add(`${e.address}:${p}`);
      endpoints.apply(config, keys);
      transport.retain(keys, inboundTarget);
      fastOutbound?.retain((k) => keys.has(k));
    },
    table: () => table,
    stats() {
      return {
        inflight,
        connections: sockets.size,
        draining,
        endpoints: [...endpoints.allStats()].map((s) => ({
          endpoint: s.key,
          ewmaMs: Math.round(s.ewmaMs * 1000) / 1000,
          inflight: s.inflight,
          ejected: endpoints.outlier.isEjected(s.outlier),
          timesEjected: s.outlier.timesEjected,
        })),
        clusters: Object.fromEntries([...endpoints.clusters].map(([k, c]) => [k, { active: c.active }])),
      };
    },
    async drain(timeoutMs) {
      draining = true;
      outbound.close();
      inbound.close();
      closeGateway();
      // HTTP/2 connections both ways get a GOAWAY: open streams finish, callers open no new ones.
      transport.goaway();
      transports.servers.inbound.goaway();
      transports.servers.outbound.goaway();
      // Idle keep-alive connections go now; busy ones are closed after their response.
      for (const s of sockets) {
        const ctx = ctxOf.get(s);
        if (ctx && s.readyState === 'open' && inflight === 0) s.end();
      }
      if (inflight > 0) {
        await new Promise<void>((resolve) => {
          drained = resolve;
          setTimeout(resolve, timeoutMs).unref();
        });
      }
      handle.close();
    },
    close() {
      outbound.close();
      inbound.close();
      closeGateway();
      for (const s of sockets) s.destroy();
      transport.close();
      fastInbound?.close();
      fastOutbound?.close();
    },
  };
  return handle;
}
