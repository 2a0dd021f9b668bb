// HTTPRoute and GRPCRoute status (key: ns/name): one status.parents[] entry per Service
// parentRef, under Weft's controllerName, with Accepted and ResolvedRefs. Entries of other
// controllers are never touched. parents[] is an atomic list, so it is written with a
// read-modify-write (PUT of the status subresource at the cached resourceVersion): a conflict
// is retried by the queue once the cache has the newer object.
import { type KubeClient, type ResourceType, resourcePath } from '../../kube/client.ts';
import { type ConditionInput, mergeConditions, sameConditions } from '../../kube/conditions.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { ParentResult, RouteResult } from '../compile/gateway.ts';
import { CONTROLLER_NAME, type GatewayRouteObj, type RouteParentStatus } from '../compile/gatewaytypes.ts';
import type { WriteStats } from '../status.ts';

export interface GatewayRouteDeps {
  type: ResourceType;
  objects: { get(key: string): (GatewayRouteObj & { metadata: { resourceVersion?: string } }) | undefined };
  /** The compiler's verdict, by "<Kind>/<namespace>/<name>". */
  resultOf: (key: string) => RouteResult | undefined;
  client: KubeClient;
  stats: WriteStats;
}

const conditionsOf = (p: ParentResult): ConditionInput[] => [
  p.accepted.ok
    ? { type: 'Accepted', status: 'True', reason: 'Accepted', message: p.accepted.message }
    : { type: 'Accepted', status: 'False', reason: p.accepted.reason, message: p.accepted.message },
  p.resolvedRefs.ok
    ? { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: p.resolvedRefs.message }
    : {
        type: 'ResolvedRefs',
        status: 'False',
        reason: p.resolvedRefs.reason,
        message: p.resolvedRefs.message,
      },
];

const sameRef = (a: object, b: object) =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

/**
 * The route's status.parents: the other controllers' entries as they are, then Weft's, one per
 * Service parent (conditions keep their lastTransitionTime unless they flip). `changed` is
 * false when Weft's entries already say this.
 */
export function routeParents(
  current: readonly RouteParentStatus[] | undefined,
  r: RouteResult,
  generation: number | undefined,
  now?: () => Date,
): { parents: RouteParentStatus[]; changed: boolean } {
  const others = (current ?? []).filter((p) => p.controllerName !== CONTROLLER_NAME);
  const mine = (current ?? []).filter((p) => p.controllerName === CONTROLLER_NAME);
  const ours: RouteParentStatus[] = r.parents.map((p) => {
    const prev = mine.find((m) => sameRef(m.parentRef, p.parentRef));
    return {
      parentRef: p.parentRef,
      controllerName: CONTROLLER_NAME,
      conditions: mergeConditions(prev?.conditions, conditionsOf(p), generation, now),
    };
  });
  const changed =
    ours.length !== mine.length ||
    ours.some((o, i) => {
      const m = mine[i]!;
      return !sameRef(m.parentRef, o.parentRef) || !sameConditions(m.conditions, o.conditions);
    });
  return { parents: [...others, ...ours], changed };
}

export function gatewayRouteReconciler(d: GatewayRouteDeps): KeyReconciler {
  return async (key) => {
    const route = d.objects.get(key);
    const r = route && d.resultOf(`${d.type.kind}/${key}`);
    if (!route || !r) return undefined;
    const { parents, changed } = routeParents(route.status?.parents, r, route.metadata.generation);
    if (!changed) return undefined;
    const { namespace, name } = route.metadata;
    await d.client.request('PUT', resourcePath(d.type, namespace, name, 'status'), {
      body: {
        apiVersion: `${d.type.group}/${d.type.version}`,
        kind: d.type.kind,
        metadata: { name, namespace, resourceVersion: route.metadata.resourceVersion },
        spec: route.spec,
        status: { ...route.status, parents },
      },
    });
    d.stats.statusWrites++;
    return undefined;
  };
}
