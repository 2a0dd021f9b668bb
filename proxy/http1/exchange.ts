// One forwarded request of the HTTP/1.1 fast paths, upstream: the request head rewritten (hop-by-hop
// headers and the client's sidecar metadata out, ours in; framing as received), each try on a
// pooled or new connection as the try driver says (proxy/resilience/attempts.ts: targets,
// per-try timeout and deadline, the stale-connection resend, retries), interim responses passed
// through, the response head checked by the codec and relayed with its body streamed, the
// connection given back to the pool when it can carry another request. A request whose body
// started is sent again only while the Downstream keeps all of it (up to REPLAY_LIMIT,
// proxy/resilience/replay.ts); a larger one is never sent twice.
import type net from 'node:net';
import { isTlsSocket } from '../builtins.ts';
import { H_DST_NAMESPACE, H_DST_WORKLOAD } from '../context.ts';
import { type Attempts, failureReply, unsentByPeer } from '../resilience/attempts.ts';
import type { TryFailureKind } from '../resilience/retry.ts';
import { unreachableCode } from '../transport.ts';
import {
  BodyTracker,
  type Framing,
  framingOf,
  type Head,
  HOP_BY_HOP,
  headerValue,
  parseResponseHead,
  plain,
} from './codec.ts';

const CRLF2 = Buffer.from('\r\n\r\n');

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

/** What the adapter decided for a forwarded request. */
export interface Exchange<T> {
  /** Extra request header lines ("name: value\r\n"), the sidecar metadata. */
  extraHeaders: string;
  /** Request header names dropped before forwarding (sidecar metadata from the client). */
  strip: ReadonlySet<string>;
  /** Extra response header lines (the answering workload, inbound). */
  responseHeaders: string;
  /** Response header names of the upstream not passed on (inbound: RESPONSE_STRIP_INBOUND). */
  stripResponse?: ReadonlySet<string>;
  /** Wait this long first (fault injection), ms. */
  delayMs: number;
  tries: Attempts<T>;
  upstream: Upstream<T>;
  /** The label of the upstream in error messages (a service, or "local app"). */
  service: string;
  /** The status and code when the last try failed before a response head (default: failureReply). */
  failureReply?: (kind: TryFailureKind, gone?: boolean) => { status: number; code: string };
  /** The client connection is closed after such a failure. */
  closeOnFailure?: boolean;
  /**
   * The request is over (response sent, or failed): metrics, access log, limits. The upstream
   * workload and namespace come from the response's sidecar headers (never passed on).
   */
  finish(r: {
    status: number;
    grpcStatus: string;
    upstreamWorkload: string | undefined;
    upstreamNamespace: string | undefined;
  }): void;
}

/** The client connection as an exchange sees it (conn.ts owns it). */
export interface Downstream {
  readonly socket: net.Socket;
  /** Whether the connection goes on after this exchange. */
  keepAlive: boolean;
  /** A request is in progress (the idle timeout spares the connection). */
  inRequest: boolean;
  /** What to do when the client goes away mid-exchange. */
  onAbort: (() => void) | undefined;
  draining(): boolean;
  error(code: string): void;
  /** Whether the request body was read to its end. */
  bodyDone(): boolean;
  /** Whether every request body byte passed to a try so far is kept (REPLAY_LIMIT), so it can go to another. */
  replayable(): boolean;
  /**
   * Request body bytes go to `s` from now on: those kept from earlier tries first, then those
   * already read, then the rest as it comes.
   */
  bodyTo(s: net.Socket): void;
  /** The rest of the request body is read and dropped. */
  dropBody(): void;
  /** The exchange is over: the next request, or the end of the connection. */
  next(): void;
  /** The connection cannot go on (a response cut short): destroyed now. */
  destroy(): void;
}

