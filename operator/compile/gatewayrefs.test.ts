import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Compiler, compile } from '../compiler.ts';
import { cluster, http, parent, resultOf, routesOf, to } from './gatewayfixtures.ts';
import type { HTTPRouteObj, ReferenceGrantObj } from './gatewaytypes.ts';

describe('Gateway API route compiler: filters, references, invalid input', () => {
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
    snap.httpRoutes[0]!.spec.rules![0]!.matches = [
      { path: { type: 'RegularExpression', value: '(?=x)' }, headers: [{ name: 'bad name', value: 'x' }] },
    ];
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
      // A value the proxies' schema refuses (the CRD would have): refused here, for this route only.
      assert.match(a.message, /matches\/0\/headers\/0\/name|matches\[0\]\.headers\[0\]\.name/);
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
