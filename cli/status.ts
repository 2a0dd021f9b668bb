// `weftctl status`: every Weft resource (and HTTPRoute/GRPCRoute attached to Services) with its conditions, so one command shows what the
// operator did with each and why: for TrafficSplits and AuthorizationPolicies also how many
// proxies applied their generation (the Programmed condition), for the Mesh the proxies that
// lag behind their namespace's latest configuration, with the version each one runs.
import { describeLaggingProxy, type LaggingProxy } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import {
  GATEWAY_RESOURCES,
  CONTROLLER_NAME as ROUTE_CONTROLLER_NAME,
} from '../operator/compile/gatewaytypes.ts';
import { renderTable } from './table.ts';

export interface StatusRow {
  kind: string;
  namespace: string;
  name: string;
  ready: string;
  reason: string;
  message: string;
  upToDate: boolean;
  /** The Programmed condition's message ("3/3 proxies applied generation 2"), when there is one. */
  programmed?: string;
  /** The Mesh: proxies in and out of sync, and the lagging ones it names. */
  proxies?: { inSync: number; outOfSync: number; lagging: LaggingProxy[] };
}

interface Obj {
  metadata: { name: string; namespace?: string; generation?: number };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status: string; reason: string; message: string }[];
    proxiesInSync?: number;
    proxiesOutOfSync?: number;
    laggingProxies?: LaggingProxy[];
  };
}

export function rowOf(kind: string, o: Obj): StatusRow {
  const ready = o.status?.conditions?.find((c) => c.type === 'Ready');
  const programmed = o.status?.conditions?.find((c) => c.type === 'Programmed');
  const row: StatusRow = {
    kind,
    namespace: o.metadata.namespace ?? '',
    name: o.metadata.name,
    ready: ready?.status ?? 'Unknown',
    reason: ready?.reason ?? 'NotReconciled',
    message: ready?.message ?? 'the operator has not reported on this resource yet',
    upToDate: o.status?.observedGeneration === o.metadata.generation,
  };
  if (programmed) row.programmed = `${programmed.status === 'True' ? '' : 'pending: '}${programmed.message}`;
  if (o.status?.proxiesInSync !== undefined)
    row.proxies = {
      inSync: o.status.proxiesInSync,
      outOfSync: o.status.proxiesOutOfSync ?? 0,
      lagging: o.status.laggingProxies ?? [],
    };
  return row;
}

/** The conditions Weft writes in an HTTPRoute's or GRPCRoute's status.parents (controllerName weft.dev/mesh). */
interface RouteObj {
  metadata: { name: string; namespace?: string; generation?: number };
  spec?: unknown;
  status?: {
    parents?: {
      parentRef: { name: string; namespace?: string };
      controllerName: string;
      conditions?: {
        type: string;
        status: string;
        reason: string;
        message: string;
        observedGeneration?: number;
      }[];
    }[];
  };
}

/**
 * A route's row: Ready when every Service parent of Weft's is Accepted with ResolvedRefs,
 * else the first failing condition (naming its parent). Routes no parent of Weft's names are
 * skipped (another controller's).
 */
export function routeRowOf(kind: string, o: RouteObj, controllerName: string): StatusRow | undefined {
  const mine = (o.status?.parents ?? []).filter((p) => p.controllerName === controllerName);
  if (mine.length === 0) return undefined;
  const conds = mine.flatMap((p) => (p.conditions ?? []).map((c) => ({ ...c, parent: p.parentRef })));
  const failing = conds.find((c) => c.status !== 'True');
  return {
    kind,
    namespace: o.metadata.namespace ?? '',
    name: o.metadata.name,
    ready: failing ? 'False' : 'True',
    reason: failing?.reason ?? 'Accepted',
    message: failing
      ? `Service ${failing.parent.namespace ?? o.metadata.namespace}/${failing.parent.name}: ${failing.message}`
      : `Attached to ${mine.map((p) => `Service ${p.parentRef.namespace ?? o.metadata.namespace}/${p.parentRef.name}`).join(', ')}`,
    upToDate: conds.every((c) => c.observedGeneration === o.metadata.generation),
  };
}

export async function collectStatus(client: KubeClient, namespace?: string): Promise<StatusRow[]> {
  const rows: StatusRow[] = [];
  for (const t of [RESOURCES.meshes, RESOURCES.trafficSplits, RESOURCES.authorizationPolicies]) {
    const list = await client.list<KubeObject & Obj>(t, { namespace });
    for (const o of list.items) rows.push(rowOf(t.kind, o));
  }
  // Gateway API routes attached to Services, when the CRDs are installed.
  for (const t of [GATEWAY_RESOURCES.httpRoutes, GATEWAY_RESOURCES.grpcRoutes]) {
    let items: (KubeObject & RouteObj)[];
    try {
      items = (await client.list<KubeObject & RouteObj>(t, { namespace })).items;
    } catch (err) {
      if (isNotFound(err)) continue;
      throw err;
    }
    for (const o of items) {
      const row = routeRowOf(t.kind, o, ROUTE_CONTROLLER_NAME);
      if (row) rows.push(row);
    }
  }
  return rows;
}

export function renderStatus(rows: StatusRow[]): string {
  const table = renderTable(
    ['KIND', 'NAMESPACE', 'NAME', 'READY', 'REASON', 'MESSAGE'],
    rows.map((r) => [
      r.kind,
      r.namespace || '-',
      r.name,
      r.upToDate ? r.ready : `${r.ready}*`,
      r.reason,
      r.message,
    ]),
  );
  const stale = rows.some((r) => !r.upToDate);
  const extra: string[] = [];
  for (const r of rows) {
    if (r.programmed) extra.push(`${r.kind} ${r.namespace}/${r.name}: ${r.programmed}`);
    if (r.proxies) {
      extra.push(`Mesh ${r.name}: ${r.proxies.inSync} proxies in sync, ${r.proxies.outOfSync} out of sync`);
      for (const l of r.proxies.lagging) extra.push(`  lagging: ${describeLaggingProxy(l)}`);
    }
  }
  return `${table}${stale ? '* the operator has not yet reconciled the latest generation\n' : ''}${
    extra.length ? `\n${extra.join('\n')}\n` : ''
  }`;
}
