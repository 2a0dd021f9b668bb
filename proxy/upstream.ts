// One try of an HTTP request against one upstream endpoint, over HTTP/1.1 (a pooled keep-alive
// connection) or HTTP/2 (a shared session), behind one interface so the retry loop does not care
// which. Failures are classified (connect failure, reset, refused stream) for retryOn and
// outlier detection.
import type http from 'node:http';
import type http2 from 'node:http2';
import type { Readable, Writable } from 'node:stream';
import { http as httpMod, http2 as lazyHttp2 } from './builtins.ts';
import { isEstablished, type Transport, type UpstreamAddress, whenEstablished } from './transport.ts';

export type FailureKind = 'connect-failure' | 'reset' | 'refused-stream' | 'timeout';

export class UpstreamFailure extends Error {
  readonly kind: FailureKind;
  /**
   * The request went out on a pooled keep-alive connection the upstream had just closed (the
   * classic idle-timeout race): safe to send again on a fresh connection if no body was sent.
   */
  readonly staleConnection: boolean;
  constructor(kind: FailureKind, message: string, options?: { cause?: unknown; staleConnection?: boolean }) {
    super(message, options);
    this.name = 'UpstreamFailure';
    this.kind = kind;
    this.staleConnection = options?.staleConnection ?? false;
  }
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: Readable;
  /** Resolves with the trailers once the body has ended (empty when there are none). */
  trailers(): Promise<Record<string, string>>;
}

export interface Attempt {
  /** Where the request body goes; call `whenConnected` before writing so a connect failure leaves it unread. */
  body: Writable;
  whenConnected(cb: () => void): void;
  response: Promise<UpstreamResponse>;
  abort(): void;
}

export interface AttemptRequest {
  method: string;
  path: string;
  authority: string | undefined;
  headers: Record<string, string | string[]>;
  hasBody: boolean;
}

export function attemptHttp1(
  transport: Transport,
  to: UpstreamAddress,
  req: AttemptRequest,
  maxConnections: number | undefined,
): Attempt {
  let connected = false;
  const waiters: Array<() => void> = [];
  const onConnected = () => {
    if (connected) return;
    connected = true;
    for (const w of waiters.splice(0)) w();
  };
  const headers = req.headers;
  if (req.authority !== undefined) headers.host = req.authority;
  const up = httpMod.request({
    host: to.host,
    port: to.port,
    method: req.method,
    path: req.path,
    headers,
    agent: transport.agent(to, maxConnections),
    setHost: false,
  });
  if (req.hasBody) {
    up.on('socket', (s) => {
      if (isEstablished(s)) setImmediate(onConnected);
      else whenEstablished(s, onConnected);
    });
  } else {
    // Nothing waits for the connection; errors still tell a connect failure from a reset.
    up.once('socket', (s) => {
      whenEstablished(s, () => {
        connected = true;
      });
    });
    up.end();
  }
  const response = new Promise<UpstreamResponse>((resolve, reject) => {
    up.on('response', (res: http.IncomingMessage) => {
      resolve({
        status: res.statusCode ?? 502,
        headers: res.headers as Record<string, string | string[]>,
        body: res,
        trailers: () =>
          new Promise((r) => {
            if (res.complete) r(res.trailers as Record<string, string>);
            else res.once('end', () => r(res.trailers as Record<string, string>));
            res.once('close', () => r((res.trailers ?? {}) as Record<string, string>));
          }),
      });
    });
    up.on('error', (e: NodeJS.ErrnoException) => {
      const stale = up.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE');
      reject(
        new UpstreamFailure(
          connected && !stale ? 'reset' : 'connect-failure',
          `${to.host}:${to.port}: ${e.code ?? e.message}`,
          { cause: e, staleConnection: stale },
        ),
      );
    });
  });
  response.catch(() => {});
  return {
    body: up,
    whenConnected: (cb) => (connected ? cb() : waiters.push(cb)),
    response,
    abort: () => up.destroy(),
  };
}

const H2_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

export function attemptHttp2(transport: Transport, to: UpstreamAddress, req: AttemptRequest): Attempt {
  const session = transport.session(to);
  let connected = !session.connecting;
  const waiters: Array<() => void> = [];
  const headers: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (!H2_HOP.has(k) && k !== 'te') headers[k] = v;
  if (req.headers.te === 'trailers') headers.te = 'trailers';
  headers[':method'] = req.method;
  headers[':path'] = req.path;
  headers[':scheme'] = 'http';
  headers[':authority'] = req.authority ?? `${to.host}:${to.port}`;
  const stream = session.request(headers, { endStream: !req.hasBody });
  if (!connected) {
    session.once('connect', () => {
      connected = true;
      for (const w of waiters.splice(0)) w();
    });
  }
  const response = new Promise<UpstreamResponse>((resolve, reject) => {
    const fail = (e: Error & { code?: string }) => {
      const refused = stream.rstCode === lazyHttp2().constants.NGHTTP2_REFUSED_STREAM;
      reject(
        new UpstreamFailure(
          refused ? 'refused-stream' : connected ? 'reset' : 'connect-failure',
          `${to.host}:${to.port}: ${e.code ?? e.message}`,
          { cause: e },
        ),
      );
    };
    stream.on('error', fail);
    stream.on('close', () =>
      fail(
        Object.assign(new Error('stream closed before response'), { code: `RST_STREAM ${stream.rstCode}` }),
      ),
    );
    stream.on('response', (h) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(h))
        if (!k.startsWith(':') && v !== undefined) out[k] = v as string | string[];
      let trailers: Record<string, string> = {};
      stream.on('trailers', (t) => {
        trailers = {};
        for (const [k, v] of Object.entries(t))
          if (!k.startsWith(':') && v !== undefined) trailers[k] = String(v);
      });
      resolve({
        status: Number(h[':status'] ?? 502),
        headers: out,
        body: stream,
        trailers: () =>
          new Promise((r) => {
            if (stream.readableEnded || stream.closed) r(trailers);
            else {
              stream.once('end', () => r(trailers));
              stream.once('close', () => r(trailers));
            }
          }),
      });
    });
  });
  response.catch(() => {});
  return {
    body: stream,
    whenConnected: (cb) => (connected ? cb() : waiters.push(cb)),
    response,
    abort: () => stream.close(lazyHttp2().constants.NGHTTP2_CANCEL),
  };
}
