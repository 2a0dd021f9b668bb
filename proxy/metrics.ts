// Prometheus metrics of one proxy: golden signals per direction and source/destination, TCP
// bytes and connections, config reloads and failures, admission decisions. Own registry, so
// several proxies in one process (tests) never share counters.
import { Counter, Gauge, Histogram, Registry } from './promclient.ts';

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
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.counts[i]!++;
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
  readonly requests = new Counter({
    name: 'weft_requests_total',
    help: 'HTTP/gRPC requests handled by the proxy.',
    labelNames: REQUEST_LABELS,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'weft_request_duration_seconds',
    help: 'Time from request received to response finished, seconds.',
    labelNames: REQUEST_LABELS,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
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

  setConfigVersion(version: string): void {
    this.configInfo.reset();
    this.configInfo.set({ version }, 1);
  }
}
