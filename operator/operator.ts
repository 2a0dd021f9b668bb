// The operator as a library: startOperator() assembles the manager (kube/manager.ts) — servers
// and informers on every replica (a standby is warm), controllers only on the Lease holder —
// from the parts in this folder. `cmd/weft.ts operator` wraps it; integration tests run it
// in-process.
//
//   cache.ts                 the informers reconcilers read
//   compilation.ts           the compiled view of the cache the reconcilers share, last good
//   watches.ts               informer event → controller keys
//   status.ts                status writer and Event recorder
//   reconcilers/*.ts         one reconciler a file: key in, result out
//     proxyconfig            key: namespace. The namespace's ProxyConfig ConfigMaps.
//     trafficsplit           key: ns/name. Status: Accepted, ResolvedRefs, Ready.
//     progression            key: ns/name (TrafficSplits with spec.progression). Runs the
//                            canary: status.progression, Progressing/Promoted/RolledBack,
//                            Events; reads the backends' proxies (progression/sampler.ts).
//     authorizationpolicy    key: ns/name. Status: Accepted, Ready.
//     gatewayroute           key: ns/name (HTTPRoute, GRPCRoute; only with the Gateway API
//                            CRDs). status.parents[] under controllerName weft.dev/mesh.
//     gatewayclass, gateway  key: name, ns/name (with the Gateway and GatewayClass CRDs).
//     ingressroute          Weft's own gateway (reconcilers/ingress.ts, docs/ingress.md):
//                            class Accepted; per Gateway its proxy Deployment, Service,
//                            ServiceAccount, routing ConfigMap and status; key: ns/name of
//                            an HTTPRoute, its status.parents[] under weft.dev/gateway.
//     mesh                   key: name. Status: Accepted, Ready, meshed namespaces and pods,
//                            the CA condition and caExpiry.
//   identity/controller.ts   key: "identities". Workload certificates and the trust bundle.
//   propagation.ts           which config generation each proxy runs (long polls of the
//                            proxies, on the leader): Programmed and the Mesh's sync counts.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { KubeClient } from '../kube/client.ts';
import type { Clock } from '../kube/clock.ts';
import { objectKey } from '../kube/informer.ts';
import type { KubeAccess } from '../kube/kubeconfig.ts';
import { LeaderElector } from '../kube/leader.ts';
import { type Logger, silentLogger } from '../kube/log.ts';
import { Manager } from '../kube/manager.ts';
import { healthServer, metricsServer } from '../kube/servers.ts';
import { informerFactory, operatorCache } from './cache.ts';
import { Compilation } from './compilation.ts';
import { GATEWAY_CONTROLLER_NAME, GATEWAY_RESOURCES } from './compile/gatewaytypes.ts';
import { indexServices } from './compile/services.ts';
import { DEFAULT_MESH_NAME, isMeshedPod, meshedNamespaces } from './compiler.ts';
import { discoverGatewayApi, gatewayApiCondition, gatewayCache } from './gatewayapi.ts';
import { IDENTITY_KEY, IdentityReconciler } from './identity/controller.ts';
import { type OperatorMetrics, operatorMetrics } from './metrics.ts';
import { WindowSampler } from './progression/sampler.ts';
import { readInboundStats } from './progression/stats.ts';
import { defaultProxyAddress, Propagation, ProxyReports } from './propagation.ts';
import { authorizationPolicyReconciler } from './reconcilers/authorizationpolicy.ts';
import { gatewayRouteReconciler } from './reconcilers/gatewayroute.ts';
import { compileWeftGateway, gatewayClassReconciler, gatewayReconciler } from './reconcilers/ingress.ts';
import { meshReconciler } from './reconcilers/mesh.ts';
import { progressionReconciler } from './reconcilers/progression.ts';
import { proxyConfigReconciler } from './reconcilers/proxyconfig.ts';
import { trafficSplitReconciler } from './reconcilers/trafficsplit.ts';
import { eventRecorder, statusWriter, type WriteStats } from './status.ts';
import type { PodObj } from './types.ts';
import { type Controllers, enqueueAllConfigs, watch, watchGateway } from './watches.ts';

