// The routing table: a ProxyConfig compiled once per config swap into the maps the hot path
// needs (service by VIP:port, by hostname; routes by service), so a request does lookups only.
import { hostnameCovers } from '../api/hostname.ts';
import type { Endpoint, ProxyConfig, RetryPolicy, Route, Service, ServicePort } from '../api/index.ts';
import type { GatewayConfig } from '../api/proxyconfig.ts';
import { compileRegex, type Matcher } from '../api/regex.ts';
import type { Random } from './clock.ts';
import type { LbType } from './lb.ts';
import { type CompiledFilters, compileFilters } from './outbound/filters.ts';
import { matches, type RequestFacts } from './outbound/match.ts';

export type { RequestFacts } from './outbound/match.ts';

export interface ServiceTarget {
  service: Service;
  port: ServicePort;
}

export interface Backend {
  service: Service;
  port: ServicePort;
  weight: number;
  /** The backend's own filters (Gateway API backendRefs[].filters), after the rule's. */
  filters?: CompiledFilters;
  /** Why the reference could not be resolved: a request that picks this backend gets 500. */
  unresolved?: string;
}

export interface Mirror {
  target: ServiceTarget;
  percentage: number;
}

/**
 * The route a request took, as the request metrics label it (`route`, `route_rule`): the
 * TrafficSplit or HTTPRoute/GRPCRoute by kind, namespace and name, and the Gateway API rule (its
 * name, else its index). Made once per compiled route (never per request), from the config
 * only: a path or a header never becomes a label value. Empty when no route matched.
 */
export interface RouteLabel {
  readonly route: string;
  readonly rule: string;
}

/** The label of a request no route matched (the Service's implicit default, a catch-all answer). */
export const NO_ROUTE: RouteLabel = Object.freeze({ route: '', rule: '' });

/** The metrics label of `r`: its source; a route without one is a TrafficSplit ("<ns>/<name>"). */
export function routeLabel(r: Route): RouteLabel {
  const s = r.source;
  if (s) return { route: `${s.kind}/${s.namespace}/${s.name}`, rule: s.ruleName ?? String(s.rule ?? '') };
  // Without a source: a TrafficSplit, or a catch-all the compiler added (no route matched).
  if (r.directResponse) return NO_ROUTE;
  return { route: `TrafficSplit/${r.name}`, rule: '' };
}

/** A route resolved against the services: what the request path needs, nothing to look up. */
export interface CompiledRoute {
  name: string;
  /** What the request metrics say routed the request (routeLabel). */
  label: RouteLabel;
  source: Route | undefined;
  backends: Backend[];
  totalWeight: number;
  /** Whole-request deadline, ms (0: none). */
  timeoutMs: number;
  /** Deadline of each try, ms (0: none): Gateway API backendRequest, else the retry policy's. */
  perTryTimeoutMs: number;
  retries: RetryPolicy | undefined;
  lb: LbType;
  hashHeader: string | undefined;
  /** Where copies of requests go, each with its share (responses discarded). */
  mirrors: Mirror[];
  /** The rule's filters; undefined when it has none. */
  filters: CompiledFilters | undefined;
  /** Answer this status and forward nothing (Gateway API: no rule matched, no valid backend). */
  directStatus: number | undefined;
  /** Whether the route or one of its backends has filters or mirrors (the fast path hands it off). */
  filtered: boolean;
}

interface RouteEntry {
  route: Route;
  /** Compiled per port the client called: a backend without a port takes that port. */
  byPort: Map<number, CompiledRoute>;
}

export const DEFAULT_RETRY_BUDGET = { budgetPercent: 20, minRetriesPerSecond: 10 } as const;

