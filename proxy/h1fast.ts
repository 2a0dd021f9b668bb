// The inbound HTTP/1.1 fast path: requests arriving for the local app are forwarded on raw
// sockets with a small parser instead of node:http (about half the CPU per request, see
// docs/proxy.md). Only the plain case is handled here: anything else (upgrades, Expect:
// 100-continue, HTTP/1.0, tracing on) is handed, at a request boundary, to the node:http path.
// Bodies are streamed in both directions with their framing (Content-Length, chunked, or until
// close) passed through as is; requests may be pipelined and are answered in order.
// Over 400 lines: it also holds the HTTP/1.1 codec (head parser, body framing) and the
// connection pools that the outbound fast path (h1out.ts) imports; splitting codec and pools
// into http/ is the open part of issue 12.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { SIDECAR_HEADERS } from '../api/constants.ts';
import { http } from './builtins.ts';
import { DEFAULT_PATH_NORMALIZATION, type NormalizedTarget, normalizeTarget } from './pathnorm.ts';

const CRLF2 = Buffer.from('\r\n\r\n');
const MAX_WAITING = 64 * 1024;
/** Methods that may be sent twice (RFC 9110 §9.2.2): the only ones resent after a stale connection. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export type Framing =
  | { kind: 'none' }
  | { kind: 'length'; remaining: number }
  | { kind: 'chunked' }
  | { kind: 'close' };

/** token characters (RFC 9110 §5.6.2): header names, methods, chunk extension names and values. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
  TCHAR[c.charCodeAt(0)] = 1;
/**
 * One field line (RFC 9112 §5): a token, a colon right after it, and a value of visible
 * characters, spaces, tabs and obs-text (trimmed by fieldLine). No CR, LF, NUL or other
 * control character anywhere (a bare LF is a line end to a lenient parser: a smuggled header), no
 * whitespace before the colon, no obs-fold (a line starting with whitespace has no name).
 */
const FIELD_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)$/;
/** Trailer fields that would change the framing: refused (as llhttp does). */
const FRAMING_FIELDS: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding']);
const MAX_TRAILER_BYTES = 16 * 1024;

/**
 * A field line's [lowercased name, value without the spaces and tabs around it]; undefined when
 * it is not a valid one. The trimming is a loop: a regular expression for it backtracks
 * quadratically on a long run of spaces (a second per 16 KiB line).
 */
function fieldLine(line: string): [string, string] | undefined {
  const m = FIELD_LINE.exec(line);
  if (!m) return undefined;
  const v = m[2]!;
  let a = 0;
  let b = v.length;
  while (a < b && (v.charCodeAt(a) === 0x20 || v.charCodeAt(a) === 0x09)) a++;
  while (b > a && (v.charCodeAt(b - 1) === 0x20 || v.charCodeAt(b - 1) === 0x09)) b--;
  return [m[1]!.toLowerCase(), v.slice(a, b)];
}

// chunked body states
const C = {
  SizeFirst: 0, // the first hex digit of a chunk size
  Size: 1, // more hex digits, ';' or CR
  ExtStart: 2, // just after ';'
  ExtName: 3,
  ExtValueStart: 4, // just after '='
  ExtValue: 5,
  ExtQuoted: 6,
  ExtQuotedPair: 7,
  ExtQuotedDone: 8,
  SizeLf: 9, // the LF after a size line
  Data: 10,
  DataCr: 11,
  DataLf: 12,
  TrailerStart: 13, // the start of a trailer line, or the final CRLF
  Trailer: 14,
  TrailerLf: 15,
  EndLf: 16,
} as const;

/**
 * Counts the bytes of one message body as they pass, to find where it ends. Chunked framing is
 * checked as strictly as llhttp does (RFC 9112 §7.1): hex sizes without prefix, sign or spaces
 * (at most 2^53 - 1), extensions of tokens or quoted strings, CRLF after every line and chunk,
 * trailers as valid field lines that do not touch the framing. A bare CR or LF anywhere is refused.
 */
