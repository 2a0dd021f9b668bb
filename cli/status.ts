// `weftctl status`: every Weft resource with its conditions, so one command shows what the
// operator did with each and why: for TrafficSplits and AuthorizationPolicies also how many
// proxies applied their generation (the Programmed condition), for the Mesh the proxies that
// lag behind their namespace's latest configuration, with the version each one runs.
import { describeLaggingProxy, type LaggingProxy } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';

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

export async function collectStatus(client: KubeClient, namespace?: string): Promise<StatusRow[]> {
  const rows: StatusRow[] = [];
  for (const t of [RESOURCES.meshes, RESOURCES.trafficSplits, RESOURCES.authorizationPolicies]) {
    const list = await client.list<KubeObject & Obj>(t, { namespace });
    for (const o of list.items) rows.push(rowOf(t.kind, o));
  }
  return rows;
}

export function renderStatus(rows: StatusRow[]): string {
  const head = ['KIND', 'NAMESPACE', 'NAME', 'READY', 'REASON', 'MESSAGE'];
  const table = [
    head,
    ...rows.map((r) => [
      r.kind,
      r.namespace || '-',
      r.name,
      r.upToDate ? r.ready : `${r.ready}*`,
      r.reason,
      r.message,
    ]),
  ];
  const widths = head.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const lines = table.map((row) =>
    row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '),
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
  return `${lines.join('\n')}\n${stale ? '* the operator has not yet reconciled the latest generation\n' : ''}${
    extra.length ? `\n${extra.join('\n')}\n` : ''
  }`;
}
