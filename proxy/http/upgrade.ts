// WebSocket and other HTTP/1.1 upgrades: the request is admitted like any other (path
// normalization; inbound the authorization request, outbound the same plan with its rate limit,
// fault and request limit), then after the handshake bytes go both ways.
import type HttpTypes from 'node:http';
import type { Duplex } from 'node:stream';
import { denialMessage } from '../authz/enforce.ts';
import { type Direction, headerOf, inboundConn, type ProxyCore, serviceLabel } from '../context.ts';
import type { ProxyErrorCode } from '../errors.ts';
import { badTarget, plain } from '../http1/codec.ts';
import { authzRequest } from '../inbound/admission.ts';
import { rawHeaderLines, redirectRaw } from '../outbound/apply.ts';
import { type OutboundPlan, planOutbound } from '../outbound/plan.ts';
import { spliced } from '../tcp/tcp.ts';
import type { UpstreamAddress } from '../transport.ts';

export function handleUpgrade(
  core: ProxyCore,
  direction: Direction,
  req: HttpTypes.IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  const { metrics, endpoints } = core;
  const ctx = core.ctxOf.get(req.socket);
  let to: UpstreamAddress | undefined;
  let service = 'unknown';
  const t = core.table;
  const admitted = core.admit(req.url, headerOf(req.headers, 'host'));
  if (!admitted.ok) {
    badTarget(socket, admitted.reason, (code) => metrics.proxyErrors.inc({ direction, code }));
    return;
  }
  const path = admitted.target;
  if (direction === 'inbound') {
    if (t) {
      const v = core.authorize(
        authzRequest(inboundConn(ctx), {
          method: req.method ?? 'GET',
          path,
          host: headerOf(req.headers, 'host'),
          headers: req.headers,
        }),
        t.config,
      );
      if (!v.allow) {
        metrics.proxyErrors.inc({ direction, code: 'WEFT_DENIED' });
        const body = `${denialMessage(v)}\n`;
        socket.end(
          `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: WEFT_DENIED\r\nconnection: close\r\n\r\n${body}`,
        );
        return;
      }
    }
    if (ctx?.dst) to = { host: core.inboundTarget, port: ctx.dst.port, meshed: false };
    if (!to) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    connectUpgrade(core, direction, req, socket, head, path, to, service, undefined);
    return;
  }
  // Outbound: the same plan as any request (rate limit, fault, request limit included).
  const plan = planOutbound(
    t,
    {
      dst: ctx?.dst,
      authority: headerOf(req.headers, 'host'),
      http: { method: req.method ?? 'GET', path, header: (n) => headerOf(req.headers, n) },
    },
    endpoints.planState,
  );
  const refuse = (status: number, code: ProxyErrorCode | 'WEFT_FAULT', message: string) => {
    metrics.proxyErrors.inc({ direction, code });
    socket.end(plain(status, code, message, true), () => socket.destroy());
  };
  if (plan.kind === 'refuse') {
    refuse(plan.status, plan.code, plan.message);
    return;
  }
  if (plan.kind === 'passthrough') {
    to = { host: plan.dst.address, port: plan.dst.port, meshed: false };
    connectUpgrade(core, direction, req, socket, head, path, to, service, undefined);
    return;
  }
  if (plan.kind === 'handoff') return;
  if (plan.kind === 'redirect') {
    socket.end(redirectRaw(plan));
    return;
  }
  service = serviceLabel(plan.target);
  const go = () => {
    if (socket.destroyed) return;
    const cluster = endpoints.enterCluster(plan);
    if (!cluster) {
      refuse(503, 'WEFT_OVERFLOW', `${serviceLabel(plan.backend)} is at its request limit`);
      return;
    }
    const picked = endpoints.pickEndpoint(plan.backend, plan.route, new Set(), plan.hashKey);
    if (!picked) {
      cluster.active--;
      refuse(503, 'WEFT_NO_ENDPOINTS', `${serviceLabel(plan.backend)} has no ready endpoints`);
      return;
    }
    connectUpgrade(
      core,
      direction,
      req,
      socket,
      head,
      path,
      picked.address,
      service,
      () => cluster.active--,
      plan,
    );
  };
  if (plan.delayMs > 0) {
    socket.on('error', () => socket.destroy());
    setTimeout(go, plan.delayMs);
  } else go();
}

/** Carries an upgrade (WebSocket, h2c) to `to`: the request head, then bytes both ways. */
function connectUpgrade(
  core: ProxyCore,
  direction: Direction,
  req: HttpTypes.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  path: string,
  to: UpstreamAddress,
  service: string,
  onClose: (() => void) | undefined,
  plan?: Extract<OutboundPlan, { kind: 'forward' }>,
): void {
  // An upgrade is HTTP/1.1 until the 101: to a peer sidecar it goes as weft-http/1.1 (never the
  // mux, never weft-tcp), so the peer parses and authorizes it as a request.
  const up = core.transport.connect(to, 'http1');
  // With a plan, the route's URLRewrite and request header edits (outbound/apply.ts).
  const lines = [`${req.method} ${plan?.path ?? path} HTTP/1.1`, ...rawHeaderLines(req.rawHeaders, plan)];
  up.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (head.length > 0) up.write(head);
  const close = spliced(core, socket, up, onClose);
  up.on('error', () => {
    if (!socket.destroyed && up.bytesRead === 0)
      socket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    close();
  });
  socket.on('error', close);
  up.on('close', close);
  socket.on('close', close);
  socket.pipe(up).pipe(socket);
  core.metrics.tcpOpened.inc({
    direction,
    source_workload: core.id.workload,
    source_namespace: core.id.namespace,
    destination_service: service,
  });
}
