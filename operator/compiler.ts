// The ProxyConfig compiler: a pure function of a cluster snapshot. Same snapshot, same
// document, byte for byte, whatever order the informers listed things in: every list is
// sorted, every object is built with its keys in sorted order, and the version is the
// content hash of the rest (api/hash.ts).
//
// It also reports, per TrafficSplit, AuthorizationPolicy, HTTPRoute and GRPCRoute, what it
// could program and why not, which the status controllers turn into conditions. Its parts are
// in operator/compile/: services.ts (Services, endpoints, indexes), resources.ts
// (TrafficSplits, AuthorizationPolicies), gateway*.ts (Gateway API routes), util.ts.

import { createHash } from 'node:crypto';
import { INJECT_LABEL } from '../api/constants.ts';
import type { Mesh, MtlsMode } from '../api/index.ts';
import {
  type AuthzPolicy,
  PROXY_CONFIG_API_VERSION,
  type ProxyConfig,
  type Route,
} from '../api/proxyconfig.ts';
import type { Binding, RouteResult } from './compile/gateway.ts';
import { compilePolicy, compileWithLastGood, type ResourceResult } from './compile/resources.ts';
import { routeSet } from './compile/routes.ts';
import {
  callableServices,
  compileService,
  indexPods,
  indexServices,
  indexSlices,
  meshedNamespaces,
  type PodIndex,
  type SnapshotIndex,
  sameItems,
  serviceSignature,
} from './compile/services.ts';
import { keyOf, retryPolicy, sortKeys, timerMs } from './compile/util.ts';
import type { ClusterSnapshot, EndpointSliceObj, PodObj, ServiceObj } from './types.ts';

export type { Binding, ParentResult, RouteResult } from './compile/gateway.ts';
export { compilePolicy, compileSplit, type ResourceResult } from './compile/resources.ts';
export {
  callableServices,
  compileService,
  indexPods,
  indexServices,
  indexSlices,
  indexSnapshot,
  isMeshedPod,
  meshedNamespaces,
  type PodIndex,
  SKIPPED_SERVICES,
  type SnapshotIndex,
  spiffeId,
} from './compile/services.ts';
export { keyOf, sortKeys } from './compile/util.ts';
export { INJECT_LABEL };
export const DEFAULT_MESH_NAME = 'default';

// ---------------------------------------------------------------------------------------------
// Mesh settings

function meshSection(mesh: Mesh | undefined, namespace: string, clusterDomain: string): ProxyConfig['mesh'] {
  const s = mesh?.spec ?? {};
  const override = s.mtls?.namespaces?.find((n) => n.namespace === namespace);
  const mode: MtlsMode = override?.mode ?? s.mtls?.mode ?? 'PERMISSIVE';
  const ports = [...(override?.ports ?? [])]
    .sort((a, b) => a.port - b.port)
    .map((p) => ({ mode: p.mode, port: p.port }));
  const tracing = s.telemetry?.tracing;
  const m: ProxyConfig['mesh'] = {
    clusterDomain,
    defaultAuthorization: s.defaults?.authorization ?? 'ALLOW',
    defaultTimeoutMs: timerMs(s.defaults?.timeout ?? '15s'),
    drainTimeoutMs: timerMs(s.proxy?.drainTimeout ?? '10s'),
    logLevel: s.proxy?.logLevel ?? 'info',
    mtls: { mode, ports },
    outboundTrafficPolicy: s.outboundTrafficPolicy?.mode ?? 'ALLOW_ANY',
    pathNormalization: s.pathNormalization?.normalization ?? 'BASE',
    telemetry: {
      accessLogs: s.telemetry?.accessLogs?.enabled ?? false,
      metrics: s.telemetry?.metrics?.enabled ?? true,
      ...(tracing
        ? { tracing: { endpoint: tracing.endpoint, samplingPercent: tracing.samplingPercent ?? 1 } }
        : {}),
    },
    trustDomain: s.trustDomain ?? 'cluster.local',
  };
  if (s.defaults?.retries) m.defaultRetries = retryPolicy(s.defaults.retries);
  return sortKeys(m);
}

// ---------------------------------------------------------------------------------------------
// The whole document