export function forward<T>(dn: Downstream, head: Head, hasBody: boolean, x: Exchange<T>): void {
  const socket = dn.socket;
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

  /** No body, its body not begun, or all of it sent so far kept. */
  const canReplay = () => !hasBody || !bodyStarted || dn.replayable();
  const finish = (st: number) => {
    if (finished) return;
    finished = true;
    dn.inRequest = false;
    dn.onAbort = undefined;
    x.tries.stopDeadline();
    x.finish({ status: st, grpcStatus, upstreamWorkload, upstreamNamespace });
  };
  let delayTimer: NodeJS.Timeout | undefined;
  // The client went away mid-request: accounted for (499, as nginx says) so nothing leaks.
  dn.onAbort = () => {
    if (delayTimer) clearTimeout(delayTimer);
    current?.destroy();
    finish(status || 499);
  };
  /** Ends the exchange with a reply of our own (no response head sent yet). */
  const replyError = (st: number, code: string, message: string) => {
    if (responded) {
      finish(status);
      dn.destroy();
      return;
    }
    responded = true;
    status = st;
    dn.error(code);
    // The request body may still be arriving: it is read and dropped.
    dn.dropBody();
    socket.write(plain(st, code, message, !dn.keepAlive || dn.draining()));
    finish(st);
    dn.next();
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
    /**
     * A failure before the response head: retry or answer with an error. `gone`: the try was
     * ended because its endpoint went away (Endpoints.gone).
     */
    const failed = (
      kind: 'connect-failure' | 'reset' | 'timeout',
      code: string | undefined,
      gone = false,
    ) => {
      detachUp();
      conn.destroy();
      if (current === conn) current = undefined;
      if (finished) {
        tries.cancel(tr);
        return;
      }
      // A pooled connection the upstream had just closed: not the endpoint's fault.
      const stale =
        !gone &&
        reused &&
        kind !== 'timeout' &&
        (code === 'ECONNRESET' || code === 'EPIPE' || code === undefined);
      const unreachable = kind === 'connect-failure' && unreachableCode(code);
      const step = tries.settle(
        tr,
        { failure: kind, stale, ...(gone ? { gone } : {}), ...(unreachable ? { unreachable } : {}) },
        canReplay(),
      );
      if (step !== 'stop') {
        attempt();
        return;
      }
      const reply = (x.failureReply ?? failureReply)(kind, gone);
      if (x.closeOnFailure) dn.keepAlive = false;
      replyError(
        reply.status,
        reply.code,
        gone
          ? `${x.service}: endpoint ${tr.key} went away while the request waited for its answer (not sent again)`
          : kind === 'connect-failure'
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
          dn.keepAlive = false;
          dn.next();
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
      dn.destroy();
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
          const unsent = unsentByPeer(rh.status, headerValue(rh.headers, 'weft-error'), isTlsSocket(conn));
          if (
            tries.settle(
              tr,
              { status: rh.status, grpcStatus: gs, ...(unsent ? { unsent } : {}) },
              canReplay(),
            ) !== 'stop'
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
          if (closeDelimited) dn.keepAlive = false;
          let outHead = `${rh.line}\r\n`;
          for (let i = 0; i < rh.lines.length; i++) {
            const [k, v] = rh.headers[i] ?? ['', ''];
            if (k === H_DST_WORKLOAD) {
              upstreamWorkload = v;
              continue;
            }
            if (k === H_DST_NAMESPACE) {
              upstreamNamespace = v;
              continue;
            }
            if (k === 'connection' || k === 'keep-alive' || k === 'proxy-connection') continue;
            if (x.stripResponse?.has(k)) continue;
            outHead += `${rh.lines[i]}\r\n`;
          }
          upstreamWorkload ??= up.workload(tr.target);
          outHead += x.responseHeaders;
          if (!dn.keepAlive || dn.draining()) {
            dn.keepAlive = false;
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
      const bodySent = !hasBody || dn.bodyDone();
      if (reusable && clean && bodySent) up.release(tr.target, conn);
      else {
        if (!bodySent) dn.dropBody();
        conn.destroy();
      }
      finish(status);
      dn.next();
    };

    tr.gone = () => {
      if (!resBody) failed(established ? 'reset' : 'connect-failure', undefined, true);
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
      // A later try after the body was all read still gets it (kept).
      if (hasBody && (bodyStarted || !dn.bodyDone())) {
        bodyStarted = true;
        dn.bodyTo(conn);
      }
    };
    if (established) go();
    else up.whenEstablished(conn, go);
  };

  if (x.delayMs > 0) delayTimer = setTimeout(attempt, x.delayMs);
  else attempt();
}
