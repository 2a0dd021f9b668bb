// The ProxyConfig contract end to end, without sockets: HTTPRoutes and a GRPCRoute as users
// write them, compiled by the operator (operator/compiler.ts), then routed and filtered by the
// proxy's plan. What the conformance suite's mesh tests send, with what they expect back.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GRPCRouteObj, HTTPRouteObj } from '../../operator/compile/gatewaytypes.ts';
import { compile } from '../../operator/compiler.ts';
import { scaleSnapshot } from '../../operator/fixtures.ts';
import type { ClusterSnapshot } from '../../operator/types.ts';
import { RoutingTable } from '../table.ts';
import { type OutboundPlan, planOutbound } from './plan.ts';

function cluster(): ClusterSnapshot {
  const snap = scaleSnapshot(0, 0, 'shop');
  for (const [i, name] of ['echo', 'echo-v2', 'grpc'].entries())
    snap.services.push({
      metadata: { name, namespace: 'shop' },
      spec: { clusterIP: `10.96.0.${10 + i}`, ports: [{ name: 'http', port: 80 }] },
    });
  return snap;
}

const parentRefs = (name: string) => [{ group: '', kind: 'Service', name }];
const to = (name: string) => [{ name, port: 80 }];

function httpRoute(name: string, rules: NonNullable<HTTPRouteObj['spec']>['rules']): HTTPRouteObj {
  return {
    metadata: { name, namespace: 'shop', generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { parentRefs: parentRefs('echo'), rules },
  };
}

function plan(snap: ClusterSnapshot, path: string, vip = '10.96.0.10', method = 'GET'): OutboundPlan {
  const config = compile(snap).configs.get('shop')!.config();
  return planOutbound(
    new RoutingTable(config),
    { dst: { address: vip, port: 80 }, authority: 'echo', http: { method, path, header: () => undefined } },
    { random: () => 0.5, takeToken: () => true },
  );
}

const outcome = (p: OutboundPlan) =>
  p.kind === 'forward'
    ? `${p.backend.service.name} ${p.path}`
    : p.kind === 'redirect'
      ? `${p.status} ${p.location}`
      : p.kind === 'refuse'
        ? `${p.status}`
        : p.kind;

describe('HTTPRoute and GRPCRoute, compiled by the operator, carried out by the plan', () => {
  it('redirects: status, hostname, port, path prefix (MeshHTTPRouteRedirect*)', () => {
    const snap = cluster();
    snap.httpRoutes = [
      httpRoute('redirect', [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/port' } }],
          filters: [{ type: 'RequestRedirect', requestRedirect: { port: 8083, statusCode: 302 } }],
        },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/scheme' } }],
          filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', statusCode: 301 } }],
        },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/original-prefix' } }],
          filters: [
            {
              type: 'RequestRedirect',
              requestRedirect: {
                statusCode: 302,
                hostname: 'example.org',
                path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/replacement-prefix' },
              },
            },
          ],
        },
      ]),
    ];
    assert.equal(outcome(plan(snap, '/port')), '302 http://echo:8083/port');
    assert.equal(outcome(plan(snap, '/scheme')), '301 https://echo/scheme');
    assert.equal(
      outcome(plan(snap, '/original-prefix/lemon')),
      '302 http://example.org/replacement-prefix/lemon',
    );
    assert.equal(outcome(plan(snap, '/elsewhere')), '404', 'no rule matched: the catch-all answers 404');
  });

  it('rewrites and the precedence of matches (MeshHTTPRouteRewritePath, MeshHTTPRouteMatching)', () => {
    const snap = cluster();
    snap.httpRoutes = [
      httpRoute('rewrite', [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/prefix/one' } }],
          filters: [
            {
              type: 'URLRewrite',
              urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' } },
            },
          ],
          backendRefs: to('echo'),
        },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/strip-prefix' } }],
          filters: [
            {
              type: 'URLRewrite',
              urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } },
            },
          ],
          backendRefs: to('echo'),
        },
        { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: to('echo') },
        // Declared last, but an Exact match and a query match come first.
        { matches: [{ path: { type: 'Exact', value: '/v2' } }], backendRefs: to('echo-v2') },
        {
          matches: [
            { path: { type: 'PathPrefix', value: '/' }, queryParams: [{ name: 'animal', value: 'whale' }] },
          ],
          backendRefs: to('echo-v2'),
        },
      ]),
    ];
    assert.equal(outcome(plan(snap, '/prefix/one/two')), 'echo /one/two');
    assert.equal(outcome(plan(snap, '/strip-prefix/three')), 'echo /three');
    assert.equal(outcome(plan(snap, '/strip-prefix')), 'echo /');
    assert.equal(outcome(plan(snap, '/v2')), 'echo-v2 /v2');
    assert.equal(outcome(plan(snap, '/v2/x')), 'echo /v2/x');
    assert.equal(outcome(plan(snap, '/zoo?animal=whale')), 'echo-v2 /zoo?animal=whale');
    assert.equal(outcome(plan(snap, '/zoo?animal=dolphin')), 'echo /zoo?animal=dolphin');
  });

  it('a GRPCRoute method match selects its backend; other methods get 404', () => {
    const snap = cluster();
    const g: GRPCRouteObj = {
      metadata: { name: 'g', namespace: 'shop', generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: {
        parentRefs: parentRefs('grpc'),
        rules: [
          { matches: [{ method: { service: 'echo.Echo', method: 'Hello' } }], backendRefs: to('echo-v2') },
          { matches: [{ method: { service: 'echo.Echo' } }], backendRefs: to('echo') },
        ],
      },
    };
    snap.grpcRoutes = [g];
    assert.equal(outcome(plan(snap, '/echo.Echo/Hello', '10.96.0.12', 'POST')), 'echo-v2 /echo.Echo/Hello');
    assert.equal(outcome(plan(snap, '/echo.Echo/Bye', '10.96.0.12', 'POST')), 'echo /echo.Echo/Bye');
    assert.equal(outcome(plan(snap, '/other.Svc/Hello', '10.96.0.12', 'POST')), '404');
  });
});
