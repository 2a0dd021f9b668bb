// Gateway API routes attached to Services (GAMMA) → ProxyConfig routes, and a verdict per
// Service parentRef for the route's status. Pure. docs/gateway-api.md says what is supported.
//
// A producer route (in its parent Service's namespace) goes into every meshed namespace's
// config; a consumer route (in another namespace) only into its own namespace's, where it
// replaces the producer routes of that Service. Within one Service, entries are sorted by the
// Gateway API precedence (gatewayrules.ts ranks), one entry per match, and closed by a 404
// catch-all per port scope: the proxy takes the first entry that fits.
import { durationMs, MAX_TIMER_MS } from '../../api/index.ts';
import { type Route, Route as RouteSchema } from '../../api/proxyconfig.ts';
import { check } from '../../api/validate.ts';
import type { ServiceObj } from '../objects.ts';
import {
  compileBackends,
  compileFilters,
  grpcMatch,
  httpMatch,
  type Problem,
  type Rank,
  type RefContext,
  ROUTE_REASON,
} from './gatewayrules.ts';
import type {
  GatewayRouteObj,
  GRPCRouteMatchSpec,
  GRPCRouteObj,
  HTTPRouteMatchSpec,
  HTTPRouteObj,
  ParentRef,
  ReferenceGrantObj,
  RouteKind,
} from './gatewaytypes.ts';
import { cmp, sortKeys } from './util.ts';

export type Verdict = { ok: true; message: string } | { ok: false; reason: string; message: string };

export interface ParentResult {
  /** As written in the route's spec (status echoes it). */
  parentRef: ParentRef;
  accepted: Verdict;
  resolvedRefs: Verdict;
}

export interface RouteResult {
  /** "<Kind>/<namespace>/<name>" */
  key: string;
  kind: RouteKind;
  generation?: number;
  /** One per parentRef that names a Service (the others belong to other controllers). */
  parents: ParentResult[];
  programmed: 'current' | 'lastGood' | 'none';
}

interface Entry {
  route: Route;
  rank: Rank;
}

/** A route attached to one Service: its entries and whose requests they apply to. */
export interface Binding {
  service: string;
  /** undefined: a producer route (every namespace); else the consumer namespace. */
  consumer?: string;
  entries: Entry[];
}

export interface GatewayInput {
  httpRoutes?: readonly HTTPRouteObj[];
  grpcRoutes?: readonly GRPCRouteObj[];
  referenceGrants?: readonly ReferenceGrantObj[];
  services: Map<string, ServiceObj>;
  /** Meshed namespaces: a consumer route in another namespace has no client to act for. */
  meshed?: ReadonlySet<string>;
  /** Bindings last programmed per route key, kept while its current spec is invalid. */
  lastGood?: Map<string, Binding[]>;
}

export interface GatewayCompiled {
  results: RouteResult[];
  /** Producer entries per Service id, in precedence order, catch-alls last. */
  producer: Map<string, Route[]>;
  /** Consumer entries per namespace, then per Service id. */
  consumer: Map<string, Map<string, Route[]>>;
  /** Route keys per Service id (producer) and per Service id and namespace (consumer). */
  producerKeys: Map<string, string[]>;
  consumerKeys: Map<string, Map<string, string[]>>;
  /** What is programmed now, per route key (the next compile's last good). */
  bindings: Map<string, Binding[]>;
}

const isServiceRef = (p: ParentRef) => (p.group === '' || p.group === 'core') && p.kind === 'Service';

/** Gateway API durations (GEP-2257): 1h, 10s, 500ms, 1h30m; at most 4 parts. */
const GATEWAY_DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;

function parentOf(ref: ParentRef, routeNs: string, services: Map<string, ServiceObj>) {
  const ns = ref.namespace ?? routeNs;
  const id = `${ns}/${ref.name}`;
  const svc = services.get(id);
  const consumer = ns !== routeNs;
  const no = (reason: string, message: string) => ({
    id,
    consumer,
    port: undefined,
    verdict: { ok: false as const, reason, message } as Verdict | undefined,
  });
  if (!svc) return no(ROUTE_REASON.NoMatchingParent, `Service ${id} not found`);
  const ip = svc.spec?.clusterIP;
  if (svc.spec?.type === 'ExternalName' || !ip || ip === 'None')
    return no(
      ROUTE_REASON.NotAllowedByListeners,
      `Service ${id} has no ClusterIP (headless or ExternalName): a route attaches to a Service's ClusterIP`,
    );
  const ports = svc.spec?.ports ?? [];
  let port = ref.port;
  if (ref.sectionName !== undefined) {
    const p = ports.find((x) => x.name === ref.sectionName);
    if (!p) return no(ROUTE_REASON.NoMatchingParent, `Service ${id} has no port named "${ref.sectionName}"`);
    if (port !== undefined && port !== p.port)
      return no(
        ROUTE_REASON.NoMatchingParent,
        `sectionName "${ref.sectionName}" is port ${p.port}, not ${port}`,
      );
    port = p.port;
  }
  if (port !== undefined && !ports.some((p) => p.port === port))
    return no(ROUTE_REASON.NoMatchingParent, `Service ${id} has no port ${port}`);
  return { id, port, consumer, verdict: undefined as Verdict | undefined };
}