export class BodyTracker {
  done: boolean;
  #kind: Framing['kind'];
  #remaining: number;
  #state: number = C.SizeFirst;
  #line = '';
  #trailerBytes = 0;

  constructor(f: Framing) {
    this.#kind = f.kind;
    this.#remaining = f.kind === 'length' ? f.remaining : 0;
    this.done = f.kind === 'none' || (f.kind === 'length' && f.remaining === 0);
  }

  /** How many bytes of `b` belong to the body; sets `done` at its end. Throws on bad chunking. */
  feed(b: Buffer): number {
    if (this.done) return 0;
    if (this.#kind === 'close') return b.length;
    if (this.#kind === 'length') {
      const n = Math.min(this.#remaining, b.length);
      this.#remaining -= n;
      if (this.#remaining === 0) this.done = true;
      return n;
    }
    let i = 0;
    while (i < b.length && !this.done) {
      if (this.#state === C.Data) {
        const n = Math.min(this.#remaining, b.length - i);
        i += n;
        this.#remaining -= n;
        if (this.#remaining === 0) this.#state = C.DataCr;
        continue;
      }
      this.#step(b[i++]!);
    }
    return i;
  }

  #step(c: number): void {
    switch (this.#state) {
      case C.SizeFirst:
      case C.Size: {
        const d = hexDigit(c);
        if (d >= 0) {
          this.#remaining = this.#remaining * 16 + d;
          if (this.#remaining > Number.MAX_SAFE_INTEGER) throw new Error('chunk size too large');
          this.#state = C.Size;
        } else if (this.#state === C.SizeFirst) throw new Error('bad chunk size');
        else if (c === 0x3b /* ; */) this.#state = C.ExtStart;
        else if (c === 0x0d) this.#state = C.SizeLf;
        else throw new Error('bad chunk size');
        return;
      }
      case C.ExtStart:
        if (c === 0x20 || c === 0x0d) throw new Error('bad chunk extension');
        this.#state = C.ExtName;
        this.#step(c);
        return;
      case C.ExtName:
        if (TCHAR[c]) return;
        if (c === 0x3d /* = */) this.#state = C.ExtValueStart;
        else this.#extEnd(c);
        return;
      case C.ExtValueStart:
        if (c === 0x22 /* " */) {
          this.#state = C.ExtQuoted;
          return;
        }
        this.#state = C.ExtValue;
        this.#step(c);
        return;
      case C.ExtValue:
        if (!TCHAR[c]) this.#extEnd(c);
        return;
      case C.ExtQuoted:
        if (c === 0x22) this.#state = C.ExtQuotedDone;
        else if (c === 0x5c /* \ */) this.#state = C.ExtQuotedPair;
        else if (!(c === 0x09 || (c >= 0x20 && c !== 0x7f))) throw new Error('bad chunk extension');
        return;
      case C.ExtQuotedPair:
        if (!(c === 0x09 || (c >= 0x20 && c !== 0x7f))) throw new Error('bad chunk extension');
        this.#state = C.ExtQuoted;
        return;
      case C.ExtQuotedDone:
        this.#extEnd(c);
        return;
      case C.SizeLf:
        if (c !== 0x0a) throw new Error('chunk size line without CRLF');
        if (this.#remaining === 0) this.#state = C.TrailerStart;
        else this.#state = C.Data;
        return;
      case C.DataCr:
        if (c !== 0x0d) throw new Error('chunk data without CRLF');
        this.#state = C.DataLf;
        return;
      case C.DataLf:
        if (c !== 0x0a) throw new Error('chunk data without CRLF');
        this.#state = C.SizeFirst;
        return;
      case C.TrailerStart:
        if (c === 0x0d) {
          this.#state = C.EndLf;
          return;
        }
        this.#state = C.Trailer;
        this.#step(c);
        return;
      case C.Trailer:
        if (++this.#trailerBytes > MAX_TRAILER_BYTES) throw new Error('trailers too large');
        if (c === 0x0d) this.#state = C.TrailerLf;
        else if (c === 0x0a) throw new Error('trailer line without CR');
        else this.#line += String.fromCharCode(c);
        return;
      case C.TrailerLf: {
        if (c !== 0x0a) throw new Error('trailer line without CRLF');
        const f = fieldLine(this.#line);
        this.#line = '';
        if (!f || FRAMING_FIELDS.has(f[0])) throw new Error('bad trailer field');
        this.#state = C.TrailerStart;
        return;
      }
      case C.EndLf:
        if (c !== 0x0a) throw new Error('chunked body without final CRLF');
        this.done = true;
        return;
    }
  }

  /** After an extension name or value: another extension, or the end of the size line. */
  #extEnd(c: number): void {
    if (c === 0x3b) this.#state = C.ExtStart;
    else if (c === 0x0d) this.#state = C.SizeLf;
    else throw new Error('bad chunk extension');
  }
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

export interface Head {
  method: string;
  target: string;
  minor: number;
  /** [lowercased name, value] in order. */
  headers: Array<[string, string]>;
}

/** The methods llhttp knows (node:http's list): any other is refused as llhttp does. */
const KNOWN_METHODS: ReadonlySet<string> = new Set(http.METHODS);
/**
 * method SP request-target SP HTTP-version (RFC 9112 §3; several spaces pass, as llhttp lets
 * them). The target is visible ASCII only; its form is checked below. HTTP/1.0 and 1.1 only.
 */
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +([\x21-\x7e]+) +HTTP\/1\.([01])$/;
/** origin-form, asterisk-form or absolute-form (authority-form is CONNECT's, handed over). */
const TARGET_FORM = /^(?:[/*]|[A-Za-z]+:\/\/)/;

/**
 * Parses a request head (without the final CRLFCRLF) as strictly as llhttp does (RFC 9112);
 * undefined when malformed.
 */
export function parseRequestHead(text: string): Head | undefined {
  const lines = text.split('\r\n');
  const m = REQUEST_LINE.exec(lines[0]!);
  if (!m || !KNOWN_METHODS.has(m[1]!)) return undefined;
  if (m[1] !== 'CONNECT' && !TARGET_FORM.test(m[2]!)) return undefined;
  const headers: Array<[string, string]> = [];
  for (let i = 1; i < lines.length; i++) {
    const f = fieldLine(lines[i]!);
    if (!f) return undefined;
    headers.push(f);
  }
  return { method: m[1]!, target: m[2]!, minor: Number(m[3]), headers };
}

function get(h: Array<[string, string]>, name: string): string | undefined {
  for (const [k, v] of h) if (k === name) return v;
  return undefined;
}

/**
 * Body framing of a message from its headers (RFC 9112 §6); undefined when contradictory or
 * malformed, as llhttp decides: Transfer-Encoding with Content-Length, more than one
 * Content-Length (even equal), a Content-Length that is not all digits, chunked applied twice or
 * not last (a request must end with chunked; a response without chunked is read until close), an
 * empty Transfer-Encoding line. Every Transfer-Encoding line counts, in order.
 */
export function framingOf(h: Array<[string, string]>, isResponse: boolean): Framing | undefined {
  let te: string | undefined;
  let cl: string | undefined;
  let cls = 0;
  for (const [k, v] of h) {
    if (k === 'transfer-encoding') {
      if (v === '') return undefined;
      te = te === undefined ? v : `${te},${v}`;
    } else if (k === 'content-length') {
      cls++;
      cl = v;
    }
  }
  if (te !== undefined) {
    if (cls > 0) return undefined;
    const codings = te.split(',').map((c) => c.trim().toLowerCase());
    const chunked = codings.filter((c) => c === 'chunked').length;
    if (chunked === 1 && codings[codings.length - 1] === 'chunked') return { kind: 'chunked' };
    return isResponse && chunked === 0 ? { kind: 'close' } : undefined;
  }
  if (cls > 1) return undefined;
  if (cl !== undefined) {
    const n = Number(cl);
    if (!/^\d+$/.test(cl) || !Number.isSafeInteger(n)) return undefined;
    return { kind: 'length', remaining: n };
  }
  return isResponse ? { kind: 'close' } : { kind: 'none' };
}

/**
 * Moves the body bytes at the start of `buf` to `sink` (dropped when there is none), pausing
 * `from` while the sink is full. Returns what is left (the next request), undefined on bad chunking.
 */
export function passBody(
  buf: Buffer,
  body: BodyTracker,
  sink: net.Socket | undefined,
  from: net.Socket,
): Buffer | undefined {
  let n: number;
  try {
    n = body.feed(buf);
  } catch {
    return undefined;
  }
  if (n > 0 && sink && !sink.destroyed && !sink.write(buf.subarray(0, n))) {
    from.pause();
    sink.once('drain', () => from.resume());
  }
  return buf.subarray(n);
}

/** What the bytes at the start of a downstream buffer are: a request head ready, or not. */
export type HeadRead =
  | { kind: 'more' }
  | { kind: 'error'; status: 400 | 431 }
  /** A request the fast path does not take (HTTP/1.0, Upgrade, Expect): hand the connection over. */
  | { kind: 'handoff' }
  | { kind: 'head'; head: Head; framing: Framing /** bytes of the head, CRLFCRLF included */; size: number };

/** A CR not followed by LF, or an LF not preceded by CR: no strict head goes on after one. */
const BARE_CR_OR_LF = /\r(?!\n|$)|(?:^|[^\r])\n/;

/**
 * Reads a request head from `buf` (empty lines before it are skipped, as RFC 9112 §2.2 allows);
 * `headSeen` is called once its end is there (the 408 timer stops). The checks are llhttp's, and
 * a few more (see docs/proxy.md): exactly one Host in HTTP/1.1.
 */
export function readHead(buf: Buffer, maxHeaderBytes: number, headSeen: () => void): HeadRead {
  let start = 0;
  while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
  const end = buf.indexOf(CRLF2, start);
  if (end < 0) {
    if (buf.length > maxHeaderBytes) return { kind: 'error', status: 431 };
    // A head with a bare line break never ends with CRLFCRLF: refuse it now, as llhttp does.
    if (BARE_CR_OR_LF.test(buf.toString('latin1', start))) return { kind: 'error', status: 400 };
    return { kind: 'more' };
  }
  if (end + 4 > maxHeaderBytes) return { kind: 'error', status: 431 };
  headSeen();
  const head = parseRequestHead(buf.toString('latin1', start, end));
  if (!head) return { kind: 'error', status: 400 };
  if (
    head.minor === 0 ||
    head.method === 'CONNECT' ||
    get(head.headers, 'upgrade') !== undefined ||
    get(head.headers, 'expect') !== undefined
  )
    return { kind: 'handoff' };
  // RFC 9112 §3.2: an HTTP/1.1 request has one Host (node:http refuses none; two are refused
  // here too, so that the policy and the app cannot read different ones).
  if (head.headers.filter(([k]) => k === 'host').length !== 1) return { kind: 'error', status: 400 };
  const framing = framingOf(head.headers, false);
  if (!framing) return { kind: 'error', status: 400 };
  return { kind: 'head', head, framing, size: end + 4 };
}

/** Request headers about one hop (RFC 9110 §7.6.1): never forwarded. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
]);

/**
 * Listens on a downstream connection for a fast path: data, close, errors, and the idle timeout
 * (which spares a connection in the middle of a request). Returns the function that stops
 * listening, for a hand-over to node:http.
 */
export function listenDownstream(
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
 * request of a connection, as node:http's headersTimeout (the proxy's own timer covers the first
 * one only, before the fast path runs). `waiting` starts it unless it runs; `stop` ends it.
 */
export function headClock(ms: number, expire: () => void): { waiting(): void; stop(): void } {
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

/** Idle keep-alive upstream connections by key (an endpoint and how it is reached). */
export class KeyedPool<K> {
  readonly #idle = new Map<K, net.Socket[]>();
  readonly #drops = new WeakMap<net.Socket, () => void>();
  readonly #idleMs: number;

  constructor(idleMs: number) {
    this.#idleMs = idleMs;
  }

  /** An idle connection for `key`, or a new one from `connect`. */
  acquireWith(key: K, connect: () => net.Socket): { socket: net.Socket; reused: boolean } {
    const list = this.#idle.get(key);
    while (list && list.length > 0) {
      const s = list.pop()!;
      const drop = this.#drops.get(s);
      if (drop) {
        s.off('close', drop);
        s.off('error', drop);
        s.off('timeout', drop);
        this.#drops.delete(s);
      }
      s.setTimeout(0);
      if (!s.destroyed && s.readyState === 'open') return { socket: s, reused: true };
      s.destroy();
    }
    return { socket: connect(), reused: false };
  }

  /** Drops the idle connections of keys `keep` says no to (endpoints gone from the config). */
  retain(keep: (key: K) => boolean): void {
    for (const [k, list] of this.#idle) {
      if (keep(k)) continue;
      for (const s of list) s.destroy();
      this.#idle.delete(k);
    }
  }

  /** Takes a connection back after removing every data/end/close/error/drain listener on it. */
  release(key: K, s: net.Socket): void {
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('close');
    s.removeAllListeners('error');
    s.removeAllListeners('drain');
    this.park(key, s);
  }

  /** Takes a connection back whose user has removed its own listeners (TLS sockets keep theirs). */
  park(key: K, s: net.Socket): void {
    let list = this.#idle.get(key);
    if (!list) {
      list = [];
      this.#idle.set(key, list);
    }
    if (list.length >= 256) {
      s.destroy();
      return;
    }
    const drop = () => {
      const i = list.indexOf(s);
      if (i >= 0) list.splice(i, 1);
      s.destroy();
    };
    this.#drops.set(s, drop);
    s.on('error', drop);
    s.on('close', drop);
    s.setTimeout(this.#idleMs, drop);
    s.resume();
    list.push(s);
  }

  close(): void {
    for (const list of this.#idle.values()) for (const s of list) s.destroy();
    this.#idle.clear();
  }
}

/** Idle keep-alive connections to the local app, per port. */
export class LocalPool extends KeyedPool<number> {
  readonly #host: string;

  constructor(host: string, idleMs: number) {
    super(idleMs);
    this.#host = host;
  }

  acquire(port: number): { socket: net.Socket; reused: boolean } {
    return this.acquireWith(port, () => {
      const socket = net.connect({ host: this.#host, port });
      socket.setNoDelay(true);
      return socket;
    });
  }
}

export interface ResponseHead {
  status: number;
  /** The status line as received. */
  line: string;
  /** [lowercased name, value] per header line, in order. */
  headers: Array<[string, string]>;
  /** The header lines as received, without the status line. */
  lines: string[];
}

/** HTTP-version SP 3DIGIT SP reason-phrase (RFC 9112 §4; the reason may be absent). */
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [\t\x20-\x7e\x80-\xff]*)?$/;

/** Parses a response head (without the final CRLFCRLF), with the request heads' checks; undefined when malformed. */
export function parseResponseHead(text: string): ResponseHead | undefined {
  const lines = text.split('\r\n');
  const sm = STATUS_LINE.exec(lines[0]!);
  if (!sm) return undefined;
  const headers: Array<[string, string]> = [];
  for (let i = 1; i < lines.length; i++) {
    const f = fieldLine(lines[i]!);
    if (!f) return undefined;
    headers.push(f);
  }
  return { status: Number(sm[1]), line: lines[0]!, headers, lines: lines.slice(1) };
}

/** A header's value, several occurrences joined with ", " (as node:http does). */
export function headerValue(h: Array<[string, string]>, name: string): string | undefined {
  let out: string | undefined;
  for (const [k, v] of h) if (k === name) out = out === undefined ? v : `${out}, ${v}`;
  return out;
}

export interface FastDeps {
  port: number;
  pool: LocalPool;
  maxHeaderBytes: number;
  idleTimeoutMs: number;
  /** Time for each request head, from its first byte (408 after). */
  headersTimeoutMs: number;
  /** Extra response header lines ("name: value\r\n"), e.g. the destination workload. */
  responseHeaders: string;
  /** Request header names removed before the app (sidecar metadata). */
  strip: ReadonlySet<string>;
  /** True when this request must go the node:http way (tracing on, say). */
  handoffWanted(): boolean;
  handoff(socket: net.Socket, buffered: Buffer): void;
  /** The request target as authorized and forwarded, or why it is refused (400); absent: BASE. */
  admit?(target: string, host: string | undefined): NormalizedTarget;
  authorize:
    | ((
        method: string,
        path: string,
        headers: Array<[string, string]>,
      ) => {
        allow: boolean;
        policy?: string;
        /** The 403 body for a denial (text). */
        body?: string;
        /** Extra 403 header lines ("name: value\r\n"). */
        headers?: string;
      })
    | undefined;
  /** A request was denied by `authorize` (for metrics and the access log). */
  denied?(r: { method: string; path: string; authority: string | undefined; src: [string, string] }): void;
  onHead(): void;
  start(): void;
  finish(r: {
    status: number;
    method: string;
    path: string;
    authority: string | undefined;
    src: [string, string];
  }): void;
  draining(): boolean;
  error(code: string): void;
}

/** `src` ([workload, namespace] of the caller) updated by one request header, if it is a sidecar one. */
function sourceHeader(src: [string, string], name: string, value: string): [string, string] {
  if (name === SIDECAR_HEADERS.srcWorkload) return [value, src[1]];
  if (name === SIDECAR_HEADERS.srcNamespace) return [src[0], value];
  return src;
}

/** Answers 400 WEFT_BAD_PATH with the reason and closes: a request target that cannot be normalized. */
export function badTarget(socket: Duplex, reason: string, error: (code: string) => void): void {
  error('WEFT_BAD_PATH');
  const body = `bad request target: ${reason}\n`;
  socket.end(
    `HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: WEFT_BAD_PATH\r\nconnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

/**
 * Where a fast path admits a request: `head.target` becomes the normalized target (`d.admit`,
 * else BASE), or the request is answered 400 and false returned (the connection is closing).
 */
export function admitHead(
  head: Head,
  socket: Duplex,
  d: { admit?: FastDeps['admit']; error(code: string): void },
): boolean {
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
export function serveInbound(socket: net.Socket, initial: Buffer, d: FastDeps): void {
  let buf: Buffer<ArrayBufferLike> = initial;
  let state: 'head' | 'body' | 'wait' | 'closed' = 'head';
  let reqBody: BodyTracker | undefined;
  let up: net.Socket | undefined;
  let keepAlive = true;
  let inRequest = false;
  let denying: { body: string; headers: string } | undefined;

  const reply = (status: number, reason: string, close: boolean) => {
    d.error(`HTTP_${status}`);
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-length: 0\r\n${close ? 'connection: close\r\n' : ''}\r\n`,
    );
    if (close) {
      state = 'closed';
      socket.destroySoon();
    }
  };

  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    pump();
  };
  let abortCurrent: (() => void) | undefined;
  const clock = headClock(d.headersTimeoutMs, () => {
    if (state === 'head') reply(408, 'Request Timeout', true);
  });
  const headDone = () => {
    clock.stop();
    d.onHead();
  };
  const onClose = () => {
    state = 'closed';
    clock.stop();
    up?.destroy();
    abortCurrent?.();
  };
  socket.setNoDelay(true);
  const detach = listenDownstream(socket, d.idleTimeoutMs, () => inRequest, onData, onClose);

  function pump(): void {
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
          reply(r.status, r.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request', true);
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
        const conn = (get(head.headers, 'connection') ?? '').toLowerCase();
        keepAlive = !conn.includes('close') && !d.draining();
        if (d.authorize) {
          const v = d.authorize(head.method, head.target, head.headers);
          if (!v.allow) {
            // The body is read and dropped so the connection stays usable, then 403.
            buf = buf.subarray(r.size);
            reqBody = new BodyTracker(framing);
            denying = { body: v.body ?? '', headers: v.headers ?? '' };
            if (d.denied) {
              let src: [string, string] = ['unknown', 'unknown'];
              for (const [k, val] of head.headers) src = sourceHeader(src, k, val);
              d.denied({ method: head.method, path: head.target, authority: get(head.headers, 'host'), src });
            }
            state = 'body';
            continue;
          }
        }
        buf = buf.subarray(r.size);
        reqBody = new BodyTracker(framing);
        state = 'body';
        forward(head, framing);
        continue;
      }
      if (state === 'body') {
        if (buf.length > 0 && !reqBody!.done) {
          const rest = passBody(buf, reqBody!, up, socket);
          if (!rest) {
            up?.destroy();
            reply(400, 'Bad Request', true);
            return;
          }
          buf = rest;
        }
        if (reqBody!.done) {
          if (denying) {
            const deny = denying;
            denying = undefined;
            finishDeny(deny);
            continue;
          }
          // The response may have finished first (an early answer): then go on at once.
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

  function finishDeny(deny: { body: string; headers: string }): void {
    d.error('WEFT_DENIED');
    const body = deny.body ? `${deny.body}\n` : '';
    socket.write(
      `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: WEFT_DENIED\r\n${deny.headers}${keepAlive ? '' : 'connection: close\r\n'}\r\n${body}`,
    );
    if (!keepAlive) {
      state = 'closed';
      socket.end();
      return;
    }
    state = 'head';
  }

  function forward(head: Head, framing: Framing): void {
    inRequest = true;
    d.start();
    let src: [string, string] = ['unknown', 'unknown'];
    let authority: string | undefined;
    let out = `${head.method} ${head.target} HTTP/1.1\r\n`;
    for (const [k, v] of head.headers) {
      if (d.strip.has(k)) {
        src = sourceHeader(src, k, v);
        continue;
      }
      if (k === 'host') authority = v;
      if (k === 'connection' || k === 'keep-alive') continue;
      out += `${k}: ${v}\r\n`;
    }
    const headBytes = Buffer.from(`${out}\r\n`, 'latin1');
    const hasBody = framing.kind !== 'none' && !(framing.kind === 'length' && framing.remaining === 0);
    let triedFresh = false;
    let responded = false;
    let finished = false;
    let lastStatus = 0;
    // The client went away mid-request: account for it (499, as nginx says) so nothing leaks.
    abortCurrent = () => {
      if (finished) return;
      finished = true;
      inRequest = false;
      d.finish({ status: lastStatus || 499, method: head.method, path: head.target, authority, src });
    };

    const done = (status: number, reusable: boolean, conn: net.Socket) => {
      if (finished) return;
      finished = true;
      inRequest = false;
      d.finish({ status, method: head.method, path: head.target, authority, src });
      // The app connection carries another request only once this one's body is all sent: an
      // early answer leaves the app mid-body, where the next request would be read as body (and
      // body bytes as requests). The rest of the body is then read here and dropped.
      if (reusable && reqBody!.done) d.pool.release(d.port, conn);
      else conn.destroy();
      up = undefined;
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

    const attempt = () => {
      const { socket: conn, reused } = d.pool.acquire(d.port);
      up = conn;
      let rbuf: Buffer<ArrayBufferLike> = Buffer.alloc(0);
      let resBody: BodyTracker | undefined;
      let status = 0;
      let closeAfter = false;
      // Head and the body bytes already here leave in one segment.
      conn.cork();
      conn.write(headBytes);
      process.nextTick(() => conn.uncork());

      const fail = (e?: Error & { code?: string }) => {
        if (finished || up !== conn) return;
        if (!responded) {
          // A pooled connection the app had just closed: send again on a fresh one.
          if (
            reused &&
            !hasBody &&
            !triedFresh &&
            IDEMPOTENT.has(head.method) &&
            (e?.code === 'ECONNRESET' || e?.code === 'EPIPE' || e === undefined)
          ) {
            triedFresh = true;
            conn.destroy();
            attempt();
            return;
          }
          responded = true;
          d.error(e?.code === 'ECONNREFUSED' ? 'WEFT_UPSTREAM_CONNECT' : 'WEFT_UPSTREAM_RESET');
          const body = `local app: ${e?.code ?? 'connection closed'}\n`;
          socket.write(
            `HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: WEFT_UPSTREAM_CONNECT\r\nconnection: close\r\n\r\n${body}`,
          );
          keepAlive = false;
          done(502, false, conn);
          return;
        }
        // Mid-response: the status is out, so the connection is all we can end.
        finished = true;
        inRequest = false;
        d.finish({ status, method: head.method, path: head.target, authority, src });
        state = 'closed';
        socket.destroy();
      };
      conn.on('error', fail);
      conn.on('close', () => {
        if (resBody && !resBody.done && closeAfter) {
          // Body delimited by the close: it is complete now.
          responded = true;
          done(status, false, conn);
          return;
        }
        fail();
      });
      conn.on('data', (input: Buffer) => {
        if (finished) return;
        let chunk: Buffer<ArrayBufferLike> = input;
        if (!resBody) {
          rbuf = rbuf.length === 0 ? chunk : Buffer.concat([rbuf, chunk]);
          for (;;) {
            const end = rbuf.indexOf(CRLF2);
            if (end < 0) {
              if (rbuf.length > 64 * 1024)
                conn.destroy(Object.assign(new Error('response head too large'), { code: 'EPROTO' }));
              return;
            }
            const text = rbuf.toString('latin1', 0, end);
            const rh = parseResponseHead(text);
            if (!rh) {
              conn.destroy(Object.assign(new Error('bad response'), { code: 'EPROTO' }));
              return;
            }
            const code = rh.status;
            const headers = rh.headers;
            rbuf = rbuf.subarray(end + 4);
            if (code >= 100 && code < 200) {
              // Interim responses pass through; the final one follows.
              socket.write(`${text}\r\n\r\n`);
              continue;
            }
            status = code;
            lastStatus = code;
            responded = true;
            const f: Framing | undefined =
              head.method === 'HEAD' || code === 204 || code === 304
                ? { kind: 'none' }
                : framingOf(headers, true);
            if (!f) {
              conn.destroy(Object.assign(new Error('bad response framing'), { code: 'EPROTO' }));
              return;
            }
            const connHdr = (get(headers, 'connection') ?? '').toLowerCase();
            closeAfter = f.kind === 'close';
            const reusable = !closeAfter && !connHdr.includes('close');
            if (closeAfter) keepAlive = false;
            let outHead = `${rh.line}\r\n`;
            for (let i = 0; i < rh.lines.length; i++) {
              const k = headers[i]![0];
              if (k === 'connection' || k === 'keep-alive') continue;
              outHead += `${rh.lines[i]}\r\n`;
            }
            outHead += d.responseHeaders;
            if (!keepAlive || d.draining()) {
              keepAlive = false;
              outHead += 'connection: close\r\n';
            }
            socket.cork();
            socket.write(Buffer.from(`${outHead}\r\n`, 'latin1'));
            process.nextTick(() => socket.uncork());
            resBody = new BodyTracker(f);
            (conn as net.Socket & { weftReusable?: boolean }).weftReusable = reusable;
            if (rbuf.length === 0 && resBody.done) {
              done(status, reusable, conn);
              return;
            }
            chunk = rbuf;
            rbuf = Buffer.alloc(0);
            break;
          }
        }
        if (!resBody || chunk.length === 0) return;
        let n: number;
        try {
          n = resBody.feed(chunk);
        } catch {
          conn.destroy();
          return;
        }
        if (n > 0 && !socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          conn.pause();
          socket.once('drain', () => conn.resume());
        }
        if (resBody.done) {
          const reusable =
            (conn as net.Socket & { weftReusable?: boolean }).weftReusable === true && n === chunk.length;
          done(status, reusable, conn);
        }
      });
    };
    attempt();
  }

  pump();
}
