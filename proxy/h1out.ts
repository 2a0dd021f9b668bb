// The outbound HTTP/1.1 fast path: requests from the app to a Service are parsed, routed and
// forwarded on raw sockets (a keep-alive pool per endpoint) instead of through node:http's server
// and client, which cost most of the sidecar's CPU per request (docs/proxy.md, Benchmark). The
// policy is the proxy's (proxy/proxy.ts gives it through OutboundDeps): routing, the retry
// policy and budget, per-try and route timeouts, outlier detection, EWMA, limits, faults, rate
// limits, metrics. Cases this path does not take are handed, at a request boundary, to the
// node:http path: HTTP/1.0, upgrades, `Expect`, tracing on, traffic mirroring, a route with a
// connection limit, passthrough to addresses outside the mesh. Bodies stream in both directions
// with their framing as received; a request with a body is never sent twice once its body started
// (only a connect failure before it is retried), as on the node:http path.
// Over 400 lines: its raw connection loop (keep-alive, pipelining, tries, timeouts) is one of
// two, with h1fast.ts's; merging them is the open part of issue 12.
import type net from 'node:net';
import {
  admitHead,
  BodyTracker,
  type Framing,
  framingOf,
  type Head,
  HOP_BY_HOP,
  headClock,
  headerValue,
  listenDownstream,
  parseResponseHead,
  passBody,
  readHead,
} from './h1fast.ts';
import type { NormalizedTarget } from './pathnorm.ts';
import { type Attempts, failureReply } from './resilience/attempts.ts';

const CRLF2 = Buffer.from('\r\n\r\n');
const MAX_WAITING = 64 * 1024;

/** Request headers that describe one hop (never forwarded); framing headers pass as they are. */
const HOP = new Set([...HOP_BY_HOP].filter((h) => h !== 'transfer-encoding'));

/** How a try reaches its target: a pooled or new connection (plain TCP, or mutual TLS to a peer sidecar). */
export interface Upstream<T> {
  acquire(t: T): { socket: net.Socket; reused: boolean };
  /** Whether the connection is usable yet, and a callback for when it is. */
  established(s: net.Socket): boolean;
  whenEstablished(s: net.Socket, cb: () => void): void;
  /** Gives a connection back to the pool (the caller removed its listeners). */
  release(t: T, s: net.Socket): void;
  /** The workload behind the target, when the response does not say. */
  workload(t: T): string | undefined;
}

/** What the proxy decided for one request. */
export type Decision<T> =
  | { kind: 'handoff' }
  | { kind: 'reply'; status: number; code: string; message: string }
  | { kind: 'forward'; exchange: Exchange<T> };

export interface Exchange<T> {
  /** Extra request header lines ("name: value\r\n"), the sidecar metadata. */
  extraHeaders: string;
  /** Request header names dropped before forwarding (sidecar metadata from the app). */
  strip: ReadonlySet<string>;
  /** Wait this long first (fault injection), ms. */
  delayMs: number;
  /** The tries: targets, timeouts, resend and retry decisions (proxy/resilience/attempts.ts). */
  tries: Attempts<T>;
  upstream: Upstream<T>;
  /** Labels for the no-endpoint and timeout messages. */
  service: string;
  /** The request is over (response sent, or failed): metrics, access log, limits. */
  finish(r: {
    status: number;
    grpcStatus: string;
    upstreamWorkload: string | undefined;
    upstreamNamespace: string | undefined;
  }): void;
}

export interface OutboundDeps<T> {
  maxHeaderBytes: number;
  idleTimeoutMs: number;
  /** Time for each request head, from its first byte (408 after). */
  headersTimeoutMs: number;
  /** True when this connection must go the node:http way from now on (tracing on). */
  handoffWanted(): boolean;
  handoff(socket: net.Socket, buffered: Buffer): void;
  /** The request target as routed and forwarded, or why it is refused (400); absent: BASE. */
  admit?(target: string, host: string | undefined): NormalizedTarget;
  decide(head: Head, hasBody: boolean): Decision<T>;
  onHead(): void;
  draining(): boolean;
  error(code: string): void;
  /** The client went away: the request ends with this status (499 as nginx says, or the one sent). */
  aborted?(): void;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Serves one downstream (app → sidecar) connection on the fast path; `initial` holds bytes already read. */
/** A plain-text error response from the proxy itself, naming its code in `weft-error`. */
export function plain(status: number, code: string, message: string, close: boolean): string {
  const body = `${message}\n`;
  return `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: ${code}\r\n${close ? 'connection: close\r\n' : ''}\r\n${body}`;
}

export function serveOutbound<T>(socket: net.Socket, initial: Buffer, d: OutboundDeps<T>): void {
  let buf: Buffer<ArrayBufferLike> = initial;
  let state: 'head' | 'body' | 'wait' | 'closed' = 'head';
  let reqBody: BodyTracker | undefined;
  /** Where request body bytes go now; undefined while not connected yet (they wait in buf) or dropped. */
  let sink: net.Socket | undefined;
  let dropBody = false;
  let keepAlive = true;
  let inRequest = false;
  let abortCurrent: (() => void) | undefined;
  let pumping = false;

  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    pump();
  };
  const clock = headClock(d.headersTimeoutMs, () => {
    if (state === 'head') fatal(408);
  });
  const headDone = () => {
    clock.stop();
    d.onHead();
  };
  const onClose = () => {
    state = 'closed';
    clock.stop();
    abortCurrent?.();
  };
  const detach = listenDownstream(socket, d.idleTimeoutMs, () => inRequest, onData, onClose);