/** The host of a Host / :authority: lower case, without port or trailing dot. */
export function hostOf(authority: string): string {
  let host = authority.toLowerCase();
  const m = /^(.*):(\d+)$/.exec(host);
  if (m && !host.endsWith(']')) host = m[1]!;
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

export class RoutingTable {
  readonly config: ProxyConfig;
  readonly #byVip = new Map<string, ServiceTarget>();
  readonly #byHost = new Map<string, Service>();
  readonly #byId = new Map<string, Service>();
  readonly #routes = new Map<string, RouteEntry[]>();
  readonly #defaults = new Map<string, CompiledRoute>();
  readonly #regexes = new Map<string, Matcher>();
  /** Gateway mode (docs/ingress.md): what the Gateway's listeners serve; undefined for a sidecar. */
  readonly gateway: GatewayConfig | undefined;
  /** Per listener port, the virtual hosts in the order they are tried, then the no-host answer. */
  readonly #vhosts = new Map<
    number,
    { hosts: { hostname: string; target: ServiceTarget }[]; none: ServiceTarget }
  >();

  constructor(config: ProxyConfig, gateway?: GatewayConfig) {
    this.config = config;
    this.gateway = gateway;
    const routes = gateway ? [...config.routes, ...this.#virtualHosts(gateway)] : config.routes;
    for (const s of config.services) {
      this.#byId.set(s.id, s);
      for (const ip of s.clusterIPs)
        for (const p of s.ports)
          if (p.protocol === 'TCP') this.#byVip.set(`${ip}:${p.port}`, { service: s, port: p });
      for (const h of s.hostnames) this.#byHost.set(h.toLowerCase(), s);
      if (s.namespace === config.namespace) this.#byHost.set(s.name.toLowerCase(), s);
    }
    for (const r of routes) {
      if (!this.#byId.has(r.service)) continue;
      const list = this.#routes.get(r.service) ?? [];
      list.push({ route: r, byPort: new Map() });
      this.#routes.set(r.service, list);
    }
    // Routes with matches are more specific than catch-alls: try them first (stable otherwise).
    for (const list of this.#routes.values())
      list.sort((a, b) => Number(a.route.matches.length === 0) - Number(b.route.matches.length === 0));
  }

  get version(): string {
    return this.config.version;
  }

  /**
   * Each virtual host of the gateway becomes a Service of its own (no address, no endpoints)
   * whose routes are the host's, so a request to it takes the same route → backend path as a
   * sidecar's; a Host no virtual host covers gets the port's 404.
   */
  #virtualHosts(gw: GatewayConfig): Route[] {
    const routes: Route[] = [];
    const service = (port: number, hostname: string): ServiceTarget => {
      const p: ServicePort = { name: '', port, protocol: 'TCP' };
      const s: Service = {
        id: `Gateway/${gw.gateway}:${port}/${hostname}`,
        name: gw.gateway,
        namespace: this.config.namespace,
        clusterIPs: [],
        hostnames: [],
        ports: [p],
        endpoints: [],
      };
      this.#byId.set(s.id, s);
      return { service: s, port: p };
    };
    for (const p of gw.ports) {
      const hosts = p.hosts.map((h) => {
        const target = service(p.port, h.hostname);
        for (const r of h.routes) routes.push({ ...r, service: target.service.id });
        return { hostname: h.hostname.toLowerCase(), target };
      });
      const none = service(p.port, '');
      routes.push({
        name: `Gateway/${gw.gateway}:${p.port}:no-host-matched`,
        service: none.service.id,
        matches: [],
        backends: [],
        directResponse: { status: 404 },
      });
      this.#vhosts.set(p.port, { hosts, none });
    }
    return routes;
  }

  /** Gateway mode: the virtual host of listener `port` that covers the request's Host. */
  gatewayTarget(port: number, authority: string | undefined): ServiceTarget | undefined {
    const v = this.#vhosts.get(port);
    if (!v) return undefined;
    const host = hostOf(authority ?? '');
    return v.hosts.find((h) => hostnameCovers(h.hostname, host))?.target ?? v.none;
  }

  service(id: string): Service | undefined {
    return this.#byId.get(id);
  }

  /** The Service a connection to this original destination (a ClusterIP) is for. */
  byVip(address: string, port: number): ServiceTarget | undefined {
    return this.#byVip.get(`${address}:${port}`);
  }

  /** The Service an HTTP Host/:authority names (with or without port); `defaultPort` otherwise. */
  byAuthority(authority: string | undefined, defaultPort: number): ServiceTarget | undefined {
    if (!authority) return undefined;
    const m = /^(.*):(\d+)$/.exec(authority);
    const port = m && !authority.endsWith(']') ? Number(m[2]) : defaultPort;
    const s = this.#byHost.get(hostOf(authority));
    if (!s) return undefined;
    const p = s.ports.find((x) => x.port === port) ?? (s.ports.length === 1 ? s.ports[0] : undefined);
    return p ? { service: s, port: p } : undefined;
  }

  /** The first route (config order) for a request to `target`, or the service's implicit default. */
  route(target: ServiceTarget, req: RequestFacts | undefined): CompiledRoute {
    for (const e of this.#routes.get(target.service.id) ?? []) {
      if (e.route.port !== undefined && e.route.port !== target.port.port) continue;
      if (e.route.matches.length === 0 || (req && e.route.matches.some((m) => this.#matches(m, req)))) {
        let c = e.byPort.get(target.port.port);
        if (!c) {
          c = this.#compile(e.route, target.port.port);
          e.byPort.set(target.port.port, c);
        }
        return c;
      }
    }
    const key = `${target.service.id}:${target.port.port}`;
    let d = this.#defaults.get(key);
    if (!d) {
      d = {
        name: `${target.service.id}:${target.port.port}`,
        label: NO_ROUTE,
        source: undefined,
        backends: [{ service: target.service, port: target.port, weight: 1 }],
        totalWeight: 1,
        timeoutMs: this.config.mesh.defaultTimeoutMs,
        perTryTimeoutMs: this.config.mesh.defaultRetries?.perTryTimeoutMs ?? 0,
        retries: this.config.mesh.defaultRetries,
        lb: 'P2C_EWMA',
        hashHeader: undefined,
        mirrors: [],
        filters: undefined,
        directStatus: undefined,
        filtered: false,
      };
      this.#defaults.set(key, d);
    }
    return d;
  }

  /** `r` for a request the client sent to port `called` of the route's Service. */
  #compile(r: Route, called: number): CompiledRoute {
    const backends: Backend[] = [];
    // A backend's port: the one named, else the port the client called (a route with
    // `port` is only for that one), else (the backend has no such port) its first.
    const portOf = (s: Service, named: number | undefined) =>
      s.ports.find((p) => p.port === (named ?? called)) ?? s.ports[0];
    for (const b of r.backends) {
      if (b.weight <= 0) continue;
      const filters = compileFilters(b.filters);
      const s = this.#byId.get(b.service);
      const port = s && portOf(s, b.port);
      if (b.unresolved !== undefined || !s || !port) {
        // Gateway API: the share of an unresolved backend is answered 500, never sent elsewhere;
        // a TrafficSplit's missing backend is left out, as before.
        if (b.unresolved === undefined && (r.source?.kind ?? 'TrafficSplit') === 'TrafficSplit') continue;
        const why = b.unresolved ?? `backend ${b.service} is not in the config`;
        backends.push({ ...unresolvedBackend(b.service, b.port ?? called, why), weight: b.weight });
        continue;
      }
      backends.push({ service: s, port, weight: b.weight, ...(filters ? { filters } : {}) });
    }
    const filters = compileFilters(r.filters);
    const mirrors: Mirror[] = [];
    const wanted: Array<{ service: string; port?: number; percentage: number }> = [
      ...(r.mirror ? [r.mirror] : []),
      ...(filters?.mirrors ?? []),
    ];
    for (const m of wanted) {
      const s = this.#byId.get(m.service);
      const port = s && portOf(s, m.port);
      if (s && port) mirrors.push({ target: { service: s, port }, percentage: m.percentage });
    }
    const retries = r.retries ?? this.config.mesh.defaultRetries;
    return {
      name: r.name,
      label: routeLabel(r),
      source: r,
      backends,
      totalWeight: backends.reduce((a, b) => a + b.weight, 0),
      timeoutMs: r.timeoutMs ?? this.config.mesh.defaultTimeoutMs,
      perTryTimeoutMs: r.backendRequestTimeoutMs ?? retries?.perTryTimeoutMs ?? 0,
      retries,
      lb: r.loadBalancer?.type ?? 'P2C_EWMA',
      hashHeader: r.loadBalancer?.hashHeader?.toLowerCase(),
      mirrors,
      filters,
      directStatus: r.directResponse?.status,
      filtered: filters !== undefined || mirrors.length > 0 || backends.some((b) => b.filters !== undefined),
    };
  }

  #regex(src: string): Matcher {
    let re = this.#regexes.get(src);
    if (!re) {
      re = compileRegex(src);
      this.#regexes.set(src, re);
    }
    return re;
  }

  #matches(m: Route['matches'][number], req: RequestFacts): boolean {
    return matches(m, req, (src) => this.#regex(src));
  }
}

/** A backend whose Service is not in the config: a request that picks it gets 500. */
function unresolvedBackend(id: string, port: number, why: string): Omit<Backend, 'weight'> {
  const [namespace = '', name = id] = id.split('/');
  return {
    service: { id, name, namespace, clusterIPs: [], hostnames: [], ports: [], endpoints: [] },
    port: { name: '', port, protocol: 'TCP' },
    unresolved: why,
  };
}

/** Picks a backend by weight; `random` in [0, 1). */
export function pickBackend(route: CompiledRoute, random: Random): Backend | undefined {
  if (route.backends.length <= 1) return route.backends[0];
  let x = random() * route.totalWeight;
  for (const b of route.backends) {
    x -= b.weight;
    if (x < 0) return b;
  }
  return route.backends[route.backends.length - 1];
}

/**
 * Endpoints that may take new requests: ready and not terminating. When none is ready, those
 * still serving while terminating take traffic (as kube-proxy does) rather than failing. When
 * none serves either, the endpoints named in `kept` (by `endpointKey`: those this proxy last saw
 * usable, still listed and not terminating; every pod turned not ready at once, as after a
 * kubelet restart) take traffic rather than a 503 (Endpoints.apply keeps them; docs/proxy.md).
 */
export function usableEndpoints(s: Service, kept?: ReadonlySet<string>): Endpoint[] {
  const ready = s.endpoints.filter((e) => e.ready && !e.terminating);
  if (ready.length > 0) return ready;
  const serving = s.endpoints.filter((e) => e.serving);
  if (serving.length > 0 || !kept?.size) return serving;
  return s.endpoints.filter((e) => !e.terminating && kept.has(endpointKey(e)));
}

/** An endpoint across configs: its pod and address (a new pod at a reused address is another). */
export const endpointKey = (e: Endpoint): string => `${e.pod ?? ''}@${e.address}`;

/** The target port of an endpoint for a service port (by name, "" for an unnamed port). */
export function targetPort(e: Endpoint, port: ServicePort): number {
  return e.ports[port.name] ?? e.ports[''] ?? port.port;
}
