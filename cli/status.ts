// `weftctl status`: every Weft resource with its conditions, so one command shows what the
// operator did with each and why.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/index.ts';

export interface StatusRow {
  kind: string;
  namespace: string;
  name: string;
  ready: string;
  reason: string;
  message: string;
  upToDate: boolean;
}

interface Obj {
  metadata: { name: string; namespace?: string; generation?: number };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

export function rowOf(kind: string, o: Obj): StatusRow {
  const ready = o.status?.conditions?.find((c) => c.type === 'Ready');
  return {
    kind,
    namespace: o.metadata.namespace ?? '',
    name: o.metadata.name,
    ready: ready?.status ?? 'Unknown',
    reason: ready?.reason ?? 'NotReconciled',
    message: ready?.message ?? 'the operator has not reported on this resource yet',
    upToDate: o.status?.observedGeneration === o.metadata.generation,
  };
}

export async function collectStatus(kc: KubeConfig, namespace?: string): Promise<StatusRow[]> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const rows: StatusRow[] = [];
  const kinds: [string, string, boolean][] = [
    ['Mesh', 'meshes', false],
    ['TrafficSplit', 'trafficsplits', true],
    ['AuthorizationPolicy', 'authorizationpolicies', true],
  ];
  for (const [kind, plural, namespaced] of kinds) {
    const list = (
      namespaced && namespace
        ? await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural })
        : await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
    ) as { items: Obj[] };
    for (const o of list.items) rows.push(rowOf(kind, o));
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
  return `${lines.join('\n')}\n${stale ? '* the operator has not yet reconciled the latest generation\n' : ''}`;
}
