// What the webhook reads from the apiserver: the pod's namespace and the Mesh (cached for a
// few seconds, because they are read on every pod admission), and the live lookups of the
// validating webhook (CRs are written rarely, and a stale answer there would mislead).
import type { MeshSpec, TrafficSplitSpec } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import type { NamespaceInfo } from './inject.ts';
import type { ClusterView } from './validate.ts';

/**
 * A read-through cache whose entries are fresh for ttlMs (0: always read). An expired entry is
 * still answered while one background read refreshes it (stale-while-revalidate), so an
 * admission waits on the apiserver only the first time it sees a namespace.
 */
export class TtlCache<T> {
  private readonly entries = new Map<string, { value: T; at: number; refreshing?: Promise<void> }>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  constructor(ttlMs: number, now: () => number) {
    this.ttlMs = ttlMs;
    this.now = now;
  }
  async get(key: string, load: () => Promise<T>): Promise<T> {
    const e = this.entries.get(key);
    if (e && this.now() - e.at < this.ttlMs) return e.value;
    if (e && this.ttlMs > 0 && this.now() - e.at < this.ttlMs * 12) {
      e.refreshing ??= load().then(
        (value) => {
          this.entries.set(key, { value, at: this.now() });
        },
        () => {
          e.refreshing = undefined; // keep the stale value; the next admission retries
        },
      );
      return e.value;
    }
    const value = await load();
    this.entries.set(key, { value, at: this.now() });
    if (this.entries.size > 10_000) this.entries.delete(this.entries.keys().next().value as string);
    return value;
  }
}

export interface InjectionState {
  namespace(name: string): Promise<NamespaceInfo>;
  /** The spec of the Mesh named "default"; undefined when there is none (defaults apply). */
  mesh(): Promise<MeshSpec | undefined>;
}

export function injectionState(
  client: KubeClient,
  ttlMs: number,
  now: () => number = Date.now,
): InjectionState {
  const namespaces = new TtlCache<NamespaceInfo>(ttlMs, now);
  const meshes = new TtlCache<MeshSpec | undefined>(ttlMs, now);
  return {
    namespace: (name) =>
      namespaces.get(name, async () => {
        const ns = await client.find(RESOURCES.namespaces, name);
        return { name, labels: ns?.metadata.labels ?? {} };
      }),
    mesh: () =>
      meshes.get('default', async () => {
        const m = await client.find<KubeObject & { spec?: MeshSpec }>(RESOURCES.meshes, 'default');
        return m && (m.spec ?? {});
      }),
  };
}

const KINDS = {
  Namespace: RESOURCES.namespaces,
  Service: RESOURCES.services,
  ServiceAccount: RESOURCES.serviceAccounts,
  Secret: RESOURCES.secrets,
} as const;

/** The validating webhook's view of the cluster, read live from the apiserver. */
export function apiClusterView(client: KubeClient): ClusterView {
  return {
    meshNames: async () => (await client.list(RESOURCES.meshes)).items.map((m) => m.metadata.name),
    trafficSplits: async (namespace) =>
      (
        await client.list<KubeObject & { spec: TrafficSplitSpec }>(RESOURCES.trafficSplits, { namespace })
      ).items.map((s) => ({ name: s.metadata.name, spec: s.spec })),
    exists: async (kind, namespace, name) => (await client.find(KINDS[kind], name, namespace)) !== undefined,
  };
}
