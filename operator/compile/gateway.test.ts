import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProxyConfig, type Route } from '../../api/proxyconfig.ts';
import { check } from '../../api/validate.ts';
import { Compiler, compile } from '../compiler.ts';
import { scaleSnapshot, split } from '../fixtures.ts';
import type { ClusterSnapshot } from '../types.ts';
import type { GRPCRouteObj, HTTPRouteObj, ReferenceGrantObj } from './gatewaytypes.ts';

/** Services reviews, reviews-v1, reviews-v2 in "shop", other in "lib"; meshed namespaces shop and web. */
function cluster(): ClusterSnapshot {
  const snap = scaleSnapshot(0, 0, 'shop');
  snap.namespaces.push({ metadata: { name: 'web', labels: { 'weft.dev/inject': 'enabled' } } });
  const svc = (ns: string, name: string, i: number) =>
    snap.services.push({
      metadata: { name, namespace: ns },
      spec: {
        clusterIP: `10.96.0.${10 + i}`,
        ports: [
          { name: 'http', port: 80 },
          { name: 'admin', port: 9090 },
        ],
      },
    });
  for (const [i, n] of ['reviews', 'reviews-v1', 'reviews-v2'].entries()) svc('shop', n, i);
  svc('lib', 'other', 5);
  snap.services.push({ metadata: { name: 'headless', namespace: 'shop' }, spec: { clusterIP: 'None' } });
  return snap;
}

let seq = 0;
function http(ns: string, name: string, spec: HTTPRouteObj['spec'], created?: string): HTTPRouteObj {
  seq++;
  return {
    metadata: {
      name,
      namespace: ns,
      generation: 3,
      creationTimestamp: created ?? `2026-01-01T00:00:${String(seq % 60).padStart(2, '0')}Z`,
    },
    spec,
  };
}
const parent = (name: string, namespace?: string, port?: number) => ({
  group: '',
  kind: 'Service',
  name,
  ...(namespace ? { namespace } : {}),
  ...(port ? { port } : {}),
});
const to = (name: string, extra: Record<string, unknown> = {}) => ({ name, port: 80, ...extra });

const routesOf = (snap: ClusterSnapshot, ns: string) => {
  const c = compile(snap).configs.get(ns)!.config();
  assert.deepEqual(check(ProxyConfig, c, 'config'), [], 'the compiled config validates');
  return c.routes;
};
const describeRoute = (r: Route) =>
  `${r.name}${r.port ? `@${r.port}` : ''} ${r.matches.map((m) => JSON.stringify(m)).join('|') || '*'}${r.directResponse ? ` → ${r.directResponse.status}` : ''}`;
const resultOf = (snap: ClusterSnapshot, key: string) =>
  compile(snap).gatewayRoutes.find((r) => r.key === key)!;

