// weft-proxy's data plane: the outbound (15001) and inbound (15006) listeners, protocol
// detection, HTTP routing with the resilience policies, and TCP passthrough. `startProxy`
// takes ports (0 for tests) and returns the bound ports and a graceful `drain`.
// Request policy is not decided here: outbound/plan.ts (the plan), inbound/admission.ts (the
// authorization request), resilience/ (endpoint state, retries), telemetry/finish.ts (metrics and
// access log). Over 400 lines because the transports themselves (node:http/HTTP/2 handleHttp,
// upgrades, opaque TCP, listeners with detection, inbound mTLS, the fast-path adapters) still
// share this closure; moving them to http/, tcp/ and listen/ is the open part of issue 12.
import { AsyncLocalStorage } from 'node:async_hooks';
import type HttpTypes from 'node:http';
import type http2 from 'node:http2';
import net from 'node:net';
import { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { type ProxyConfig, SIDECAR_HEADERS } from '../api/index.ts';
import { AppProtocols } from './appproto.ts';
import { denialMessage } from './authz/enforce.ts';
import { type Authorize, type AuthzVerdict, allowAll } from './authz/matcher.ts';
import { http, http2 as lazyHttp2, tls as lazyTls } from './builtins.ts';
import { MAX_HELLO_BYTES, offersWeftAlpn, parseClientHello } from './clienthello.ts';
import type { Now, Random } from './clock.ts';
import { systemNow, systemRandom } from './clock.ts';
import {
  detectProtocol,
  H2_PREFACE_LENGTH,
  type Protocol,
  protocolForAppProtocol,
  SERVER_FIRST_PORTS,
} from './detect.ts';
import { type ProxyErrorCode, statusForError } from './errors.ts';
import {
  badTarget,
  HOP_BY_HOP,
  headerValue,
  IDEMPOTENT,
  KeyedPool,
  LocalPool,
  serveInbound,
} from './h1fast.ts';
import { type Decision, plain, serveOutbound } from './h1out.ts';
import { peerSpiffeId, protocolOfAlpn, type WorkloadIdentity } from './identity/tls.ts';
import { authzRequest, callerOf, type InboundConn, namespaceOfSpiffe } from './inbound/admission.ts';
import { observeLatency } from './lb.ts';
import { LocalAddresses } from './localaddr.ts';
import type { ProxyMetrics } from './metrics.ts';
import { originalDst } from './native/index.ts';
import { forwardHead, rawHeaderLines, redirectAnswer, redirectRaw, responseHead } from './outbound/apply.ts';
import { type OutboundPlan, planOutbound } from './outbound/plan.ts';
import { DEFAULT_PATH_NORMALIZATION, type NormalizedTarget, normalizeTarget } from './pathnorm.ts';
import { Endpoints, mtlsModeFor, type Picked } from './resilience/endpoints.ts';
import { retriable, spendRetry } from './resilience/retry.ts';
import { type CompiledRoute, RoutingTable, type ServiceTarget } from './table.ts';
import { type AccessLog, finishReporter } from './telemetry/finish.ts';
import type { Tracing } from './tracing.ts';
import { isEstablished, Transport, type UpstreamAddress, whenEstablished } from './transport.ts';
import {
  type Attempt,
  type AttemptRequest,
  attemptHttp1,
  attemptHttp2,
  UpstreamFailure,
  type UpstreamResponse,
} from './upstream.ts';

export type Direction = 'inbound' | 'outbound';

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
};

/** How long the local app has to answer the HTTP/2 preface when its protocol is learnt (proxy/appproto.ts). */
const APP_PROBE_TIMEOUT_MS = 1_000;

/** Who the proxy serves: this pod. */
export interface Identity {
  namespace: string;
  podName: string;
  workload: string;
  labels: Record<string, string>;
}

export { type Authorize, type AuthzRequest, type AuthzVerdict, allowAll } from './authz/matcher.ts';

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
  /** Inbound HTTP/1.1 on raw sockets (proxy/h1fast.ts) instead of node:http; default true. */
  inboundFastPath?: boolean;
  /** Outbound HTTP/1.1 on raw sockets (proxy/h1out.ts) instead of node:http; default true. */
  outboundFastPath?: boolean;
  /** This pod's workload certificate (mTLS); can also come later through ProxyHandle.setWorkloadIdentity. */
  workloadIdentity?: WorkloadIdentity;
  /** True in debug log level: denials carry `x-weft-authz: <explanation>`. */
  debugHeaders?: () => boolean;
  now?: Now;
  random?: Random;
  log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** Sidecar-to-sidecar metadata: who called (request) and who answered (response). Stripped at the edges. */
export const H_SRC_WORKLOAD = SIDECAR_HEADERS.srcWorkload;
export const H_SRC_NAMESPACE = SIDECAR_HEADERS.srcNamespace;
export const H_DST_WORKLOAD = 'weft-dst-workload';
export const H_DST_NAMESPACE = 'weft-dst-namespace';

interface ConnContext {
  direction: Direction;
  dst: { address: string; port: number } | undefined;
  target: ServiceTarget | undefined;
  /** Caller's address. */
  sourceIp?: string;
  /** The peer sidecar's verified SPIFFE ID on an inbound mTLS connection. */
  peer?: string;
}

/** The trust domain in a SPIFFE ID spiffe://<td>/…. */
function trustDomainOf(id: string): string | undefined {
  return /^spiffe:\/\/([^/]+)\//.exec(id)?.[1];
}

type DownReq = HttpTypes.IncomingMessage | http2.Http2ServerRequest;
type DownRes = HttpTypes.ServerResponse | http2.Http2ServerResponse;

function headerOf(h: HttpTypes.IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function forwardHeaders(h: HttpTypes.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const conn = headerOf(h, 'connection');
  const extra = conn
    ? new Set(
        conn
          .toLowerCase()
          .split(',')
          .map((s) => s.trim()),
      )
    : undefined;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':') || HOP_BY_HOP.has(k) || extra?.has(k)) continue;
    out[k] = v;
  }
  if (headerOf(h, 'te')?.includes('trailers')) out.te = 'trailers';
  return out;
}

export interface ProxyHandle {
  ports: { outbound: number; inbound: number };
  /** Starts (or replaces) mTLS with this workload identity: inbound termination and outbound origination. */
  setWorkloadIdentity(identity: WorkloadIdentity): void;
  /** Swaps the whole config at once; in-flight requests finish on the table they started with. */
  apply(config: ProxyConfig): void;
  table(): RoutingTable | undefined;
  stats(): Record<string, unknown>;
  /** Stops accepting, lets in-flight requests finish (up to timeoutMs), then closes everything. */
  drain(timeoutMs: number): Promise<void>;
  close(): void;
}

