// An inbound node:http / HTTP/2 request: the one authorization request (inbound/admission.ts),
// then the app on loopback in the app's own protocol (appproto.ts), with one resend when a pooled
// connection turned out closed by the app.
import { denialMessage } from '../authz/enforce.ts';
import type { AuthzVerdict } from '../authz/matcher.ts';
import { H_DST_NAMESPACE, H_DST_WORKLOAD, inboundConn, type ProxyCore } from '../context.ts';
import { authzRequest } from '../inbound/admission.ts';
import { RESPONSE_STRIP_INBOUND, resendsStale } from '../resilience/attempts.ts';
import type { UpstreamAddress } from '../transport.ts';
import {
  type Attempt,
  type AttemptRequest,
  attemptHttp1,
  attemptHttp2,
  type UpstreamFailure,
} from '../upstream.ts';
import type { Exchange } from './exchange.ts';
import { relayResponse, requestHasBody, sendError } from './relay.ts';

export async function forwardInbound(core: ProxyCore, ex: Exchange): Promise<void> {
  const { req, res, ctx, h2, method, path, authority, headers, span, direction } = ex;
  const { id, transport } = core;
  const t = core.table;
  const verdict: AuthzVerdict = t
    ? core.authorize(
        authzRequest(inboundConn(ctx), { method, path, host: authority, headers: req.headers }),
        t.config,
      )
    : { allow: true };
  if (!verdict.allow) {
    ex.denied = verdict;
    ex.status = 403;
    span?.end(403);
    if (core.debugHeaders() && verdict.explanation && !res.headersSent)
      res.setHeader('x-weft-authz', verdict.explanation.replace(/[\r\n]/g, ' '));
    sendError(core, res, 403, 'WEFT_DENIED', denialMessage(verdict), direction);
    return;
  }
  const port = ctx.dst?.port;
  if (!port) {
    sendError(
      core,
      res,
      502,
      'WEFT_NO_ROUTE',
      'inbound connection without an original destination',
      direction,
    );
    return;
  }
  const to: UpstreamAddress = { host: core.inboundTarget, port, meshed: false };
  // HTTP/2 from the caller is spoken to the app only if the app speaks it (else HTTP/1.1); a
  // mux connection's streams are an HTTP/1.1 app's requests.
  const upH2 =
    h2 && !ctx.muxed && (await core.appProtocols.of(t?.config, ctx.dst?.address ?? '', port)) !== 'http1';
  if (res.destroyed) return;
  const hasBody = requestHasBody(req);
  const areq: AttemptRequest = { method, path, authority, headers, hasBody };
  let bodyStarted = false;
  let current: Attempt | undefined;
  res.once('close', () => {
    if (!res.writableFinished) current?.abort();
  });
  // Two tries at most: the second only when a pooled connection turned out closed by the app.
  for (let i = 0; i < 2; i++) {
    const attempt = upH2 ? attemptHttp2(transport, to, areq) : attemptHttp1(transport, to, areq, undefined);
    current = attempt;
    if (hasBody) {
      attempt.whenConnected(() => {
        if (bodyStarted || res.destroyed) return;
        bodyStarted = true;
        req.pipe(attempt.body);
      });
    }
    try {
      const up = await attempt.response;
      ex.status = up.status;
      for (const h of RESPONSE_STRIP_INBOUND) delete up.headers[h];
      up.headers[H_DST_WORKLOAD] = id.workload;
      up.headers[H_DST_NAMESPACE] = id.namespace;
      ex.grpcStatus = await relayResponse(core, res, up, h2);
      span?.end(up.status);
      return;
    } catch (e) {
      const f = e as UpstreamFailure;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (f.staleConnection && !res.destroyed && resendsStale(method, !bodyStarted, i > 0)) continue;
      ex.status = 502;
      span?.end(502);
      sendError(
        core,
        res,
        502,
        f.kind === 'connect-failure' ? 'WEFT_UPSTREAM_CONNECT' : 'WEFT_UPSTREAM_RESET',
        `local app: ${f.message}`,
        direction,
      );
      return;
    }
  }
}
