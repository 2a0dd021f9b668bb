// Event → key: what each informer event queues (controller-runtime's watches). Every event
// first marks the compilation stale; handlers only enqueue keys, and enqueueing does nothing
// while this replica does not lead.

import { PROGRESSION_ANNOTATION } from '../api/index.ts';
import { objectKey } from '../kube/informer.ts';
import type { Controller } from '../kube/manager.ts';
import type { OperatorCache } from './cache.ts';
import type { Compilation } from './compilation.ts';
import { gatewayKeysOf } from './compile/ingress.ts';
import { DEFAULT_MESH_NAME } from './compiler.ts';
import type { GatewayCache } from './gatewayapi.ts';
import { IDENTITY_KEY } from './identity/controller.ts';
import { GATEWAY_NAME_LABEL } from './reconcilers/ingress.ts';
import { podMatters } from './transforms.ts';

export interface Controllers {
  proxyconfig: Controller;
  trafficsplit: Controller;
  /** TrafficSplit progressions (operator/reconcilers/progression.ts). */
  progression?: Controller;
  authorizationpolicy: Controller;
  mesh: Controller;
  identity?: Controller;
  /** Present when the Gateway API CRDs are installed. */
  httproute?: Controller;
  grpcroute?: Controller;
  /** Present when the Gateway and GatewayClass CRDs are installed too (Weft's gateway). */
  gatewayclass?: Controller;
  gateway?: Controller;
  ingressroute?: Controller;
}

/** Every meshed namespace's ProxyConfig (compiling only on the leader). */
export function enqueueAllConfigs(c: Controllers, compilation: Compilation, isLeader: () => boolean): void {
  if (!isLeader()) return;
  for (const ns of compilation.meshed()) c.proxyconfig.add(ns);
}

export function watch(
  cache: OperatorCache,
  compilation: Compilation,
  c: Controllers,
  isLeader: () => boolean,
): void {
  const touch = () => compilation.touch();
  const allConfigs = () => enqueueAllConfigs(c, compilation, isLeader);
  const mesh = () => c.mesh.add(DEFAULT_MESH_NAME);
  const identity = () => c.identity?.add(IDENTITY_KEY);

  cache.namespaces.on(() => {
    touch();
    // A namespace joining or leaving changes identities everywhere and its own ConfigMaps.
    for (const n of cache.namespaces.list()) c.proxyconfig.add(n.metadata.name);
    mesh();
    identity();
  });
  cache.services.on((_t, svc) => {
    touch();
    allConfigs();
    for (const s of cache.trafficSplits.list(svc.metadata.namespace ?? '')) c.trafficsplit.add(objectKey(s));
  });
  cache.endpointSlices.on(() => {
    touch();
    allConfigs();
  });
  cache.pods.on((type, pod, old) => {
    touch();
    if (type === 'update' && old && !podMatters(old, pod)) return;
    allConfigs();
    mesh();
    identity();
  });
  cache.meshes.on((_t, m) => {
    touch();
    allConfigs();
    c.mesh.add(m.metadata.name);
    identity();
  });
  cache.trafficSplits.on((type, s, old) => {
    touch();
    // A progression's command (annotation) or a new spec: it decides again. Its own status
    // writes do not wake it (it requeues itself while running).
    const command = (o: typeof s) => o.metadata.annotations?.[PROGRESSION_ANNOTATION];
    if (
      type !== 'update' ||
      !old ||
      old.metadata.generation !== s.metadata.generation ||
      command(old) !== command(s)
    )
      c.progression?.add(objectKey(s));
    // The weights in effect moved (status.progression): the proxies get them.
    if (type === 'update' && old?.status?.progression?.canaryWeight !== s.status?.progression?.canaryWeight)
      allConfigs();
    // Status-only updates (ours) change no generation: nothing to recompile.
    if (type === 'update' && old && old.metadata.generation === s.metadata.generation) return;
    allConfigs();
    c.trafficsplit.add(objectKey(s));
  });
  cache.authorizationPolicies.on((type, p, old) => {
    touch();
    if (type === 'update' && old && old.metadata.generation === p.metadata.generation) return;
    c.proxyconfig.add(p.metadata.namespace ?? '');
    c.authorizationpolicy.add(objectKey(p));
  });
  cache.configMaps.on((_t, cm) => c.proxyconfig.add(cm.metadata.namespace ?? ''));
}