export async function startProxy(opts: ProxyOptions): Promise<ProxyHandle> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const now = opts.now ?? systemNow;
  const random = opts.random ?? systemRandom;
  const metrics = opts.metrics;
  const log = opts.log ?? (() => {});
  const authorize = opts.authorize ?? allowAll;
  const inboundTarget = opts.inboundTarget ?? '127.0.0.1';
  const appProtocols = new AppProtocols(inboundTarget, APP_PROBE_TIMEOUT_MS);
  const transport = new Transport(
    {
      maxConnectionsPerEndpoint: limits.maxConnectionsPerEndpoint,
      idleTimeoutMs: limits.idleTimeoutMs,
    },
    {
      secured: (peer, version) =>
        metrics.mtlsConnections.inc({ direction: 'outbound', tls_version: version, peer }),
      plaintext: () => metrics.plaintextHops.inc({ direction: 'outbound', reason: 'no_identity' }),
      tlsFailed: (peer, code) => {
        metrics.mtlsFailures.inc({ direction: 'outbound', reason: code });
        log('warn', 'mTLS connection to a peer sidecar failed', { peer, code });
      },
    },
  );
  const debugHeaders = opts.debugHeaders ?? (() => false);
  const ctxOf = new WeakMap<object, ConnContext>();
  const sessionCtx = new WeakMap<object, ConnContext>();
  const headerTimers = new WeakMap<object, NodeJS.Timeout>();
  let pendingH2Ctx: ConnContext | undefined;
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

  // ---- endpoints: live state behind the plan (proxy/resilience/endpoints.ts) ----------------
  const endpoints = new Endpoints(now, random, metrics, log);
  const { planState } = endpoints;

  /** The inbound connection's facts the admission needs. */
  function inboundConn(ctx: ConnContext | undefined): InboundConn {
    return { port: ctx?.dst?.port ?? 0, peer: ctx?.peer, sourceIp: ctx?.sourceIp };
  }

  // ---- HTTP ------------------------------------------------------------------------------
  function serviceLabel(t: ServiceTarget | undefined): string {
    return t ? `${t.service.name}.${t.service.namespace}` : 'unknown';
  }

  const reportFinish = finishReporter(metrics, opts.accessLog, now);

  function sendError(
    res: DownRes,
    status: number,
    code: ProxyErrorCode | 'WEFT_FAULT',
    message: string,
    direction: Direction,
  ): void {
    metrics.proxyErrors.inc({ direction, code });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${message}\n`;
    try {
      (res as HttpTypes.ServerResponse).writeHead(status, {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(body),
        'weft-error': code,
        ...(draining && res.req.httpVersionMajor < 2 ? { connection: 'close' } : {}),
      });
      res.end(body);
    } catch {
      res.destroy();
    }
  }

  function requestHasBody(req: DownReq): boolean {
    if (req.httpVersionMajor === 2) return !(req as http2.Http2ServerRequest).stream.endAfterHeaders;
    const cl = headerOf(req.headers, 'content-length');
    return (cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
  }

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

  async function handleHttp(direction: Direction, req: DownReq, res: DownRes): Promise<void> {
    const started = now();
    inflight++;
    let finished = false;
    const h2 = req.httpVersionMajor === 2;
    const ctx = (h2
      ? sessionCtx.get((req as http2.Http2ServerRequest).stream.session as object)
      : ctxOf.get(req.socket)) ?? {
      direction,
      dst: undefined,
      target: undefined,
    };
    const t = table;
    const authority = h2 ? headerOf(req.headers, ':authority') : headerOf(req.headers, 'host');
    const method = req.method ?? 'GET';
    const admitted = admit(req.url, authority);
    const path = admitted.ok ? admitted.target : (req.url ?? '/');
    let target: ServiceTarget | undefined;
    let upstreamWorkload = 'unknown';
    let upstreamNamespace = 'unknown';
    let status = 0;
    let grpcStatus = '';
    const src =
      direction === 'inbound'
        ? callerOf(ctx.peer, (n) => headerOf(req.headers, n))
        : { workload: id.workload, namespace: id.namespace };
    let denied: AuthzVerdict | undefined;

    const finish = () => {
      if (finished) return;
      finished = true;
      done();
      const dst =
        direction === 'inbound'
          ? { workload: id.workload, namespace: id.namespace, service: `${ctx.dst?.port ?? 0}` }
          : { workload: upstreamWorkload, namespace: upstreamNamespace, service: serviceLabel(target) };
      const code = status || res.statusCode || 0;
      reportFinish({
        direction,
        started,
        status: code,
        grpcStatus,
        method,
        authority,
        path,
        src,
        dst,
        principal: ctx.peer,
        denied,
      });
    };
    // 'close' follows 'finish' and also comes for aborted responses: one listener does for both.
    res.once('close', finish);
    if (!admitted.ok) {
      status = 400;
      sendError(res, 400, 'WEFT_BAD_PATH', `bad request target: ${admitted.reason}`, direction);
      return;
    }

    const headers = forwardHeaders(req.headers);
    delete headers[H_SRC_WORKLOAD];
    delete headers[H_SRC_NAMESPACE];
    const span = opts.tracing?.start(
      direction,
      method,
      authority,
      path,
      headerOf(req.headers, 'traceparent'),
    );
    if (span) headers.traceparent = span.traceparent;

    if (direction === 'inbound') {
      const verdict: AuthzVerdict = t
        ? authorize(
            authzRequest(inboundConn(ctx), { method, path, host: authority, headers: req.headers }),
            t.config,
          )
        : { allow: true };
      if (!verdict.allow) {
        denied = verdict;
        status = 403;
        span?.end(403);
        if (debugHeaders() && verdict.explanation && !res.headersSent)
          res.setHeader('x-weft-authz', verdict.explanation.replace(/[\r\n]/g, ' '));
        sendError(res, 403, 'WEFT_DENIED', denialMessage(verdict), direction);
        return;
      }
      const port = ctx.dst?.port;
      if (!port) {
        sendError(res, 502, 'WEFT_NO_ROUTE', 'inbound connection without an original destination', direction);
        return;
      }
      const to: UpstreamAddress = { host: inboundTarget, port, meshed: false };
      // HTTP/2 from the caller is spoken to the app only if the app speaks it (else HTTP/1.1).
      const upH2 = h2 && (await appProtocols.of(t?.config, ctx.dst?.address ?? '', port)) !== 'http1';
      if (res.destroyed) return;
      const hasBody = requestHasBody(req);
      const areq: AttemptRequest = { method, path, authority, headers, hasBody };
      let bodyStarted = false;
      let current: Attempt | undefined;
      res.once('close', () => {
        if (!res.writableFinished) current?.abort();
      });
      // Two tries at most: the second only when a pooled connection turned out closed by the app.
      for (let i = 0; i < 2; i++) {
        const attempt = upH2
          ? attemptHttp2(transport, to, areq)
          : attemptHttp1(transport, to, areq, undefined);
        current = attempt;
        if (hasBody) {
          attempt.whenConnected(() => {
            if (bodyStarted || res.destroyed) return;
            bodyStarted = true;
            req.pipe(attempt.body);
          });
        }
        try {
          const up = await attempt.response;
          status = up.status;
          up.headers[H_DST_WORKLOAD] = id.workload;
          up.headers[H_DST_NAMESPACE] = id.namespace;
          grpcStatus = await relayResponse(res, up, h2);
          span?.end(up.status);
          return;
        } catch (e) {
          const f = e as UpstreamFailure;
          if (res.headersSent) {
            res.destroy();
            return;
          }
          if (i === 0 && f.staleConnection && !bodyStarted && !res.destroyed && IDEMPOTENT.has(method))
            continue;
          status = 502;
          span?.end(502);
          sendError(
            res,
            502,
            f.kind === 'connect-failure' ? 'WEFT_UPSTREAM_CONNECT' : 'WEFT_UPSTREAM_RESET',
            `local app: ${f.message}`,
            direction,
          );
          return;
        }
      }
      return;
    }

    // Outbound: the plan decides (service, route, limits, fault, backend); this path carries it out.
    const plan = planOutbound(
      t,
      { dst: ctx.dst, authority, http: { method, path, header: (n) => headerOf(req.headers, n) } },
      planState,
    );
    if (plan.kind === 'passthrough') {
      await forwardPassthrough(req, res, plan.dst, headers, authority, path, h2);
      return;
    }
    if (plan.kind === 'refuse') {
      if (plan.target) target = plan.target;
      if (plan.code === 'WEFT_RATE_LIMITED' || plan.code === 'WEFT_FAULT') status = plan.status;
      sendError(res, plan.status, plan.code, plan.message, direction);
      return;
    }
    if (plan.kind === 'handoff') return; // not asked for: node:http serves every route
    if (plan.kind === 'redirect') {
      target = plan.target;
      status = plan.status;
      const a = redirectAnswer(plan);
      (res as HttpTypes.ServerResponse).writeHead(a.status, a.headers);
      res.end();
      return;
    }
    const { route, backend } = plan;
    target = plan.target;
    if (plan.delayMs > 0) {
      await new Promise((r) => setTimeout(r, plan.delayMs));
      if (res.destroyed) return;
    }
    target = { service: backend.service, port: backend.port };
    const cb = route.source?.circuitBreaker;
    const cluster = endpoints.enterCluster(plan);
    if (!cluster) {
      status = 503;
      sendError(res, 503, 'WEFT_OVERFLOW', `${serviceLabel(target)} is at its request limit`, direction);
      return;
    }

    // The route's header edits first: the sidecar's own metadata is set after, never edited.
    const head = forwardHead(plan, headers);
    headers[H_SRC_WORKLOAD] = id.workload;
    headers[H_SRC_NAMESPACE] = id.namespace;
    const hasBody = requestHasBody(req);
    const areq: AttemptRequest = { method, ...head, headers, hasBody };

    // Mirrors: copies of the request, fire and forget; their responses are discarded.
    const mirrors: Attempt[] = [];
    for (const mt of plan.mirrors) {
      const m = endpoints.pickEndpoint({ ...mt, weight: 1 }, route, new Set(), undefined);
      if (!m) continue;
      const copy = h2
        ? attemptHttp2(transport, m.address, areq)
        : attemptHttp1(transport, m.address, areq, undefined);
      copy.response.then(
        (r) => r.body.resume(),
        () => {},
      );
      if (hasBody) mirrors.push(copy);
    }

    const retries = route.retries;
    const maxTries = 1 + (retries?.attempts ?? 0);
    const tried = new Set<string>();
    const hashKey = plan.hashKey;
    let bodyStarted = false;
    let staleRetried = false;
    let overallTimer: NodeJS.Timeout | undefined;
    let timedOut = false;
    let current: Attempt | undefined;
    const overall = new Promise<'timeout'>((resolve) => {
      if (route.timeoutMs > 0) {
        overallTimer = setTimeout(() => {
          timedOut = true;
          current?.abort();
          resolve('timeout');
        }, route.timeoutMs);
      }
    });
    res.once('close', () => {
      cluster.active--;
      if (overallTimer) clearTimeout(overallTimer);
      if (!res.writableFinished) current?.abort();
    });
    cluster.budget?.recordRequest();

    for (let attemptNo = 1; attemptNo <= maxTries; attemptNo++) {
      const picked = endpoints.pickEndpoint(backend, route, tried, hashKey);
      if (!picked) {
        status = 503;
        sendError(res, 503, 'WEFT_NO_ENDPOINTS', `${serviceLabel(target)} has no ready endpoints`, direction);
        return;
      }
      tried.add(picked.stats.key);
      // Once every endpoint was tried, allow them again (a retry may still hit a recovered one).
      if (tried.size >= endpoints.entriesFor(backend).stats.length) tried.clear();
      upstreamNamespace = backend.service.namespace;
      const attempt = h2
        ? attemptHttp2(transport, picked.address, areq)
        : attemptHttp1(transport, picked.address, areq, cb?.maxConnections);
      current = attempt;
      picked.stats.inflight++;
      const tryStart = now();
      if (hasBody) {
        attempt.whenConnected(() => {
          if (bodyStarted || res.destroyed) return;
          bodyStarted = true;
          for (const m of mirrors) {
            req.on('data', (chunk: Buffer) => {
              if (m.body.writableLength < 1 << 20) m.body.write(chunk);
              else m.abort();
            });
            req.on('end', () => m.body.end());
          }
          req.pipe(attempt.body);
        });
      }
      let perTry: NodeJS.Timeout | undefined;
      const perTryP = new Promise<'pertry'>((resolve) => {
        if (plan.perTryTimeoutMs) perTry = setTimeout(() => resolve('pertry'), plan.perTryTimeoutMs);
      });
      let up: UpstreamResponse | undefined;
      let failure: UpstreamFailure | undefined;
      try {
        const racers: Array<Promise<UpstreamResponse | 'timeout' | 'pertry'>> = [attempt.response];
        if (overallTimer) racers.push(overall);
        if (perTry) racers.push(perTryP);
        const r = racers.length === 1 ? await attempt.response : await Promise.race(racers);
        if (r === 'timeout' || timedOut) {
          picked.stats.inflight--;
          attempt.abort();
          status = 504;
          span?.end(504);
          sendError(
            res,
            504,
            'WEFT_UPSTREAM_TIMEOUT',
            `${serviceLabel(target)} did not answer within ${route.timeoutMs} ms`,
            direction,
          );
          return;
        }
        if (r === 'pertry') {
          attempt.abort();
          failure = new UpstreamFailure('timeout', `per-try timeout of ${plan.perTryTimeoutMs} ms`);
        } else {
          up = r;
        }
      } catch (e) {
        failure = e as UpstreamFailure;
      } finally {
        if (perTry) clearTimeout(perTry);
      }
      picked.stats.inflight--;
      observeLatency(picked.stats, now() - tryStart, now());
      if (res.destroyed) {
        up?.body.destroy();
        return;
      }
      const gs = up ? (up.headers['grpc-status'] as string | undefined) : undefined;
      if (failure?.staleConnection) {
        // A pooled connection closed under us says nothing about the endpoint's health.
      } else if (failure?.kind === 'connect-failure')
        endpoints.recordOutcome(picked, 'connect-failure', route, serviceLabel(target));
      else if (failure || (up && up.status >= 500))
        endpoints.recordOutcome(picked, '5xx', route, serviceLabel(target));
      else endpoints.recordOutcome(picked, 'success', route, serviceLabel(target));

      const canReplay = !hasBody || !bodyStarted;
      if (failure?.staleConnection && canReplay && !staleRetried && IDEMPOTENT.has(method)) {
        // Not the endpoint's fault and not a policy retry: resend once on a fresh connection.
        staleRetried = true;
        tried.delete(picked.stats.key);
        attemptNo--;
        continue;
      }
      const wantRetry =
        retries !== undefined &&
        attemptNo < maxTries &&
        retriable(retries, failure, up?.status ?? 0, gs) &&
        canReplay;
      const service = serviceLabel(target);
      if (
        wantRetry &&
        spendRetry(cluster, (outcome) => metrics.retries.inc({ destination_service: service, outcome }))
      ) {
        up?.body.resume();
        continue;
      }
      if (overallTimer) clearTimeout(overallTimer);
      if (failure || !up) {
        const code: ProxyErrorCode =
          failure?.kind === 'timeout'
            ? 'WEFT_UPSTREAM_TIMEOUT'
            : failure?.kind === 'connect-failure'
              ? 'WEFT_UPSTREAM_CONNECT'
              : 'WEFT_UPSTREAM_RESET';
        status = failure?.kind === 'connect-failure' ? 503 : statusForError(code);
        span?.end(status);
        sendError(
          res,
          status,
          code,
          `${serviceLabel(target)}: ${failure?.message ?? 'no response'}`,
          direction,
        );
        return;
      }
      status = up.status;
      upstreamWorkload =
        headerOf(up.headers as HttpTypes.IncomingHttpHeaders, H_DST_WORKLOAD) ??
        picked.endpoint.pod ??
        'unknown';
      upstreamNamespace =
        headerOf(up.headers as HttpTypes.IncomingHttpHeaders, H_DST_NAMESPACE) ?? upstreamNamespace;
      delete up.headers[H_DST_WORKLOAD];
      delete up.headers[H_DST_NAMESPACE];
      responseHead(plan, up.headers);
      try {
        grpcStatus = await relayResponse(res, up, h2);
      } catch {
        res.destroy();
      }
      span?.end(status);
      return;
    }
  }

  /** Writes an upstream response downstream: status, headers, streamed body, trailers. Returns grpc-status. */
  async function relayResponse(res: DownRes, up: UpstreamResponse, h2: boolean): Promise<string> {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
    let grpcStatus = (up.headers['grpc-status'] as string | undefined) ?? '';
    const wantsTrailers =
      !!up.headers.trailer ||
      (up.headers['content-type'] as string | undefined)?.startsWith('application/grpc');
    if (wantsTrailers && !h2)
      headers.trailer = (up.headers.trailer as string | undefined) ?? 'grpc-status, grpc-message';
    if (draining && !h2) headers.connection = 'close';
    if (h2) {
      (res as http2.Http2ServerResponse).writeHead(up.status, headers);
    } else {
      (res as HttpTypes.ServerResponse).writeHead(up.status, headers);
    }
    await new Promise<void>((resolve, reject) => {
      up.body.on('error', reject);
      up.body.on('data', (chunk: Buffer) => {
        if (!(res as HttpTypes.ServerResponse).write(chunk)) {
          up.body.pause();
          res.once('drain', () => up.body.resume());
        }
      });
      up.body.once('end', resolve);
      up.body.once('close', () =>
        up.body.readableEnded ? resolve() : reject(new Error('upstream closed mid-body')),
      );
    });
    const trailers = await up.trailers();
    if (Object.keys(trailers).length > 0) {
      if (trailers['grpc-status'] !== undefined) grpcStatus = trailers['grpc-status'];
      if (h2 || res.getHeader('trailer') !== undefined || wantsTrailers) res.addTrailers(trailers);
    }
    res.end();
    return grpcStatus;
  }

  /** ALLOW_ANY for an address outside the mesh: forward to the original destination as-is. */
  async function forwardPassthrough(
    req: DownReq,
    res: DownRes,
    dst: { address: string; port: number },
    headers: Record<string, string | string[]>,
    authority: string | undefined,
    path: string,
    h2: boolean,
  ): Promise<void> {
    const to = { host: dst.address, port: dst.port, meshed: false };
    const areq = {
      method: req.method ?? 'GET',
      path,
      authority,
      headers,
      hasBody: requestHasBody(req),
    };
    const attempt = h2 ? attemptHttp2(transport, to, areq) : attemptHttp1(transport, to, areq, undefined);
    if (areq.hasBody) attempt.whenConnected(() => req.pipe(attempt.body));
    res.once('close', () => {
      if (!res.writableFinished) attempt.abort();
    });
    try {
      await relayResponse(res, await attempt.response, h2);
    } catch (e) {
      sendError(
        res,
        502,
        'WEFT_UPSTREAM_CONNECT',
        `${dst.address}:${dst.port}: ${(e as Error).message}`,
        'outbound',
      );
    }
  }

  // ---- WebSocket and other upgrades: after the handshake, bytes both ways. ------------------
  function handleUpgrade(
    direction: Direction,
    req: HttpTypes.IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ): void {
    const ctx = ctxOf.get(req.socket);
    let to: UpstreamAddress | undefined;
    let service = 'unknown';
    const t = table;
    const admitted = admit(req.url, headerOf(req.headers, 'host'));
    if (!admitted.ok) {
      badTarget(socket, admitted.reason, (code) => metrics.proxyErrors.inc({ direction, code }));
      return;
    }
    const path = admitted.target;
    if (direction === 'inbound') {
      if (t) {
        const v = authorize(
          authzRequest(inboundConn(ctx), {
            method: req.method ?? 'GET',
            path,
            host: headerOf(req.headers, 'host'),
            headers: req.headers,
          }),
          t.config,
        );
        if (!v.allow) {
          metrics.proxyErrors.inc({ direction, code: 'WEFT_DENIED' });
          const body = `${denialMessage(v)}\n`;
          socket.end(
            `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: WEFT_DENIED\r\nconnection: close\r\n\r\n${body}`,
          );
          return;
        }
      }
      if (ctx?.dst) to = { host: inboundTarget, port: ctx.dst.port, meshed: false };
      if (!to) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      connectUpgrade(direction, req, socket, head, path, to, service, undefined);
      return;
    }
    // Outbound: the same plan as any request (rate limit, fault, request limit included).
    const plan = planOutbound(
      t,
      {
        dst: ctx?.dst,
        authority: headerOf(req.headers, 'host'),
        http: { method: req.method ?? 'GET', path, header: (n) => headerOf(req.headers, n) },
      },
      planState,
    );
    const refuse = (status: number, code: ProxyErrorCode | 'WEFT_FAULT', message: string) => {
      metrics.proxyErrors.inc({ direction, code });
      socket.end(plain(status, code, message, true), () => socket.destroy());
    };
    if (plan.kind === 'refuse') {
      refuse(plan.status, plan.code, plan.message);
      return;
    }
    if (plan.kind === 'passthrough') {
      to = { host: plan.dst.address, port: plan.dst.port, meshed: false };
      connectUpgrade(direction, req, socket, head, path, to, service, undefined);
      return;
    }
    if (plan.kind === 'handoff') return;
    if (plan.kind === 'redirect') {
      socket.end(redirectRaw(plan));
      return;
    }
    service = serviceLabel(plan.target);
    const go = () => {
      if (socket.destroyed) return;
      const cluster = endpoints.enterCluster(plan);
      if (!cluster) {
        refuse(503, 'WEFT_OVERFLOW', `${serviceLabel(plan.backend)} is at its request limit`);
        return;
      }
      const picked = endpoints.pickEndpoint(plan.backend, plan.route, new Set(), plan.hashKey);
      if (!picked) {
        cluster.active--;
        refuse(503, 'WEFT_NO_ENDPOINTS', `${serviceLabel(plan.backend)} has no ready endpoints`);
        return;
      }
      connectUpgrade(
        direction,
        req,
        socket,
        head,
        path,
        picked.address,
        service,
        () => cluster.active--,
        plan,
      );
    };
    if (plan.delayMs > 0) {
      socket.on('error', () => socket.destroy());
      setTimeout(go, plan.delayMs);
    } else go();
  }

  /** Carries an upgrade (WebSocket, h2c) to `to`: the request head, then bytes both ways. */
  function connectUpgrade(
    direction: Direction,
    req: HttpTypes.IncomingMessage,
    socket: Duplex,
    head: Buffer,
    path: string,
    to: UpstreamAddress,
    service: string,
    onClose: (() => void) | undefined,
    plan?: Extract<OutboundPlan, { kind: 'forward' }>,
  ): void {
    const up = transport.connect(to);
    const lines = [`${req.method} ${plan?.path ?? path} HTTP/1.1`, ...rawHeaderLines(req.rawHeaders, plan)];
    up.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) up.write(head);
    inflight++;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      done();
      onClose?.();
      socket.destroy();
      up.destroy();
    };
    up.on('error', () => {
      if (!closed && up.bytesRead === 0)
        socket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      close();
    });
    socket.on('error', close);
    up.on('close', close);
    socket.on('close', close);
    socket.pipe(up).pipe(socket);
    metrics.tcpOpened.inc({
      direction,
      source_workload: id.workload,
      source_namespace: id.namespace,
      destination_service: service,
    });
  }

  // ---- opaque TCP --------------------------------------------------------------------------
  function tcpTarget(
    direction: Direction,
    ctx: ConnContext,
  ): { to: UpstreamAddress; service: string; picked?: Picked; route?: CompiledRoute } | undefined {
    if (!ctx.dst) return undefined;
    if (direction === 'inbound')
      return { to: { host: inboundTarget, port: ctx.dst.port, meshed: false }, service: `${ctx.dst.port}` };
    const plan = planOutbound(table, { dst: ctx.dst, authority: undefined, http: undefined }, planState);
    if (plan.kind === 'passthrough')
      return { to: { host: plan.dst.address, port: plan.dst.port, meshed: false }, service: 'passthrough' };
    if (plan.kind !== 'forward') return undefined;
    const picked = endpoints.pickEndpoint(plan.backend, plan.route, new Set(), undefined);
    if (!picked) return undefined;
    return { to: picked.address, service: serviceLabel(plan.target), picked, route: plan.route };
  }

  function proxyTcp(
    direction: Direction,
    client: net.Socket,
    ctx: ConnContext,
    initial: Buffer,
    pre?: net.Socket,
    preTarget?: ReturnType<typeof tcpTarget>,
  ): void {
    if (direction === 'inbound' && table) {
      // Opaque TCP: the decision is per connection, and a denial closes it.
      const v = authorize(authzRequest(inboundConn(ctx)), table.config);
      if (!v.allow) {
        metrics.proxyErrors.inc({ direction, code: 'WEFT_DENIED' });
        if (opts.accessLog?.enabled())
          opts.accessLog.write({
            direction,
            protocol: 'tcp',
            service: `${ctx.dst?.port ?? 0}`,
            principal: ctx.peer,
            sourceIp: ctx.sourceIp,
            authz: 'deny',
            policy: v.policy,
            rule: v.rule,
            reason: v.reason,
          });
        pre?.destroy();
        client.destroy();
        return;
      }
    }
    const target = preTarget ?? tcpTarget(direction, ctx);
    if (!target) {
      client.destroy();
      return;
    }
    const labels = {
      direction,
      source_workload: direction === 'outbound' ? id.workload : 'unknown',
      source_namespace: direction === 'outbound' ? id.namespace : 'unknown',
      destination_service: target.service,
    };
    metrics.tcpOpened.inc(labels);
    const up = pre ?? transport.connect(target.to);
    inflight++;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      done();
      metrics.tcpReceived.inc(labels, client.bytesRead);
      metrics.tcpSent.inc(labels, client.bytesWritten);
      client.destroy();
      up.destroy();
    };
    up.once('connect', () => {
      if (target.picked && target.route)
        endpoints.recordOutcome(target.picked, 'success', target.route, target.service);
    });
    up.on('error', () => {
      if (up.connecting && target.picked && target.route)
        endpoints.recordOutcome(target.picked, 'connect-failure', target.route, target.service);
      close();
    });
    client.on('error', close);
    up.on('close', close);
    client.on('close', close);
    // Half-close is passed on both ways: a client that ends its side still gets the server's
    // answer. Without allowHalfOpen Node would close the client socket at its FIN, and close()
    // would tear the upstream down before the answer came.
    client.allowHalfOpen = true;
    up.allowHalfOpen = true;
    if (initial.length > 0) up.write(initial);
    if (client.readableEnded) up.end();
    else client.on('end', () => up.end());
    up.on('end', () => client.end());
    client.pipe(up, { end: false });
    up.pipe(client, { end: false });
    client.resume();
  }

  // ---- listeners ---------------------------------------------------------------------------
  function makeHttpServers(direction: Direction) {
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
      handleHttp(direction, req, res).catch((e) => {
        log('error', 'request failed in the proxy', { err: (e as Error).message });
        sendError(res, 502, 'WEFT_UPSTREAM_RESET', 'proxy error', direction);
      });
    });
    h1.on('upgrade', (req, socket, head) => {
      clearTimeout(headerTimers.get(req.socket));
      handleUpgrade(direction, req, socket, head);
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
    // The HTTP/2 server (and node:http2 itself) is made at the first h2 connection.
    let h2: http2.Http2Server | undefined;
    return {
      h1,
      get h2(): http2.Http2Server {
        if (h2) return h2;
        h2 = lazyHttp2().createServer({
          maxSessionMemory: 10,
          settings: { maxHeaderListSize: limits.maxHeaderBytes },
        });
        h2.on('request', (req, res) => {
          handleHttp(direction, req, res).catch((e) => {
            log('error', 'request failed in the proxy', { err: (e as Error).message });
            sendError(res, 502, 'WEFT_UPSTREAM_RESET', 'proxy error', direction);
          });
        });
        h2.on('sessionError', () => {});
        h2.on('session', (session) => {
          if (pendingH2Ctx) sessionCtx.set(session, pendingH2Ctx);
        });
        return h2;
      },
    };
  }

  // A listener owned by the pod accepts only what the pod's own redirect sends it: outbound,
  // a connection of the pod's own processes (OUTPUT rule) to somewhere else; inbound, a
  // connection to one of the app's ports (PREROUTING rule). Never an open proxy for other hosts.
  const localAddresses = new LocalAddresses(now);
  let lastRefusalLog = Number.NEGATIVE_INFINITY;
  function notRedirected(
    direction: Direction,
    socket: net.Socket,
    dst: { address: string; port: number } | undefined,
  ): string | undefined {
    if (!dst) return "no original destination (not redirected by the pod's iptables rules)";
    if (direction === 'outbound' && !localAddresses.has(socket.remoteAddress))
      return "the outbound listener serves only the pod's own connections";
    if (direction === 'inbound' && (dst.port === ports.outbound || dst.port === ports.inbound))
      return `the original destination port ${dst.port} is the proxy's own listener`;
    return undefined;
  }

  function makeListener(direction: Direction): net.Server {
    const servers = makeHttpServers(direction);
    if (direction === 'inbound') inboundServers = servers;
    const server = net.createServer({ pauseOnConnect: true, noDelay: true });
    server.maxConnections = limits.maxConnections;
    server.on('connection', (socket) => {
      sockets.add(socket);
      metrics.tcpOpen.inc({ direction });
      socket.once('close', () => {
        sockets.delete(socket);
        metrics.tcpOpen.dec({ direction });
      });
      socket.on('error', () => socket.destroy());
      let dst: { address: string; port: number } | undefined;
      try {
        const od = originalDst(socket);
        // A direct connection to the listener (no REDIRECT) reports the listener itself.
        if (od && !(od.port === socket.localPort && od.address === socket.localAddress))
          dst = { address: od.address, port: od.port };
      } catch (e) {
        log('error', (e as Error).message);
        socket.destroy();
        return;
      }
      const refusal = notRedirected(direction, socket, dst);
      if (refusal) {
        metrics.proxyErrors.inc({ direction, code: 'WEFT_NOT_REDIRECTED' });
        // Logged at most every 10 s: whoever floods the port does not flood the log.
        if (now() - lastRefusalLog >= 10_000) {
          lastRefusalLog = now();
          log('warn', `${direction} connection refused: ${refusal}`, { source: socket.remoteAddress, dst });
        }
        socket.destroy();
        return;
      }
      const ctx: ConnContext = { direction, dst, target: undefined, sourceIp: socket.remoteAddress };
      const t = table;
      if (direction === 'outbound' && dst && t) ctx.target = t.byVip(dst.address, dst.port);
      ctxOf.set(socket, ctx);
      const declared = protocolForAppProtocol(ctx.target?.port.appProtocol);
      // Inbound, a peer sidecar speaks first (its ClientHello) even on a server-first port, so
      // detection is skipped there only when mTLS is off for the port.
      const serverFirst =
        dst !== undefined &&
        SERVER_FIRST_PORTS.has(dst.port) &&
        (direction === 'outbound' || mtlsModeFor(t?.config, dst.port) === 'DISABLE');
      if (declared === 'http1' && !serverFirst) {
        // A port declared HTTP still takes h2c prior knowledge, as gRPC clients send it.
        peekH2Preface(socket, (h2, buf) =>
          dispatch(direction, socket, ctx, h2 ? 'h2' : 'http1', buf, servers),
        );
        return;
      }
      if (declared || serverFirst) {
        dispatch(direction, socket, ctx, declared ?? 'tcp', Buffer.alloc(0), servers);
        return;
      }
      detect(direction, socket, ctx, servers);
    });
    server.on('error', (e) => log('error', `${direction} listener error: ${e.message}`));
    return server;
  }

  /**
   * Reads until the first bytes are, or cannot be, the HTTP/2 preface; a silent client is
   * closed after the detection timeout, as in detect().
   */
  function peekH2Preface(socket: net.Socket, then: (h2: boolean, buf: Buffer) => void): void {
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
    }, limits.detectTimeoutMs);
    socket.on('data', onData);
    socket.resume();
  }

  function detect(
    direction: Direction,
    socket: net.Socket,
    ctx: ConnContext,
    servers: ReturnType<typeof makeHttpServers>,
  ): void {
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    let pre: net.Socket | undefined;
    let preTarget: ReturnType<typeof tcpTarget>;
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
        inboundTls(socket, ctx, buf, hello.kind === 'hello' && offersWeftAlpn(hello.alpn), pre, preTarget);
        return;
      }
      const p = detectProtocol(buf);
      if (p === 'more' && buf.length < 64) return;
      cleanup();
      socket.pause();
      const proto: Protocol = p === 'more' ? 'tcp' : p;
      if (direction === 'inbound' && !admitPlaintext(socket, ctx, proto)) {
        pre?.destroy();
        return;
      }
      if (pre && proto === 'tcp') {
        proxyTcp(direction, socket, ctx, buf, pre, preTarget);
        return;
      }
      pre?.destroy();
      dispatch(direction, socket, ctx, proto, buf, servers);
    };
    // No client bytes yet: open the upstream connection now; if the server speaks first, this is TCP.
    const grace = setTimeout(() => {
      if (settled || !ctx.dst) return;
      // Under STRICT the app is not reached before the caller proved it is a sidecar.
      if (direction === 'inbound' && mtlsModeFor(table?.config, ctx.dst.port) === 'STRICT') return;
      preTarget = tcpTarget(direction, ctx);
      if (!preTarget) return;
      pre = transport.connect(preTarget.to);
      pre.on('error', () => {});
      pre.once('readable', () => {
        if (settled) return;
        cleanup();
        proxyTcp(direction, socket, ctx, buf, pre, preTarget);
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
      if (direction === 'inbound' && !admitPlaintext(socket, ctx, 'tcp')) {
        pre?.destroy();
        return;
      }
      proxyTcp(direction, socket, ctx, buf, pre, preTarget);
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

  // ---- inbound HTTP/1.1 fast path (proxy/h1fast.ts) ---------------------------------------
  const fastInbound = opts.inboundFastPath ?? true;
  const localPool = new LocalPool(inboundTarget, Math.min(limits.idleTimeoutMs, 4_000));
  const fastStrip = new Set([H_SRC_WORKLOAD, H_SRC_NAMESPACE]);
  const fastResponseHeaders = `${H_DST_WORKLOAD}: ${id.workload}\r\n${H_DST_NAMESPACE}: ${id.namespace}\r\n`;

  function serveFastInbound(
    socket: net.Socket,
    ctx: ConnContext,
    port: number,
    initial: Buffer,
    onHead: () => void,
    handoff: (b: Buffer) => void,
  ): void {
    let started = 0;
    const auth = opts.authorize;
    let lastDenial: AuthzVerdict | undefined;
    const peerNs = ctx.peer ? namespaceOfSpiffe(ctx.peer) : undefined;
    const finish = (
      r: { method: string; path: string; authority: string | undefined; src: [string, string] },
      status: number,
      from: number | undefined,
      denied: AuthzVerdict | undefined,
    ) =>
      reportFinish({
        direction: 'inbound',
        started: from,
        status,
        method: r.method,
        authority: r.authority,
        path: r.path,
        src: { workload: r.src[0], namespace: peerNs ?? r.src[1] },
        dst: { workload: id.workload, namespace: id.namespace, service: `${port}` },
        principal: ctx.peer,
        denied,
      });
    serveInbound(socket, initial, {
      port,
      pool: localPool,
      maxHeaderBytes: limits.maxHeaderBytes,
      idleTimeoutMs: limits.idleTimeoutMs,
      headersTimeoutMs: limits.headersTimeoutMs,
      responseHeaders: fastResponseHeaders,
      strip: fastStrip,
      handoffWanted: () => opts.tracing?.active() === true,
      handoff: (_s, buffered) => handoff(buffered),
      admit,
      authorize: auth
        ? (method, path, headers) => {
            if (!table) return { allow: true };
            const h: Record<string, string> = {};
            for (const [k, v] of headers) h[k] = h[k] === undefined ? v : `${h[k]}, ${v}`;
            const v = auth(
              authzRequest(
                { port, peer: ctx.peer, sourceIp: ctx.sourceIp },
                { method, path, host: h.host, headers: h },
              ),
              table.config,
            );
            if (v.allow) return v;
            lastDenial = v;
            return {
              allow: false,
              policy: v.policy,
              body: denialMessage(v),
              headers:
                debugHeaders() && v.explanation
                  ? `x-weft-authz: ${v.explanation.replace(/[\r\n]/g, ' ')}\r\n`
                  : '',
            };
          }
        : undefined,
      denied: (r) => finish(r, 403, undefined, lastDenial ?? { allow: false }),
      onHead,
      start: () => {
        inflight++;
        started = now();
      },
      finish: (r) => {
        done();
        finish(r, r.status, started, undefined);
      },
      draining: () => draining,
      error: (code) => metrics.proxyErrors.inc({ direction: 'inbound', code }),
    });
  }

  // ---- outbound HTTP/1.1 fast path (proxy/h1out.ts) ---------------------------------------
  const fastOutbound = opts.outboundFastPath ?? true;
  const outPool = new KeyedPool<string>(limits.idleTimeoutMs);
  const srcHeaders = `${H_SRC_WORKLOAD}: ${id.workload}\r\n${H_SRC_NAMESPACE}: ${id.namespace}\r\n`;
  const self = { workload: id.workload, namespace: id.namespace };

  function serveFastOutbound(
    socket: net.Socket,
    ctx: ConnContext,
    initial: Buffer,
    onHead: () => void,
    handoff: (b: Buffer) => void,
  ): void {
    const reply = (
      status: number,
      code: ProxyErrorCode | 'WEFT_FAULT',
      message: string,
      service: string,
      r: { method: string; path: string; authority: string | undefined },
    ): Decision => {
      reportFinish({
        direction: 'outbound',
        started: undefined,
        status,
        ...r,
        src: self,
        dst: { workload: 'unknown', namespace: 'unknown', service },
      });
      return { kind: 'reply', status, code, message };
    };
    serveOutbound(socket, initial, {
      maxHeaderBytes: limits.maxHeaderBytes,
      idleTimeoutMs: limits.idleTimeoutMs,
      headersTimeoutMs: limits.headersTimeoutMs,
      handoffWanted: () => opts.tracing?.active() === true,
      handoff: (_s, buffered) => handoff(buffered),
      admit,
      onHead,
      draining: () => draining,
      error: (code) => metrics.proxyErrors.inc({ direction: 'outbound', code }),
      decide(head): Decision {
        const method = head.method;
        const path = head.target;
        const authority = headerValue(head.headers, 'host');
        const r = { method, path, authority };
        const plan = planOutbound(
          table,
          {
            dst: ctx.dst,
            authority,
            http: { method, path, header: (n) => headerValue(head.headers, n.toLowerCase()) },
            // Route filters, mirroring and per-endpoint connection limits (with their queue) stay on
            // the node:http path.
            serves: (route) => !route.filtered && route.source?.circuitBreaker?.maxConnections === undefined,
          },
          planState,
        );
        if (plan.kind === 'handoff' || plan.kind === 'passthrough' || plan.kind === 'redirect')
          return { kind: 'handoff' };
        if (plan.kind === 'refuse')
          return reply(
            plan.status,
            plan.code,
            plan.message,
            plan.target ? serviceLabel(plan.target) : 'unknown',
            r,
          );
        const { route, backend, delayMs } = plan;
        const service = serviceLabel({ service: backend.service, port: backend.port });
        const cluster = endpoints.enterCluster(plan);
        if (!cluster) return reply(503, 'WEFT_OVERFLOW', `${service} is at its request limit`, service, r);
        inflight++;
        const started = now();
        cluster.budget?.recordRequest();
        const retries = route.retries;
        const tried = new Set<string>();
        const hashKey = plan.hashKey;
        return {
          kind: 'forward',
          exchange: {
            extraHeaders: srcHeaders,
            strip: fastStrip,
            delayMs,
            timeoutMs: route.timeoutMs,
            perTryTimeoutMs: plan.perTryTimeoutMs,
            maxTries: 1 + (retries?.attempts ?? 0),
            service,
            next() {
              const picked = endpoints.pickEndpoint(backend, route, tried, hashKey);
              if (!picked) return undefined;
              tried.add(picked.stats.key);
              if (tried.size >= endpoints.entriesFor(backend).stats.length) tried.clear();
              picked.stats.inflight++;
              const tryStart = now();
              const a = picked.address;
              const key = `${a.host}:${a.port}${transport.secure(a) ? `|${a.peerId}` : ''}`;
              return {
                acquire: () => outPool.acquireWith(key, () => transport.connect(a, 'http1')),
                established: isEstablished,
                whenEstablished,
                release: (s) => outPool.park(key, s),
                workload: picked.endpoint.pod,
                report(o) {
                  picked.stats.inflight--;
                  observeLatency(picked.stats, now() - tryStart, now());
                  if ('cancelled' in o) return;
                  if ('status' in o)
                    endpoints.recordOutcome(picked, o.status >= 500 ? '5xx' : 'success', route, service);
                  // A pooled connection closed under us says nothing about the endpoint's health.
                  else if (o.stale) tried.delete(picked.stats.key);
                  else
                    endpoints.recordOutcome(
                      picked,
                      o.failure === 'connect-failure' ? 'connect-failure' : '5xx',
                      route,
                      service,
                    );
                },
              };
            },
            retry(o) {
              if (!retries) return false;
              const ok =
                'failure' in o
                  ? retriable(retries, { kind: o.failure }, 0, undefined)
                  : retriable(retries, undefined, o.status, o.grpcStatus);
              if (!ok) return false;
              return spendRetry(cluster, (outcome) =>
                metrics.retries.inc({ destination_service: service, outcome }),
              );
            },
            finish(f) {
              cluster.active--;
              done();
              const dst = {
                workload: f.upstreamWorkload ?? 'unknown',
                namespace: f.upstreamNamespace ?? backend.service.namespace,
                service,
              };
              reportFinish({
                direction: 'outbound',
                started,
                status: f.status,
                grpcStatus: f.grpcStatus,
                ...r,
                src: self,
                dst,
              });
            },
          },
        };
      },
    });
  }

  // ---- inbound mTLS --------------------------------------------------------------------------
  let inboundServers: ReturnType<typeof makeHttpServers> | undefined;
  let tlsServer: tls.Server | undefined;
  // The inbound connection a TLS handshake belongs to: tls.Server creates the TLSSocket inside
  // emit('connection') and its handshake callbacks run in that async context.
  const tlsConn = new AsyncLocalStorage<ConnContext>();

  function setWorkloadIdentity(wi: WorkloadIdentity): void {
    transport.identity = wi;
    const server = new (lazyTls().Server)({
      ...wi.serverOptions(),
      handshakeTimeout: limits.handshakeTimeoutMs,
    });
    wi.track(server);
    server.on('secureConnection', (t: tls.TLSSocket) => {
      const ctx = tlsConn.getStore();
      const peer = peerSpiffeId(t);
      // The chain is verified against the trust bundle; the SPIFFE ID must also be of this
      // mesh's trust domain (a CA may sign for several: its other domains are not this mesh).
      const trustDomain = table?.config.mesh.trustDomain ?? trustDomainOf(wi.id);
      if (!ctx || !peer || trustDomainOf(peer) !== trustDomain) {
        metrics.mtlsFailures.inc({ direction: 'inbound', reason: 'WEFT_PEER_IDENTITY' });
        log('warn', 'inbound mTLS peer refused: no SPIFFE ID of this trust domain', { peer, trustDomain });
        t.destroy();
        return;
      }
      const inner: ConnContext = { ...ctx, peer };
      metrics.mtlsConnections.inc({ direction: 'inbound', tls_version: t.getProtocol() ?? 'unknown', peer });
      ctxOf.set(t, inner);
      t.on('error', () => t.destroy());
      const alpn = protocolOfAlpn(t.alpnProtocol);
      dispatch(
        'inbound',
        t,
        inner,
        alpn === 'h2' ? 'h2' : alpn === 'http1' ? 'http1' : 'tcp',
        Buffer.alloc(0),
        inboundServers!,
      );
    });
    server.on('tlsClientError', (e: NodeJS.ErrnoException, t: tls.TLSSocket) => {
      // With a listener here node leaves the socket open: a handshake that failed or timed out
      // (handshakeTimeout, e.g. a caller that stopped after its ClientHello) is closed now.
      t.destroy();
      metrics.mtlsFailures.inc({ direction: 'inbound', reason: e.code ?? 'TLS_ERROR' });
      log('warn', 'inbound mTLS handshake failed', { code: e.code, err: e.message });
    });
    const old = tlsServer;
    tlsServer = server;
    old?.close();
  }
  if (opts.workloadIdentity) setWorkloadIdentity(opts.workloadIdentity);

  function refuse(socket: net.Socket, reason: string, httpPort: number | undefined): void {
    metrics.mtlsRefused.inc({ reason });
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
  function admitPlaintext(socket: net.Socket, ctx: ConnContext, proto: Protocol): boolean {
    const mode = mtlsModeFor(table?.config, ctx.dst?.port);
    if (mode === 'STRICT') {
      refuse(socket, 'plaintext', proto === 'http1' ? (ctx.dst?.port ?? 0) : undefined);
      return false;
    }
    metrics.plaintextHops.inc({
      direction: 'inbound',
      reason: mode === 'DISABLE' ? 'disabled' : 'permissive',
    });
    return true;
  }

  /** Inbound TLS: a peer sidecar's is terminated with the workload identity; the app's own passes through. */
  function inboundTls(
    socket: net.Socket,
    ctx: ConnContext,
    initial: Buffer,
    fromSidecar: boolean,
    pre: net.Socket | undefined,
    preTarget: ReturnType<typeof tcpTarget>,
  ): void {
    const mode = mtlsModeFor(table?.config, ctx.dst?.port);
    if (!fromSidecar) {
      if (mode === 'STRICT') {
        pre?.destroy();
        refuse(socket, 'app_tls', undefined);
        return;
      }
      proxyTcp('inbound', socket, ctx, initial, pre, preTarget);
      return;
    }
    pre?.destroy();
    if (mode === 'DISABLE' || !tlsServer) {
      refuse(socket, mode === 'DISABLE' ? 'mtls_disabled' : 'no_identity', undefined);
      return;
    }
    const server = tlsServer;
    // The ClientHello already read goes back into the socket: the TLSSocket the server wraps
    // around it takes over the socket's native handle (no JavaScript stream in between) and
    // first replays what the socket has buffered.
    socket.pause();
    if (initial.length > 0) socket.unshift(initial);
    tlsConn.run(ctx, () => server.emit('connection', socket));
  }

  function dispatch(
    direction: Direction,
    socket: net.Socket,
    ctx: ConnContext,
    proto: Protocol,
    initial: Buffer,
    servers: ReturnType<typeof makeHttpServers>,
  ): void {
    if (proto === 'http1') {
      // The first request's headers must arrive within headersTimeoutMs (slow clients get 408).
      // Node's own check runs only for servers that listen, and this one is fed connections.
      const timer = setTimeout(() => {
        if (socket.destroyed) return;
        metrics.proxyErrors.inc({ direction, code: 'HTTP_408' });
        socket.end('HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        socket.destroySoon();
      }, limits.headersTimeoutMs);
      timer.unref();
      headerTimers.set(socket, timer);
      socket.once('close', () => clearTimeout(timer));
      const handoff = (buffered: Buffer) => {
        if (buffered.length > 0) socket.unshift(buffered);
        servers.h1.emit('connection', socket);
        socket.resume();
      };
      if (direction === 'inbound' && fastInbound && ctx.dst) {
        serveFastInbound(socket, ctx, ctx.dst.port, initial, () => clearTimeout(timer), handoff);
        socket.resume();
        return;
      }
      if (direction === 'outbound' && fastOutbound) {
        serveFastOutbound(socket, ctx, initial, () => clearTimeout(timer), handoff);
        socket.resume();
        return;
      }
      handoff(initial);
      return;
    }
    if (proto === 'h2') {
      // nghttp2 reads the socket's handle directly and would miss bytes put back with unshift,
      // so the bytes already read are replayed through a stream wrapper.
      const conn = initial.length > 0 ? new Replay(socket, initial) : socket;
      pendingH2Ctx = ctx;
      servers.h2.emit('connection', conn);
      pendingH2Ctx = undefined;
      socket.resume();
      return;
    }
    proxyTcp(direction, socket, ctx, initial);
  }

  const outbound = makeListener('outbound');
  const inbound = makeListener('inbound');
  const host = opts.host ?? '0.0.0.0';
  await Promise.all([
    new Promise<void>((r, j) => outbound.once('error', j).listen(opts.ports.outbound, host, () => r())),
    new Promise<void>((r, j) => inbound.once('error', j).listen(opts.ports.inbound, host, () => r())),
  ]);
  ports.outbound = (outbound.address() as net.AddressInfo).port;
  ports.inbound = (inbound.address() as net.AddressInfo).port;

  const handle: ProxyHandle = {
    ports: { ...ports },
    setWorkloadIdentity,
    apply(config) {
      table = new RoutingTable(config);
      appProtocols.clear();
      const keys = new Set<string>();
      for (const s of config.services)
        for (const e of s.endpoints) for (const p of Object.values(e.ports)) keys.add(`${e.address}:${p}`);
      endpoints.apply(config, keys);
      transport.retain(keys);
      outPool.retain((k) => keys.has(k.split('|', 1)[0]!));
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
      for (const s of sockets) s.destroy();
      transport.close();
      localPool.close();
      outPool.close();
    },
  };
  return handle;
}
