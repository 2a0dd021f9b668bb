// ProxyConfig ConfigMaps (key: namespace): compiles the namespace's config and writes its
// ConfigMaps when the content version (or the owner) differs, or a part is corrupted or gone;
// removes them when the namespace leaves the mesh. A config too large to distribute is a Mesh
// status error and a Warning Event.
import type { Mesh } from '../../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { ERROR_CODES, isNotFound, WeftError } from '../../kube/errors.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import type { Compilation } from '../compilation.ts';
import { DEFAULT_MESH_NAME } from '../compiler.ts';
import { EVENT_REASON, REASON } from '../conditions.ts';
import { ALL_SHARD_NAMES, type ConfigMapObj, damage, encode, shardName, versionOf } from '../distribution.ts';
import type { OperatorMetrics } from '../metrics.ts';
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
}

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
    const haveVersion = versionOf(existing.get(shardName(0)));
    const owned = (cm: Obj<ConfigMapObj> | undefined) =>
      JSON.stringify(cm?.metadata.ownerReferences ?? []) === JSON.stringify(ownerReferences ?? []);
    if (haveVersion === cfg.version && owned(existing.get(shardName(0)))) {
      // The manifest is current; its parts must be too (edited or deleted by hand, they would
      // leave every proxy of the namespace refusing the config).
      const broken = damage(existing);
      if (!broken) {
        metrics.configBytes.set({ namespace: ns, encoding: 'json' }, Buffer.byteLength(cfg.json));
        return undefined;
      }
      log.warn({ version: cfg.version, damage: broken }, 'repairing the ProxyConfig ConfigMaps');
    }
    let enc: ReturnType<typeof encode>;
    try {
      enc = encode(cfg, { ownerReferences });
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
    return undefined;
  };
}
