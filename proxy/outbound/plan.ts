// The outbound plan: what the proxy does with one outbound request or connection, decided once
// as a pure function over the routing table (target → route → rate limit → fault → backend →
// filters, with the route's retry, timeout and request-limit policy). Every transport
// (node:http, the HTTP/1.1 fast path, HTTP/2, upgrades, opaque TCP) asks it and only carries
// out the answer; the endpoint pick and the live counters stay with the caller.
import type { Random } from '../clock.ts';
import type { ProxyErrorCode } from '../errors.ts';
import {
  type Backend,
  type CompiledRoute,
  pickBackend,
  type RequestFacts,
  type RoutingTable,
  type ServiceTarget,
} from '../table.ts';
import { applyUrlFilters, type HeaderEdits } from './filters.ts';

export interface OriginalDst {
  address: string;
  port: number;
}

export interface OutboundRequest {
  /** Where the client connected (SO_ORIGINAL_DST); undefined when it was not redirected. */
  dst: OriginalDst | undefined;
  /** Host / :authority, when the protocol has one. */
  authority: string | undefined;
  /** The request, for HTTP; undefined for an opaque TCP connection (no per-request policy). */
  http: RequestFacts | undefined;
  /**
   * Whether the asking transport can carry out this route; when it cannot, the plan answers
   * `handoff` before any state (rate-limit tokens, random draws) is touched.
   */
  serves?: (route: CompiledRoute) => boolean;
}

/** The parts of the plan that hold state between requests, given by the caller. */
export interface PlanState {
  random: Random;
  /** Takes a token from the route's rate-limit bucket; false when it is empty. */
  takeToken(route: CompiledRoute): boolean;
}

export type OutboundPlan =
  /** The asking transport cannot serve this route (`serves`): hand the request to the general one. */
  | { kind: 'handoff' }
  /** No service: forward to the original destination unchanged (outboundTrafficPolicy ALLOW_ANY). */
  | { kind: 'passthrough'; dst: OriginalDst }
  /**
   * Answer the client with this status and `weft-error: code`; `target` when a service was
   * found, `route` when a route decided (its rate limit, fault, direct answer, backends).
   */
  | {
      kind: 'refuse';
      status: number;
      code: ProxyErrorCode | 'WEFT_FAULT';
      message: string;
      target: ServiceTarget | undefined;
      route?: CompiledRoute;
    }
  /** Answer with a redirect (Gateway API RequestRedirect): `status` and `location`. */
  | { kind: 'redirect'; status: number; location: string; target: ServiceTarget; route: CompiledRoute }
  | {
      kind: 'forward';
      /** The service the client addressed (its route's root). */
      target: ServiceTarget;
      route: CompiledRoute;
      /** The service and port the request goes to. */
      backend: Backend;
      /** Wait this long before forwarding (fault injection delay), ms. */
      delayMs: number;
      /** Requests at once to the backend beyond which this one is refused 503 WEFT_OVERFLOW. */
      maxActive: number;
      /** The consistent-hash key, when the route hashes on a header. */
      hashKey: string | undefined;
      /** The request head to send: Host / :authority and target after any URLRewrite. */
      authority: string | undefined;
      path: string;
      /** Whether authority or path differ from the request's. */
      rewritten: boolean;
      /** Edits of the request's headers, in order (the rule's, then the backend's). */
      requestHeaders: HeaderEdits[];
      /** Edits of the response's headers, in order, before it goes back to the client. */
      responseHeaders: HeaderEdits[];
      /** Services a copy of this request goes to (drawn by their percentages). */
      mirrors: ServiceTarget[];
      /** Whole-request deadline and per-try deadline, ms (0: none). */
      timeoutMs: number;
      perTryTimeoutMs: number;
    };

/**
 * The Service an outbound request goes to: by the original destination (a Service VIP), else by
 * Host among the Services on that port. Never by Host alone: a connection that was not
 * redirected has no original destination and is not routed. A gateway (docs/ingress.md): by
 * the listener port and Host among its virtual hosts only.
 */
export function outboundTarget(
  t: RoutingTable,
  dst: OriginalDst | undefined,
  authority: string | undefined,
): ServiceTarget | undefined {
  if (!dst) return undefined;
  // A gateway serves only its listeners' virtual hosts, never the mesh's Services by address.
  if (t.gateway) return t.gatewayTarget(dst.port, authority);
  return t.byVip(dst.address, dst.port) ?? t.byAuthority(authority, dst.port);
}

