// One node:http or HTTP/2 request, whatever its direction: the target admitted (path
// normalization), the caller, the trace span, the forwarded headers; then the inbound admission
// (http/inbound.ts) or the outbound plan (http/outbound.ts) carries it out, and when the response
// closes, one finish record is reported (metrics and access log, telemetry/finish.ts).
import type http2 from 'node:http2';
import type { AuthzVerdict } from '../authz/matcher.ts';
import { type Direction, headerOf, type ProxyCore, serviceLabel } from '../context.ts';
import { callerOf } from '../inbound/admission.ts';
import type { RouteLabel, ServiceTarget } from '../table.ts';
import type { Exchange } from './exchange.ts';
import { forwardInbound } from './inbound.ts';
import { forwardOutbound } from './outbound.ts';
import { type DownReq, type DownRes, forwardHeaders, sendError } from './relay.ts';

export async function handleHttp(
  core: ProxyCore,
  direction: Direction,
  req: DownReq,
  res: DownRes,
): Promise<void> {
  const { id } = core;
  const started = core.now();
  core.begin();
  let finished = false;
  const h2 = req.httpVersionMajor === 2;
  const ctx = (h2
    ? core.ctxOf.get((req as http2.Http2ServerRequest).stream.session as object)
    : core.ctxOf.get(req.socket)) ?? {
    direction,
    dst: undefined,
    target: undefined,
  };
  const authority = h2 ? headerOf(req.headers, ':authority') : headerOf(req.headers, 'host');
  const method = req.method ?? 'GET';
  const admitted = core.admit(req.url, authority);
  const path = admitted.ok ? admitted.target : (req.url ?? '/');
  const src =
    direction === 'inbound'
      ? callerOf(ctx.peer, (n) => headerOf(req.headers, n))
      : { workload: id.workload, namespace: id.namespace };
  const x = {
    status: 0,
    grpcStatus: '',
    target: undefined as ServiceTarget | undefined,
    route: undefined as RouteLabel | undefined,
    upstreamWorkload: 'unknown',
    upstreamNamespace: 'unknown',
    denied: undefined as AuthzVerdict | undefined,
  };

  const finish = () => {
    if (finished) return;
    finished = true;
    core.done();
    const dst =
      direction === 'inbound'
        ? { workload: id.workload, namespace: id.namespace, service: `${ctx.dst?.port ?? 0}` }
        : { workload: x.upstreamWorkload, namespace: x.upstreamNamespace, service: serviceLabel(x.target) };
    core.reportFinish({
      direction,
      started,
      status: x.status || res.statusCode || 0,
      grpcStatus: x.grpcStatus,
      method,
      authority,
      path,
      src,
      dst,
      route: x.route,
      principal: ctx.peer,
      denied: x.denied,
    });
  };
  // 'close' follows 'finish' and also comes for aborted responses: one listener does for both.
  res.once('close', finish);
  if (!admitted.ok) {
    x.status = 400;
    sendError(core, res, 400, 'WEFT_BAD_PATH', `bad request target: ${admitted.reason}`, direction);
    return;
  }

  const headers = forwardHeaders(req.headers);
  const span = core.tracing?.start(direction, method, authority, path, headerOf(req.headers, 'traceparent'));
  if (span) headers.traceparent = span.traceparent;
  const ex: Exchange = Object.assign(x, {
    direction,
    req,
    res,
    h2,
    ctx,
    method,
    authority,
    path,
    headers,
    span,
  });
  if (direction === 'inbound') await forwardInbound(core, ex);
  else await forwardOutbound(core, ex);
}
