// Telemetry of finished requests: every transport reports one FinishRecord, and the request
// metrics (weft_requests_total, the duration histogram) and the access-log line are written from
// it here, once.
import type { AuthzVerdict } from '../authz/matcher.ts';
import type { Now } from '../clock.ts';
import type { ProxyMetrics } from '../metrics.ts';

type Direction = 'inbound' | 'outbound';

export interface AccessLog {
  enabled(): boolean;
  write(entry: Record<string, unknown>): void;
}

/** One finished HTTP request, as every transport reports it (metrics and access log). */
export interface FinishRecord {
  direction: Direction;
  /** now() when the request started; undefined for an answer the proxy gave at once. */
  started: number | undefined;
  status: number;
  grpcStatus?: string;
  method: string | undefined;
  authority: string | undefined;
  path: string | undefined;
  src: { workload: string; namespace: string };
  dst: { workload: string; namespace: string; service: string };
  /** The peer's verified SPIFFE ID, inbound under mTLS. */
  principal?: string | undefined;
  /** Set when authorization denied the request. */
  denied?: AuthzVerdict | undefined;
}

/** The reporter for one proxy, called once per finished request. */
export function finishReporter(
  metrics: ProxyMetrics,
  accessLog: AccessLog | undefined,
  now: Now,
): (f: FinishRecord) => void {
  // prom-client hashes the label object on every call; children are cached by a joined key.
  const children = new Map<string, { count: { inc(): void }; hist: { observe(v: number): void } }>();

  function finishMetrics(
    direction: Direction,
    started: number,
    status: number,
    grpcStatus: string,
    src: { workload: string; namespace: string },
    dst: { workload: string; namespace: string; service: string },
  ): void {
    const key = `${direction}|${src.workload}|${src.namespace}|${dst.workload}|${dst.namespace}|${dst.service}|${status}|${grpcStatus}`;
    let c = children.get(key);
    if (!c) {
      const labels = {
        direction,
        source_workload: src.workload,
        source_namespace: src.namespace,
        destination_workload: dst.workload,
        destination_namespace: dst.namespace,
        destination_service: dst.service,
        status_code: String(status),
        grpc_status: grpcStatus,
      };
      // Bounded: label sets come from the config and status codes; a flood of unknown peers
      // cannot grow this without limit.
      if (children.size > 10_000) children.clear();
      c = { count: metrics.requests.labels(labels), hist: metrics.duration.labels(labels) };
      children.set(key, c);
    }
    const seconds = (now() - started) / 1000;
    c.count.inc();
    c.hist.observe(seconds);
    if (direction === 'inbound') metrics.inbound.record(status, seconds);
  }

  /**
   * The one place a finished HTTP request is reported, whatever carried it: the request metrics
   * and the access-log line are written from this record only.
   */
  return function reportFinish(f: FinishRecord): void {
    const end = now();
    const started = f.started ?? end;
    finishMetrics(f.direction, started, f.status, f.grpcStatus ?? '', f.src, f.dst);
    if (accessLog?.enabled())
      accessLog.write({
        direction: f.direction,
        method: f.method,
        authority: f.authority,
        path: f.path,
        status: f.status,
        grpcStatus: f.grpcStatus || undefined,
        durationMs: f.started === undefined ? 0 : Math.round((end - started) * 1000) / 1000,
        service: f.dst.service,
        source: `${f.src.workload}.${f.src.namespace}`,
        principal: f.principal,
        ...(f.denied
          ? { authz: 'deny', policy: f.denied.policy, rule: f.denied.rule, reason: f.denied.reason }
          : {}),
      });
  };
}
