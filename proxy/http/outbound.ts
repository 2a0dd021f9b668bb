// An outbound node:http / HTTP/2 request: the plan decides (service, route, rate limit, fault,
// backend: outbound/plan.ts); this carries it out — the fault delay, the backend's request limit,
// mirroring, then the tries on picked endpoints under the route's retry and timeout policy
// (resilience/attempts.ts), and the answer relayed with the upstream's workload noted.
import type HttpTypes from 'node:http';
import {
  H_DST_NAMESPACE,
  H_DST_WORKLOAD,
  H_SRC_NAMESPACE,
  H_SRC_WORKLOAD,
  headerOf,
  type ProxyCore,
  serviceLabel,
} from '../context.ts';
import { forwardHead, redirectAnswer, responseHead } from '../outbound/apply.ts';
import { planOutbound } from '../outbound/plan.ts';
import { backendAttempts, failureReply, unsentByPeer } from '../resilience/attempts.ts';
import { ReplayBuffer } from '../resilience/replay.ts';
import { unreachableCode } from '../transport.ts';
import {
  type Attempt,
  type AttemptRequest,
  attemptHttp2,
  attemptSidecar,
  UpstreamFailure,
  type UpstreamResponse,
} from '../upstream.ts';
import type { Exchange } from './exchange.ts';
import { forwardPassthrough, relayResponse, requestHasBody, sendError } from './relay.ts';

