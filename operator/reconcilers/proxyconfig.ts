// ProxyConfig ConfigMaps (key: namespace): compiles the namespace's config and writes its
// ConfigMaps when the content version (or the owner) differs, or a part is corrupted or gone;
// removes them when the namespace leaves the mesh. A config too large to distribute is a Mesh
// status error and a Warning Event. Each write carries the next generation (manifest
// `generation`: the order proxies apply versions in) and is recorded in Propagation with the
// resources it carries; the RoleBinding `weft-proxy` lets the namespace's proxies watch these
// ConfigMaps (the fast path).
import type { Mesh } from '../../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { ERROR_CODES, isNotFound, WeftError } from '../../kube/errors.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import type { Compilation } from '../compilation.ts';
import { DEFAULT_MESH_NAME } from '../compiler.ts';
import { EVENT_REASON, REASON } from '../conditions.ts';
import {
  ALL_SHARD_NAMES,
  type ConfigMapObj,
  damage,
  encode,
  manifestOf,
  shardName,
} from '../distribution.ts';
import type { OperatorMetrics } from '../metrics.ts';
import type { Propagation } from '../propagation.ts';
import type { EventRecorder, WriteStats } from '../status.ts';

export interface ProxyConfigDeps {
  client: KubeClient;
  configMaps: { get(key: string): Obj<ConfigMapObj> | undefined };
  meshes: { get(name: string): Obj<Mesh> | undefined };
  compilation: Compilation;
  /** False while the trust bundle is not known on this leader: nothing is written until it is. */
  trustBundleKnown: () => boolean;
  /** The namespace's config error appeared or cleared: the Mesh's status changes. */
  meshStatusChanged: () => void;
  events: EventRecorder;
  stats: WriteStats;
  metrics: OperatorMetrics;
  propagation: Propagation;
  /** The highest generation the namespace's proxies report: a recreated namespace continues from it. */
  reportedGeneration: (ns: string) => number;
}

/** The RoleBinding that lets a namespace's proxies read its ProxyConfig ConfigMaps. */
export const PROXY_ROLE = 'weft-proxy';
const proxyRoleBinding = (ns: string): KubeObject => ({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'RoleBinding',
  metadata: { name: PROXY_ROLE, namespace: ns, labels: { 'app.kubernetes.io/managed-by': 'weft' } },
  roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: PROXY_ROLE },
  subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: `system:serviceaccounts:${ns}` }],
});

export function proxyConfigReconciler(d: ProxyConfigDeps): KeyReconciler {
  const { client, compilation, metrics, stats } = d;
  /** Deletes one of Weft's ConfigMaps (already gone is fine) and counts it. */
  const deleteConfigMap = async (name: string, ns: string): Promise<void> => {
    try {
      await client.delete(RESOURCES.configMaps, name, ns);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    stats.configMapDeletes++;
    metrics.configMapWrites.inc({ namespace: ns, op: 'delete' });
  };
  /** Namespaces whose RoleBinding this process applied (once per namespace and process). */
  const bound = new Set<string>();

  return async (ns, { log }) => {
    const p = compilation.prepare();
    const existing = new Map<string, Obj<ConfigMapObj>>();
    for (const name of ALL_SHARD_NAMES) {
      const cm = d.configMaps.get(`${ns}/${name}`);
      if (cm) existing.set(name, cm);
    }
    if (!p.meshed.includes(ns)) {
      // Not (or no longer) in the mesh: remove what Weft wrote.
      for (const name of existing.keys()) await deleteConfigMap(name, ns);
      if (existing.size > 0 || bound.has(ns)) {
        try {
          await client.delete(RESOURCES.roleBindings, PROXY_ROLE, ns);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
        bound.delete(ns);
      }
      d.propagation.forget(ns);
      metrics.configBytes.remove({ namespace: ns, encoding: 'json' });
      metrics.configBytes.remove({ namespace: ns, encoding: 'gzip' });
      compilation.configErrors.delete(ns);
      return undefined;
    }
    // The identity reconciler enqueues every namespace once the trust bundle is known.
    if (!d.trustBundleKnown()) return undefined;
    const cfg = p.render(ns);
    const mesh = d.meshes.get(DEFAULT_MESH_NAME);
    const ownerReferences = mesh?.metadata.uid
      ? [{ apiVersion: 'weft.dev/v1alpha1', kind: 'Mesh', name: mesh.metadata.name, uid: mesh.metadata.uid }]
      : undefined;
    if (!bound.has(ns)) {
      await client.apply(RESOURCES.roleBindings, proxyRoleBinding(ns));
      bound.add(ns);
    }
    // What this config carries, for `Programmed` (resources whose current spec is compiled in).
    const included = [
      ...p.splits.filter((r) => r.programmed === 'current'),
      ...p.policies.filter((r) => r.programmed === 'current' && r.key.startsWith(`${ns}/`)),
    ];
    const have = manifestOf(existing.get(shardName(0)));
    const owned = (cm: Obj<ConfigMapObj> | undefined) =>
      JSON.stringify(cm?.metadata.ownerReferences ?? []) === JSON.stringify(ownerReferences ?? []);
    if (have?.version === cfg.version && have.generation !== undefined && owned(existing.get(shardName(0)))) {
      // The manifest is current; its parts must be too (edited or deleted by hand, they would
      // leave every proxy of the namespace refusing the config).
      const broken = damage(existing);
      if (!broken) {
        metrics.configBytes.set({ namespace: ns, encoding: 'json' }, Buffer.byteLength(cfg.json));
        d.propagation.written(ns, { version: cfg.version, generation: have.generation }, included);
        return undefined;
      }
      log.warn({ version: cfg.version, damage: broken }, 'repairing the ProxyConfig ConfigMaps');
    }
    const generation = Math.max(have?.generation ?? 0, d.reportedGeneration(ns)) + 1;
    let enc: ReturnType<typeof encode>;
    try {
      enc = encode(cfg, { ownerReferences, generation });
    } catch (err) {
      if (err instanceof WeftError && err.code === ERROR_CODES.CONFIG_TOO_LARGE) {
        compilation.configErrors.set(ns, { reason: REASON.ConfigTooLarge, message: err.message });
        d.meshStatusChanged();
        if (mesh) await d.events.warn(mesh, RESOURCES.meshes, EVENT_REASON.ConfigTooLarge, err.message);
      }
      throw err;
    }
    // Parts first, the manifest's ConfigMap last: a proxy never sees a manifest naming parts
    // that are not written yet (it re-checks sha256 anyway).
    for (const cm of [...enc.configMaps.slice(1), enc.configMaps[0]!]) {
      await client.apply(RESOURCES.configMaps, cm as unknown as KubeObject);
      stats.configMapWrites++;
      metrics.configMapWrites.inc({ namespace: ns, op: 'apply' });
    }
    for (const name of existing.keys()) {
      if (!enc.configMaps.some((c) => c.metadata.name === name)) await deleteConfigMap(name, ns);
    }
    metrics.configBytes.set({ namespace: ns, encoding: 'json' }, enc.size);
    metrics.configBytes.set({ namespace: ns, encoding: 'gzip' }, enc.compressedSize);
    if (compilation.configErrors.delete(ns)) d.meshStatusChanged();
    d.propagation.written(ns, { version: cfg.version, generation }, included);
    return undefined;
  };
}
