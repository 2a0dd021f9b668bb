// One try of an HTTP request against one upstream endpoint, over HTTP/1.1 (a pooled keep-alive
// connection) or HTTP/2 (a shared session), behind one interface so the retry loop does not care
// which. Failures are classified (connect failure, reset, refused stream) for retryOn and
// outlier detection.
import type http from 'node:http';
import type http2 from 'node:http2';
import type { Readable, Writable } from 'node:stream';
import { http as httpMod, http2 as lazyHttp2 } from './builtins.ts';
import {
  isEstablished,
  type MuxSession,
  type Transport,
  type UpstreamAddress,
  whenEstablished,
} from './transport.ts';

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
  /** Whether the connection is usable yet (for mTLS: the handshake done). */
  connected(): boolean;
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
    connected: () => connected,
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
  return attemptOnSession(transport.session(to), to, req);
}

/**
 * One try of an HTTP/1.1 app's request to a peer sidecar: a stream on a mux connection when the
 * peer takes weft-h2-http/1.1, else (an older sidecar, mux off, no mTLS) HTTP/1.1 on a pooled
 * connection. `maxConnections` (a route's per-endpoint connection limit) keeps HTTP/1.1.
 */
export function attemptSidecar(
  transport: Transport,
  to: UpstreamAddress,
  req: AttemptRequest,
  maxConnections: number | undefined,
): Attempt {
  if (maxConnections !== undefined || !transport.muxes(to))
    return attemptHttp1(transport, to, req, maxConnections);
  const m = transport.mux(to);
  if (m.muxed) return countStream(m, attemptOnSession(m.session, to, req));
  // The first connection to this peer: the protocol is known once its handshake is done.
  let inner: Attempt | undefined;
  let aborted = false;
  const waiters: Array<() => void> = [];
  const response = m.ready.then(
    (muxed) => {
      if (aborted) throw new UpstreamFailure('reset', `${to.host}:${to.port}: aborted`);
      inner = muxed
        ? countStream(m, attemptOnSession(m.session, to, req))
        : attemptHttp1(transport, to, req, undefined);
      for (const w of waiters.splice(0)) inner.whenConnected(w);
      return inner.response;
    },
    (e: Error & { code?: string }) => {
      throw new UpstreamFailure('connect-failure', `${to.host}:${to.port}: ${e.code ?? e.message}`, {
        cause: e,
      });
    },
  );
  response.catch(() => {});
  return {
    get body() {
      return inner!.body;
    },
    whenConnected: (cb) => (inner ? inner.whenConnected(cb) : waiters.push(cb)),
    connected: () => inner?.connected() ?? false,
    response,
    abort: () => {
      aborted = true;
      inner?.abort();
    },
  };
}

/** Counts the attempt's stream as open on its mux connection until the stream closes. */
function countStream(m: MuxSession, a: Attempt): Attempt {
  m.streams++;
  (a.body as http2.ClientHttp2Stream).once('close', () => m.streams--);
  return a;
}

function attemptOnSession(
  session: http2.ClientHttp2Session,
  to: UpstreamAddress,
  req: AttemptRequest,
): Attempt {
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
      // A refused stream (past a GOAWAY's last stream, RFC 9113 §8.7) was not processed: it is
      // sent again on a fresh connection as a stale pooled connection's request is.
      reject(
        new UpstreamFailure(
          refused ? 'refused-stream' : connected ? 'reset' : 'connect-failure',
          `${to.host}:${to.port}: ${e.code ?? e.message}`,
          { cause: e, staleConnection: refused },
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
    connected: () => connected,
    response,
    abort: () => stream.close(lazyHttp2().constants.NGHTTP2_CANCEL),
  };
}
