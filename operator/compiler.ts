// The ProxyConfig compiler: a pure function of a cluster snapshot. Same snapshot, same
// document, byte for byte, whatever order the informers listed things in: every list is
// sorted, every object is built with its keys in sorted order, and the version is the
// content hash of the rest (api/hash.ts).
//
// It also reports, per TrafficSplit and AuthorizationPolicy, what it could program and why
// not, which the status controllers turn into conditions.
//
// Over 400 lines on purpose: it is one pure function (services, routes, policies, the
// memoizing Compiler) whose parts share its index and sorting rules; it is left whole while
// others extend it (issue 12 moved everything with I/O out of operator/, not this).

import { createHash } from 'node:crypto';
import { INJECT_LABEL } from '../api/constants.ts';
import type { AuthorizationPolicy, Mesh, MtlsMode, TrafficSplit } from '../api/index.ts';
import {
  AuthorizationPolicySpec,
  durationMs,
  MAX_TIMER_MS,
  METHOD_MESSAGE,
  METHOD_PATTERN,
  TrafficSplitSpec,
} from '../api/index.ts';
import {
  type AuthzPolicy,
  type Endpoint,
  PROXY,
  PROXY_CONFIG_API_VERSION,
  type ProxyConfig,
  type RetryPolicy,
  type Route,
  type Service,
} from '../api/proxyconfig.ts';
import { matchRegexErrors } from '../api/regex.ts';
import { check } from '../api/validate.ts';
import { matchesSelector } from '../kube/selector.ts';
import { REASON, type Reason } from './conditions.ts';
import type { ClusterSnapshot, EndpointSliceObj, NamespaceObj, PodObj, ServiceObj } from './types.ts';

export { INJECT_LABEL };
export const DEFAULT_MESH_NAME = 'default';
/** Services never put in ProxyConfig: the apiserver's own (proxies pass it through untouched). */
export const SKIPPED_SERVICES = new Set(['default/kubernetes']);

// ---------------------------------------------------------------------------------------------
// Small pure helpers

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const byKey =
  <T>(f: (t: T) => string) =>
  (a: T, b: T) =>
    cmp(f(a), f(b));
export const keyOf = (m: { name: string; namespace?: string }) =>
  m.namespace ? `${m.namespace}/${m.name}` : m.name;

/** A copy with object keys sorted at every level (user-supplied fragments of CRs). */
export function sortKeys<T>(v: T): T {
  if (Array.isArray(v)) return v.map(sortKeys) as T;
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out as T;
  }
  return v;
}

