// The one raw downstream connection loop of the HTTP/1.1 fast paths, inbound and outbound: request
// heads read with the strict codec (400, 431, and 408 for every head that comes too slowly),
// the target admitted (normalized), the adapter asked for a decision, pipelined requests answered
// in order, keep-alive and drain, and the hand-over to node:http at a request boundary (HTTP/1.0,
// upgrades, `Expect`, tracing on, a route the fast path does not serve). What happens to a
// forwarded request upstream is exchange.ts's.
import type net from 'node:net';
import { DEFAULT_PATH_NORMALIZATION, type NormalizedTarget, normalizeTarget } from '../pathnorm.ts';
import { ReplayBuffer } from '../resilience/replay.ts';
import { BodyTracker, badTarget, bare, type Head, headerValue, plain, readHead } from './codec.ts';
import { type Downstream, type Exchange, forward } from './exchange.ts';

/** Bytes read ahead (a pipelined request, a body not yet sendable) before the client is paused. */
const MAX_WAITING = 64 * 1024;

/** What the adapter decided for one request. */
export type Decision<T> =
  | { kind: 'handoff' }
  /** Answered by the proxy at once (the request body is read and dropped); `headers`: extra lines. */
  | { kind: 'reply'; status: number; code: string; message: string; headers?: string }
  | { kind: 'forward'; exchange: Exchange<T> };

export interface ConnDeps<T> {
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
  /** A request head was read (the dispatcher's first-head timer stops). */
  onHead(): void;
  draining(): boolean;
  error(code: string): void;
}

/**
 * Listens on a downstream connection: data, close, errors, and the idle timeout (which spares a
 * connection in the middle of a request). Returns the function that stops listening, for a
 * hand-over to node:http.
 */
function listenDownstream(
  socket: net.Socket,
  idleTimeoutMs: number,
  busy: () => boolean,
  onData: (chunk: Buffer) => void,
  onClose: () => void,
): () => void {
  socket.on('data', onData);
  socket.on('close', onClose);
  socket.on('error', () => socket.destroy());
  socket.setTimeout(idleTimeoutMs, () => {
    if (!busy()) socket.destroy();
  });
  return () => {
    socket.off('data', onData);
    socket.off('close', onClose);
    socket.removeAllListeners('error');
    socket.setTimeout(0);
    socket.removeAllListeners('timeout');
  };
}

/**
 * The time a client has to send one request head, from its first byte to its end: for every
 * request of a connection, as node:http's headersTimeout (the dispatcher's own timer covers the
 * first one only). `waiting` starts it unless it runs; `stop` ends it.
 */
