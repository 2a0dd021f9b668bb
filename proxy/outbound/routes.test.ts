// The outbound plan for routes compiled from Gateway API HTTPRoute/GRPCRoute
// (docs/proxy-config.md "Gateway API routes"): first match in the config's order, redirect,
// rewrite, header edits (the rule's, then the backend's), mirrors, timeouts, unresolved backends
// and direct responses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Route } from '../../api/index.ts';
import { RoutingTable } from '../table.ts';
import { endpoint, proxyConfig, service } from '../testdata.ts';
import { type OutboundRequest, type PlanState, planOutbound } from './plan.ts';

const web = service('web', 'shop', '10.96.0.10', 8080, [endpoint('10.1.0.1', 8080)]);
const v2 = service('web-v2', 'shop', '10.96.0.11', 8080, [endpoint('10.1.0.3', 8080)]);
const shadow = service('shadow', 'shop', '10.96.0.12', 8080, [endpoint('10.1.0.4', 8080)]);

/** One Gateway API route entry for shop/web (rule `rule` of HTTPRoute shop/r). */
function gw(rule: number, over: Partial<Route>): Route {
  return {
    name: `HTTPRoute/shop/r/${rule}`,
    source: { kind: 'HTTPRoute', namespace: 'shop', name: 'r', rule },
    service: 'shop/web',
    matches: [{ path: { type: 'PathPrefix', value: '/' } }],
    backends: [{ service: 'shop/web', weight: 1 }],
    ...over,
  };
}

const table = (routes: Route[]) => new RoutingTable(proxyConfig('shop', [web, v2, shadow], routes));
const draws = (list: number[]): PlanState => ({ random: () => list.shift() ?? 0.99, takeToken: () => true });
const send = (
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
  authority = 'web:8080',
): OutboundRequest => ({
  dst: { address: '10.96.0.10', port: 8080 },
  authority,
  http: { method, path, header: (n) => headers[n] },
});