export interface LeaderElectionConfig {
  leaseName?: string;
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface OperatorOptions {
  /** A client-node KubeConfig, or kube/kubeconfig.ts's lighter SimpleKubeConfig. */
  kubeConfig: KubeAccess;
  /** The operator's own namespace: holds the Lease, is never meshed. */
  namespace: string;
  /** false (default for the library): lead at once. true or settings: elect on a Lease. */
  leaderElection?: boolean | LeaderElectionConfig;
  /** "host:port" for /metrics; undefined: no server. Port 0 picks a free port. */
  metricsAddress?: string;
  /** "host:port" for /healthz and /readyz; undefined: no server. */
  healthAddress?: string;
  log?: Logger;
  clusterDomain?: string;
  /** The CA seam: PEM roots proxies trust. Default: the identity controller's trust bundle. */
  trustBundle?: () => string[];
  /**
   * Workload identity (CA, workload certificates, trust bundle). Default on; false turns it
   * off. `clock` drives issuance times and renewal timers (tests move it);
   * `rootDistributionMaxWaitMs` bounds a root rotation's wait for the sidecars (default 10 min).
   */
  identity?: false | { clock?: Clock; rootDistributionMaxWaitMs?: number };
  /** Parallel reconciles per controller. */
  concurrency?: number;
  reconcileTimeoutMs?: number;
  /** Periodic full resync (re-check everything; writes only what differs). 0: never. */
  resyncMs?: number;
  /** Informer watchdog and watch timeout, for tests of restarts. */
  watchTimeoutSeconds?: number;
  /**
   * Where a meshed pod's proxy answers /config/version; default http://<podIP>:15020. Tests
   * running proxies as local processes map pods to their ports.
   */
  proxyAddress?: (pod: PodObj) => string | undefined;
  /** How long a proxy may hold the operator's long poll before answering; default 30 s. */
  proxyReportWaitMs?: number;
  /**
   * Canary progressions: the clock of their steps (tests move it) and the longest time between
   * two readings of the backends' proxies (default 5 s).
   */
  progression?: { now?: () => number; pollMs?: number };
}

export interface OperatorHandle {
  /** Resolves once every informer has listed (what /readyz reports). */
  synced: Promise<void>;
  isLeader(): boolean;
  /** Resolves when this replica leads and its controllers run. */
  leading(): Promise<void>;
  metrics: OperatorMetrics;
  metricsPort?: number;
  healthPort?: number;
  identity: string;
  /** Queues every key of every controller and resolves when the queues are idle again. */
  resync(): Promise<void>;
  /** Resolves when every controller queue is idle. */
  idle(): Promise<void>;
  stats: WriteStats;
  stop(): Promise<void>;
}

export async function startOperator(opts: OperatorOptions): Promise<OperatorHandle> {
  const log = (opts.log ?? silentLogger).child({ component: 'operator' });
  const client = new KubeClient(opts.kubeConfig, 'weft-operator');
  const metrics = operatorMetrics();
  const le = opts.leaderElection === true ? {} : opts.leaderElection || undefined;
  const identity = le?.identity ?? `${hostname()}_${randomBytes(4).toString('hex')}`;
  const stats: WriteStats = { configMapWrites: 0, configMapDeletes: 0, statusWrites: 0, events: 0 };

  const informers = informerFactory({
    client,
    log,
    watchTimeoutSeconds: opts.watchTimeoutSeconds,
    onRestart: (kind, reason) => metrics.informerRestarts.inc({ kind, reason }),
  });
  const cache = operatorCache(informers.make);
  const gatewayApi = await discoverGatewayApi(client, log);
  const gateway = gatewayCache(informers.make, gatewayApi);
  let identityReconciler: IdentityReconciler | undefined;
  const compilation = new Compilation({
    cache,
    clusterDomain: opts.clusterDomain ?? 'cluster.local',
    namespace: opts.namespace,
    trustBundle: opts.trustBundle ?? (() => identityReconciler?.trustBundle() ?? []),
    log,
    gateway,
  });

  const mgr = new Manager({
    log,
    resyncMs: opts.resyncMs ?? 10 * 60_000,
    leaderElection: le
      ? (callbacks) =>
          new LeaderElector(client, {
            namespace: opts.namespace,
            name: le.leaseName ?? 'weft-operator',
            identity,
            leaseDurationMs: le.leaseDurationMs,
            renewDeadlineMs: le.renewDeadlineMs,
            retryPeriodMs: le.retryPeriodMs,
            log: log.child({ component: 'leader-election' }),
            ...callbacks,
          })
      : undefined,
    onResult: (controller, _key, outcome, ms) => {
      metrics.reconciles.inc({ controller, result: outcome });
      metrics.reconcileDuration.observe({ controller }, ms / 1000);
      if (outcome !== 'success') metrics.reconcileErrors.inc({ controller });
    },
    onLeading: (leading) => {
      metrics.isLeader.set(leading ? 1 : 0);
      if (leading) syncReports();
      else reports.stop();
    },
    onSynced: () => {
      metrics.cacheSynced.set(1);
      log.info('caches synced');
    },
  });

  // Proof of application: the proxies' reported generations, on the leader only.
  const propagation = new Propagation();
  const reports = new ProxyReports({
    address: opts.proxyAddress,
    waitMs: opts.proxyReportWaitMs,
    log,
    onChange: (namespaces) => {
      if (!mgr.isLeader()) return;
      c.mesh.add(DEFAULT_MESH_NAME);
      for (const s of cache.trafficSplits.list()) c.trafficsplit.add(objectKey(s));
      for (const ns of namespaces)
        for (const p of cache.authorizationPolicies.list(ns)) c.authorizationpolicy.add(objectKey(p));
      if (identityReconciler?.rotating) c.identity?.add(IDENTITY_KEY);
    },
  });
  let reportsSync: NodeJS.Immediate | undefined;
  const syncReports = () => {
    reportsSync ??= setImmediate(() => {
      reportsSync = undefined;
      if (mgr.isLeader()) reports.sync(cache.pods.list());
    });
  };
  cache.pods.on(syncReports);
  /** Counting is meaningful once the proxies answered and their namespaces' generations are known. */
  const ready = (pods: PodObj[]) => reports.settled(pods) && propagation.knows(pods);
  /** Meshed pods of meshed namespaces (all of them, or those of one namespace). */
  const meshedPods = (ns?: string) => {
    const meshed = new Set(compilation.meshed());
    return (ns ? cache.pods.list(ns) : cache.pods.list()).filter(
      (p) => meshed.has(p.metadata.namespace ?? '') && isMeshedPod(p),
    );
  };
  const applied = (key: string, r: { generation?: number }) => {
    const split = cache.trafficSplits.get(key);
    if (split) {
      const pods = meshedPods();
      return ready(pods) ? propagation.applied(key, r.generation, pods, reports) : undefined;
    }
    // An AuthorizationPolicy: the pods of its namespace its selector matches.
    const pol = cache.authorizationPolicies.get(key);
    const want = Object.entries(pol?.spec.selector?.matchLabels ?? {});
    const pods = meshedPods(pol?.metadata.namespace ?? '').filter((p) =>
      want.every(([k, v]) => p.metadata.labels?.[k] === v),
    );
    return ready(pods) ? propagation.applied(key, r.generation, pods, reports) : undefined;
  };

  const status = statusWriter(client, stats);
  const events = eventRecorder(client, { instance: identity, log, stats });
  const queue = { concurrency: opts.concurrency ?? 4, timeoutMs: opts.reconcileTimeoutMs ?? 30_000 };
  const c = {} as Controllers;
  c.proxyconfig = mgr.addController({
    name: 'proxyconfig',
    ...queue,
    keys: () => cache.namespaces.list().map((n) => n.metadata.name),
    onStart: () => compilation.seedLastGood(),
    reconcile: proxyConfigReconciler({
      client,
      configMaps: cache.configMaps,
      meshes: cache.meshes,
      compilation,
      trustBundleKnown: () => identityReconciler?.ready ?? true,
      meshStatusChanged: () => c.mesh.add(DEFAULT_MESH_NAME),
      events,
      stats,
      metrics,
      propagation,
      reportedGeneration: (ns) => reports.maxGeneration(ns),
    }),
  });
  const resultOf = (key: string) => compilation.resultOf(key);
  c.trafficsplit = mgr.addController({
    name: 'trafficsplit',
    ...queue,
    keys: () => cache.trafficSplits.list().map(objectKey),
    reconcile: trafficSplitReconciler({ objects: cache.trafficSplits, resultOf, status, events, applied }),
  });
  c.authorizationpolicy = mgr.addController({
    name: 'authorizationpolicy',
    ...queue,
    keys: () => cache.authorizationPolicies.list().map(objectKey),
    reconcile: authorizationPolicyReconciler({
      objects: cache.authorizationPolicies,
      resultOf,
      status,
      events,
      applied,
    }),
  });
  const proxyAddress = opts.proxyAddress ?? defaultProxyAddress;
  c.progression = mgr.addController({
    name: 'progression',
    ...queue,
    keys: () => cache.trafficSplits.list().map(objectKey),
    reconcile: progressionReconciler({
      splits: cache.trafficSplits,
      resultOf,
      // The pods behind a Service, from its EndpointSlices (ready or not: a pod that stopped
      // being ready served requests in the window).
      podsOf: (ns, service) =>
        cache.endpointSlices
          .list(ns)
          .filter((sl) => sl.metadata.labels?.['kubernetes.io/service-name'] === service)
          .flatMap((sl) => sl.endpoints ?? [])
          .flatMap((e) => {
            const pod = e.targetRef?.name ? cache.pods.get(`${ns}/${e.targetRef.name}`) : undefined;
            return pod ? [{ key: objectKey(pod), address: proxyAddress(pod) }] : [];
          }),
      sampler: new WindowSampler({ read: readInboundStats() }),
      client,
      events,
      stats,
      now: opts.progression?.now ?? Date.now,
      pollMs: opts.progression?.pollMs,
    }),
  });
  for (const [name, informer] of [
    ['httproute', gateway.httpRoutes],
    ['grpcroute', gateway.grpcRoutes],
  ] as const) {
    if (!informer) continue;
    c[name] = mgr.addController({
      name,
      ...queue,
      keys: () => informer.list().map(objectKey),
      reconcile: gatewayRouteReconciler({
        type: informer.type,
        objects: informer,
        resultOf: (key) => compilation.routeResultOf(key),
        client,
        stats,
      }),
    });
  }
  if (gateway.gateways && gateway.gatewayClasses && gateway.httpRoutes) {
    const routes = gateway.httpRoutes;
    const ingress = {
      gateways: gateway.gateways,
      classes: gateway.gatewayClasses,
      httpRoutes: () => routes.list(),
      referenceGrants: () => gateway.referenceGrants?.list() ?? [],
      services: () => indexServices(cache.services.list()),
      namespaceLabels: (ns: string) => cache.namespaces.get(ns)?.metadata.labels,
      secrets: (ns: string, name: string) => gateway.tlsSecrets?.get(`${ns}/${name}`),
    };
    c.gatewayclass = mgr.addController({
      name: 'gatewayclass',
      ...queue,
      keys: () => gateway.gatewayClasses!.list().map(objectKey),
      reconcile: gatewayClassReconciler({ client, classes: gateway.gatewayClasses, stats }),
    });
    c.gateway = mgr.addController({
      name: 'gateway',
      ...queue,
      keys: () => gateway.gateways!.list().map(objectKey),
      reconcile: gatewayReconciler({
        ...ingress,
        client,
        stats,
        mesh: () => cache.meshes.get(DEFAULT_MESH_NAME),
      }),
    });
    c.ingressroute = mgr.addController({
      name: 'ingressroute',
      ...queue,
      keys: () => routes.list().map(objectKey),
      reconcile: gatewayRouteReconciler({
        type: GATEWAY_RESOURCES.httpRoutes,
        objects: routes,
        controllerName: GATEWAY_CONTROLLER_NAME,
        resultOf: (key) => {
          const route = routes.get(key.slice('HTTPRoute/'.length));
          const parents = [];
          const seen = new Set<string>();
          for (const ref of route?.spec.parentRefs ?? []) {
            const gwKey = `${ref.namespace ?? route?.metadata.namespace}/${ref.name}`;
            if ((ref.kind ?? 'Gateway') !== 'Gateway' || seen.has(gwKey)) continue;
            seen.add(gwKey);
            parents.push(...(compileWeftGateway(ingress, gwKey)?.compiled.routeParents.get(key) ?? []));
          }
          return { parents };
        },
        client,
        stats,
      }),
    });
  }
  if (opts.identity !== false) {
    identityReconciler = new IdentityReconciler({
      client,
      namespace: opts.namespace,
      log,
      informers: informers.make,
      clock: opts.identity?.clock,
      mesh: () => cache.meshes.get(DEFAULT_MESH_NAME),
      meshedServiceAccounts: () => {
        const meshed = new Set(
          meshedNamespaces({
            mesh: cache.meshes.get(DEFAULT_MESH_NAME),
            namespaces: cache.namespaces.list(),
            excludedNamespaces: [opts.namespace],
          }),
        );
        const out = new Map<string, { namespace: string; serviceAccount: string }>();
        for (const pod of cache.pods.list()) {
          const namespace = pod.metadata.namespace ?? '';
          if (!meshed.has(namespace) && !isMeshedPod(pod)) continue;
          const serviceAccount = pod.spec?.serviceAccountName || 'default';
          out.set(`${namespace}/${serviceAccount}`, { namespace, serviceAccount });
        }
        return [...out.values()];
      },
      enqueue: () => c.identity?.add(IDENTITY_KEY),
      onTrustBundleChange: () => {
        compilation.touch();
        enqueueAllConfigs(c, compilation, () => mgr.isLeader());
      },
      onStatusChange: () => c.mesh.add(DEFAULT_MESH_NAME),
      // Every meshed pod's sidecar that can be polled, as a root rotation waits for them.
      sidecars: () => {
        const pods = cache.pods
          .list()
          .filter(
            (p) => isMeshedPod(p) && proxyAddress(p) && !(p.status?.terminating && reports.get(p)?.error),
          );
        if (!reports.settled(pods)) return undefined;
        return pods.map((p) => ({ pod: objectKey(p), trust: reports.get(p)?.trust }));
      },
      rootDistributionMaxWaitMs: opts.identity?.rootDistributionMaxWaitMs,
      timeoutMs:
        opts.reconcileTimeoutMs === undefined ? undefined : Math.max(opts.reconcileTimeoutMs, 60_000),
    });
  }
  c.mesh = mgr.addController({
    name: 'mesh',
    ...queue,
    keys: () => cache.meshes.list().map((m) => m.metadata.name),
    reconcile: meshReconciler({
      meshes: cache.meshes,
      pods: cache.pods,
      meshed: () => compilation.meshed(),
      configErrors: compilation.configErrors,
      identity: identityReconciler && (() => identityReconciler.meshStatus()),
      status,
      gatewayApi: gatewayApiCondition(gatewayApi),
      proxies: (pods) => (ready(pods) ? propagation.summary(pods, reports) : undefined),
    }),
  });
  if (identityReconciler) c.identity = mgr.addController(identityReconciler.controller());
  metrics.depth.source = () => Object.fromEntries(Object.values(c).map((ctl) => [ctl.name, ctl.depth]));
  watch(cache, compilation, c, () => mgr.isLeader());
  watchGateway(cache, gateway, compilation, c, () => mgr.isLeader());

  const metricsHttp =
    opts.metricsAddress === undefined ? undefined : metricsServer(opts.metricsAddress, metrics.registry);
  const healthHttp =
    opts.healthAddress === undefined ? undefined : healthServer(opts.healthAddress, () => informers.all);
  for (const s of [metricsHttp, healthHttp]) if (s) mgr.addServer(s);
  for (const i of informers.all) mgr.addCache(i);
  await mgr.start();

  return {
    synced: mgr.synced,
    isLeader: () => mgr.isLeader(),
    leading: () => mgr.leading(),
    metrics,
    metricsPort: metricsHttp?.port,
    healthPort: healthHttp?.port,
    identity,
    stats,
    idle: () => mgr.idle(),
    resync: async () => {
      mgr.enqueueAll();
      await mgr.idle();
    },
    stop: async () => {
      reports.stop();
      clearImmediate(reportsSync);
      await mgr.stop();
      client.close();
      log.info('stopped');
    },
  };
}
