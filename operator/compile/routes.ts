// Every route source → the `routes` of one namespace's ProxyConfig: TrafficSplits and the
// Gateway API routes attached to Services. Where both target one Service, the routes win
// (docs/gateway-api.md): a producer route (in the Service's namespace) replaces the Service's
// TrafficSplits everywhere, a consumer route only in its own namespace; the TrafficSplit's
// result says which routes took over, for its status.
import type { Route } from '../../api/proxyconfig.ts';
import type { ClusterSnapshot } from '../types.ts';
import { compileGatewayRoutes, type GatewayCompiled } from './gateway.ts';
import { compileSplit, compileWithLastGood, type ResourceResult } from './resources.ts';
import type { SnapshotIndex } from './services.ts';
import { cmp } from './util.ts';

export interface RouteSet {
  splits: ResourceResult[];
  /** Each split's programmed route (current or last good), for the last-good memory. */
  splitRoutes: Map<string, Route>;
  gateway: GatewayCompiled;
  /** The canonical JSON of namespace `ns`'s `routes`. */
  json(ns: string): string;
}

export function routeSet(snap: ClusterSnapshot, idx: SnapshotIndex): RouteSet {
  const { results, outputs: routes } = compileWithLastGood(
    snap.trafficSplits,
    (split) => {
      const { route, result } = compileSplit(split, idx.services);
      return { out: route, result };
    },
    snap.lastGood?.routes,
  );
  const gateway = compileGatewayRoutes({
    httpRoutes: snap.httpRoutes,
    grpcRoutes: snap.grpcRoutes,
    referenceGrants: snap.referenceGrants,
    services: idx.services,
    meshed: idx.meshed,
    lastGood: snap.lastGood?.gatewayRoutes,
  });
  // Splits still in effect somewhere, and what overrides the others.
  const live: Route[] = [];
  for (const r of results) {
    const route = routes.get(r.key);
    if (!route) continue;
    const producers = gateway.producerKeys.get(route.service);
    const consumers = gateway.consumerKeys.get(route.service);
    if (producers) {
      r.overriddenBy = { routes: producers };
      r.programmed = 'none';
      continue;
    }
    if (consumers)
      r.overriddenBy = {
        routes: [...new Set([...consumers.values()].flat())].sort(cmp),
        namespaces: [...consumers.keys()].sort(cmp),
      };
    live.push(route);
  }
  const services = (m: Map<string, Route[]> | undefined) => [...(m?.keys() ?? [])];
  const build = (ns: string) => {
    const mine = gateway.consumer.get(ns);
    const list = live.filter((r) => !mine?.has(r.service));
    for (const svc of [...new Set([...services(gateway.producer), ...services(mine)])].sort(cmp))
      list.push(...(mine?.get(svc) ?? gateway.producer.get(svc) ?? []));
    return JSON.stringify(list);
  };
  const shared = build('');
  return {
    splits: results,
    splitRoutes: routes,
    gateway,
    json: (ns) => (gateway.consumer.has(ns) ? build(ns) : shared),
  };
}