describe('planOutbound with Gateway API routes', () => {
  it('takes the first entry that matches, in the order the compiler wrote them', () => {
    const t = table([
      gw(0, {
        matches: [{ path: { type: 'Exact', value: '/v2' }, method: 'POST' }],
        backends: [{ service: 'shop/web-v2', weight: 1 }],
      }),
      gw(1, {
        matches: [{ path: { type: 'PathPrefix', value: '/' }, queryParams: [{ name: 'v', value: '2' }] }],
        backends: [{ service: 'shop/web-v2', weight: 1 }],
      }),
      gw(2, { matches: [{ path: { type: 'PathPrefix', value: '/' } }] }),
      gw(3, { matches: [{ path: { type: 'PathPrefix', value: '/' } }], directResponse: { status: 404 } }),
    ]);
    const to = (r: OutboundRequest) => {
      const p = planOutbound(t, r, draws([]));
      return p.kind === 'forward' ? `${p.route.name} ${p.backend.service.id}` : p.kind;
    };
    assert.equal(to(send('/v2', {}, 'POST')), 'HTTPRoute/shop/r/0 shop/web-v2');
    assert.equal(to(send('/v2', {}, 'GET')), 'HTTPRoute/shop/r/2 shop/web');
    assert.equal(to(send('/x?v=2')), 'HTTPRoute/shop/r/1 shop/web-v2');
    assert.equal(to(send('/x?v=3')), 'HTTPRoute/shop/r/2 shop/web');
  });

  it('a direct response answers its status and forwards nothing', () => {
    const t = table([
      gw(0, { matches: [{ path: { type: 'PathPrefix', value: '/api' } }] }),
      gw(1, { backends: [], directResponse: { status: 404 } }),
    ]);
    const p = planOutbound(t, send('/other'), draws([]));
    assert.equal(p.kind === 'refuse' && p.status, 404);
    assert.equal(planOutbound(t, send('/api/x'), draws([])).kind, 'forward');
  });

  it('a redirect rule (no backends) answers its status and Location', () => {
    const t = table([
      gw(0, {
        backends: [],
        filters: [{ type: 'RequestRedirect', statusCode: 301, hostname: 'example.org', port: 8083 }],
      }),
    ]);
    const p = planOutbound(t, send('/port?x=1'), draws([]));
    assert.deepEqual(p.kind === 'redirect' && [p.status, p.location], [
      301,
      'http://example.org:8083/port?x=1',
    ]);
    // Without a port or scheme in the filter, the Service port called stays in Location.
    const q = planOutbound(
      table([
        gw(0, { backends: [], filters: [{ type: 'RequestRedirect', statusCode: 302, hostname: 'a.b' }] }),
      ]),
      send('/p'),
      draws([]),
    );
    assert.equal(q.kind === 'redirect' && q.location, 'http://a.b:8080/p');
  });

  it('rewrites the head, edits headers (rule, then the chosen backend) and the response', () => {
    const t = table([
      gw(0, {
        matches: [{ path: { type: 'PathPrefix', value: '/prefix' } }],
        filters: [
          { type: 'URLRewrite', path: { type: 'ReplacePrefixMatch', value: '/', prefix: '/prefix' } },
          { type: 'RequestHeaderModifier', set: [{ name: 'X-Set', value: 'rule' }] },
          { type: 'ResponseHeaderModifier', add: [{ name: 'X-Resp', value: 'rule' }] },
        ],
        backends: [
          {
            service: 'shop/web-v2',
            weight: 1,
            filters: [{ type: 'RequestHeaderModifier', set: [{ name: 'x-set', value: 'backend' }] }],
          },
        ],
      }),
    ]);
    const p = planOutbound(t, send('/prefix/one/two?q=1'), draws([]));
    assert.ok(p.kind === 'forward');
    assert.equal(p.path, '/one/two?q=1');
    assert.equal(p.authority, 'web:8080');
    assert.equal(p.rewritten, true);
    assert.deepEqual(
      p.requestHeaders.map((e) => e.set),
      [[['x-set', 'rule']], [['x-set', 'backend']]],
    );
    assert.deepEqual(p.responseHeaders, [{ set: [], add: [['x-resp', 'rule']], remove: [] }]);
    assert.equal(p.route.filtered, true, 'the fast path hands the route to node:http');
    const plain = planOutbound(table([gw(0, {})]), send('/a'), draws([]));
    assert.ok(plain.kind === 'forward' && !plain.rewritten && plain.requestHeaders.length === 0);
    assert.equal(plain.route.filtered, false);
    const onBackend = table([
      gw(0, {
        backends: [
          { service: 'shop/web', weight: 1, filters: [{ type: 'ResponseHeaderModifier', remove: ['a'] }] },
        ],
      }),
    ]);
    const b = planOutbound(onBackend, send('/a'), draws([]));
    assert.ok(b.kind === 'forward' && b.route.filtered && b.responseHeaders.length === 1);
  });

  it('mirrors by percentage, each drawn after the backend; several mirrors allowed', () => {
    const t = table([
      gw(0, {
        filters: [
          { type: 'RequestMirror', service: 'shop/shadow', percentage: 50 },
          { type: 'RequestMirror', service: 'shop/web-v2', percentage: 100 },
        ],
      }),
    ]);
    const hit = planOutbound(t, send('/'), draws([0.1, 0.1]));
    assert.deepEqual(hit.kind === 'forward' && hit.mirrors.map((m) => `${m.service.id}:${m.port.port}`), [
      'shop/shadow:8080',
      'shop/web-v2:8080',
    ]);
    const miss = planOutbound(t, send('/'), draws([0.6, 0.1]));
    assert.deepEqual(miss.kind === 'forward' && miss.mirrors.map((m) => m.service.id), ['shop/web-v2']);
  });

  it('timeouts: request is the whole deadline, backendRequest the per-try one', () => {
    const t = table([gw(0, { timeoutMs: 3000, backendRequestTimeoutMs: 500 })]);
    const p = planOutbound(t, send('/'), draws([]));
    assert.deepEqual(p.kind === 'forward' && [p.timeoutMs, p.perTryTimeoutMs], [3000, 500]);
    const d = planOutbound(table([gw(0, {})]), send('/'), draws([]));
    assert.deepEqual(d.kind === 'forward' && [d.timeoutMs, d.perTryTimeoutMs], [15_000, 0]);
  });

  it('an unresolved backend gets 500 for its share, never another backend', () => {
    const t = table([
      gw(0, {
        backends: [
          { service: 'shop/web', weight: 1 },
          { service: 'shop/missing', weight: 1, unresolved: 'Service shop/missing not found' },
        ],
      }),
    ]);
    const ok = planOutbound(t, send('/'), draws([0.2]));
    assert.ok(ok.kind === 'forward' && ok.backend.service.id === 'shop/web');
    const bad = planOutbound(t, send('/'), draws([0.7]));
    assert.ok(bad.kind === 'refuse' && bad.status === 500 && /shop\/missing not found/.test(bad.message));
    // A backend naming a Service the config lacks is unresolved too (Gateway API routes only).
    const gone = table([gw(0, { backends: [{ service: 'shop/nope', weight: 1 }] })]);
    assert.equal(planOutbound(gone, send('/'), draws([])).kind === 'refuse' && 500, 500);
  });

  it('a GRPCRoute method match (compiled to an Exact path) selects its backend', () => {
    const t = table([
      gw(0, {
        name: 'GRPCRoute/shop/g/0',
        source: { kind: 'GRPCRoute', namespace: 'shop', name: 'g', rule: 0 },
        matches: [{ path: { type: 'Exact', value: '/echo.Echo/Hello' } }],
        backends: [{ service: 'shop/web-v2', weight: 1 }],
      }),
      gw(1, {}),
    ]);
    const p = planOutbound(t, send('/echo.Echo/Hello', {}, 'POST'), draws([]));
    assert.ok(p.kind === 'forward' && p.backend.service.id === 'shop/web-v2');
    const q = planOutbound(t, send('/echo.Echo/Other', {}, 'POST'), draws([]));
    assert.ok(q.kind === 'forward' && q.backend.service.id === 'shop/web');
  });
});
