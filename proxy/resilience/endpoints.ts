// The live state behind the plan: per-endpoint stats (EWMA, in-flight, outlier state), per-
// backend request counts and retry budgets, per-route rate-limit buckets, and the endpoint pick.
// Kept across config swaps (keyed by address:port, service id, route name); `apply` drops what
// a new config no longer names. Every transport reads and reports through one instance.
import type { Endpoint, MtlsMode, ProxyConfig, RetryPolicy, Service } from '../../api/index.ts';
import { RetryBudget } from '../budget.ts';
import type { Now, Random } from '../clock.ts';
import { Balancer, type EndpointStats, newEndpointStats } from '../lb.ts';
import type { ProxyMetrics } from '../metrics.ts';
import type { PlanState } from '../outbound/plan.ts';
import {
  DEFAULT_OUTLIER_POLICY,
  OutlierDetector,
  type OutlierPolicy,
  type OutlierState,
} from '../outlier.ts';
import { TokenBucket } from '../ratelimit.ts';
import {
  type Backend,
  type CompiledRoute,
  DEFAULT_RETRY_BUDGET,
  endpointKey,
  targetPort,
  usableEndpoints,
} from '../table.ts';
import type { UpstreamAddress } from '../transport.ts';

export interface ClusterState {
  active: number;
  budget: RetryBudget | undefined;
  budgetKey: string;
}

export interface Picked {
  endpoint: Endpoint;
  stats: EndpointStats;
  address: UpstreamAddress;
  peers: OutlierState[];
}

interface BackendEntries {
  /** The service object they were built from. */
  service: Service;
  stats: EndpointStats[];
  peers: OutlierState[];
  byStats: Map<EndpointStats, { e: Endpoint; address: UpstreamAddress }>;
}

/** The mTLS mode for a workload port: the port override, else the namespace's mode (PERMISSIVE before any config). */
export function mtlsModeFor(config: ProxyConfig | undefined, port: number | undefined): MtlsMode {
  if (!config) return 'PERMISSIVE';
  const m = config.mesh.mtls;
  return (port !== undefined ? m.ports.find((p) => p.port === port)?.mode : undefined) ?? m.mode;
}

/**
 * How the endpoints of tries that wait for their response head are watched for a silent death
 * (a pod killed without grace: its network namespace gone, nothing answers, not even a reset):
 * every SWEEP_MS, an endpoint with a try waiting PROBE_AFTER_MS or longer gets a TCP connect of
 * its own (at most one a PROBE_EVERY_MS); one that does not answer it at all is gone.
 */
const SWEEP_MS = 200;
const PROBE_AFTER_MS = 200;
const PROBE_EVERY_MS = 1_000;

/** A try waiting for its response head (attempts.ts `Try`). */
interface Waiting {
  readonly target: Picked;
  readonly started: number;
  gone?: () => void;
}

/** A TCP connect to an endpoint's address: whether anything answered (a refusal is an answer). */
export type Probe = (to: UpstreamAddress) => Promise<'answered' | 'unreachable'>;

function outlierPolicy(route: CompiledRoute): OutlierPolicy {
  const cb = route.source?.circuitBreaker;
  if (!cb) return { ...DEFAULT_OUTLIER_POLICY, consecutive5xxErrors: 0 };
  return cb;
}

export class Endpoints {
  readonly #now: Now;
  readonly #metrics: ProxyMetrics;
  readonly #log: (level: 'warn', msg: string, fields: Record<string, unknown>) => void;
  readonly #balancer: Balancer;
  readonly outlier: OutlierDetector;
  readonly #stats = new Map<string, EndpointStats>();
  readonly clusters = new Map<string, ClusterState>();
  readonly #buckets = new Map<string, TokenBucket>();
  // Per config: each backend's usable endpoints with their live stats, built on first use.
  readonly #backends = new Map<string, BackendEntries>();
  // Per service id, while none of its endpoints is ready or serving: those last usable here,
  // still listed and not terminating (usableEndpoints).
  #kept = new Map<string, ReadonlySet<string>>();
  // Tries waiting for their response head, by endpoint key (oldest first): Endpoints.gone.
  readonly #waiting = new Map<string, Set<Waiting>>();
  readonly #probed = new Map<string, number>();
  #sweeper: NodeJS.Timeout | undefined;
  /** How an endpoint suspected dead is checked (Transport.probe); none: never checked. */
  probe: Probe | undefined;
  /** Called when an endpoint was found unreachable (its idle pooled connections are dead too). */
  onUnreachable: ((key: string) => void) | undefined;
  #config: ProxyConfig | undefined;
  /** The current config's services by id. */
  #services = new Map<string, Service>();
  /** What the outbound plan needs of this state. */
  readonly planState: PlanState;

