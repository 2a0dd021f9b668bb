// Telemetry of finished requests: every transport reports one FinishRecord, and the request
// metrics (weft_requests_total, the duration histogram) and the access-log line are written from
// it here, once.
import type { AuthzVerdict } from '../authz/matcher.ts';
import type { Now } from '../clock.ts';
import type { ProxyMetrics, RequestSeries } from '../metrics.ts';
import { NO_ROUTE, type RouteLabel } from '../table.ts';

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
  /** Outbound: the route that decided (the plan's `route.label`); none: no route matched. */
  route?: RouteLabel | undefined;
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
  // The request series of a label set, cached per route label (the compiled route's own object:
  // no string is built for it per request), then by a joined key; a request adds to numbers.
  let children = new WeakMap<RouteLabel, Map<string, RequestSeries>>();
  let cached = 0;

  function finishMetrics(
    direction: Direction,
    started: number,
    status: number,
    grpcStatus: string,
    src: { workload: string; namespace: string },
    dst: { workload: string; namespace: string; service: string },
    route: RouteLabel,
  ): void {
    const key = `${direction}|${src.workload}|${src.namespace}|${dst.workload}|${dst.namespace}|${dst.service}|${status}|${grpcStatus}`;
    let byKey = children.get(route);
    let c = byKey?.get(key);
    if (!c) {
      const labels = {
        direction,
        source_workload: src.workload,
        source_namespace: src.namespace,
        destination_workload: dst.workload,
        destination_namespace: dst.namespace,
        destination_service: dst.service,
        route: route.route,
        route_rule: route.rule,
        status_code: String(status),
        grpc_status: grpcStatus,
      };
      // Bounded: label sets come from the config and status codes; a flood of unknown peers
      // cannot grow this without limit.
      if (cached > 10_000) {
        children = new WeakMap();
        cached = 0;
        byKey = undefined;
      }
      if (!byKey) {
        byKey = new Map();
        children.set(route, byKey);
      }
      c = metrics.requestSeries(labels);
      byKey.set(key, c);
      cached++;
    }
    const seconds = (now() - started) / 1000;
    c.finished(seconds);
    if (direction === 'inbound') metrics.inbound.record(status, seconds);
  }

  /**
   * The one place a finished HTTP request is reported, whatever carried it: the request metrics
   * and the access-log line are written from this record only.
   */
  return function reportFinish(f: FinishRecord): void {
    const end = now();
    const started = f.started ?? end;
    finishMetrics(f.direction, started, f.status, f.grpcStatus ?? '', f.src, f.dst, f.route ?? NO_ROUTE);
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
        route: f.route?.route || undefined,
        source: `${f.src.workload}.${f.src.namespace}`,
        principal: f.principal,
        ...(f.denied
          ? { authz: 'deny', policy: f.denied.policy, rule: f.denied.rule, reason: f.denied.reason }
          : {}),
      });
  };
}
