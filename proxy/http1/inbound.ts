// The inbound HTTP/1.1 fast path: requests from a peer sidecar (or a plaintext caller) for the
// local app. A thin adapter over the connection loop (conn.ts): the inbound admission decides
// (one authorization request, proxy/inbound/admission.ts), the request goes to the app on a
// pooled loopback connection (one try, resent once if a pooled connection was stale), and one
// finish record is reported (proxy/telemetry/finish.ts).
import type net from 'node:net';
import type { ProxyConfig } from '../../api/index.ts';
import { denialMessage } from '../authz/enforce.ts';
import type { Authorize, AuthzVerdict } from '../authz/matcher.ts';
import { H_DST_NAMESPACE, H_DST_WORKLOAD } from '../context.ts';
import { authzRequest, callerOf, type InboundConn } from '../inbound/admission.ts';
import { Attempts, RESPONSE_STRIP_INBOUND } from '../resilience/attempts.ts';
import { headerValue } from './codec.ts';
import { type ConnDeps, type Decision, serveConnection } from './conn.ts';
import { connDeps, type FastDeps, SIDECAR_STRIP } from './deps.ts';
import type { Exchange, Upstream } from './exchange.ts';
import { LocalPool } from './pool.ts';

export interface InboundDeps extends FastDeps {
  /** Where the app listens (loopback by default). */
  appHost: string;
  authorize: Authorize | undefined;
  config(): ProxyConfig | undefined;
  /** True in debug log level: denials carry `x-weft-authz: <explanation>`. */
  debugHeaders(): boolean;
}

/** The inbound fast path of one proxy: `serve` takes a connection after detection. */
export function inboundFastPath(d: InboundDeps) {
  const pool = new LocalPool(d.appHost, Math.min(d.connLimits.idleTimeoutMs, 4_000));
  const responseHeaders = `${H_DST_WORKLOAD}: ${d.identity.workload}\r\n${H_DST_NAMESPACE}: ${d.identity.namespace}\r\n`;
  const upstream: Upstream<number> = {
    acquire: (port) => pool.acquire(port),
    established: (s) => !s.connecting,
    whenEstablished: (s, cb) => (s.connecting ? s.once('connect', cb) : cb()),
    release: (port, s) => pool.park(port, s),
    workload: () => d.identity.workload,
  };
  /** The local app as the one target of a try. */
  const local = (port: number) => ({
    pick: () => ({ target: port, key: `${port}` }),
    size: () => 1,
  });
  const localFailure = (kind: string) => ({
    status: 502,
    code: kind === 'connect-failure' ? 'WEFT_UPSTREAM_CONNECT' : 'WEFT_UPSTREAM_RESET',
  });

  function serve(
    socket: net.Socket,
    conn: InboundConn,
    initial: Buffer,
    onHead: () => void,
    handoff: (buffered: Buffer) => void,
  ): void {
    const dst = { workload: d.identity.workload, namespace: d.identity.namespace, service: `${conn.port}` };
    const target = local(conn.port);
    const loop: ConnDeps<number> = {
      ...connDeps(d, 'inbound', onHead, handoff),
      decide(head): Decision<number> {
        const method = head.method;
        const path = head.target;
        const authority = headerValue(head.headers, 'host');
        const src = callerOf(conn.peer, (n) => headerValue(head.headers, n));
        const record = {
          direction: 'inbound' as const,
          method,
          path,
          authority,
          src,
          dst,
          principal: conn.peer,
        };
        const config = d.config();
        if (d.authorize && config) {
          const h: Record<string, string> = {};
          for (const [k, v] of head.headers) h[k] = h[k] === undefined ? v : `${h[k]}, ${v}`;
          const v: AuthzVerdict = d.authorize(
            authzRequest(conn, { method, path, host: h.host, headers: h }),
            config,
          );
          if (!v.allow) {
            d.report({ ...record, started: undefined, status: 403, denied: v });
            return {
              kind: 'reply',
              status: 403,
              code: 'WEFT_DENIED',
              message: denialMessage(v),
              headers:
                d.debugHeaders() && v.explanation
                  ? `x-weft-authz: ${v.explanation.replace(/[\r\n]/g, ' ')}\r\n`
                  : '',
            };
          }
        }
        d.started();
        const started = d.now();
        const exchange: Exchange<number> = {
          extraHeaders: '',
          strip: SIDECAR_STRIP,
          responseHeaders,
          stripResponse: RESPONSE_STRIP_INBOUND,
          delayMs: 0,
          tries: new Attempts({ method, retries: undefined, timeoutMs: 0, now: d.now }, target),
          upstream,
          service: 'local app',
          failureReply: localFailure,
          closeOnFailure: true,
          finish(f) {
            d.ended();
            d.report({ ...record, started, status: f.status });
          },
        };
        return { kind: 'forward', exchange };
      },
    };
    serveConnection(socket, initial, loop);
  }

  return { serve, close: () => pool.close() };
}
