// The HTTP/1.1 codec of the fast paths: request and response heads parsed as strictly as llhttp,
// the parser of node:http (RFC 9112; codec.test.ts is the differential contract), body
// framing and a byte-exact tracker of where a body ends, and the proxy's own short responses.
// Pure: no sockets. Over 400 lines: the chunked-body state machine is one piece with its checks.
import type { Duplex } from 'node:stream';
import { http } from '../builtins.ts';

const CRLF2 = Buffer.from('\r\n\r\n');

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

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  408: 'Request Timeout',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A plain-text error response from the proxy itself, naming its code in `weft-error`. */
export function plain(status: number, code: string, message: string, close: boolean, headers = ''): string {
  const body = message ? `${message}\n` : '';
  return `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nweft-error: ${code}\r\n${headers}${close ? 'connection: close\r\n' : ''}\r\n${body}`;
}

/** A response without a body, closing the connection (400, 408, 431 on a bad or slow head). */
export function bare(status: number): string {
  return `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`;
}

/** Answers 400 WEFT_BAD_PATH with the reason and closes: a request target that cannot be normalized. */
export function badTarget(socket: Duplex, reason: string, error: (code: string) => void): void {
  error('WEFT_BAD_PATH');
  socket.end(plain(400, 'WEFT_BAD_PATH', `bad request target: ${reason}`, true), () => socket.destroy());
}