  function fatal(status: number): void {
    d.error(`HTTP_${status}`);
    socket.end(`HTTP/1.1 ${status} ${REASONS[status]}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    state = 'closed';
    socket.destroySoon();
  }

  function pump(): void {
    pumping = true;
    try {
      pumpLoop();
    } finally {
      pumping = false;
    }
  }

  function pumpLoop(): void {
    for (let guard = 0; guard < 1000; guard++) {
      if (state === 'closed') return;
      if (state === 'head') {
        const r = readHead(buf, d.maxHeaderBytes, headDone);
        if (r.kind === 'more') {
          if (buf.length > 0) clock.waiting();
          return;
        }
        clock.stop();
        if (r.kind === 'error') {
          fatal(r.status);
          return;
        }
        if (r.kind === 'handoff' || d.handoffWanted()) {
          state = 'closed';
          detach();
          d.handoff(socket, buf);
          return;
        }
        const { head, framing } = r;
        if (!admitHead(head, socket, d)) {
          state = 'closed';
          return;
        }
        const hasBody = framing.kind !== 'none' && !(framing.kind === 'length' && framing.remaining === 0);
        const decision = d.decide(head, hasBody);
        if (decision.kind === 'handoff') {
          state = 'closed';
          detach();
          d.handoff(socket, buf);
          return;
        }
        const conn = (headerValue(head.headers, 'connection') ?? '').toLowerCase();
        keepAlive = !conn.includes('close') && !d.draining();
        buf = buf.subarray(r.size);
        reqBody = new BodyTracker(framing);
        state = 'body';
        if (decision.kind === 'reply') {
          // Answered at once; the body (if any) is read and dropped so the connection goes on.
          d.error(decision.code);
          socket.write(plain(decision.status, decision.code, decision.message, !keepAlive));
          sink = undefined;
          dropBody = true;
          if (!keepAlive) {
            state = 'closed';
            socket.end();
            return;
          }
          continue;
        }
        dropBody = false;
        sink = undefined;
        forward(head, hasBody, decision.exchange);
        continue;
      }
      if (state === 'body') {
        if (buf.length > 0 && !reqBody!.done) {
          if (!sink && !dropBody) {
            // Not connected yet: the body waits here (read no further than a bound).
            if (buf.length > MAX_WAITING) socket.pause();
            return;
          }
          const rest = passBody(buf, reqBody!, sink, socket);
          if (!rest) {
            sink?.destroy();
            fatal(400);
            return;
          }
          buf = rest;
        }
        if (reqBody!.done) {
          dropBody = false;
          state = inRequest ? 'wait' : 'head';
          continue;
        }
        return;
      }
      // wait: a pipelined next request sits in buf until this response is done.
      if (buf.length > MAX_WAITING) socket.pause();
      return;
    }
  }

  /** Lets the body flow to `s` (connected): bytes waiting in buf go now. */
  function flowBodyTo(s: net.Socket): void {
    sink = s;
    socket.resume();
    if (state === 'body' && !pumping) pump();
  }

  function forward(head: Head, hasBody: boolean, x: Exchange<T>): void {
    inRequest = true;
    // The request head for the upstream: hop-by-hop headers and the app's sidecar metadata out,
    // ours in; framing (content-length, transfer-encoding) as received.
    const named = new Set(
      (headerValue(head.headers, 'connection') ?? '')
        .toLowerCase()
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean),
    );
    let out = `${head.method} ${head.target} HTTP/1.1\r\n`;
    for (const [k, v] of head.headers) {
      if (HOP.has(k) || named.has(k) || x.strip.has(k)) continue;
      out += `${k}: ${v}\r\n`;
    }
    const headBytes = Buffer.from(`${out}${x.extraHeaders}\r\n`, 'latin1');
    let finished = false;
    let responded = false;
    let bodyStarted = false;
    let status = 0;
    let current: net.Socket | undefined;
    let upstreamWorkload: string | undefined;
    let upstreamNamespace: string | undefined;
    let grpcStatus = '';

    const finish = (st: number) => {
      if (finished) return;
      finished = true;
      inRequest = false;
      x.tries.stopDeadline();
      abortCurrent = undefined;
      x.finish({ status: st, grpcStatus, upstreamWorkload, upstreamNamespace });
    };
    let delayTimer: NodeJS.Timeout | undefined;
    abortCurrent = () => {
      if (delayTimer) clearTimeout(delayTimer);
      current?.destroy();
      d.aborted?.();
      finish(status || 499);
    };
    /** The exchange is over and the downstream connection goes on (or closes). */
    const next = () => {
      if (!keepAlive || d.draining()) {
        state = 'closed';
        socket.end();
        return;
      }
      if (state === 'wait') {
        state = 'head';
        socket.resume();
        pump();
      }
    };
    /** Ends the exchange with a reply of our own (no response head sent yet). */
    const replyError = (st: number, code: string, message: string) => {
      if (responded) {
        finish(status);
        state = 'closed';
        socket.destroy();
        return;
      }
      responded = true;
      status = st;
      d.error(code);
      // The request body may still be arriving: drop it, and close if it cannot be skipped.
      if (state === 'body' && !reqBody!.done) {
        sink = undefined;
        dropBody = true;
      }
      socket.write(plain(st, code, message, !keepAlive || d.draining()));
      finish(st);
      next();
    };

    const tries = x.tries;
    tries.deadline(() => {
      current?.destroy();
      current = undefined;
      replyError(504, 'WEFT_UPSTREAM_TIMEOUT', `${x.service} did not answer within ${tries.timeoutMs} ms`);
    });

    const attempt = () => {
      if (finished) return;
      const tr = tries.pick();
      if (!tr) {
        replyError(503, 'WEFT_NO_ENDPOINTS', `${x.service} has no ready endpoints`);
        return;
      }
      const up = x.upstream;
      const { socket: conn, reused } = up.acquire(tr.target);
      current = conn;
      let established = up.established(conn);
      let stopPerTry: (() => void) | undefined;
      let rbuf: Buffer<ArrayBufferLike> = Buffer.alloc(0);
      let resBody: BodyTracker | undefined;
      let reusable = false;

      const detachUp = () => {
        conn.off('data', onUpData);
        conn.off('error', onUpError);
        conn.off('close', onUpClose);
        stopPerTry?.();
      };
      /** A failure before the response head: retry or answer with an error. */
      const failed = (kind: 'connect-failure' | 'reset' | 'timeout', code: string | undefined) => {
        detachUp();
        conn.destroy();
        if (current === conn) current = undefined;
        if (finished) {
          tries.cancel(tr);
          return;
        }
        // A pooled connection the upstream had just closed: not the endpoint's fault.
        const stale =
          reused && kind !== 'timeout' && (code === 'ECONNRESET' || code === 'EPIPE' || code === undefined);
        const step = tries.settle(tr, { failure: kind, stale }, !hasBody || !bodyStarted);
        if (step !== 'stop') {
          attempt();
          return;
        }
        const reply = failureReply(kind);
        replyError(
          reply.status,
          reply.code,
          kind === 'connect-failure'
            ? `${x.service}: ${code ?? 'connect failed'}`
            : kind === 'timeout'
              ? `${x.service}: per-try timeout of ${tries.perTryTimeoutMs} ms`
              : `${x.service}: ${code ?? 'connection closed'}`,
        );
      };
      const onUpError = (e: NodeJS.ErrnoException) => {
        if (resBody) {
          midResponseFailure();
          return;
        }
        failed(established ? 'reset' : 'connect-failure', e.code);
      };
      const onUpClose = () => {
        if (resBody) {
          if (!resBody.done && closeDelimited) {
            // A body delimited by the close: complete now.
            detachUp();
            finish(status);
            keepAlive = false;
            next();
            return;
          }
          if (!resBody.done) midResponseFailure();
          return;
        }
        failed(established ? 'reset' : 'connect-failure', undefined);
      };
      let closeDelimited = false;
      const midResponseFailure = () => {
        // The status is out: the connection is all that can end.
        detachUp();
        conn.destroy();
        finish(status);
        state = 'closed';
        socket.destroy();
      };
      const onUpData = (input: Buffer) => {
        if (finished) return;
        let chunk: Buffer<ArrayBufferLike> = input;
        if (!resBody) {
          rbuf = rbuf.length === 0 ? chunk : Buffer.concat([rbuf, chunk]);
          for (;;) {
            const end = rbuf.indexOf(CRLF2);
            if (end < 0) {
              if (rbuf.length > 64 * 1024) failed('reset', 'EPROTO');
              return;
            }
            const rh = parseResponseHead(rbuf.toString('latin1', 0, end));
            if (!rh) {
              failed('reset', 'EPROTO');
              return;
            }
            rbuf = rbuf.subarray(end + 4);
            if (rh.status >= 100 && rh.status < 200) {
              // Interim responses pass through; the final one follows.
              socket.write(`${rh.line}\r\n${rh.lines.map((l) => `${l}\r\n`).join('')}\r\n`);
              continue;
            }
            const gs = headerValue(rh.headers, 'grpc-status');
            stopPerTry?.();
            if (
              tries.settle(tr, { status: rh.status, grpcStatus: gs }, !hasBody || !bodyStarted) === 'retry'
            ) {
              detachUp();
              conn.destroy();
              if (current === conn) current = undefined;
              attempt();
              return;
            }
            const f: Framing | undefined =
              head.method === 'HEAD' || rh.status === 204 || rh.status === 304
                ? { kind: 'none' }
                : framingOf(rh.headers, true);
            if (!f) {
              failed('reset', 'EPROTO');
              return;
            }
            tries.stopDeadline();
            status = rh.status;
            grpcStatus = gs ?? '';
            responded = true;
            closeDelimited = f.kind === 'close';
            const connHdr = (headerValue(rh.headers, 'connection') ?? '').toLowerCase();
            reusable = !closeDelimited && !connHdr.includes('close');
            if (closeDelimited) keepAlive = false;
            let outHead = `${rh.line}\r\n`;
            for (let i = 0; i < rh.lines.length; i++) {
              const [k, v] = rh.headers[i] ?? ['', ''];
              if (k === 'weft-dst-workload') {
                upstreamWorkload = v;
                continue;
              }
              if (k === 'weft-dst-namespace') {
                upstreamNamespace = v;
                continue;
              }
              if (k === 'connection' || k === 'keep-alive' || k === 'proxy-connection') continue;
              outHead += `${rh.lines[i]}\r\n`;
            }
            upstreamWorkload ??= up.workload(tr.target);
            if (!keepAlive || d.draining()) {
              keepAlive = false;
              outHead += 'connection: close\r\n';
            }
            socket.cork();
            socket.write(Buffer.from(`${outHead}\r\n`, 'latin1'));
            process.nextTick(() => socket.uncork());
            resBody = new BodyTracker(f);
            if (rbuf.length === 0 && resBody.done) {
              complete(true);
              return;
            }
            chunk = rbuf;
            rbuf = Buffer.alloc(0);
            break;
          }
        }
        if (chunk.length === 0) return;
        let n: number;
        try {
          n = resBody!.feed(chunk);
        } catch {
          midResponseFailure();
          return;
        }
        if (n > 0 && !socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          conn.pause();
          socket.once('drain', () => conn.resume());
        }
        if (resBody!.done) complete(n === chunk.length);
      };
      /** The response is through: the connection goes back to the pool when it can. */
      const complete = (clean: boolean) => {
        detachUp();
        if (current === conn) current = undefined;
        // The connection carries another request only once this one's body is all sent.
        const bodySent = !hasBody || reqBody!.done;
        if (sink === conn) sink = undefined;
        if (reusable && clean && bodySent) up.release(tr.target, conn);
        else {
          if (!bodySent) dropBody = true;
          conn.destroy();
        }
        finish(status);
        next();
      };

      conn.on('data', onUpData);
      conn.on('error', onUpError);
      conn.on('close', onUpClose);
      stopPerTry = tries.perTry(() => {
        if (!resBody) failed('timeout', undefined);
      });
      // Head (and body bytes already here, once connected) leave in one segment.
      conn.cork();
      conn.write(headBytes);
      process.nextTick(() => conn.uncork());
      const go = () => {
        established = true;
        if (current !== conn || finished) return;
        if (hasBody && !reqBody!.done) {
          bodyStarted = true;
          flowBodyTo(conn);
        }
      };
      if (established) go();
      else up.whenEstablished(conn, go);
    };

    if (x.delayMs > 0) delayTimer = setTimeout(attempt, x.delayMs);
    else attempt();
  }

  pump();
}