export const spiffeId = (trustDomain: string, namespace: string, serviceAccount: string) =>
  `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;

export const isMeshedPod = (pod: PodObj) =>
  [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].some(
    (c) => c.name === PROXY.containerName,
  );

/** Namespaces whose pods get sidecars and a ProxyConfig. */
export function meshedNamespaces(
  snap: Pick<ClusterSnapshot, 'mesh' | 'namespaces' | 'excludedNamespaces'>,
): string[] {
  const sel = snap.mesh?.spec.injection?.namespaceSelector ?? { matchLabels: { [INJECT_LABEL]: 'enabled' } };
  const excluded = new Set(['kube-system', ...(snap.excludedNamespaces ?? [])]);
  return snap.namespaces
    .filter((n: NamespaceObj) => !excluded.has(n.metadata.name) && matchesSelector(sel, n.metadata.labels))
    .map((n) => n.metadata.name)
    .sort(cmp);
}

// ---------------------------------------------------------------------------------------------
// Mesh settings

function retryPolicy(r: NonNullable<NonNullable<Mesh['spec']['defaults']>['retries']>): RetryPolicy {
  const out: RetryPolicy = {
    attempts: r.attempts,
    budgetPercent: r.budget?.percent ?? 20,
    minRetriesPerSecond: r.budget?.minRetriesPerSecond ?? 10,
    retryOn: [...(r.retryOn ?? ['connect-failure', 'refused-stream', 'unavailable'])].sort(cmp),
  } as RetryPolicy;
  if (r.perTryTimeout) out.perTryTimeoutMs = timerMs(r.perTryTimeout);
  return sortKeys(out);
}

/**
 * A duration the proxy arms as a timer. The CRDs bound every one far below MAX_TIMER_MS; a Mesh
 * stored before those bounds existed is clamped here, since the proxy would refuse the whole
 * config (for every namespace) rather than arm a timer that fires at once.
 */
const timerMs = (d: string) => Math.min(durationMs(d), MAX_TIMER_MS);

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
// Services and endpoints

/** Pods by namespace, then name: looked up with the strings an endpoint already holds. */
export type PodIndex = Map<string, Map<string, PodObj>>;

export function indexSlices(slices: readonly EndpointSliceObj[]): Map<string, EndpointSliceObj[]> {
  const slicesByService = new Map<string, EndpointSliceObj[]>();
  for (const s of slices) {
    const svc = s.metadata.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const k = `${s.metadata.namespace}/${svc}`;
    const list = slicesByService.get(k);
    if (list) list.push(s);
    else slicesByService.set(k, [s]);
  }
  return slicesByService;
}

export function indexPods(pods: readonly PodObj[]): PodIndex {
  const byNs: PodIndex = new Map();
  for (const p of pods) {
    const ns = p.metadata.namespace ?? '';
    let m = byNs.get(ns);
    if (!m) {
      m = new Map();
      byNs.set(ns, m);
    }
    m.set(p.metadata.name, p);
  }
  return byNs;
}

export function indexServices(services: readonly ServiceObj[]): Map<string, ServiceObj> {
  const m = new Map<string, ServiceObj>();
  for (const s of services) m.set(keyOf(s.metadata), s);
  return m;
}

/** Indexes the snapshot once: slices by service, pods by namespace and name, services by key. */
export function indexSnapshot(snap: ClusterSnapshot) {
  return {
    slicesByService: indexSlices(snap.endpointSlices),
    pods: indexPods(snap.pods),
    services: indexServices(snap.services),
    meshed: new Set(meshedNamespaces(snap)),
  };
}
export type SnapshotIndex = ReturnType<typeof indexSnapshot>;

const podOf = (idx: SnapshotIndex, namespace: string, name: string) => idx.pods.get(namespace)?.get(name);

/** Whether two lists hold the same objects in the same order (no allocation). */
function sameItems<T>(a: readonly T[] | undefined, b: readonly T[]): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sortedPorts(slice: EndpointSliceObj): Record<string, number> {
  const ports: [string, number][] = [];
  for (const p of slice.ports ?? []) if (p.port) ports.push([p.name ?? '', p.port]);
  ports.sort((a, b) => cmp(a[0], b[0]));
  return Object.fromEntries(ports);
}

function endpointsOf(
  slices: EndpointSliceObj[],
  idx: SnapshotIndex,
  trustDomain: string,
  namespace: string,
): Endpoint[] {
  const byAddress = new Map<string, Endpoint>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    const ports = sortedPorts(slice);
    for (const ep of slice.endpoints ?? []) {
      const ready = ep.conditions?.ready ?? true;
      const serving = ep.conditions?.serving ?? ready;
      const terminating = ep.conditions?.terminating ?? false;
      let identity: string | undefined;
      let meshed = false;
      let pod: string | undefined;
      if (ep.targetRef?.kind === 'Pod' && ep.targetRef.name) {
        pod = ep.targetRef.name;
        const p = podOf(idx, ep.targetRef.namespace ?? namespace, pod);
        if (p) {
          meshed = isMeshedPod(p);
          if (meshed || idx.meshed.has(namespace))
            identity = spiffeId(trustDomain, namespace, p.spec?.serviceAccountName || 'default');
        }
      }
      for (const address of ep.addresses) {
        const prev = byAddress.get(address);
        if (prev) {
          // The same endpoint in two slices (different port sets): merge the ports.
          prev.ports = sortKeys({ ...prev.ports, ...ports });
          continue;
        }
        // Keys in sorted order, so plain JSON.stringify is canonical.
        const e = { address } as Endpoint;
        if (identity) e.identity = identity;
        e.meshed = meshed;
        if (pod) e.pod = pod;
        e.ports = ports;
        e.ready = ready;
        e.serving = serving;
        e.terminating = terminating;
        if (ep.zone) e.zone = ep.zone;
        byAddress.set(address, e);
      }
    }
  }
  return [...byAddress.values()].sort(byKey((e) => e.address));
}

/** One Service as every namespace sees it (without the short in-namespace hostname). */
export function compileService(
  svc: ServiceObj,
  idx: SnapshotIndex,
  trustDomain: string,
  clusterDomain: string,
): Service {
  const { name, namespace = '' } = svc.metadata;
  const spec = svc.spec ?? {};
  const clusterIPs = (spec.clusterIPs ?? (spec.clusterIP ? [spec.clusterIP] : [])).filter(
    (ip) => ip && ip !== 'None',
  );
  const ports = [...(spec.ports ?? [])]
    .map((p) => {
      const sp = {} as Service['ports'][number];
      if (p.appProtocol) sp.appProtocol = p.appProtocol;
      sp.name = p.name ?? '';
      sp.port = p.port;
      sp.protocol = (p.protocol ?? 'TCP') as 'TCP' | 'UDP' | 'SCTP';
      return sp;
    })
    .sort((a, b) => a.port - b.port || cmp(a.name, b.name));
  return {
    clusterIPs,
    endpoints: endpointsOf(
      idx.slicesByService.get(`${namespace}/${name}`) ?? [],
      idx,
      trustDomain,
      namespace,
    ),
    hostnames: [
      `${name}.${namespace}.svc.${clusterDomain}`,
      `${name}.${namespace}.svc`,
      `${name}.${namespace}`,
    ],
    id: `${namespace}/${name}`,
    name,
    namespace,
    ports,
  };
}

/**
 * What a compiled Service depends on, when every input carries a resourceVersion: equal
 * signatures mean an equal Service, so the Compiler reuses it (and its JSON) across compiles.
 */
function serviceSignature(svc: ServiceObj, idx: SnapshotIndex, trustDomain: string): string | undefined {
  const ns = svc.metadata.namespace ?? '';
  if (!svc.metadata.resourceVersion) return undefined;
  let sig = `${trustDomain}|${idx.meshed.has(ns)}|${svc.metadata.resourceVersion}`;
  for (const slice of idx.slicesByService.get(`${ns}/${svc.metadata.name}`) ?? []) {
    if (!slice.metadata.resourceVersion) return undefined;
    sig += `|${slice.metadata.name}@${slice.metadata.resourceVersion}`;
    for (const ep of slice.endpoints ?? []) {
      if (ep.targetRef?.kind !== 'Pod' || !ep.targetRef.name) continue;
      const p = podOf(idx, ep.targetRef.namespace ?? ns, ep.targetRef.name);
      if (p && !p.metadata.resourceVersion) return undefined;
      sig += `,${p ? p.metadata.resourceVersion : '-'}`;
    }
  }
  return sig;
}

/** The Services a namespace's workloads can call: all of them, but ExternalName and the apiserver's. */
export function callableServices(snap: Pick<ClusterSnapshot, 'services'>): ServiceObj[] {
  // Keys computed once, not on every comparison.
  const keyed: { key: string; svc: ServiceObj }[] = [];
  for (const svc of snap.services) {
    if (svc.spec?.type === 'ExternalName') continue;
    const key = keyOf(svc.metadata);
    if (!SKIPPED_SERVICES.has(key)) keyed.push({ key, svc });
  }
  keyed.sort((a, b) => cmp(a.key, b.key));
  return keyed.map((k) => k.svc);
}

// ---------------------------------------------------------------------------------------------
// TrafficSplits → routes

export interface ResourceResult {
  /** "<namespace>/<name>" */
  key: string;
  generation?: number;
  accepted: { ok: true } | { ok: false; reason: Reason; message: string };
  resolvedRefs?: { ok: true } | { ok: false; reason: Reason; message: string };
  /** What is in the config for it now: the current spec, a last good version, or nothing. */
  programmed: 'current' | 'lastGood' | 'none';
}

function invalid(what: string, errors: { field: string; message: string }[]) {
  return {
    ok: false as const,
    reason: REASON.Invalid,
    message: `${what} is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`,
  };
}

export function compileSplit(
  split: TrafficSplit,
  services: Map<string, ServiceObj>,
): { route?: Route; result: ResourceResult } {
  const ns = split.metadata.namespace ?? '';
  const key = `${ns}/${split.metadata.name}`;
  const base = { key, generation: split.metadata.generation };
  const errors = check(TrafficSplitSpec, split.spec, 'spec');
  // Not RE2 (backreferences, lookaround): admitted while the webhook was down, never programmed.
  if (errors.length === 0) errors.push(...matchRegexErrors(split.spec.matches ?? [], 'spec.matches'));
  if (errors.length > 0)
    return { result: { ...base, accepted: invalid('TrafficSplit', errors), programmed: 'none' } };
  const s = split.spec;
  const missing: string[] = [];
  const missingPorts: string[] = [];
  const need = (name: string, port?: number) => {
    const svc = services.get(`${ns}/${name}`);
    if (!svc) missing.push(name);
    else if (port !== undefined && !(svc.spec?.ports ?? []).some((p) => p.port === port))
      missingPorts.push(`${name}:${port}`);
  };
  need(s.service, s.port);
  for (const b of s.backends) need(b.service, b.port);
  if (s.mirror) need(s.mirror.service);
  const uniq = (l: string[]) => [...new Set(l)].sort(cmp);
  if (missing.length > 0 || missingPorts.length > 0) {
    const message =
      missing.length > 0
        ? `Service(s) not found in namespace ${ns}: ${uniq(missing).join(', ')}`
        : `port(s) not found: ${uniq(missingPorts).join(', ')}`;
    return {
      result: {
        ...base,
        accepted: { ok: true },
        resolvedRefs: {
          ok: false,
          reason: missing.length > 0 ? REASON.ServiceNotFound : REASON.PortNotFound,
          message,
        },
        programmed: 'none',
      },
    };
  }
  const id = (n: string) => `${ns}/${n}`;
  const route: Route = {
    backends: [...s.backends]
      .sort(byKey((b) => b.service))
      .map((b) => sortKeys({ port: b.port, service: id(b.service), weight: b.weight })),
    matches: sortKeys(s.matches ?? []),
    name: key,
    service: id(s.service),
  };
  if (s.port !== undefined) route.port = s.port;
  if (s.timeout !== undefined) route.timeoutMs = durationMs(s.timeout);
  if (s.retries) route.retries = retryPolicy(s.retries);
  if (s.faultInjection) {
    const f: NonNullable<Route['faultInjection']> = {};
    if (s.faultInjection.delay)
      f.delay = {
        fixedDelayMs: durationMs(s.faultInjection.delay.fixedDelay),
        percentage: s.faultInjection.delay.percentage,
      };
    if (s.faultInjection.abort) f.abort = { ...s.faultInjection.abort };
    route.faultInjection = f;
  }
  if (s.mirror) route.mirror = { percentage: s.mirror.percentage ?? 100, service: id(s.mirror.service) };
  if (s.loadBalancer)
    route.loadBalancer = { type: s.loadBalancer.type, hashHeader: s.loadBalancer.hashHeader };
  if (s.circuitBreaker) {
    const c = s.circuitBreaker;
    route.circuitBreaker = {
      baseEjectionTimeMs: durationMs(c.baseEjectionTime ?? '30s'),
      consecutive5xxErrors: c.consecutive5xxErrors ?? 5,
      consecutiveConnectFailures: c.consecutiveConnectFailures ?? 5,
      maxConnections: c.maxConnections,
      maxEjectionPercent: c.maxEjectionPercent ?? 50,
      maxPendingRequests: c.maxPendingRequests,
      maxRequests: c.maxRequests,
    };
  }
  if (s.rateLimit)
    route.rateLimit = {
      burst: s.rateLimit.burst ?? Math.max(1, Math.ceil(s.rateLimit.requestsPerSecond)),
      requestsPerSecond: s.rateLimit.requestsPerSecond,
    };
  return {
    route: sortKeys(route),
    result: { ...base, accepted: { ok: true }, resolvedRefs: { ok: true }, programmed: 'current' },
  };
}

export function compilePolicy(p: AuthorizationPolicy): { policy?: AuthzPolicy; result: ResourceResult } {
  const ns = p.metadata.namespace ?? '';
  const key = `${ns}/${p.metadata.name}`;
  const base = { key, generation: p.metadata.generation };
  const errors = check(AuthorizationPolicySpec, p.spec, 'spec');
  const action = p.spec.action ?? 'ALLOW';
  // Semantic rules the schema cannot say.
  for (const [i, r] of (p.spec.rules ?? []).entries()) {
    for (const [j, f] of (r.from ?? []).entries()) {
      for (const sa of [...(f.source.serviceAccounts ?? []), ...(f.source.notServiceAccounts ?? [])])
        if (sa.split('/').length > 2 || sa.split('/').some((x) => x === ''))
          errors.push({
            field: `spec.rules[${i}].from[${j}].source.serviceAccounts`,
            message: `"${sa}" is not <namespace>/<name> or <name>`,
          });
      for (const pr of [...(f.source.principals ?? []), ...(f.source.notPrincipals ?? [])])
        if (pr.startsWith('spiffe://'))
          errors.push({
            field: `spec.rules[${i}].from[${j}].source.principals`,
            message: `"${pr}": write principals without the spiffe:// scheme`,
          });
    }
    // The CRD's CEL rule says the same; ajv does not run CEL, and objects stored before it exist.
    const method = new RegExp(METHOD_PATTERN);
    for (const [j, t] of (r.to ?? []).entries())
      for (const key of ['methods', 'notMethods'] as const)
        for (const m of t.operation[key] ?? [])
          if (!method.test(m))
            errors.push({
              field: `spec.rules[${i}].to[${j}].operation.${key}`,
              message: `"${m}": ${METHOD_MESSAGE}`,
            });
  }
  if (errors.length > 0)
    return { result: { ...base, accepted: invalid('AuthorizationPolicy', errors), programmed: 'none' } };
  const policy: AuthzPolicy = { action, name: key, namespace: ns };
  if (p.spec.selector) policy.selector = sortKeys(p.spec.selector);
  if (p.spec.rules) policy.rules = sortKeys(p.spec.rules);
  return { policy: sortKeys(policy), result: { ...base, accepted: { ok: true }, programmed: 'current' } };
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
}