export interface Compiled {
  /** ProxyConfig per meshed namespace. */
  configs: Map<string, CompiledConfig>;
  splits: ResourceResult[];
  policies: ResourceResult[];
  /** What is programmed now, for the operator's last-good memory. */
  routes: Map<string, Route>;
  authz: Map<string, AuthzPolicy>;
  /** HTTPRoutes and GRPCRoutes: the verdict per Service parent. */
  gatewayRoutes: RouteResult[];
}

function policiesOf(snap: ClusterSnapshot) {
  const { results, outputs: policies } = compileWithLastGood(
    snap.authorizationPolicies,
    (p) => {
      const { policy, result } = compilePolicy(p);
      return { out: policy, result };
    },
    snap.lastGood?.policies,
  );
  return { results, policies };
}

/** One namespace's document, as the canonical JSON the ConfigMaps carry, and its version. */
export interface CompiledConfig {
  namespace: string;
  version: string;
  /** Canonical JSON of the whole document, version included. */
  json: string;
  /** The document as an object (parsed on demand). */
  config(): ProxyConfig;
}

interface ServiceEntry {
  sig: string | undefined;
  /** The cluster domain its hostnames were built with. */
  clusterDomain: string;
  namespace: string;
  /** JSON as other namespaces see it, and with the short name its own namespace adds. */
  json: string;
  jsonOwn: string;
}

const J = JSON.stringify;

/** The indexes of the last snapshot, reused while its lists hold the same objects. */
interface IndexCache {
  pods: readonly PodObj[];
  podIndex: PodIndex;
  slices: readonly EndpointSliceObj[];
  slicesByService: Map<string, EndpointSliceObj[]>;
  services: readonly ServiceObj[];
  serviceIndex: Map<string, ServiceObj>;
  callable: ServiceObj[];
}

/**
 * The compiler. compile() is a pure function of the snapshot; the instance only memoizes
 * compiled Services by their inputs' resourceVersions, so an operator that recompiles on every
 * change redoes only what changed (and the JSON of 10,000 endpoints is not rebuilt for a
 * weight change). Only each Service's JSON is kept, not the compiled objects.
 *
 * It also reuses its indexes (pods, slices, services) while the snapshot's lists hold the very
 * same objects as last time (informers replace an object on every change and never mutate one):
 * a TrafficSplit change does not re-index 10,000 pods.
 */
export class Compiler {
  private services = new Map<string, ServiceEntry>();
  private indexes: IndexCache | undefined;

  private index(snap: ClusterSnapshot): SnapshotIndex & { callable: ServiceObj[] } {
    const last = this.indexes;
    // The lists are compared with copies taken when indexed (a caller may edit its array).
    const samePods = last !== undefined && sameItems(last.pods, snap.pods);
    const sameSlices = last !== undefined && sameItems(last.slices, snap.endpointSlices);
    const sameServices = last !== undefined && sameItems(last.services, snap.services);
    const podIndex = samePods ? last.podIndex : indexPods(snap.pods);
    const slicesByService = sameSlices ? last.slicesByService : indexSlices(snap.endpointSlices);
    const serviceIndex = sameServices ? last.serviceIndex : indexServices(snap.services);
    const callable = sameServices ? last.callable : callableServices(snap);
    this.indexes = {
      pods: samePods ? last.pods : [...snap.pods],
      podIndex,
      slices: sameSlices ? last.slices : [...snap.endpointSlices],
      slicesByService,
      services: sameServices ? last.services : [...snap.services],
      serviceIndex,
      callable,
    };
    return {
      slicesByService,
      pods: podIndex,
      services: serviceIndex,
      meshed: new Set(meshedNamespaces(snap)),
      callable,
    };
  }