function headClock(ms: number, expire: () => void): { waiting(): void; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  return {
    waiting() {
      if (timer !== undefined || ms <= 0) return;
      timer = setTimeout(() => {
        timer = undefined;
        expire();
      }, ms);
      timer.unref();
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

/**
 * Where a request is admitted: `head.target` becomes the normalized target (`admit`, else BASE),
 * or the request is answered 400 and false returned (the connection is closing).
 */
function admitHead<T>(head: Head, socket: net.Socket, d: ConnDeps<T>): boolean {
  const host = headerValue(head.headers, 'host');
  const admitted =
    d.admit?.(head.target, host) ?? normalizeTarget(head.target, DEFAULT_PATH_NORMALIZATION, host);
  if (!admitted.ok) {
    badTarget(socket, admitted.reason, d.error);
    return false;
  }
  head.target = admitted.target;
  return true;
}

/** Serves one downstream connection on the fast path; `initial` holds bytes already read. */
export function serveConnection<T>(socket: net.Socket, initial: Buffer, d: ConnDeps<T>): void {
  let buf: Buffer<ArrayBufferLike> = initial;
  let state: 'head' | 'body' | 'wait' | 'closed' = 'head';
  let reqBody: BodyTracker | undefined;
  /**
   * Where request body bytes go now; undefined (or destroyed: its try failed) while the next try
   * is not connected yet (they wait in buf), or when dropped.
   */
  let sink: net.Socket | undefined;
  /** The body bytes passed to a try so far, as received (framed), kept for a second try. */
  let kept: ReplayBuffer | undefined;
  let dropping = false;
  let pumping = false;

  /** The connection as the exchange of the current request sees it. */
  const dn: Downstream = {
    socket,
    keepAlive: true,
    inRequest: false,
    onAbort: undefined,
    draining: d.draining,
    error: d.error,
    bodyDone: () => reqBody?.done ?? true,
    replayable: () => kept?.replayable ?? true,
    bodyTo(s) {
      sink = s;
      // A later try: the bytes the earlier ones were sent first (replayable, or it is not tried).
      if (kept && kept.bytes > 0 && !kept.replayInto(s)) waitForDrain(s, socket);
      socket.resume();
      if (state === 'body' && !pumping) pump();
    },
    dropBody() {
      kept = undefined;
      if (reqBody?.done ?? true) return;
      sink = undefined;
      dropping = true;
      // The client may be paused for a sink that is gone (its 'drain' never comes).
      socket.resume();
      if (state === 'body' && !pumping) pump();
    },
    next() {
      dn.inRequest = false;
      dn.onAbort = undefined;
      kept = undefined;
      if (!dn.keepAlive || d.draining()) {
        state = 'closed';
        socket.end();
        return;
      }
      if (state === 'wait') {
        state = 'head';
        socket.resume();
        pump();
      }
    },
    destroy() {
      state = 'closed';
      socket.destroy();
    },
  };

  const clock = headClock(d.headersTimeoutMs, () => {
    if (state === 'head') fatal(408);
  });
  const headDone = () => {
    clock.stop();
    d.onHead();
  };
  socket.setNoDelay(true);
  const detach = listenDownstream(
    socket,
    d.idleTimeoutMs,
    () => dn.inRequest,
    (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      pump();
    },
    () => {
      state = 'closed';
      clock.stop();
      dn.onAbort?.();
    },
  );

  function fatal(status: number): void {
    d.error(`HTTP_${status}`);
    socket.end(bare(status));
    state = 'closed';
    socket.destroySoon();
  }

  function handoff(): void {
    state = 'closed';
    detach();
    d.handoff(socket, buf);
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
          handoff();
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
          handoff();
          return;
        }
        const conn = (headerValue(head.headers, 'connection') ?? '').toLowerCase();
        dn.keepAlive = !conn.includes('close') && !d.draining();
        buf = buf.subarray(r.size);
        reqBody = new BodyTracker(framing);
        state = 'body';
        sink = undefined;
        if (decision.kind === 'reply') {
          // Answered at once; the body (if any) is read and dropped so the connection goes on.
          d.error(decision.code);
          socket.write(
            plain(decision.status, decision.code, decision.message, !dn.keepAlive, decision.headers),
          );
          dropping = true;
          if (!dn.keepAlive) {
            state = 'closed';
            socket.end();
            return;
          }
          continue;
        }
        dropping = false;
        dn.inRequest = true;
        kept = hasBody ? new ReplayBuffer() : undefined;
        forward(dn, head, hasBody, decision.exchange);
        continue;
      }
      if (state === 'body') {
        if (buf.length > 0 && !reqBody!.done) {
          if ((!sink || sink.destroyed) && !dropping) {
            // Not connected yet (or its try failed, the next not connected yet): the body waits
            // here (read no further than a bound).
            if (buf.length > MAX_WAITING) socket.pause();
            return;
          }
          const rest = passBody(buf, reqBody!, sink, socket, dropping ? undefined : kept);
          if (!rest) {
            sink?.destroy();
            fatal(400);
            return;
          }
          buf = rest;
        }
        if (reqBody!.done) {
          dropping = false;
          // The response may have finished first (an early answer): then go on at once.
          state = dn.inRequest ? 'wait' : 'head';
          continue;
        }
        return;
      }
      // wait: a pipelined next request sits in buf until this response is done.
      if (buf.length > MAX_WAITING) socket.pause();
      return;
    }
  }

  pump();
}

/**
 * Moves the body bytes at the start of `buf` to `sink` (dropped when there is none), keeping them
 * in `kept` for a second try, pausing `from` while the sink is full. Returns what is left (the
 * next request), undefined on bad chunking.
 */
function passBody(
  buf: Buffer,
  body: BodyTracker,
  sink: net.Socket | undefined,
  from: net.Socket,
  kept: ReplayBuffer | undefined,
): Buffer | undefined {
  let n: number;
  try {
    n = body.feed(buf);
  } catch {
    return undefined;
  }
  if (n === 0) return buf;
  const bytes = buf.subarray(0, n);
  kept?.append(bytes);
  if (sink && !sink.destroyed && !sink.write(bytes)) waitForDrain(sink, from);
  return buf.subarray(n);
}

/** `from` is paused until `sink` drains (a sink destroyed meanwhile: bodyTo or dropBody resumes it). */
function waitForDrain(sink: net.Socket, from: net.Socket): void {
  from.pause();
  sink.once('drain', () => from.resume());
}