/**
 * Gateway API routes: a route change recompiles every config and re-reports the route and the
 * TrafficSplits (one may now be overridden); a Service or ReferenceGrant change can resolve or
 * break any route's references.
 */
export function watchGateway(
  cache: OperatorCache,
  gateway: GatewayCache,
  compilation: Compilation,
  c: Controllers,
  isLeader: () => boolean,
): void {
  const allRoutes = () => {
    for (const r of gateway.httpRoutes?.list() ?? []) c.httproute?.add(objectKey(r));
    for (const r of gateway.grpcRoutes?.list() ?? []) c.grpcroute?.add(objectKey(r));
  };
  const allSplits = () => {
    for (const s of cache.trafficSplits.list()) c.trafficsplit.add(objectKey(s));
  };
  for (const [informer, controller] of [
    [gateway.httpRoutes, () => c.httproute],
    [gateway.grpcRoutes, () => c.grpcroute],
  ] as const)
    informer?.on((type, r, old) => {
      compilation.touch();
      // Status-only updates (ours or another controller's) change no generation.
      if (type === 'update' && old && old.metadata.generation === r.metadata.generation) return;
      enqueueAllConfigs(c, compilation, isLeader);
      controller()?.add(objectKey(r));
      allSplits();
    });
  gateway.referenceGrants?.on(() => {
    compilation.touch();
    enqueueAllConfigs(c, compilation, isLeader);
    allRoutes();
  });
  cache.services.on(allRoutes);
  watchIngress(cache, gateway, c);
}

/**
 * Weft's gateway: a change to a class, grant, Service or Namespace recompiles every Gateway; a
 * route change, the Gateways it names.
 */
function watchIngress(cache: OperatorCache, gateway: GatewayCache, c: Controllers): void {
  if (!c.gateway) return;
  const allGateways = () => {
    for (const g of gateway.gateways?.list() ?? []) c.gateway?.add(objectKey(g));
  };
  const ingressRoutes = () => {
    for (const r of gateway.httpRoutes?.list() ?? []) c.ingressroute?.add(objectKey(r));
  };
  gateway.gatewayClasses?.on((type, gc, old) => {
    c.gatewayclass?.add(objectKey(gc));
    if (type === 'update' && old && old.metadata.generation === gc.metadata.generation) return;
    allGateways();
    ingressRoutes();
  });
  gateway.gateways?.on((type, gw, old) => {
    c.gateway?.add(objectKey(gw));
    // Our own status writes change no generation: the routes' verdicts stay.
    if (type === 'update' && old && old.metadata.generation === gw.metadata.generation) return;
    ingressRoutes();
  });
  gateway.httpRoutes?.on((type, r, old) => {
    if (type === 'update' && old && old.metadata.generation === r.metadata.generation) return;
    c.ingressroute?.add(objectKey(r));
    // Only the Gateways it names (before and after the change) can attach it.
    for (const k of new Set([...gatewayKeysOf(r), ...(old ? gatewayKeysOf(old) : [])])) c.gateway?.add(k);
  });
  gateway.tlsSecrets?.on(allGateways);
  // A gateway pod that turns ready (or not) re-runs its Gateway at once: Programmed follows the
  // Deployment's ready replicas without waiting for the 5 s re-check while Pending.
  cache.pods.on((_t, pod) => {
    const l = pod.metadata.labels;
    const name = l?.[GATEWAY_NAME_LABEL];
    if (name && l['weft.dev/component'] === 'gateway') c.gateway?.add(`${pod.metadata.namespace}/${name}`);
  });
  for (const i of [gateway.referenceGrants, cache.services, cache.namespaces])
    i?.on(() => {
      allGateways();
      ingressRoutes();
    });
}
