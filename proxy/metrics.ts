// Prometheus metrics of one proxy: golden signals per direction and source/destination, TCP
// bytes and connections, config reloads and failures, admission decisions. Own registry, so
// several proxies in one process (tests) never share counters.
import { Counter, Gauge, Registry } from './promclient.ts';

const REQUEST_LABELS = [
  'direction',
  'source_workload',
  'source_namespace',
  'destination_workload',
  'destination_namespace',
  'destination_service',
  // Outbound: the TrafficSplit or HTTPRoute/GRPCRoute that routed the request, and the rule
  // (table.ts routeLabel; "" when no route matched, and inbound).
  'route',
  'route_rule',
  'status_code',
  'grpc_status',
] as const;
const TCP_LABELS = ['direction', 'source_workload', 'source_namespace', 'destination_service'] as const;

export type RequestLabels = Record<(typeof REQUEST_LABELS)[number], string>;
export type TcpLabels = Record<(typeof TCP_LABELS)[number], string>;

/** The request duration histogram's buckets, seconds. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The index of the first bucket of DURATION_BUCKETS `seconds` fits in; its length past the last. */
function bucketOf(seconds: number): number {
  let i = 0;
  while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
  return i;
}

/**
 * One label set of weft_requests_total and weft_request_duration_seconds, kept as plain numbers
 * and read when /metrics is scraped. prom-client's own children validate and hash their whole
 * label set into a string on every call, twice per request (about 1 µs more with each two labels):
 * the finish reporter holds one of these per label set instead, and a request adds to numbers.
 */
export class RequestSeries {
  /** weft_requests_total. */
  requests = 0;
  /** The histogram: observations, their sum, and per bucket (not cumulative) plus one past the last. */
  count = 0;
  sum = 0;
  readonly counts: number[] = new Array(DURATION_BUCKETS.length + 1).fill(0);
  readonly labels: Readonly<Partial<RequestLabels>>;
  constructor(labels: Readonly<Partial<RequestLabels>>) {
    this.labels = labels;
  }

  /** A finished request: counted, and its duration observed. */
  finished(seconds: number): void {
    this.requests++;
    this.observe(seconds);
  }

  observe(seconds: number): void {
    this.count++;
    this.sum += seconds;
    this.counts[bucketOf(seconds)]!++;
  }
}

/** The series of the request families, by label set, in the order they were first seen. */
class RequestSeriesSet {
  readonly #byKey = new Map<string, RequestSeries>();

  /** The series of `labels` (label names of REQUEST_LABELS only; an unknown one is refused). */
  of(labels: Readonly<Partial<RequestLabels>>): RequestSeries {
    const key = REQUEST_LABELS.map((n) => labels[n] ?? '\u0000').join('\u0001');
    let s = this.#byKey.get(key);
    if (!s) {
      for (const n of Object.keys(labels))
        if (!(REQUEST_LABELS as readonly string[]).includes(n))
          throw new Error(`label "${n}" is not one of the request metrics' (${REQUEST_LABELS.join(', ')})`);
      const ordered: Partial<RequestLabels> = {};
      for (const n of REQUEST_LABELS) if (labels[n] !== undefined) ordered[n] = labels[n];
      s = new RequestSeries(ordered);
      this.#byKey.set(key, s);
    }
    return s;
  }

  values(): IterableIterator<RequestSeries> {
    return this.#byKey.values();
  }
}

/**
 * A metric family over a RequestSeriesSet, in the shape prom-client's Registry reads (name, help,
 * type, get()): the text it writes is the same as for prom-client's Counter and Histogram.
 */
abstract class RequestFamily {
  readonly aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';
  readonly name: string;
  readonly help: string;
  protected readonly set: RequestSeriesSet;
  constructor(name: string, help: string, set: RequestSeriesSet, registry: Registry) {
    this.name = name;
    this.help = help;
    this.set = set;
    registry.registerMetric(this as never);
  }
  abstract values(): object[];
  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values: this.values(),
      aggregator: this.aggregator,
    };
  }
}

class RequestCounter extends RequestFamily {
  readonly type = 'counter';
  inc(labels: Readonly<Partial<RequestLabels>>, value = 1): void {
    this.set.of(labels).requests += value;
  }
  values(): object[] {
    return [...this.set.values()]
      .filter((s) => s.requests > 0)
      .map((s) => ({ value: s.requests, labels: s.labels }));
  }
}

class RequestHistogram extends RequestFamily {
  readonly type = 'histogram';
  observe(labels: Readonly<Partial<RequestLabels>>, seconds: number): void {
    this.set.of(labels).observe(seconds);
  }
  /** As prom-client's Histogram writes them: cumulative buckets with `le` first, then _sum and _count. */
  values(): object[] {
    const out: object[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.set.values()) {
      if (s.count === 0) continue;
      let acc = 0;
      DURATION_BUCKETS.forEach((le, i) => {
        acc += s.counts[i]!;
        out.push({ value: acc, labels: { le }, sharedLabels: s.labels, metricName: bucket });
      });
      out.push(
        { value: s.count, labels: { le: '+Inf' }, sharedLabels: s.labels, metricName: bucket },
        { value: s.sum, labels: {}, sharedLabels: s.labels, metricName: `${this.name}_sum` },
        { value: s.count, labels: {}, sharedLabels: s.labels, metricName: `${this.name}_count` },
      );
    }
    return out;
  }
  /** For getMetricsAsJSON: the series' labels merged in after `le`, as prom-client's get() does. */
  override async get() {
    const m = await super.get();
    return {
      ...m,
      values: (m.values as { labels: object; sharedLabels: object }[]).map(({ sharedLabels, ...v }) => ({
        ...v,
        labels: { ...v.labels, ...sharedLabels },
      })),
    };
  }
  async getForPromString() {
    return super.get();
  }
}

