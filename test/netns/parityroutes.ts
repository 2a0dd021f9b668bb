// The parity test's Gateway API cases (issue 14): routes as the operator compiles them from
// HTTPRoute rules (docs/proxy-config.md "Gateway API routes"), with their matches and filters,
// checked through every transport of the client sidecar by test/netns/parity.test.ts.
import type { Route } from '../../api/index.ts';
import { route } from '../../proxy/testdata.ts';
import type { Case } from './paritysend.ts';

/** A route entry as the operator compiles it from an HTTPRoute rule (docs/proxy-config.md). */
const httpRoute = (name: string, r: Partial<Route>): Route =>
  route({
    name,
    source: { kind: 'HTTPRoute', namespace: 'shop', name: name.split('/')[1]!, rule: 0 },
    matches: [{ path: { type: 'PathPrefix', value: '/' } }],
    ...r,
  });

/**
 * `pods` names the backend pods (v1 serves shop/web, v2 shop/web-v2); `seen` says whether
 * web-v2's app received a request for that target (mirrors).
 */
export function gatewayCases(
  pods: { v1(): string; v2(): string },
  seen: (target: string) => Promise<boolean>,
): Case[] {
  return [
    {
      name: 'HTTPRoute: a method and query parameter match picks its rule',
      routes: (n) => [
        httpRoute(n, {
          matches: [
            {
              path: { type: 'PathPrefix', value: '/' },
              method: 'GET',
              queryParams: [{ name: 'v', value: '2' }],
            },
          ],
          backends: [{ service: 'shop/web-v2', weight: 1 }],
        }),
        httpRoute(n, {}),
      ],
      path: '/q?v=2',
      expect: [
        { status: 'ok', backend: () => pods.v2() },
        { path: '/q?v=3', status: 'ok', backend: () => pods.v1() },
        { path: '/q?w=2', status: 'ok', backend: () => pods.v1() },
      ],
    },
    {
      name: 'HTTPRoute: RequestHeaderModifier sets, appends and removes request headers',
      routes: (n) => [
        httpRoute(n, {
          filters: [
            {
              type: 'RequestHeaderModifier',
              set: [{ name: 'X-Probe-Set', value: 'by-route' }],
              add: [{ name: 'x-probe-add', value: 'b' }],
              remove: ['X-Probe-Remove'],
            },
          ],
        }),
      ],
      headers: { 'x-probe-set': 'by-client', 'x-probe-add': 'a', 'x-probe-remove': 'gone' },
      expect: [
        {
          status: 'ok',
          backend: () => pods.v1(),
          headers: {
            'x-seen-x-probe-set': 'by-route',
            'x-seen-x-probe-add': 'a,b',
            'x-seen-x-probe-remove': undefined,
          },
        },
      ],
    },
    {
      name: 'HTTPRoute: RequestRedirect answers at the client sidecar with its status and Location',
      routes: (n) => [
        httpRoute(n, {
          backends: [],
          filters: [
            {
              type: 'RequestRedirect',
              statusCode: 301,
              hostname: 'example.org',
              path: { type: 'ReplacePrefixMatch', value: '/new', prefix: '/old' },
            },
          ],
        }),
      ],
      path: '/old/page?x=1',
      expect: [
        { status: 301, headers: { location: 'http://example.org/new/page?x=1', 'x-backend': undefined } },
      ],
    },
    {
      name: 'HTTPRoute: URLRewrite replaces the path prefix and the Host',
      routes: (n) => [
        httpRoute(n, {
          matches: [{ path: { type: 'PathPrefix', value: '/prefix' } }],
          filters: [
            {
              type: 'URLRewrite',
              hostname: 'rewritten.example',
              path: { type: 'ReplacePrefixMatch', value: '/', prefix: '/prefix' },
            },
          ],
        }),
      ],
      path: '/prefix/one?q=1',
      expect: [
        {
          status: 'ok',
          backend: () => pods.v1(),
          headers: { 'x-seen-path': encodeURIComponent('/one?q=1'), 'x-seen-host': 'rewritten.example' },
        },
      ],
    },
    {
      name: 'HTTPRoute: ResponseHeaderModifier edits the answer',
      routes: (n) => [
        httpRoute(n, {
          filters: [
            { type: 'ResponseHeaderModifier', set: [{ name: 'x-route', value: 'r1' }], remove: ['x-count'] },
          ],
        }),
      ],
      transports: ['h1-fast', 'h1-node', 'h1-mux', 'h2'],
      expect: [
        { status: 'ok', backend: () => pods.v1(), headers: { 'x-route': 'r1', 'x-count': undefined } },
      ],
    },
    {
      name: 'HTTPRoute: RequestMirror sends a copy to the mirror, the answer comes from the backend',
      routes: (n) => [
        httpRoute(n, { filters: [{ type: 'RequestMirror', service: 'shop/web-v2', percentage: 100 }] }),
      ],
      path: (t) => `/mirrored/${t}`,
      transports: ['h1-fast', 'h1-node', 'h1-mux', 'h2'],
      expect: [{ status: 'ok', backend: () => pods.v1() }],
      async verify(t) {
        return (await seen(`/mirrored/${t}`)) ? undefined : `${t}: web-v2 never saw the mirrored request`;
      },
    },
    {
      name: 'HTTPRoute: timeouts.backendRequest answers 504 when a try takes longer',
      routes: (n) => [httpRoute(n, { backendRequestTimeoutMs: 200 })],
      path: '/delay/3000',
      transports: ['h1-fast', 'h1-node', 'h1-mux', 'h2'],
      expect: [{ status: 504 }],
    },
  ];
}