function ruleTimeouts(t: { request?: string; backendRequest?: string } | undefined, field: string) {
  const out: Pick<Route, 'timeoutMs' | 'backendRequestTimeoutMs'> = {};
  const problems: Problem[] = [];
  for (const [k, to] of [
    ['request', 'timeoutMs'],
    ['backendRequest', 'backendRequestTimeoutMs'],
  ] as const) {
    const v = t?.[k];
    if (v === undefined) continue;
    if (!GATEWAY_DURATION.test(v))
      problems.push({
        field: `${field}.${k}`,
        reason: ROUTE_REASON.UnsupportedValue,
        message: `${field}.${k}: "${v}" is not a Gateway API duration (like 10s, 500ms, 1h30m)`,
      });
    else out[to] = Math.min(durationMs(v), MAX_TIMER_MS);
  }
  return { out, problems };
}

/** One route's entries for one parent Service, with every problem found on the way. */
function bindRoute(
  route: GatewayRouteObj,
  kind: RouteKind,
  service: string,
  port: number | undefined,
  c: RefContext,
): { entries: Entry[]; problems: Problem[] } {
  const ns = route.metadata.namespace ?? '';
  const name = route.metadata.name;
  const entries: Entry[] = [];
  const problems: Problem[] = [];
  const age = route.metadata.creationTimestamp ?? '';
  (route.spec.rules ?? [{}]).forEach((rule, ri) => {
    const field = `spec.rules[${ri}]`;
    const matches: (HTTPRouteMatchSpec | GRPCRouteMatchSpec)[] = rule.matches?.length ? rule.matches : [{}];
    const timeouts = ruleTimeouts(kind === 'HTTPRoute' ? rule.timeouts : undefined, `${field}.timeouts`);
    problems.push(...timeouts.problems);
    matches.forEach((m, mi) => {
      const at = `${field}.matches[${mi}]`;
      const {
        match,
        rank,
        problems: mp,
      } = kind === 'HTTPRoute'
        ? httpMatch(m as HTTPRouteMatchSpec, at)
        : grpcMatch(m as GRPCRouteMatchSpec, at);
      const filters = compileFilters(rule.filters, match, c, `${field}.filters`);
      const redirect = filters.filters.some((f) => f.type === 'RequestRedirect');
      const backends = redirect
        ? { backends: [], problems: [] }
        : compileBackends(rule.backendRefs, match, c, `${field}.backendRefs`);
      // The same problem in every match of a rule is reported once (summarize() dedupes).
      problems.push(...filters.problems, ...backends.problems, ...mp);
      const r: Route = {
        name: `${kind}/${ns}/${name}/${ri}`,
        source: sortKeys({ kind, namespace: ns, name, rule: ri, ruleName: rule.name }),
        service,
        matches: [match],
        backends: backends.backends,
        ...timeouts.out,
      };
      if (port !== undefined) r.port = port;
      if (filters.filters.length) r.filters = filters.filters;
      const usable = backends.backends.filter((b) => !b.unresolved && b.weight > 0);
      if (!redirect && usable.length === 0) r.directResponse = { status: 500 };
      // What the proxies would refuse (and with it the whole namespace's config) is refused
      // here, for this route only: values the CRDs' own validation should have stopped.
      for (const e of check(RouteSchema, r, `${field}(compiled)`))
        problems.push({
          field: e.field,
          reason: ROUTE_REASON.UnsupportedValue,
          message: `${e.field}: ${e.message}`,
        });
      entries.push({
        route: sortKeys(r),
        rank: [kind === 'GRPCRoute' ? 0 : 1, ...rank, age, `${ns}/${name}`, ri, mi],
      });
    });
  });
  return { entries, problems };
}

const byRank = (a: Entry, b: Entry) => {
  for (let i = 0; i < Math.max(a.rank.length, b.rank.length); i++) {
    const x = a.rank[i] ?? '';
    const y = b.rank[i] ?? '';
    if (x === y) continue;
    return typeof x === 'number' && typeof y === 'number' ? x - y : cmp(String(x), String(y));
  }
  return 0;
};

/** Sorted entries of one Service, then its 404 catch-alls (one per port scope). */
function ordered(service: string, entries: Entry[]): Route[] {
  const sorted = [...entries].sort(byRank).map((e) => e.route);
  const scopes = new Set(sorted.map((r) => r.port));
  const catchAlls = (scopes.has(undefined) ? [undefined] : [...scopes].sort((a, b) => a! - b!)).map(
    (port) => {
      const r: Route = {
        backends: [],
        directResponse: { status: 404 },
        matches: [],
        name: `${service}:no-route-matched`,
        service,
      };
      if (port !== undefined) r.port = port;
      return r;
    },
  );
  return [...sorted, ...catchAlls];
}