  constructor(
    now: Now,
    random: Random,
    metrics: ProxyMetrics,
    log: (level: 'warn', msg: string, fields: Record<string, unknown>) => void,
  ) {
    this.#now = now;
    this.#metrics = metrics;
    this.#log = log;
    this.#balancer = new Balancer(now, random);
    this.outlier = new OutlierDetector(now);
    this.planState = { random, takeToken: (route) => this.#bucketFor(route)?.take() ?? true };
  }

  /** A new config: backends are rebuilt on use; stats of endpoints it no longer names go. */
  apply(config: ProxyConfig, keys: ReadonlySet<string>): void {
    const previous = this.#config;
    this.#config = config;
    this.#services = new Map(config.services.map((s) => [s.id, s]));
    this.#backends.clear();
    for (const k of this.#stats.keys()) if (!keys.has(k)) this.#stats.delete(k);
    for (const k of this.#probed.keys()) if (!keys.has(k)) this.#probed.delete(k);
    this.#keepLastUsable(previous, config);
    // An endpoint the config no longer names (its pod deleted, a force delete included): a
    // request waiting on it would wait for a pod that may be gone without a trace.
    for (const k of [...this.#waiting.keys()]) if (!keys.has(k)) this.gone(k);
  }

  /** A try on `t.target` waits for its response head (until `done`). */
  waiting(t: Waiting): void {
    const key = t.target.stats.key;
    let set = this.#waiting.get(key);
    if (!set) {
      set = new Set();
      this.#waiting.set(key, set);
    }
    set.add(t);
    if (!this.#sweeper && this.probe) {
      this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS);
      this.#sweeper.unref();
    }
  }

  /** The try has its response head, or ended (an endpoint's set stays, empty, while it is listed). */
  done(t: Waiting): void {
    this.#waiting.get(t.target.stats.key)?.delete(t);
  }

  /**
   * The endpoint `key` is gone (left the config, or does not answer at all): every try waiting
   * for its head there ends now; the transport sends an idempotent one to another endpoint, and
   * answers the others 503 WEFT_ENDPOINT_GONE (attempts.ts), rather than waiting for silence.
   */
  gone(key: string): void {
    const set = this.#waiting.get(key);
    if (!set) return;
    this.#waiting.delete(key);
    for (const t of set) t.gone?.();
  }

  /** A connection to `key` found its address not answering at all: the endpoint is gone. */
  unreachable(key: string): void {
    this.onUnreachable?.(key);
    this.gone(key);
  }

  /** Probes the endpoints whose tries have waited a while, each at most once a PROBE_EVERY_MS. */
  #sweep(): void {
    const now = this.#now();
    let waiting = false;
    for (const [key, set] of this.#waiting) {
      const oldest = set.values().next().value;
      if (!oldest) continue;
      waiting = true;
      if (now - oldest.started < PROBE_AFTER_MS) continue;
      if (now - (this.#probed.get(key) ?? -Infinity) < PROBE_EVERY_MS) continue;
      this.#probed.set(key, now);
      this.probe?.(oldest.target.address).then(
        (r) => {
          if (r === 'unreachable') {
            this.#log('warn', 'endpoint does not answer a connect: ending the requests waiting on it', {
              endpoint: key,
            });
            this.unreachable(key);
          }
        },
        () => {},
      );
    }
    if (!waiting) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /**
   * Every endpoint of a service not ready at once (a restarted kubelet reports each container
   * not Ready until its first readiness probe, and the EndpointSlice follows): rather than 503
   * for that second or two, keep sending to the endpoints that were usable in the previous
   * config while they stay listed and do not terminate, like Envoy's panic threshold. Endpoints
   * never seen usable (a new pod starting) are not sent to; a dead one fails to connect and the
   * request goes to another (outlier detection ejects it).
   */
  #keepLastUsable(previous: ProxyConfig | undefined, config: ProxyConfig): void {
    const kept = new Map<string, ReadonlySet<string>>();
    let before: Map<string, Service> | undefined;
    for (const s of config.services) {
      if (s.endpoints.length === 0 || s.endpoints.some((e) => (e.ready && !e.terminating) || e.serving))
        continue;
      before ??= new Map(previous?.services.map((p) => [p.id, p]));
      const last = before.get(s.id);
      if (!last) continue;
      const usable = new Set(usableEndpoints(last, this.#kept.get(s.id)).map(endpointKey));
      const still = s.endpoints.filter((e) => !e.terminating && usable.has(endpointKey(e)));
      if (still.length === 0) continue;
      kept.set(s.id, new Set(still.map(endpointKey)));
      if (!this.#kept.has(s.id))
        this.#log('warn', 'no endpoint of the service is ready: keeping those that were', {
          service: s.id,
          endpoints: still.map((e) => e.address),
        });
    }
    this.#kept = kept;
  }

  allStats(): IterableIterator<EndpointStats> {
    return this.#stats.values();
  }

  #statsFor(key: string): EndpointStats {
    let s = this.#stats.get(key);
    if (!s) {
      s = newEndpointStats(key, this.#now());
      this.#stats.set(key, s);
    }
    return s;
  }

  clusterFor(serviceId: string, retries: RetryPolicy | undefined): ClusterState {
    let c = this.clusters.get(serviceId);
    if (!c) {
      c = { active: 0, budget: undefined, budgetKey: '' };
      this.clusters.set(serviceId, c);
    }
    const pct = retries?.budgetPercent ?? DEFAULT_RETRY_BUDGET.budgetPercent;
    const floor = retries?.minRetriesPerSecond ?? DEFAULT_RETRY_BUDGET.minRetriesPerSecond;
    const key = `${pct}/${floor}`;
    if (c.budgetKey !== key) {
      c.budget = new RetryBudget(pct, floor, this.#now);
      c.budgetKey = key;
    }
    return c;
  }

  /** Counts the request against its backend's limit; undefined (503 WEFT_OVERFLOW) when full. */
  enterCluster(plan: {
    route: CompiledRoute;
    backend: Backend;
    maxActive: number;
  }): ClusterState | undefined {
    const cluster = this.clusterFor(plan.backend.service.id, plan.route.retries);
    if (cluster.active >= plan.maxActive) return undefined;
    cluster.active++;
    return cluster;
  }

  /**
   * A backend's usable endpoints with their live state, from the current config's version of its
   * service: a try sent again after a config change (its endpoint gone) picks among today's
   * endpoints, not those of the config its request started with.
   */
  entriesFor(backend: Backend): BackendEntries {
    const key = `${backend.service.id}:${backend.port.port}`;
    const service = this.#services.get(backend.service.id) ?? backend.service;
    let be = this.#backends.get(key);
    if (!be || be.service !== service) {
      be = { service, stats: [], peers: [], byStats: new Map() };
      for (const e of usableEndpoints(service, this.#kept.get(service.id))) {
        const port = targetPort(e, backend.port);
        const st = this.#statsFor(`${e.address}:${port}`);
        be.stats.push(st);
        be.peers.push(st.outlier);
        // mTLS to a meshed endpoint with an identity unless the mode is DISABLE for its port;
        // Transport falls back to plaintext while this proxy has no identity of its own.
        const mtls = e.meshed && e.identity !== undefined && mtlsModeFor(this.#config, port) !== 'DISABLE';
        be.byStats.set(st, {
          e,
          address: { host: e.address, port, meshed: e.meshed, ...(mtls ? { peerId: e.identity } : {}) },
        });
      }
      this.#backends.set(key, be);
    }
    return be;
  }

  pickEndpoint(
    backend: Backend,
    route: CompiledRoute,
    tried: Set<string>,
    hashKey: string | undefined,
  ): Picked | undefined {
    const be = this.entriesFor(backend);
    let candidates = be.stats;
    let excluded = false;
    for (const st of candidates) {
      if (tried.has(st.key) || this.outlier.isEjected(st.outlier)) {
        excluded = true;
        break;
      }
    }
    if (excluded) {
      candidates = be.stats.filter((st) => !tried.has(st.key) && !this.outlier.isEjected(st.outlier));
      // Everything ejected or tried: better to try an ejected endpoint than to fail outright.
      if (candidates.length === 0) candidates = be.stats.filter((st) => !tried.has(st.key));
    }
    if (candidates.length === 0) return undefined;
    const chosen = this.#balancer.pick(route.lb, candidates, hashKey) ?? candidates[0]!;
    const entry = be.byStats.get(chosen)!;
    return { endpoint: entry.e, stats: chosen, address: entry.address, peers: be.peers };
  }

  recordOutcome(
    p: Picked,
    outcome: 'success' | '5xx' | 'connect-failure',
    route: CompiledRoute,
    service: string,
  ): void {
    if (this.outlier.record(p.stats.outlier, outcome, outlierPolicy(route), p.peers)) {
      this.#metrics.ejections.inc({ destination_service: service });
      this.#log('warn', 'endpoint ejected by outlier detection', { endpoint: p.stats.key, service, outcome });
    }
  }

  #bucketFor(route: CompiledRoute): TokenBucket | undefined {
    const rl = route.source?.rateLimit;
    if (!rl) return undefined;
    const key = `${route.name}:${rl.requestsPerSecond}:${rl.burst}`;
    let b = this.#buckets.get(key);
    if (!b) {
      b = new TokenBucket(rl.requestsPerSecond, rl.burst, this.#now);
      this.#buckets.set(key, b);
    }
    return b;
  }
}
