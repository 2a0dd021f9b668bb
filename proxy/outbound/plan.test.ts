// The outbound plan as a pure function: a table in, a decision out, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Route } from '../../api/index.ts';
import { type CompiledRoute, RoutingTable } from '../table.ts';
import { endpoint, proxyConfig, route, service } from '../testdata.ts';
import { maxActiveOf, type OutboundRequest, type PlanState, planOutbound } from './plan.ts';

const web = service('web', 'shop', '10.96.0.10', 80, [endpoint('10.1.0.1', 8080)]);
const v2 = service('web-v2', 'shop', '10.96.0.11', 80, [endpoint('10.1.0.3', 8080)]);

function table(routes: Route[], mesh: Parameters<typeof proxyConfig>[3] = {}): RoutingTable {
  return new RoutingTable(proxyConfig('shop', [web, v2], routes, mesh));
}

const http = (path = '/', headers: Record<string, string> = {}): OutboundRequest['http'] => ({
  method: 'GET',
  path,
  header: (n) => headers[n],
});
const toVip = (h = http()): OutboundRequest => ({
  dst: { address: '10.96.0.10', port: 80 },
  authority: 'web',
  http: h,
});

/** A state whose draws come from `draws` (then 0.99) and whose bucket holds `tokens`. */
function state(draws: number[] = [], tokens = Number.POSITIVE_INFINITY): PlanState & { taken: number } {
  const s = {
    taken: 0,
    random: () => draws.shift() ?? 0.99,
    takeToken: (_r: CompiledRoute) => {
      if (tokens <= 0) return false;
      tokens--;
      s.taken++;
      return true;
    },
  };
  return s;
}

