// The compilation the reconcilers share: the compiler's Prepared view of the cache, rebuilt
// only after an informer event (touch()), plus what outlives one compilation — the last good
// routes and policies, and the last config error per namespace (for the Mesh's status).
import type { KubeObject } from '../kube/client.ts';
import type { Logger } from '../kube/log.ts';
import type { OperatorCache } from './cache.ts';
import {
  Compiler,
  DEFAULT_MESH_NAME,
  type Prepared,
  type ResourceResult,
  type RouteResult,
} from './compiler.ts';
import { decode } from './distribution.ts';
import type { GatewayCache } from './gatewayapi.ts';
import type { ClusterSnapshot } from './types.ts';

export interface CompilationOptions {
  cache: OperatorCache;
  clusterDomain: string;
  /** The operator's namespace: never meshed. */
  namespace: string;
  trustBundle: () => string[];
  log: Logger;
  /** Gateway API informers (those installed). */
  gateway?: GatewayCache;
}

export class Compilation {
  /** Last config error per namespace (ConfigTooLarge), for the Mesh's Ready condition. */
  readonly configErrors = new Map<string, { reason: string; message: string }>();
  private readonly o: CompilationOptions;
  private readonly compiler = new Compiler();
  /** Bumped on every informer event: the prepared compilation is reused while it is unchanged. */
  private stateVersion = 0;
  private prepared?: { at: number; p: Prepared };
  private readonly lastGood = { routes: new Map(), policies: new Map() } as NonNullable<
    ClusterSnapshot['lastGood']
  >;
  private readonly resultIndex = new WeakMap<Prepared, Map<string, ResourceResult>>();
  private readonly routeIndex = new WeakMap<Prepared, Map<string, RouteResult>>();

  constructor(o: CompilationOptions) {
    this.o = o;
  }

  /** The cache changed: the next prepare() compiles again. */
  touch(): void {
    this.stateVersion++;
  }

  prepare(): Prepared {
    if (this.prepared && this.prepared.at === this.stateVersion) return this.prepared.p;
    const at = this.stateVersion;
    const p = this.compiler.prepare(this.snapshot());
    // What is programmed now becomes the last good version (deleted resources drop out).
    this.lastGood.routes = new Map(p.routes);
    this.lastGood.policies = new Map(p.authz);
    this.lastGood.gatewayRoutes = new Map(p.gatewayBindings);
    this.prepared = { at, p };
    return p;
  }

  /** The meshed namespaces as of the current cache. */
  meshed(): string[] {
    return this.prepare().meshed;
  }

  /** The compiler's verdict on one TrafficSplit or AuthorizationPolicy (ns/name). */
  resultOf(key: string): ResourceResult | undefined {
    const p = this.prepare();
    let m = this.resultIndex.get(p);
    if (!m) {
      m = new Map([...p.splits, ...p.policies].map((r) => [r.key, r]));
      this.resultIndex.set(p, m);
    }
    return m.get(key);
  }

  /** The compiler's verdict on one HTTPRoute or GRPCRoute ("<Kind>/<namespace>/<name>"). */
  routeResultOf(key: string): RouteResult | undefined {
    const p = this.prepare();
    let m = this.routeIndex.get(p);
    if (!m) {
      m = new Map(p.gatewayRoutes.map((r) => [r.key, r]));
      this.routeIndex.set(p, m);
    }
    return m.get(key);
  }

  /** After a restart, what is already programmed is the last good version of each route/policy. */
  seedLastGood(): void {
    const byNs = new Map<string, Map<string, KubeObject & { data?: Record<string, string> }>>();
    for (const cm of this.o.cache.configMaps.list()) {
      const ns = cm.metadata.namespace ?? '';
      if (!byNs.has(ns)) byNs.set(ns, new Map());
      byNs.get(ns)!.set(cm.metadata.name, cm);
    }
    for (const [ns, cms] of byNs) {
      try {
        const cfg = decode(cms);
        // TrafficSplit routes only (Gateway API entries carry a source, catch-alls a directResponse).
        for (const r of cfg.routes)
          if (!r.source && !r.directResponse && !this.lastGood.routes.has(r.name))
            this.lastGood.routes.set(r.name, r);
        for (const p of cfg.authorizationPolicies)
          if (!this.lastGood.policies.has(p.name)) this.lastGood.policies.set(p.name, p);
      } catch (err) {
        this.o.log.debug({ err, namespace: ns }, 'existing ProxyConfig unreadable; not used as last good');
      }
    }
    this.touch();
  }

  private snapshot(): ClusterSnapshot {
    const c = this.o.cache;
    return {
      mesh: c.meshes.get(DEFAULT_MESH_NAME),
      clusterDomain: this.o.clusterDomain,
      trustBundle: this.o.trustBundle(),
      namespaces: c.namespaces.list(),
      services: c.services.list(),
      endpointSlices: c.endpointSlices.list(),
      pods: c.pods.list(),
      trafficSplits: c.trafficSplits.list(),
      authorizationPolicies: c.authorizationPolicies.list(),
      httpRoutes: this.o.gateway?.httpRoutes?.list(),
      grpcRoutes: this.o.gateway?.grpcRoutes?.list(),
      referenceGrants: this.o.gateway?.referenceGrants?.list(),
      excludedNamespaces: [this.o.namespace],
      lastGood: this.lastGood,
    };
  }
}
