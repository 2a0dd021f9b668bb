// Shared by the route compiler's tests: a small cluster and route builders.
import assert from 'node:assert/strict';
import { ProxyConfig, type Route } from '../../api/proxyconfig.ts';
import { check } from '../../api/validate.ts';
import { compile } from '../compiler.ts';
import { scaleSnapshot } from '../fixtures.ts';
import type { ClusterSnapshot } from '../types.ts';
import type { HTTPRouteObj } from './gatewaytypes.ts';

/** Services reviews, reviews-v1, reviews-v2 in "shop", other in "lib"; meshed namespaces shop and web. */
export function cluster(): ClusterSnapshot {
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
export function http(ns: string, name: string, spec: HTTPRouteObj['spec'], created?: string): HTTPRouteObj {
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
export const parent = (name: string, namespace?: string, port?: number) => ({
  group: '',
  kind: 'Service',
  name,
  ...(namespace ? { namespace } : {}),
  ...(port ? { port } : {}),
});
export const to = (name: string, extra: Record<string, unknown> = {}) => ({ name, port: 80, ...extra });

export const routesOf = (snap: ClusterSnapshot, ns: string) => {
  const c = compile(snap).configs.get(ns)!.config();
  assert.deepEqual(check(ProxyConfig, c, 'config'), [], 'the compiled config validates');
  return c.routes;
};
export const describeRoute = (r: Route) =>
  `${r.name}${r.port ? `@${r.port}` : ''} ${r.matches.map((m) => JSON.stringify(m)).join('|') || '*'}${r.directResponse ? ` → ${r.directResponse.status}` : ''}`;
export const resultOf = (snap: ClusterSnapshot, key: string) =>
  compile(snap).gatewayRoutes.find((r) => r.key === key)!;
