import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compile } from '../compiler.ts';
import { split } from '../fixtures.ts';
import { cluster, describeRoute, http, parent, resultOf, routesOf, to } from './gatewayfixtures.ts';
import type { GRPCRouteObj } from './gatewaytypes.ts';

describe('Gateway API route compiler: order and scope', () => {
  test('precedence: Exact, RegularExpression, longest PathPrefix, method, headers, query params, age, name; a 404 catch-all closes the Service', () => {
    const snap = cluster();
    snap.httpRoutes = [
      http(
        'shop',
        'b-newer',
        {
          parentRefs: [parent('reviews')],
          rules: [
            { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [to('reviews-v2')] },
            {
              matches: [
                { path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x', value: '1' }] },
              ],
              backendRefs: [to('reviews-v2')],
            },
          ],
        },
        '2026-01-02T00:00:00Z',
      ),
      http(
        'shop',
        'a-older',
        {
          parentRefs: [parent('reviews')],
          rules: [
            {
              matches: [
                { path: { type: 'PathPrefix', value: '/' } },
                { path: { type: 'PathPrefix', value: '/api' } },
                { path: { type: 'PathPrefix', value: '/api' }, method: 'POST' },
                { path: { type: 'PathPrefix', value: '/api' }, queryParams: [{ name: 'q', value: '1' }] },
                { path: { type: 'Exact', value: '/a' } },
                { path: { type: 'RegularExpression', value: '/r.*' } },
                { path: { type: 'PathPrefix', value: '/api/v1' } },
              ],
              backendRefs: [to('reviews-v1')],
            },
          ],
        },
        '2026-01-01T00:00:00Z',
      ),
    ];
    const order = routesOf(snap, 'web').map(describeRoute);
    assert.deepEqual(order, [
      'HTTPRoute/shop/a-older/0 {"path":{"type":"Exact","value":"/a"}}',
      'HTTPRoute/shop/a-older/0 {"path":{"type":"RegularExpression","value":"/r.*"}}',
      'HTTPRoute/shop/a-older/0 {"path":{"type":"PathPrefix","value":"/api/v1"}}',
      'HTTPRoute/shop/a-older/0 {"method":"POST","path":{"type":"PathPrefix","value":"/api"}}',
      'HTTPRoute/shop/b-newer/1 {"headers":[{"name":"x","type":"Exact","value":"1"}],"path":{"type":"PathPrefix","value":"/api"}}',
      'HTTPRoute/shop/a-older/0 {"path":{"type":"PathPrefix","value":"/api"},"queryParams":[{"name":"q","type":"Exact","value":"1"}]}',
      'HTTPRoute/shop/a-older/0 {"path":{"type":"PathPrefix","value":"/api"}}',
      'HTTPRoute/shop/b-newer/0 {"path":{"type":"PathPrefix","value":"/api"}}',
      'HTTPRoute/shop/a-older/0 {"path":{"type":"PathPrefix","value":"/"}}',
      'shop/reviews:no-route-matched * → 404',
    ]);
    const first = routesOf(snap, 'web')[0]!;
    assert.deepEqual(first.source, { kind: 'HTTPRoute', name: 'a-older', namespace: 'shop', rule: 0 });
    // Same age: the name decides.
    for (const r of snap.httpRoutes) r.metadata.creationTimestamp = '2026-01-01T00:00:00Z';
    const same = routesOf(snap, 'web').filter(
      (r) => JSON.stringify(r.matches) === '[{"path":{"type":"PathPrefix","value":"/api"}}]',
    );
    assert.deepEqual(
      same.map((r) => r.name),
      ['HTTPRoute/shop/a-older/0', 'HTTPRoute/shop/b-newer/0'],
    );
  });

  test('a rule without matches matches every path; port scopes get their own catch-alls', () => {
    const snap = cluster();
    snap.httpRoutes = [
      http('shop', 'p', {
        parentRefs: [parent('reviews', undefined, 9090)],
        rules: [{ backendRefs: [to('reviews-v1')] }],
      }),
    ];
    const routes = routesOf(snap, 'shop');
    assert.deepEqual(routes.map(describeRoute), [
      'HTTPRoute/shop/p/0@9090 {"path":{"type":"PathPrefix","value":"/"}}',
      'shop/reviews:no-route-matched@9090 * → 404',
    ]);
    assert.deepEqual(resultOf(snap, 'HTTPRoute/shop/p').parents[0]!.accepted.ok, true);
  });

  test('consumer routes apply only in their namespace and replace the producer routes there; routes take precedence over a TrafficSplit', () => {
    const snap = cluster();
    snap.trafficSplits.push(
      split('shop', 'canary', { service: 'reviews', backends: [{ service: 'reviews-v1', weight: 1 }] }),
    );
    snap.trafficSplits.push(
      split('shop', 'other', { service: 'reviews-v1', backends: [{ service: 'reviews-v2', weight: 1 }] }),
    );
    snap.httpRoutes = [
      http('web', 'consumer', {
        parentRefs: [parent('reviews', 'shop')],
        rules: [{ backendRefs: [to('reviews-v2', { namespace: 'shop' })] }],
      }),
    ];
    // Only a consumer route: the split still holds everywhere but in "web".
    let c = compile(snap);
    const canary = () => compile(snap).splits.find((s) => s.key === 'shop/canary')!;
    assert.deepEqual(canary().overriddenBy, { routes: ['HTTPRoute/web/consumer'], namespaces: ['web'] });
    assert.equal(canary().programmed, 'current');
    const names = (ns: string) =>
      c.configs
        .get(ns)!
        .config()
        .routes.map((r) => r.name);
    assert.deepEqual(names('shop'), ['shop/canary', 'shop/other']);
    assert.deepEqual(names('web'), [
      'shop/other',
      'HTTPRoute/web/consumer/0',
      'shop/reviews:no-route-matched',
    ]);
    assert.match(resultOf(snap, 'HTTPRoute/web/consumer').parents[0]!.accepted.ok ? 'ok' : '', /ok/);
    assert.equal(
      resultOf(snap, 'HTTPRoute/web/consumer').parents[0]!.resolvedRefs.ok,
      true,
      'a consumer route needs no ReferenceGrant',
    );
    // In a namespace that is not meshed, it is accepted but says it does nothing yet.
    snap.httpRoutes.push(
      http('plain', 'idle', {
        parentRefs: [parent('reviews', 'shop')],
        rules: [{ backendRefs: [to('reviews-v2', { namespace: 'shop' })] }],
      }),
    );
    assert.match(
      resultOf(snap, 'HTTPRoute/plain/idle').parents[0]!.accepted.message,
      /namespace plain is not meshed/,
    );
    snap.httpRoutes.pop();

    // A producer route too: it replaces the split everywhere; "web" keeps its consumer route.
    snap.httpRoutes.push(
      http('shop', 'producer', {
        parentRefs: [parent('reviews')],
        rules: [{ backendRefs: [to('reviews-v1')] }],
      }),
    );
    c = compile(snap);
    assert.deepEqual(names('shop'), [
      'shop/other',
      'HTTPRoute/shop/producer/0',
      'shop/reviews:no-route-matched',
    ]);
    assert.deepEqual(names('web'), [
      'shop/other',
      'HTTPRoute/web/consumer/0',
      'shop/reviews:no-route-matched',
    ]);
    assert.deepEqual(canary().overriddenBy, { routes: ['HTTPRoute/shop/producer'] });
    assert.equal(canary().programmed, 'none');
  });

  test('GRPCRoute method matches compile to path matches, and GRPCRoute entries come first', () => {
    const snap = cluster();
    const g = (
      name: string,
      method?: NonNullable<GRPCRouteObj['spec']['rules']>[number]['matches'],
    ): GRPCRouteObj => ({
      metadata: { name, namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: {
        parentRefs: [parent('reviews')],
        rules: [{ matches: method, backendRefs: [to('reviews-v1')] }],
      },
    });
    snap.grpcRoutes = [
      g('g', [
        { method: { service: 'pkg.Svc' } },
        { method: { service: 'pkg.Svc', method: 'Get' } },
        { method: { method: 'Get' } },
        { method: { type: 'RegularExpression', service: 'pkg\\..*' } },
      ]),
    ];
    snap.httpRoutes = [
      http('shop', 'h', { parentRefs: [parent('reviews')], rules: [{ backendRefs: [to('reviews-v2')] }] }),
    ];
    assert.deepEqual(
      routesOf(snap, 'shop').map(
        (r) =>
          `${r.source?.kind ?? '-'} ${r.matches[0]?.path?.type ?? '*'} ${r.matches[0]?.path?.value ?? ''}`,
      ),
      [
        'GRPCRoute Exact /pkg.Svc/Get',
        'GRPCRoute PathPrefix /pkg.Svc',
        'GRPCRoute RegularExpression /pkg\\..*/[^/]+',
        'GRPCRoute RegularExpression /[^/]+/Get',
        'HTTPRoute PathPrefix /',
        '- * ',
      ],
    );
  });
});