describe('Gateway API route compiler', () => {
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

  test('filters: redirect (ReplacePrefixMatch knows its prefix, nothing forwarded), rewrite, header modifiers on the rule and on a backend, mirror; timeouts in ms', () => {
    const snap = cluster();
    snap.httpRoutes = [
      http('shop', 'f', {
        parentRefs: [parent('reviews')],
        rules: [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
            filters: [
              {
                type: 'RequestRedirect',
                requestRedirect: {
                  scheme: 'HTTPS',
                  path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' },
                },
              },
            ],
          },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/app' } }],
            filters: [
              {
                type: 'URLRewrite',
                urlRewrite: {
                  hostname: 'h.example',
                  path: { type: 'ReplaceFullPath', replaceFullPath: '/x' },
                },
              },
              {
                type: 'RequestHeaderModifier',
                requestHeaderModifier: { set: [{ name: 'a', value: '1' }], remove: ['b'] },
              },
              {
                type: 'RequestMirror',
                requestMirror: {
                  backendRef: { name: 'reviews-v2', port: 80 },
                  fraction: { numerator: 1, denominator: 4 },
                },
              },
            ],
            backendRefs: [
              to('reviews-v1', {
                weight: 3,
                filters: [
                  {
                    type: 'ResponseHeaderModifier',
                    responseHeaderModifier: { add: [{ name: 'c', value: '2' }] },
                  },
                ],
              }),
            ],
            timeouts: { request: '10s', backendRequest: '500ms' },
          },
        ],
      }),
    ];
    const [old, app] = routesOf(snap, 'shop');
    assert.deepEqual(old!.filters, [
      {
        path: { prefix: '/old', type: 'ReplacePrefixMatch', value: '/new' },
        scheme: 'https',
        statusCode: 302,
        type: 'RequestRedirect',
      },
    ]);
    assert.deepEqual(old!.backends, []);
    assert.equal(old!.directResponse, undefined);
    assert.deepEqual(app!.filters, [
      { hostname: 'h.example', path: { type: 'ReplaceFullPath', value: '/x' }, type: 'URLRewrite' },
      { remove: ['b'], set: [{ name: 'a', value: '1' }], type: 'RequestHeaderModifier' },
      { percentage: 25, port: 80, service: 'shop/reviews-v2', type: 'RequestMirror' },
    ]);
    assert.deepEqual(app!.backends, [
      {
        filters: [{ add: [{ name: 'c', value: '2' }], type: 'ResponseHeaderModifier' }],
        port: 80,
        service: 'shop/reviews-v1',
        weight: 3,
      },
    ]);
    assert.equal(app!.timeoutMs, 10_000);
    assert.equal(app!.backendRequestTimeoutMs, 500);
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

  test('unresolved backends: not found, wrong kind, cross-namespace producer route without a ReferenceGrant; their share gets 500', () => {
    const snap = cluster();
    snap.httpRoutes = [
      http('shop', 'r', {
        parentRefs: [parent('reviews')],
        rules: [
          { backendRefs: [to('reviews-v1'), to('missing')] },
          {
            matches: [{ path: { value: '/k' } }],
            backendRefs: [to('x', { group: 'example.com', kind: 'Bucket' })],
          },
          { matches: [{ path: { value: '/o' } }], backendRefs: [to('other', { namespace: 'lib' })] },
        ],
      }),
    ];
    const routes = routesOf(snap, 'shop');
    const byPath = (v: string) => routes.find((r) => r.matches[0]?.path?.value === v)!;
    assert.deepEqual(
      byPath('/').backends.map((b) => [b.service, Boolean(b.unresolved)]),
      [
        ['shop/reviews-v1', false],
        ['shop/missing', true],
      ],
    );
    assert.equal(byPath('/').directResponse, undefined, 'one valid backend: only the missing share fails');
    assert.deepEqual(byPath('/k').directResponse, { status: 500 });
    assert.deepEqual(byPath('/o').directResponse, { status: 500 });
    const p = resultOf(snap, 'HTTPRoute/shop/r').parents[0]!;
    assert.equal(p.accepted.ok, true);
    assert.equal(p.resolvedRefs.ok, false);
    if (!p.resolvedRefs.ok) {
      assert.equal(p.resolvedRefs.reason, 'BackendNotFound');
      assert.match(
        p.resolvedRefs.message,
        /spec\.rules\[0\]\.backendRefs\[1\]: Service shop\/missing not found/,
      );
      assert.match(
        p.resolvedRefs.message,
        /spec\.rules\[1\]\.backendRefs\[0\]: example\.com\/Bucket is not supported/,
      );
      assert.match(p.resolvedRefs.message, /needs a ReferenceGrant in lib/);
    }
    // The grant resolves the cross-namespace backend.
    const grant: ReferenceGrantObj = {
      metadata: { name: 'g', namespace: 'lib' },
      spec: {
        from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' }],
        to: [{ group: '', kind: 'Service' }],
      },
    };
    snap.referenceGrants = [grant];
    const o = routesOf(snap, 'shop').find((r) => r.matches[0]?.path?.value === '/o')!;
    assert.equal(o.directResponse, undefined);
    assert.deepEqual(o.backends, [{ port: 80, service: 'lib/other', weight: 1 }]);
  });

  test('bad parents: a missing Service, a headless one, a wrong port; parents of other kinds are left alone', () => {
    const snap = cluster();
    snap.httpRoutes = [
      http('shop', 'p', {
        parentRefs: [
          { name: 'gw' },
          parent('nope'),
          parent('headless'),
          parent('reviews', undefined, 81),
          { group: '', kind: 'Service', name: 'reviews', sectionName: 'admin' },
        ],
        rules: [{ backendRefs: [to('reviews-v1')] }],
      }),
    ];
    const parents = resultOf(snap, 'HTTPRoute/shop/p').parents;
    assert.deepEqual(
      parents.map((p) => [p.parentRef.name, p.accepted.ok ? 'Accepted' : p.accepted.reason]),
      [
        ['nope', 'NoMatchingParent'],
        ['headless', 'NotAllowedByListeners'],
        ['reviews', 'NoMatchingParent'],
        ['reviews', 'Accepted'],
      ],
    );
    assert.deepEqual(
      routesOf(snap, 'shop').map((r) => r.port),
      [9090, 9090],
    );
  });

  test('an unsupported value is refused with its field, never breaks other routes, and the last good version stays', () => {
    const snap = cluster();
    const good: HTTPRouteObj['spec'] = {
      parentRefs: [parent('reviews')],
      rules: [{ backendRefs: [to('reviews-v1')] }],
    };
    snap.httpRoutes = [
      http('shop', 'bad', structuredClone(good)),
      http('shop', 'fine', {
        parentRefs: [parent('reviews-v1')],
        rules: [{ backendRefs: [to('reviews-v2')] }],
      }),
    ];
    const first = compile(snap);
    assert.equal(first.gatewayRoutes.find((r) => r.key === 'HTTPRoute/shop/bad')!.programmed, 'current');
    snap.httpRoutes[0]!.spec.rules![0]!.filters = [{ type: 'ExtensionRef' }];
    snap.httpRoutes[0]!.spec.rules![0]!.matches = [{ path: { type: 'RegularExpression', value: '(?=x)' } }];
    const lastGood = { routes: new Map(), policies: new Map(), gatewayRoutes: new Map() };
    // Without a last good version: not programmed.
    let r = resultOf(snap, 'HTTPRoute/shop/bad');
    assert.equal(r.programmed, 'none');
    const a = r.parents[0]!.accepted;
    assert.equal(a.ok, false);
    if (!a.ok) {
      assert.equal(a.reason, 'UnsupportedValue');
      assert.match(a.message, /spec\.rules\[0\]\.filters\[0\]\.type: ExtensionRef is not supported/);
      assert.match(a.message, /spec\.rules\[0\]\.matches\[0\]\.path\.value: "\(\?=x\)" is not an RE2/);
    }
    assert.deepEqual(
      routesOf(snap, 'shop').map((x) => x.name),
      ['HTTPRoute/shop/fine/0', 'shop/reviews-v1:no-route-matched'],
    );
    // With one: it stays programmed.
    snap.lastGood = lastGood;
    lastGood.gatewayRoutes = new Map([
      ...new Compiler().prepare({ ...snap, httpRoutes: [http('shop', 'bad', good)] }).gatewayBindings,
    ]);
    r = resultOf(snap, 'HTTPRoute/shop/bad');
    assert.equal(r.programmed, 'lastGood');
    assert.deepEqual(
      routesOf(snap, 'shop').map((x) => x.name),
      [
        'HTTPRoute/shop/bad/0',
        'shop/reviews:no-route-matched',
        'HTTPRoute/shop/fine/0',
        'shop/reviews-v1:no-route-matched',
      ],
    );
  });
});