function summarize(problems: Problem[], okMessage: string): Verdict {
  if (problems.length === 0) return { ok: true, message: okMessage };
  return {
    ok: false,
    reason: problems[0]!.reason,
    message: [...new Set(problems.map((p) => p.message))].join('; '),
  };
}

export function compileGatewayRoutes(input: GatewayInput): GatewayCompiled {
  const results: RouteResult[] = [];
  const bindings = new Map<string, Binding[]>();
  const routes: [RouteKind, GatewayRouteObj][] = [
    ...(input.httpRoutes ?? []).map((r) => ['HTTPRoute', r] as [RouteKind, GatewayRouteObj]),
    ...(input.grpcRoutes ?? []).map((r) => ['GRPCRoute', r] as [RouteKind, GatewayRouteObj]),
  ];
  for (const [kind, route] of routes) {
    const ns = route.metadata.namespace ?? '';
    const key = `${kind}/${ns}/${route.metadata.name}`;
    const parents: ParentResult[] = [];
    const bound: Binding[] = [];
    let invalid = false;
    for (const ref of route.spec.parentRefs ?? []) {
      if (!isServiceRef(ref)) continue;
      const p = parentOf(ref, ns, input.services);
      const c: RefContext = {
        services: input.services,
        referenceGrants: input.referenceGrants ?? [],
        kind,
        namespace: ns,
        consumer: p.consumer,
      };
      const { entries, problems } = bindRoute(route, kind, p.id, p.port, c);
      const unsupported = problems.filter((x) => x.reason === ROUTE_REASON.UnsupportedValue);
      const refs = problems.filter((x) => x.reason !== ROUTE_REASON.UnsupportedValue);
      const idle =
        p.consumer && input.meshed && !input.meshed.has(ns)
          ? `; namespace ${ns} is not meshed, so it has no effect until it is`
          : '';
      const who = p.consumer
        ? `a consumer route: requests from namespace ${ns}${idle}`
        : 'a producer route: every client';
      const accepted =
        p.verdict ??
        summarize(unsupported, `Attached to Service ${p.id}${p.port ? ` port ${p.port}` : ''} (${who})`);
      if (unsupported.length > 0) invalid = true;
      parents.push({ parentRef: ref, accepted, resolvedRefs: summarize(refs, 'All references resolved') });
      if (accepted.ok) bound.push({ service: p.id, consumer: p.consumer ? ns : undefined, entries });
    }
    let programmed: RouteResult['programmed'] = bound.length > 0 ? 'current' : 'none';
    let use = bound;
    const last = input.lastGood?.get(key);
    if (invalid && last) {
      // An invalid change never replaces what worked: the last good bindings stay.
      use = last;
      programmed = 'lastGood';
    }
    if (use.length > 0) bindings.set(key, use);
    results.push({ key, kind, generation: route.metadata.generation, parents, programmed });
  }
  results.sort((a, b) => cmp(a.key, b.key));

  const producerEntries = new Map<string, Entry[]>();
  const consumerEntries = new Map<string, Map<string, Entry[]>>();
  const producerKeys = new Map<string, string[]>();
  const consumerKeys = new Map<string, Map<string, string[]>>();
  const push = <T>(m: Map<string, T[]>, k: string, ...v: T[]) => {
    const l = m.get(k);
    if (l) l.push(...v);
    else m.set(k, [...v]);
  };
  for (const [key, list] of [...bindings].sort((a, b) => cmp(a[0], b[0])))
    for (const b of list) {
      if (b.consumer === undefined) {
        push(producerEntries, b.service, ...b.entries);
        push(producerKeys, b.service, key);
      } else {
        if (!consumerEntries.has(b.consumer)) consumerEntries.set(b.consumer, new Map());
        if (!consumerKeys.has(b.service)) consumerKeys.set(b.service, new Map());
        push(consumerEntries.get(b.consumer)!, b.service, ...b.entries);
        push(consumerKeys.get(b.service)!, b.consumer, key);
      }
    }
  const producer = new Map([...producerEntries].map(([svc, e]) => [svc, ordered(svc, e)]));
  const consumer = new Map(
    [...consumerEntries].map(([ns, bySvc]) => [
      ns,
      new Map([...bySvc].map(([svc, e]) => [svc, ordered(svc, e)])),
    ]),
  );
  for (const m of [producerKeys, ...consumerKeys.values()]) for (const [k, l] of m) m.set(k, [...new Set(l)]);
  return { results, producer, consumer, producerKeys, consumerKeys, bindings };
}
