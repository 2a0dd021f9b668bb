// The outbound HTTP/1.1 fast path: requests from the app to a Service. A thin adapter over the
// connection loop (conn.ts): the outbound plan decides (proxy/outbound/plan.ts: service, route,
// limits, fault, backend), the tries go to the backend's endpoints on pooled connections (plain,
// or mTLS to a peer sidecar) as the try driver says (proxy/resilience/attempts.ts), and one
// finish record is reported. Routes this path does not serve (mirroring, a per-endpoint connection
// limit with its queue) and passthrough are handed to the node:http path.
import type net from 'node:net';
import { SIDECAR_HEADERS } from '../../api/constants.ts';
import { serviceLabel } from '../context.ts';
import type { ProxyMetrics } from '../metrics.ts';
import type { OriginalDst, PlanState } from '../outbound/plan.ts';
import { planOutbound } from '../outbound/plan.ts';
import { backendAttempts } from '../resilience/attempts.ts';
import type { Endpoints, Picked } from '../resilience/endpoints.ts';
import type { RoutingTable } from '../table.ts';
import { isEstablished, type Transport, type UpstreamAddress, whenEstablished } from '../transport.ts';
import { headerValue } from './codec.ts';
import { type ConnDeps, type Decision, serveConnection } from './conn.ts';
import { connDeps, type FastDeps, SIDECAR_STRIP } from './deps.ts';
import type { Upstream } from './exchange.ts';
import { KeyedPool } from './pool.ts';

export interface OutboundDeps extends FastDeps {
  table(): RoutingTable | undefined;
  planState: PlanState;
  endpoints: Endpoints;
  transport: Transport;
  retries: ProxyMetrics['retries'];
}

/** The outbound fast path of one proxy: `serve` takes a connection after detection. */
export function outboundFastPath(d: OutboundDeps) {
  const pool = new KeyedPool<string>(d.connLimits.idleTimeoutMs);
  const self = d.identity;
  const srcHeaders = `${SIDECAR_HEADERS.srcWorkload}: ${self.workload}\r\n${SIDECAR_HEADERS.srcNamespace}: ${self.namespace}\r\n`;
  const poolKey = (a: UpstreamAddress) => `${a.host}:${a.port}${d.transport.secure(a) ? `|${a.peerId}` : ''}`;
  const upstream: Upstream<Picked> = {
    acquire: (p) => pool.acquireWith(poolKey(p.address), () => d.transport.connect(p.address, 'http1')),
    established: isEstablished,
    whenEstablished,
    release: (p, s) => pool.park(poolKey(p.address), s),
    workload: (p) => p.endpoint.pod,
  };

  function serve(
    socket: net.Socket,
    dst: OriginalDst | undefined,
    initial: Buffer,
    onHead: () => void,
    handoff: (buffered: Buffer) => void,
  ): void {
    const loop: ConnDeps<Picked> = {
      ...connDeps(d, 'outbound', onHead, handoff),
      decide(head): Decision<Picked> {
        const method = head.method;
        const path = head.target;
        const authority = headerValue(head.headers, 'host');
        const record = { direction: 'outbound' as const, method, path, authority, src: self };
        const plan = planOutbound(
          d.table(),
          {
            dst,
            authority,
            http: { method, path, header: (n) => headerValue(head.headers, n.toLowerCase()) },
            // Route filters (redirect, rewrite, header edits: carried out once, by node:http),
            // mirroring and per-endpoint connection limits (with their queue) stay on the node:http
            // path, and so do requests to peer sidecars when they go as HTTP/2 streams (the mux).
            serves: (route) =>
              !route.filtered &&
              route.source?.circuitBreaker?.maxConnections === undefined &&
              !d.transport.muxing,
          },
          d.planState,
        );
        if (plan.kind === 'handoff' || plan.kind === 'passthrough' || plan.kind === 'redirect')
          return { kind: 'handoff' };
        const route = plan.kind === 'refuse' ? plan.route?.label : plan.route.label;
        const reply = (status: number, code: string, message: string, service: string): Decision<Picked> => {
          d.report({
            ...record,
            started: undefined,
            status,
            dst: { workload: 'unknown', namespace: 'unknown', service },
            route,
          });
          return { kind: 'reply', status, code, message };
        };
        if (plan.kind === 'refuse')
          return reply(plan.status, plan.code, plan.message, serviceLabel(plan.target));
        const { backend } = plan;
        const service = serviceLabel({ service: backend.service, port: backend.port });
        const cluster = d.endpoints.enterCluster(plan);
        if (!cluster) return reply(503, 'WEFT_OVERFLOW', `${service} is at its request limit`, service);
        d.started();
        const started = d.now();
        const tries = backendAttempts(d.endpoints, plan, cluster, {
          method,
          service,
          now: d.now,
          countRetry: (outcome) => d.retries.inc({ destination_service: service, outcome }),
        });
        return {
          kind: 'forward',
          exchange: {
            extraHeaders: srcHeaders,
            strip: SIDECAR_STRIP,
            responseHeaders: '',
            delayMs: plan.delayMs,
            service,
            tries,
            upstream,
            finish(f) {
              cluster.active--;
              d.ended();
              d.report({
                ...record,
                started,
                status: f.status,
                grpcStatus: f.grpcStatus,
                dst: {
                  workload: f.upstreamWorkload ?? 'unknown',
                  namespace: f.upstreamNamespace ?? backend.service.namespace,
                  service,
                },
                route,
              });
            },
          },
        };
      },
    };
    serveConnection(socket, initial, loop);
  }

  return {
    serve,
    /** Drops idle connections to the endpoints `keep` says no to ("address:port" keys). */
    retain: (keep: (key: string) => boolean) => pool.retain((k) => keep(k.split('|', 1)[0]!)),
    close: () => pool.close(),
  };
}