describe('planOutbound', () => {
  it('refuses with WEFT_NO_ROUTE without a config, and for an unknown destination under REGISTRY_ONLY', () => {
    const p = planOutbound(undefined, toVip(), state());
    assert.equal(p.kind === 'refuse' && `${p.status} ${p.code}`, '503 WEFT_NO_ROUTE');
    const strict = table([], { outboundTrafficPolicy: 'REGISTRY_ONLY' });
    const q = planOutbound(
      strict,
      { dst: { address: '10.9.9.9', port: 443 }, authority: 'x', http: http() },
      state(),
    );
    assert.equal(q.kind === 'refuse' && `${q.status} ${q.code}`, '502 WEFT_NO_ROUTE');
  });

  it('passes an unknown destination through under ALLOW_ANY', () => {
    const dst = { address: '10.9.9.9', port: 443 };
    assert.deepEqual(planOutbound(table([]), { dst, authority: undefined, http: undefined }, state()), {
      kind: 'passthrough',
      dst,
    });
  });

  it('finds the target by VIP, else by Host, and takes the implicit route without a TrafficSplit', () => {
    const p = planOutbound(table([]), toVip(), state());
    assert.ok(p.kind === 'forward');
    assert.equal(p.backend.service.id, 'shop/web');
    assert.equal(p.route.timeoutMs, 15_000);
    const byHost = planOutbound(
      table([]),
      { dst: { address: '10.0.0.1', port: 80 }, authority: 'web-v2', http: http() },
      state(),
    );
    assert.ok(byHost.kind === 'forward' && byHost.backend.service.id === 'shop/web-v2');
  });

  it('matches the route, then splits by weight', () => {
    const t = table([
      route({
        name: 'shop/canary',
        matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }],
        backends: [{ service: 'shop/web-v2', weight: 1 }],
      }),
      route({
        backends: [
          { service: 'shop/web', weight: 3 },
          { service: 'shop/web-v2', weight: 1 },
        ],
      }),
    ]);
    const canary = planOutbound(t, toVip(http('/', { 'x-canary': 'yes' })), state());
    assert.ok(canary.kind === 'forward' && canary.route.name === 'shop/canary');
    const low = planOutbound(t, toVip(), state([0.1]));
    const high = planOutbound(t, toVip(), state([0.9]));
    assert.ok(low.kind === 'forward' && low.backend.service.id === 'shop/web');
    assert.ok(high.kind === 'forward' && high.backend.service.id === 'shop/web-v2');
  });

  it('rate limit first, then fault abort, then fault delay', () => {
    const t = table([
      route({
        rateLimit: { requestsPerSecond: 1, burst: 1 },
        faultInjection: {
          abort: { httpStatus: 418, percentage: 50 },
          delay: { fixedDelayMs: 70, percentage: 50 },
        },
      }),
    ]);
    const empty = planOutbound(t, toVip(), state([0], 0));
    assert.equal(empty.kind === 'refuse' && `${empty.status} ${empty.code}`, '429 WEFT_RATE_LIMITED');
    const abort = planOutbound(t, toVip(), state([0.2]));
    assert.equal(abort.kind === 'refuse' && `${abort.status} ${abort.code}`, '418 WEFT_FAULT');
    const delayed = planOutbound(t, toVip(), state([0.9, 0.2]));
    assert.ok(delayed.kind === 'forward' && delayed.delayMs === 70);
    const plain = planOutbound(t, toVip(), state([0.9, 0.9]));
    assert.ok(plain.kind === 'forward' && plain.delayMs === 0);
  });

  it('opaque TCP (no request) takes the route and backend, but no per-request rate limit or fault', () => {
    const t = table([
      route({
        rateLimit: { requestsPerSecond: 1, burst: 1 },
        faultInjection: { abort: { httpStatus: 418, percentage: 100 } },
        backends: [{ service: 'shop/web-v2', weight: 1 }],
      }),
    ]);
    const s = state([], 0);
    const p = planOutbound(
      t,
      { dst: { address: '10.96.0.10', port: 80 }, authority: undefined, http: undefined },
      s,
    );
    assert.ok(p.kind === 'forward' && p.backend.service.id === 'shop/web-v2');
  });

  it('hands off before taking a token when the transport cannot serve the route', () => {
    const t = table([
      route({
        rateLimit: { requestsPerSecond: 1, burst: 1 },
        mirror: { service: 'shop/web-v2', percentage: 10 },
      }),
    ]);
    const s = state();
    const p = planOutbound(t, { ...toVip(), serves: (r) => r.mirrors.length === 0 }, s);
    assert.deepEqual(p, { kind: 'handoff' });
    assert.equal(s.taken, 0);
  });

  it('carries the request limit and the consistent-hash key', () => {
    const cb = {
      consecutive5xxErrors: 0,
      consecutiveConnectFailures: 0,
      baseEjectionTimeMs: 1,
      maxEjectionPercent: 50,
    };
    const t = table([
      route({
        circuitBreaker: { ...cb, maxConnections: 2, maxPendingRequests: 3, maxRequests: 10 },
        loadBalancer: { type: 'CONSISTENT_HASH', hashHeader: 'X-User' },
      }),
    ]);
    const p = planOutbound(t, toVip(http('/', { 'x-user': 'ann' })), state());
    assert.ok(p.kind === 'forward');
    assert.equal(p.maxActive, 5);
    assert.equal(p.hashKey, 'ann');
    assert.equal(
      maxActiveOf(table([]).route(table([]).byVip('10.96.0.10', 80)!, undefined)),
      Number.POSITIVE_INFINITY,
    );
  });

  it('names the route that decided for the metrics: once per compiled route, from the config only', () => {
    const t = table([
      route({
        name: 'HTTPRoute/shop/api/2',
        source: { kind: 'HTTPRoute', namespace: 'shop', name: 'api', rule: 2 },
        matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
        backends: [{ service: 'shop/web-v2', weight: 1 }],
      }),
      route({
        name: 'GRPCRoute/shop/g/0',
        source: { kind: 'GRPCRoute', namespace: 'shop', name: 'g', rule: 0, ruleName: 'hello' },
        matches: [{ path: { type: 'Exact', value: '/echo.Echo/Hello' } }],
      }),
      route({
        name: 'shop/limited',
        matches: [{ headers: [{ name: 'x-rl', value: '1' }] }],
        rateLimit: { requestsPerSecond: 1, burst: 1 },
      }),
      // What the compiler adds when no rule matched: a catch-all answer, no route.
      {
        name: 'shop/web:no-route-matched',
        service: 'shop/web',
        matches: [{ headers: [{ name: 'x-none', value: '1' }] }],
        backends: [],
        directResponse: { status: 404 },
      },
    ]);
    const labelOf = (path: string, headers: Record<string, string> = {}, s = state()) => {
      const p = planOutbound(t, toVip(http(path, headers)), s);
      return p.kind === 'forward' || p.kind === 'redirect'
        ? p.route.label
        : p.kind === 'refuse'
          ? p.route?.label
          : undefined;
    };
    const api = labelOf('/api/items/42?token=secret');
    assert.deepEqual(api, { route: 'HTTPRoute/shop/api', rule: '2' });
    // The same object for every request the route decides: nothing is built per request.
    assert.equal(labelOf('/api/other'), api);
    assert.deepEqual(labelOf('/echo.Echo/Hello'), { route: 'GRPCRoute/shop/g', rule: 'hello' });
    // A refusal by a route's own policy names the route (a TrafficSplit: no rule).
    const limited = state([], 0);
    assert.deepEqual(labelOf('/', { 'x-rl': '1' }, limited), {
      route: 'TrafficSplit/shop/limited',
      rule: '',
    });
    // No route matched: the Service's implicit default, or the compiler's catch-all answer.
    assert.deepEqual(labelOf('/'), { route: '', rule: '' });
    assert.deepEqual(labelOf('/', { 'x-none': '1' }), { route: '', rule: '' });
  });
});