/** The route programmed for a split: its current form, else its last good one. */
function routesOf(snap: ClusterSnapshot, idx: SnapshotIndex) {
  const results: ResourceResult[] = [];
  const routes = new Map<string, Route>();
  for (const split of [...snap.trafficSplits].sort(byKey((s) => keyOf(s.metadata)))) {
    const { route, result } = compileSplit(split, idx.services);
    if (route) routes.set(result.key, route);
    else {
      const last = snap.lastGood?.routes.get(result.key);
      if (last) {
        routes.set(result.key, last);
        result.programmed = 'lastGood';
      }
    }
    results.push(result);
  }
  return { results, routes };
}

function policiesOf(snap: ClusterSnapshot) {
  const results: ResourceResult[] = [];
  const policies = new Map<string, AuthzPolicy>();
  for (const p of [...snap.authorizationPolicies].sort(byKey((x) => keyOf(x.metadata)))) {
    const { policy, result } = compilePolicy(p);
    if (policy) policies.set(result.key, policy);
    else {
      const last = snap.lastGood?.policies.get(result.key);
      if (last) {
        policies.set(result.key, last);
        result.programmed = 'lastGood';
      }
    }
    results.push(result);
  }
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
    const { results: splits, routes } = routesOf(snap, idx);
    const { results: policies, policies: authz } = policiesOf(snap);
    const routesJson = J([...routes.values()]);
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
        `"routes":${routesJson},"services":[`;
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
    return { meshed, splits, policies, routes, authz, render, serviceCount: entries.length };
  }

  compile(snap: ClusterSnapshot, only?: ReadonlySet<string>): Compiled {
    const p = this.prepare(snap);
    const configs = new Map<string, CompiledConfig>();
    for (const ns of p.meshed) if (!only || only.has(ns)) configs.set(ns, p.render(ns));
    return { configs, splits: p.splits, policies: p.policies, routes: p.routes, authz: p.authz };
  }
}

export interface Prepared {
  /** Meshed namespaces, sorted. */
  meshed: string[];
  splits: ResourceResult[];
  policies: ResourceResult[];
  routes: Map<string, Route>;
  authz: Map<string, AuthzPolicy>;
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
