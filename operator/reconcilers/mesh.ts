// Mesh status (key: name): Accepted (NotDefault for any Mesh but "default"), Ready (config
// written for every meshed namespace, else the first config error or the CA's failure), the
// identity reconciler's CertificateAuthorityReady and caExpiry, meshedNamespaces, meshedPods,
// and the proxies in and out of sync with their namespace's latest config (the first 20
// lagging ones named, with the version they report).
import type { Mesh } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import { DEFAULT_MESH_NAME, isMeshedPod } from '../compiler.ts';
import { CONDITION, REASON } from '../conditions.ts';
import { IDENTITY_CONDITION, type IdentityStatus } from '../identity/controller.ts';
import type { Lagging } from '../propagation.ts';
import { progressOf, type StatusWriter } from '../status.ts';
import type { PodObj } from '../types.ts';

export interface MeshDeps {
  meshes: { get(name: string): Obj<Mesh> | undefined };
  pods: { list(): Obj<PodObj>[] };
  meshed: () => string[];
  /** Last config error per namespace. */
  configErrors: ReadonlyMap<string, { reason: string; message: string }>;
  /**
   * The identity reconciler's verdict; undefined while it has not decided (it enqueues the
   * Mesh when it has). Absent when identity is off.
   */
  identity?: () => IdentityStatus | undefined;
  status: StatusWriter;
  /** The GatewayAPI condition (whether HTTPRoutes and GRPCRoutes are watched). */
  gatewayApi?: ConditionInput;
  /**
   * Meshed pods in sync with their namespace's latest generation, and the others; undefined
   * while the proxies' reports are not in yet (the counts in the status are kept).
   */
  proxies?: (pods: Obj<PodObj>[]) => { inSync: number; lagging: Lagging[] } | undefined;
}

const MAX_LAGGING = 20;

export function meshReconciler(d: MeshDeps): KeyReconciler {
  return async (name) => {
    const mesh = d.meshes.get(name);
    if (!mesh) return undefined;
    if (name !== DEFAULT_MESH_NAME) {
      const ignored: ConditionInput[] = [
        {
          type: CONDITION.Accepted,
          status: 'False',
          reason: REASON.NotDefault,
          message: `Weft reads only the Mesh named "${DEFAULT_MESH_NAME}"; this one is ignored`,
        },
        { type: CONDITION.Ready, status: 'False', reason: REASON.NotDefault, message: 'Ignored' },
      ];
      await d.status.write(RESOURCES.meshes, mesh, [...ignored, ...progressOf(ignored)]);
      return undefined;
    }
    const ca = d.identity?.();
    if (d.identity && !ca) return undefined;
    const meshed = d.meshed();
    const meshedSet = new Set(meshed);
    const pods = d.pods
      .list()
      .filter((pod) => meshedSet.has(pod.metadata.namespace ?? '') && isMeshedPod(pod));
    const meshedPods = pods.length;
    const sync = d.proxies?.(pods);
    const errs = [...d.configErrors.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    const caFailed = ca?.condition.status === 'False' ? ca.condition : undefined;
    const ready: ConditionInput =
      errs.length === 0 && caFailed
        ? { type: CONDITION.Ready, status: 'False', reason: caFailed.reason, message: caFailed.message }
        : errs.length === 0
          ? {
              type: CONDITION.Ready,
              status: 'True',
              reason: REASON.Programmed,
              message: `Proxy configuration written for ${meshed.length} namespace(s)`,
            }
          : {
              type: CONDITION.Ready,
              status: 'False',
              reason: errs[0]![1].reason,
              message: errs.map(([ns, e]) => `${ns}: ${e.message}`).join('; '),
            };
    const conditions: ConditionInput[] = [
      { type: CONDITION.Accepted, status: 'True', reason: REASON.Accepted, message: 'Valid' },
      ready,
      ...(ca ? [{ ...ca.condition, type: IDENTITY_CONDITION }] : []),
      ...(ca?.rotation ? [ca.rotation] : []),
      ...(d.gatewayApi ? [d.gatewayApi] : []),
    ];
    await d.status.write(RESOURCES.meshes, mesh, [...conditions, ...progressOf(conditions)], {
      meshedNamespaces: meshed.length,
      meshedPods,
      ...(ca?.caExpiry ? { caExpiry: ca.caExpiry } : {}),
      ...(sync === undefined && d.proxies && mesh.status?.proxiesInSync !== undefined
        ? {
            proxiesInSync: mesh.status.proxiesInSync,
            proxiesOutOfSync: mesh.status.proxiesOutOfSync,
            laggingProxies: mesh.status.laggingProxies,
          }
        : {}),
      ...(sync
        ? {
            proxiesInSync: sync.inSync,
            proxiesOutOfSync: sync.lagging.length,
            // Keys sorted as the apiserver returns them, so an unchanged list compares equal.
            laggingProxies: sync.lagging
              .slice(0, MAX_LAGGING)
              .map((l) => Object.fromEntries(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)))),
          }
        : {}),
    });
    return undefined;
  };
}
