// The node:http / HTTP/2 side of a request, whatever decided it: the headers forwarded, the
// proxy's own error answers, an upstream response written downstream, and the ALLOW_ANY
// passthrough to an address outside the mesh.
import type HttpTypes from 'node:http';
import type http2 from 'node:http2';
import { type Direction, H_SRC_NAMESPACE, H_SRC_WORKLOAD, headerOf, type ProxyCore } from '../context.ts';
import type { ProxyErrorCode } from '../errors.ts';
import { HOP_BY_HOP } from '../http1/codec.ts';
import { attemptHttp1, attemptHttp2, type UpstreamResponse } from '../upstream.ts';

export type DownReq = HttpTypes.IncomingMessage | http2.Http2ServerRequest;
export type DownRes = HttpTypes.ServerResponse | http2.Http2ServerResponse;

/**
 * The request headers sent upstream: no pseudo-headers, no hop-by-hop ones (nor those
 * `connection` names), and no sidecar metadata from the caller (the outbound side sets its own).
 */
export function forwardHeaders(h: HttpTypes.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const conn = headerOf(h, 'connection');
  const extra = conn
    ? new Set(
        conn
          .toLowerCase()
          .split(',')
          .map((s) => s.trim()),
      )
    : undefined;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':') || HOP_BY_HOP.has(k) || extra?.has(k)) continue;
    if (k === H_SRC_WORKLOAD || k === H_SRC_NAMESPACE) continue;
    out[k] = v;
  }
  if (headerOf(h, 'te')?.includes('trailers')) out.te = 'trailers';
  return out;
}

export function requestHasBody(req: DownReq): boolean {
  if (req.httpVersionMajor === 2) return !(req as http2.Http2ServerRequest).stream.endAfterHeaders;
  const cl = headerOf(req.headers, 'content-length');
  return (cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** The proxy's own answer (counted in weft_proxy_errors_total); a response already started is reset. */
export function sendError(
  core: ProxyCore,
  res: DownRes,
  status: number,
  code: ProxyErrorCode | 'WEFT_FAULT',
  message: string,
  direction: Direction,
): void {
  core.metrics.proxyErrors.inc({ direction, code });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  try {
    (res as HttpTypes.ServerResponse).writeHead(status, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      'weft-error': code,
      ...(core.draining && res.req.httpVersionMajor < 2 ? { connection: 'close' } : {}),
    });
    res.end(body);
  } catch {
    res.destroy();
  }
}

/** Writes an upstream response downstream: status, headers, streamed body, trailers. Returns grpc-status. */
export async function relayResponse(
  core: ProxyCore,
  res: DownRes,
  up: UpstreamResponse,
  h2: boolean,
): Promise<string> {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
  let grpcStatus = (up.headers['grpc-status'] as string | undefined) ?? '';
  const wantsTrailers =
    !!up.headers.trailer ||
    (up.headers['content-type'] as string | undefined)?.startsWith('application/grpc');
  if (wantsTrailers && !h2)
    headers.trailer = (up.headers.trailer as string | undefined) ?? 'grpc-status, grpc-message';
  // Over HTTP/2 the declaration passes on (it is not connection-specific there): a mux peer's
  // HTTP/1.1 client is then sent the trailers an HTTP/1.1 app declared.
  if (h2 && up.headers.trailer !== undefined) headers.trailer = up.headers.trailer;
  if (core.draining && !h2) headers.connection = 'close';
  if (h2) {
    (res as http2.Http2ServerResponse).writeHead(up.status, headers);
  } else {
    (res as HttpTypes.ServerResponse).writeHead(up.status, headers);
  }
  await new Promise<void>((resolve, reject) => {
    up.body.on('error', reject);
    up.body.on('data', (chunk: Buffer) => {
      if (!(res as HttpTypes.ServerResponse).write(chunk)) {
        up.body.pause();
        res.once('drain', () => up.body.resume());
      }
    });
    up.body.once('end', resolve);
    up.body.once('close', () =>
      up.body.readableEnded ? resolve() : reject(new Error('upstream closed mid-body')),
    );
  });
  const trailers = await up.trailers();
  if (Object.keys(trailers).length > 0) {
    if (trailers['grpc-status'] !== undefined) grpcStatus = trailers['grpc-status'];
    if (h2 || res.getHeader('trailer') !== undefined || wantsTrailers) res.addTrailers(trailers);
  }
  res.end();
  return grpcStatus;
}

/** ALLOW_ANY for an address outside the mesh: forward to the original destination as-is. */
export async function forwardPassthrough(
  core: ProxyCore,
  req: DownReq,
  res: DownRes,
  dst: { address: string; port: number },
  headers: Record<string, string | string[]>,
  authority: string | undefined,
  path: string,
  h2: boolean,
): Promise<void> {
  const to = { host: dst.address, port: dst.port, meshed: false };
  const areq = {
    method: req.method ?? 'GET',
    path,
    authority,
    headers,
    hasBody: requestHasBody(req),
  };
  const { transport } = core;
  const attempt = h2 ? attemptHttp2(transport, to, areq) : attemptHttp1(transport, to, areq, undefined);
  if (areq.hasBody) attempt.whenConnected(() => req.pipe(attempt.body));
  res.once('close', () => {
    if (!res.writableFinished) attempt.abort();
  });
  try {
    await relayResponse(core, res, await attempt.response, h2);
  } catch (e) {
    sendError(
      core,
      res,
      502,
      'WEFT_UPSTREAM_CONNECT',
      `${dst.address}:${dst.port}: ${(e as Error).message}`,
      'outbound',
    );
  }
}