/** Most requests at once a route allows to its backend (circuitBreaker limits; Infinity: none). */
export function maxActiveOf(route: CompiledRoute): number {
  const cb = route.source?.circuitBreaker;
  return Math.min(
    cb?.maxRequests ?? Number.POSITIVE_INFINITY,
    cb?.maxConnections !== undefined
      ? cb.maxConnections + (cb.maxPendingRequests ?? 0)
      : Number.POSITIVE_INFINITY,
  );
}

/** Shared by every plan without mirrors or header edits (never written to). */
const NONE: never[] = [];

/** The rule's edits then the backend's; a new array only when both have some. */
function joined(a: HeaderEdits[] | undefined, b: HeaderEdits[] | undefined): HeaderEdits[] {
  if (!a || a.length === 0) return b ?? NONE;
  if (!b || b.length === 0) return a;
  return [...a, ...b];
}

export function planOutbound(
  t: RoutingTable | undefined,
  req: OutboundRequest,
  state: PlanState,
): OutboundPlan {
  const refuse = (
    status: number,
    code: ProxyErrorCode | 'WEFT_FAULT',
    message: string,
    target: ServiceTarget | undefined,
    route?: CompiledRoute,
  ): OutboundPlan => ({ kind: 'refuse', status, code, message, target, route });
  if (!t) return refuse(503, 'WEFT_NO_ROUTE', 'weft-proxy has no config yet', undefined);
  const target = outboundTarget(t, req.dst, req.authority);
  if (!target) {
    if (req.dst && !t.gateway && t.config.mesh.outboundTrafficPolicy === 'ALLOW_ANY')
      return { kind: 'passthrough', dst: req.dst };
    const where = req.dst ? `${req.dst.address}:${req.dst.port}` : 'no original destination';
    return refuse(502, 'WEFT_NO_ROUTE', `no service for ${req.authority ?? ''} (${where})`, undefined);
  }
  const route = t.route(target, req.http);
  if (req.serves && !req.serves(route)) return { kind: 'handoff' };
  if (route.directStatus !== undefined && req.http)
    return refuse(
      route.directStatus,
      'WEFT_NO_ROUTE',
      `route ${route.name} answers ${route.directStatus}`,
      target,
      route,
    );
  let delayMs = 0;
  if (req.http) {
    if (route.source?.rateLimit && !state.takeToken(route))
      return refuse(429, 'WEFT_RATE_LIMITED', `rate limit of route ${route.name} exceeded`, target, route);
    const fault = route.source?.faultInjection;
    if (fault?.abort && state.random() * 100 < fault.abort.percentage)
      return refuse(
        fault.abort.httpStatus,
        'WEFT_FAULT',
        `fault injected by route ${route.name}`,
        target,
        route,
      );
    if (fault?.delay && state.random() * 100 < fault.delay.percentage) delayMs = fault.delay.fixedDelayMs;
  }
  const path = req.http?.path ?? '/';
  // Most routes have no URL filter: no head or outcome is built for them (per request).
  const url =
    route.filters?.redirect || route.filters?.rewrite
      ? applyUrlFilters(
          { scheme: 'http', authority: req.authority, path, port: target.port.port },
          route.filters.redirect,
          route.filters.rewrite,
        )
      : undefined;
  if (url?.kind === 'redirect' && req.http)
    return { kind: 'redirect', status: url.status, location: url.location, target, route };
  const backend = pickBackend(route, state.random);
  if (!backend)
    return refuse(503, 'WEFT_NO_ENDPOINTS', `route ${route.name} has no backend with weight`, target, route);
  if (backend.unresolved !== undefined)
    return refuse(500, 'WEFT_NO_ROUTE', `route ${route.name}: ${backend.unresolved}`, target, route);
  let mirrors: ServiceTarget[] = NONE;
  if (req.http && route.mirrors.length > 0) {
    mirrors = [];
    for (const m of route.mirrors) if (state.random() * 100 < m.percentage) mirrors.push(m.target);
  }
  const forwarded = url?.kind === 'forward' ? url : undefined;
  return {
    kind: 'forward',
    target,
    route,
    backend,
    delayMs,
    maxActive: maxActiveOf(route),
    hashKey: route.hashHeader && req.http ? req.http.header(route.hashHeader) : undefined,
    authority: forwarded?.authority ?? req.authority,
    path: forwarded?.path ?? path,
    rewritten: forwarded?.rewritten ?? false,
    requestHeaders: joined(route.filters?.request, backend.filters?.request),
    responseHeaders: joined(route.filters?.response, backend.filters?.response),
    mirrors,
    timeoutMs: route.timeoutMs,
    perTryTimeoutMs: route.perTryTimeoutMs,
  };
}