export async function forwardOutbound(core: ProxyCore, ex: Exchange): Promise<void> {
  const { req, res, ctx, h2, method, path, authority, headers, span, direction } = ex;
  const { id, endpoints, transport, metrics } = core;
  const plan = planOutbound(
    core.table,
    { dst: ctx.dst, authority, http: { method, path, header: (n) => headerOf(req.headers, n) } },
    endpoints.planState,
  );
  if (plan.kind === 'passthrough') {
    await forwardPassthrough(core, req, res, plan.dst, headers, authority, path, h2);
    return;
  }
  if (plan.kind === 'refuse') {
    if (plan.target) ex.target = plan.target;
    ex.route = plan.route?.label;
    if (plan.code === 'WEFT_RATE_LIMITED' || plan.code === 'WEFT_FAULT') ex.status = plan.status;
    sendError(core, res, plan.status, plan.code, plan.message, direction);
    return;
  }
  if (plan.kind === 'handoff') return; // not asked for: node:http serves every route
  if (plan.kind === 'redirect') {
    ex.target = plan.target;
    ex.route = plan.route.label;
    ex.status = plan.status;
    const a = redirectAnswer(plan);
    (res as HttpTypes.ServerResponse).writeHead(a.status, a.headers);
    res.end();
    return;
  }
  const { route, backend } = plan;
  ex.target = plan.target;
  ex.route = route.label;
  if (plan.delayMs > 0) {
    await new Promise((r) => setTimeout(r, plan.delayMs));
    if (res.destroyed) return;
  }
  const target = { service: backend.service, port: backend.port };
  ex.target = target;
  const cb = route.source?.circuitBreaker;
  const cluster = endpoints.enterCluster(plan);
  if (!cluster) {
    ex.status = 503;
    sendError(core, res, 503, 'WEFT_OVERFLOW', `${serviceLabel(target)} is at its request limit`, direction);
    return;
  }

  // The route's header edits first: the sidecar's own metadata is set after, never edited.
  const head = forwardHead(plan, headers);
  headers[H_SRC_WORKLOAD] = id.workload;
  headers[H_SRC_NAMESPACE] = id.namespace;
  const hasBody = requestHasBody(req);
  const areq: AttemptRequest = { method, ...head, headers, hasBody };

  // Mirrors: copies of the request, fire and forget; their responses are discarded.
  const mirrors: Attempt[] = [];
  for (const mt of plan.mirrors) {
    const m = endpoints.pickEndpoint({ ...mt, weight: 1 }, route, new Set(), undefined);
    if (!m) continue;
    const copy = h2
      ? attemptHttp2(transport, m.address, areq)
      : attemptSidecar(transport, m.address, areq, undefined);
    copy.response.then(
      (r) => r.body.resume(),
      () => {},
    );
    if (hasBody) mirrors.push(copy);
  }

  const service = serviceLabel(target);
  const tries = backendAttempts(endpoints, plan, cluster, {
    method,
    service,
    now: core.now,
    countRetry: (outcome) => metrics.retries.inc({ destination_service: service, outcome }),
  });
  let bodyStarted = false;
  /** The body read so far, kept for a second try (REPLAY_LIMIT); let go once no try follows. */
  let kept = hasBody ? new ReplayBuffer() : undefined;
  /** The try the body goes to, once connected; none between tries. */
  let sending: Attempt | undefined;
  let reqEnded = false;
  /** The client paused until the try's body drains (if that try is still the one sent to). */
  const waitForDrain = (a: Attempt) => {
    req.pause();
    a.body.once('drain', () => {
      if (sending === a) req.resume();
    });
  };
  /**
   * The proxy answers itself (no try follows): the rest of a body begun is read and dropped, so a
   * request paused between tries or for a failed try's body does not stall its connection.
   */
  const dropRest = () => {
    sending = undefined;
    kept = undefined;
    if (bodyStarted && !reqEnded) req.resume();
  };
  /** One chunk of the request body: kept, copied to the mirrors, written to the current try. */
  const sendChunk = (chunk: Buffer) => {
    kept?.append(chunk);
    for (const m of mirrors) {
      if (m.body.writableLength < 1 << 20) m.body.write(chunk);
      else m.abort();
    }
    const a = sending;
    if (a && !a.body.destroyed && !a.body.write(chunk)) waitForDrain(a);
  };
  let current: Attempt | undefined;
  const overall = new Promise<'timeout'>((resolve) =>
    tries.deadline(() => {
      current?.abort();
      resolve('timeout');
    }),
  );
  res.once('close', () => {
    cluster.active--;
    tries.stopDeadline();
    if (!res.writableFinished) current?.abort();
  });

  for (;;) {
    const tr = tries.pick();
    if (!tr) {
      ex.status = 503;
      dropRest();
      sendError(core, res, 503, 'WEFT_NO_ENDPOINTS', `${service} has no ready endpoints`, direction);
      return;
    }
    const picked = tr.target;
    ex.upstreamNamespace = backend.service.namespace;
    const attempt = h2
      ? attemptHttp2(transport, picked.address, areq)
      : attemptSidecar(transport, picked.address, areq, cb?.maxConnections);
    current = attempt;
    if (hasBody) {
      attempt.whenConnected(() => {
        if (current !== attempt || res.destroyed) return;
        sending = attempt;
        if (!bodyStarted) {
          bodyStarted = true;
          req.on('data', sendChunk);
          req.on('end', () => {
            reqEnded = true;
            for (const m of mirrors) m.body.end();
            if (sending && !sending.body.destroyed) sending.body.end();
          });
          return;
        }
        // A later try: the body kept so far first (the request was paused since the last try
        // ended, so all of it is kept, or it would not be tried again), then the rest.
        const flowing = kept!.replayInto(attempt.body);
        if (reqEnded) attempt.body.end();
        else if (flowing) req.resume();
        else waitForDrain(attempt);
      });
    }
    let stopPerTry: (() => void) | undefined;
    const perTryP = new Promise<'pertry'>((resolve) => {
      stopPerTry = tries.perTry(() => resolve('pertry'));
    });
    // Its endpoint gone while the try waits for its head (Endpoints.gone): ended at once.
    const goneP = new Promise<'gone'>((resolve) => {
      tr.gone = () => resolve('gone');
    });
    let gone = false;
    let up: UpstreamResponse | undefined;
    let failure: UpstreamFailure | undefined;
    try {
      const racers: Array<Promise<UpstreamResponse | 'timeout' | 'pertry' | 'gone'>> = [
        attempt.response,
        goneP,
      ];
      if (tries.timeoutMs > 0) racers.push(overall);
      if (stopPerTry) racers.push(perTryP);
      const r = await Promise.race(racers);
      if (r === 'timeout' || tries.expired) {
        tries.cancel(tr);
        attempt.abort();
        ex.status = 504;
        span?.end(504);
        dropRest();
        sendError(
          core,
          res,
          504,
          'WEFT_UPSTREAM_TIMEOUT',
          `${service} did not answer within ${tries.timeoutMs} ms`,
          direction,
        );
        return;
      }
      if (r === 'pertry') {
        attempt.abort();
        failure = new UpstreamFailure('timeout', `per-try timeout of ${tries.perTryTimeoutMs} ms`);
      } else if (r === 'gone') {
        attempt.abort();
        gone = true;
        failure = new UpstreamFailure(
          attempt.connected() ? 'reset' : 'connect-failure',
          `endpoint ${tr.key} went away while the request waited for its answer (not sent again)`,
        );
      } else {
        up = r;
      }
    } catch (e) {
      failure = e as UpstreamFailure;
    } finally {
      stopPerTry?.();
    }
    if (res.destroyed) {
      tries.cancel(tr);
      up?.body.destroy();
      return;
    }
    const gs = up ? (up.headers['grpc-status'] as string | undefined) : undefined;
    const step = tries.settle(
      tr,
      failure || !up
        ? {
            failure: failure?.kind ?? 'reset',
            stale: failure?.staleConnection === true,
            gone,
            unreachable:
              failure?.kind === 'connect-failure' &&
              unreachableCode((failure.cause as NodeJS.ErrnoException | undefined)?.code),
          }
        : unsentByPeer(
              up.status,
              headerOf(up.headers as HttpTypes.IncomingHttpHeaders, 'weft-error'),
              transport.secure(picked.address),
            )
          ? { status: up.status, grpcStatus: gs, unsent: true }
          : { status: up.status, grpcStatus: gs },
      !hasBody || !bodyStarted || kept!.replayable,
    );
    // No try follows: a body still streaming (a gRPC client stream) is not kept any longer.
    if (step === 'stop') kept = undefined;
    if (step === 'resend' || step === 'retry') {
      if (sending === attempt) {
        // This try is over: its body gets nothing more, and the request waits (paused, nothing
        // more read, so nothing more to keep) until the next try is connected and sent what was
        // kept.
        sending = undefined;
        req.pause();
        if (!attempt.body.writableFinished) attempt.abort();
      }
      up?.body.resume();
      continue;
    }
    tries.stopDeadline();
    if (failure || !up) {
      const reply = failureReply(failure?.kind ?? 'reset', gone);
      ex.status = reply.status;
      span?.end(ex.status);
      dropRest();
      sendError(
        core,
        res,
        ex.status,
        reply.code,
        `${service}: ${failure?.message ?? 'no response'}`,
        direction,
      );
      return;
    }
    ex.status = up.status;
    ex.upstreamWorkload =
      headerOf(up.headers as HttpTypes.IncomingHttpHeaders, H_DST_WORKLOAD) ??
      picked.endpoint.pod ??
      'unknown';
    ex.upstreamNamespace =
      headerOf(up.headers as HttpTypes.IncomingHttpHeaders, H_DST_NAMESPACE) ?? ex.upstreamNamespace;
    delete up.headers[H_DST_WORKLOAD];
    delete up.headers[H_DST_NAMESPACE];
    responseHead(plan, up.headers);
    try {
      ex.grpcStatus = await relayResponse(core, res, up, h2);
    } catch {
      res.destroy();
    }
    span?.end(ex.status);
    return;
  }
}
