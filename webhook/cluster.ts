// What the webhook reads from the apiserver: the pod's namespace and the Mesh (cached for a
// few seconds, because they are read on every pod admission), and the live lookups of the
// validating webhook (CRs are written rarely, and a stale answer there would mislead).
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, type MeshSpec, type TrafficSplitSpec, VERSION } from '../api/index.ts';
import type { NamespaceInfo } from './inject.ts';
import type { ClusterView } from './validate.ts';

const statusOf = (err: unknown): number | undefined => (err as { code?: number }).code;

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

export function injectionState(kc: KubeConfig, ttlMs: number, now: () => number = Date.now): InjectionState {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const namespaces = new TtlCache<NamespaceInfo>(ttlMs, now);
  const meshes = new TtlCache<MeshSpec | undefined>(ttlMs, now);
  return {
    namespace: (name) =>
      namespaces.get(name, async () => {
        try {
          const ns = await core.readNamespace({ name });
          return { name, labels: ns.metadata?.labels ?? {} };
        } catch (err) {
          if (statusOf(err) === 404) return { name, labels: {} };
          throw err;
        }
      }),
    mesh: () =>
      meshes.get('default', async () => {
        try {
          const m = (await custom.getClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: 'meshes',
            name: 'default',
          })) as { spec?: MeshSpec };
          return m.spec ?? {};
        } catch (err) {
          if (statusOf(err) === 404) return undefined;
          throw err;
        }
      }),
  };
}

/** The validating webhook's view of the cluster, read live from the apiserver. */
export function apiClusterView(kc: KubeConfig): ClusterView {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const found = async (read: () => Promise<unknown>) => {
    try {
      await read();
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  };
  return {
    meshNames: async () => {
      const list = (await custom.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: 'meshes',
      })) as {
        items: { metadata: { name: string } }[];
      };
      return list.items.map((m) => m.metadata.name);
    },
    trafficSplits: async (namespace) => {
      const list = (await custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: 'trafficsplits',
        namespace,
      })) as { items: { metadata: { name: string }; spec: TrafficSplitSpec }[] };
      return list.items.map((s) => ({ name: s.metadata.name, spec: s.spec }));
    },
    exists: (kind, namespace, name) => {
      switch (kind) {
        case 'Namespace':
          return found(() => core.readNamespace({ name }));
        case 'Service':
          return found(() => core.readNamespacedService({ namespace, name }));
        case 'ServiceAccount':
          return found(() => core.readNamespacedServiceAccount({ namespace, name }));
        case 'Secret':
          return found(() => core.readNamespacedSecret({ namespace, name }));
      }
    },
  };
}