  /** Everything namespace-independent; render(ns) then builds one namespace's document. */
  prepare(snap: ClusterSnapshot): Prepared {
    const idx = this.index(snap);
    const trustDomain = snap.mesh?.spec.trustDomain ?? 'cluster.local';
    const entries: ServiceEntry[] = [];
    const next = new Map<string, ServiceEntry>();
    for (const svc of idx.callable) {
      const key = keyOf(svc.metadata);
      const sig = serviceSignature(svc, idx, trustDomain);
      const cached = this.services.get(key);
      let entry: ServiceEntry;
      if (sig !== undefined && cached?.sig === sig && cached.clusterDomain === snap.clusterDomain) {
        entry = cached;
      } else {
        const service = compileService(svc, idx, trustDomain, snap.clusterDomain);
        entry = {
          sig,
          clusterDomain: snap.clusterDomain,
          namespace: service.namespace,
          json: J(service),
          jsonOwn: J({ ...service, hostnames: [...service.hostnames, service.name] }),
        };
      }
      next.set(key, entry);
      entries.push(entry);
    }
    this.services = next;
    const routeset = routeSet(snap, idx);
    const { splits, splitRoutes: routes } = routeset;
    const { results: policies, policies: authz } = policiesOf(snap);
    const trustJson = J([...snap.trustBundle]);
    const meshed = [...idx.meshed];
    const render = (ns: string): CompiledConfig => {
      const nsPolicies = [...authz.values()].filter((p) => p.namespace === ns);
      // Keys in sorted order: apiVersion, authorizationPolicies, mesh, namespace, routes,
      // services, trustBundle, then version (last in sort order too). The document is hashed
      // piece by piece and joined once: one flat string of its size, no intermediate copies.
      const head =
        `{"apiVersion":${J(PROXY_CONFIG_API_VERSION)},"authorizationPolicies":${J(nsPolicies)},` +
        `"mesh":${J(meshSection(snap.mesh, ns, snap.clusterDomain))},"namespace":${J(ns)},` +
        `"routes":${routeset.json(ns)},"services":[`;
      const tail = `],"trustBundle":${trustJson}`;
      const hash = createHash('sha256').update(head);
      const parts: string[] = new Array(entries.length + 2);
      parts[0] = head;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        const j = e.namespace === ns ? e.jsonOwn : e.json;
        if (i > 0) hash.update(',');
        hash.update(j);
        parts[i + 1] = i > 0 ? `,${j}` : j;
      }
      hash.update(`${tail}}`);
      const version = hash.digest('hex').slice(0, 16);
      parts[entries.length + 1] = `${tail},"version":${J(version)}}`;
      const json = parts.join('');
      return { namespace: ns, version, json, config: () => JSON.parse(json) as ProxyConfig };
    };
    const gateway = routeset.gateway;
    return {
      meshed,
      splits,
      policies,
      routes,
      authz,
      gatewayRoutes: gateway.results,
      gatewayBindings: gateway.bindings,
      render,
      serviceCount: entries.length,
    };
  }

  compile(snap: ClusterSnapshot, only?: ReadonlySet<string>): Compiled {
    const p = this.prepare(snap);
    const configs = new Map<string, CompiledConfig>();
    for (const ns of p.meshed) if (!only || only.has(ns)) configs.set(ns, p.render(ns));
    return {
      configs,
      splits: p.splits,
      policies: p.policies,
      routes: p.routes,
      authz: p.authz,
      gatewayRoutes: p.gatewayRoutes,
    };
  }
}

export interface Prepared {
  /** Meshed namespaces, sorted. */
  meshed: string[];
  splits: ResourceResult[];
  policies: ResourceResult[];
  routes: Map<string, Route>;
  authz: Map<string, AuthzPolicy>;
  /** HTTPRoutes and GRPCRoutes: the verdict per Service parent. */
  gatewayRoutes: RouteResult[];
  /** What is programmed per Gateway API route, for the last-good memory. */
  gatewayBindings: Map<string, Binding[]>;
  serviceCount: number;
  render(namespace: string): CompiledConfig;
}

/** Compiles the ProxyConfig of every meshed namespace, and the per-resource results. */
export function compile(snap: ClusterSnapshot, only?: ReadonlySet<string>): Compiled {
  return new Compiler().compile(snap, only);
}

/** The single namespace's config (convenience for tests and tools). */
export function compileNamespace(snap: ClusterSnapshot, namespace: string): ProxyConfig | undefined {
  return compile(snap, new Set([namespace]))
    .configs.get(namespace)
    ?.config();
}