/**
 * Every inbound request this proxy answered, in three numbers and a histogram: what the operator
 * reads on the health port (/stats/inbound) to gate a canary progression, without a Prometheus.
 * Cumulative since the proxy started (the reader takes differences).
 */
export class InboundSummary {
  requests = 0;
  /** 5xx answers, the proxy's own included. */
  errors = 0;
  /** Requests per bucket of DURATION_BUCKETS, plus one past the last. */
  readonly counts: number[] = new Array(DURATION_BUCKETS.length + 1).fill(0);

  record(status: number, seconds: number): void {
    this.requests++;
    if (status >= 500) this.errors++;
    this.counts[bucketOf(seconds)]!++;
  }

  toJSON() {
    return {
      requests: this.requests,
      errors: this.errors,
      bucketsMs: DURATION_BUCKETS.map((b) => b * 1000),
      counts: this.counts,
    };
  }
}

export class ProxyMetrics {
  readonly registry = new Registry();
  /** Both request families read the same series (the finish reporter adds to them per request). */
  readonly #requestSeries = new RequestSeriesSet();
  readonly requests = new RequestCounter(
    'weft_requests_total',
    'HTTP/gRPC requests handled by the proxy.',
    this.#requestSeries,
    this.registry,
  );
  readonly duration = new RequestHistogram(
    'weft_request_duration_seconds',
    'Time from request received to response finished, seconds.',
    this.#requestSeries,
    this.registry,
  );
  readonly tcpOpened = new Counter({
    name: 'weft_tcp_connections_opened_total',
    help: 'TCP connections proxied (opaque TCP and TLS passthrough).',
    labelNames: TCP_LABELS,
    registers: [this.registry],
  });
  readonly tcpOpen = new Gauge({
    name: 'weft_tcp_connections_open',
    help: 'Downstream connections open, by direction.',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly tcpReceived = new Counter({
    name: 'weft_tcp_received_bytes_total',
    help: 'Bytes received from downstream on proxied TCP connections.',
    labelNames: TCP_LABELS,
    registers: [this.registry],
  });
  readonly tcpSent = new Counter({
    name: 'weft_tcp_sent_bytes_total',
    help: 'Bytes sent to downstream on proxied TCP connections.',
    labelNames: TCP_LABELS,
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'weft_config_reloads_total',
    help: 'Configs applied.',
    registers: [this.registry],
  });
  readonly configFailures = new Counter({
    name: 'weft_config_reload_failures_total',
    help: 'Configs refused (the last good one stays); reason is the error code.',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly configInfo = new Gauge({
    name: 'weft_config_info',
    help: 'The applied config version (value 1).',
    labelNames: ['version'],
    registers: [this.registry],
  });
  readonly proxyErrors = new Counter({
    name: 'weft_proxy_errors_total',
    help: 'Requests the proxy ended itself, by error code (no route, overflow, rate limit, fault, timeout …).',
    labelNames: ['direction', 'code'],
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'weft_retries_total',
    help: 'Retries sent, and retries refused by the budget.',
    labelNames: ['destination_service', 'outcome'],
    registers: [this.registry],
  });
  readonly ejections = new Counter({
    name: 'weft_outlier_ejections_total',
    help: 'Endpoints ejected by outlier detection.',
    labelNames: ['destination_service'],
    registers: [this.registry],
  });

  readonly mtlsConnections = new Counter({
    name: 'weft_mtls_connections_total',
    help: 'Mutual TLS connections established with a peer sidecar, by TLS version and the peer SPIFFE ID.',
    labelNames: ['direction', 'tls_version', 'peer'],
    registers: [this.registry],
  });
  readonly mtlsResumed = new Counter({
    name: 'weft_mtls_resumed_total',
    help: 'Mutual TLS handshakes that resumed an earlier session (TLS 1.3 session ticket) instead of a full handshake.',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly mtlsFailures = new Counter({
    name: 'weft_mtls_failures_total',
    help: 'Mutual TLS connections that failed: WEFT_PEER_IDENTITY (peer presented another SPIFFE ID), certificate and handshake errors.',
    labelNames: ['direction', 'reason'],
    registers: [this.registry],
  });
  readonly mtlsRefused = new Counter({
    name: 'weft_mtls_refused_total',
    help: 'Inbound connections refused by the mTLS mode: plaintext or app TLS under STRICT, sidecar TLS under DISABLE or without an identity.',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly plaintextHops = new Counter({
    name: 'weft_plaintext_connections_total',
    help: 'Inbound connections served without mTLS (PERMISSIVE or DISABLE), and outbound hops to meshed endpoints made in plaintext because this proxy has no identity.',
    labelNames: ['direction', 'reason'],
    registers: [this.registry],
  });
  readonly identityState = new Gauge({
    name: 'weft_identity_loaded',
    help: '1 when the workload certificate is loaded (mTLS possible), 0 when it is missing or invalid.',
    registers: [this.registry],
  });
  readonly identityReloads = new Counter({
    name: 'weft_identity_reloads_total',
    help: 'Workload certificate reloads, by result (ok, or the error code; the previous identity stays).',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly authzDecisions = new Counter({
    name: 'weft_authz_decisions_total',
    help: 'Inbound authorization decisions, by decision, the policy and rule that decided ("" for defaults) and the reason.',
    labelNames: ['decision', 'policy', 'rule', 'reason'],
    registers: [this.registry],
  });

  readonly inbound = new InboundSummary();

  /** The series of one label set of the request families (the finish reporter caches them). */
  requestSeries(labels: RequestLabels): RequestSeries {
    return this.#requestSeries.of(labels);
  }

  setConfigVersion(version: string): void {
    this.configInfo.reset();
    this.configInfo.set({ version }, 1);
  }
}
