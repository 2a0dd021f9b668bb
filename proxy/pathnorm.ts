// Request-target normalization, applied once where a request is admitted (every transport), so
// that authorization, routing and the app all see the same path. Modes are Istio's
// meshConfig.pathNormalization, whose Envoy options they mirror:
//   NONE                      the target as received (an absolute-form target still becomes
//                             origin-form: that is framing, not normalization);
//   BASE (default)            RFC 3986 normalization: percent-encoded unreserved characters
//                             decoded (%61 → a, %2E → .), other escapes upper-cased (%2f → %2F),
//                             characters a path may not hold percent-encoded, backslashes turned
//                             into slashes, dot segments removed (/a/./b/../c → /a/c), the
//                             fragment dropped; %2F and %5C are kept as they are;
//   MERGE_SLASHES             BASE, then repeated slashes merged (//a///b → /a/b);
//   DECODE_AND_MERGE_SLASHES  %2F and %5C decoded into / first, then MERGE_SLASHES.
// Refused (the caller answers 400) in every mode but NONE: a path parameter (`;` in the path:
// servlet containers and some frameworks strip `;…` from segments before routing, so /;x/admin
// or /admin/..;/x would reach a different resource than the one authorized; a literal `;` still
// passes as %3B), a malformed escape, a control or non-ASCII character, and a target that is
// neither origin-form nor absolute-form. In every mode, an absolute-form target whose authority
// differs from the Host header is refused: the app would be asked about another host than the
// one authorization and routing saw.
// Pure: no I/O, no clock. The query is never touched.

import type { PathNormalization } from '../api/index.ts';

// Type only: a value re-exported from api/index.ts would make the sidecar load ajv and every schema.
export type { PathNormalization } from '../api/index.ts';
export const DEFAULT_PATH_NORMALIZATION: PathNormalization = 'BASE';

export type NormalizedTarget = { ok: true; target: string } | { ok: false; reason: string };

const HEX = '0123456789ABCDEF';
/** By character code: 1 unreserved (RFC 3986), 2 other characters a path holds as they are (sub-delims, ':', '@', '/'). */
const KIND = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~')
  KIND[c.charCodeAt(0)] = 1;
for (const c of "!$&'()*+,=:@/") KIND[c.charCodeAt(0)] = 2;
const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
/** A path that every mode leaves as it is: only characters held as they are, no dot segment possible. */
const PLAIN_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Removes dot segments (RFC 3986 §5.2.4) from a path starting with '/'. */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segs = path.split('/');
  let trailing = false;
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i]!;
    trailing = false;
    if (s === '.') trailing = true;
    else if (s === '..') {
      out.pop();
      trailing = true;
    } else out.push(s);
  }
  if (trailing) out.push('');
  return `/${out.join('/')}`;
}

/**
 * Normalizes a request target (`/path?query`, or absolute-form `http://host/path?query`, or `*`)
 * by `mode`. `host` is the Host header (or :authority): an absolute-form target must name the
 * same authority.
 */
export function normalizeTarget(target: string, mode: PathNormalization, host?: string): NormalizedTarget {
  if (target === '*') return { ok: true, target };
  let t = target;
  if (ABSOLUTE.test(t)) {
    const start = t.indexOf('//') + 2;
    let end = start;
    while (end < t.length && t[end] !== '/' && t[end] !== '?' && t[end] !== '#') end++;
    const authority = t.slice(start, end);
    if (host === undefined || authority.toLowerCase() !== host.toLowerCase())
      return {
        ok: false,
        reason: `the absolute-form target names ${JSON.stringify(authority)} but Host is ${JSON.stringify(host ?? '')}: send the path alone (origin-form) or the same authority in both`,
      };
    t = t.slice(end);
    if (!t.startsWith('/')) t = `/${t}`;
  }
  if (mode === 'NONE') return { ok: true, target: t };

  // Most requests: nothing to change (checked without building a new string).
  const q0 = t.indexOf('?');
  const plain = q0 >= 0 ? t.slice(0, q0) : t;
  if (
    PLAIN_PATH.test(plain) &&
    !plain.includes('/.') &&
    (mode === 'BASE' || !plain.includes('//')) &&
    !t.includes('#')
  )
    return { ok: true, target: t };

  const hash = t.indexOf('#');
  if (hash >= 0) t = t.slice(0, hash);
  const q = t.indexOf('?');
  const rawPath = q >= 0 ? t.slice(0, q) : t;
  const query = q >= 0 ? t.slice(q) : '';
  const decodeSlashes = mode === 'DECODE_AND_MERGE_SLASHES';

  let path = '';
  for (let i = 0; i < rawPath.length; i++) {
    const ch = rawPath[i]!;
    const code = rawPath.charCodeAt(i);
    if (ch === '%') {
      const hi = hexValue(rawPath.charCodeAt(i + 1));
      const lo = hexValue(rawPath.charCodeAt(i + 2));
      if (hi < 0 || lo < 0)
        return {
          ok: false,
          reason: `malformed percent-encoding at offset ${i} of the path: use %XX with two hex digits`,
        };
      const v = hi * 16 + lo;
      const decoded = String.fromCharCode(v);
      i += 2;
      if (v < 128 && KIND[v] === 1) path += decoded;
      else if (decodeSlashes && (v === 0x2f || v === 0x5c)) path += '/';
      else path += `%${HEX[hi]}${HEX[lo]}`;
    } else if (ch === '\\') path += '/';
    else if (ch === ';')
      return {
        ok: false,
        reason:
          'path parameters (";" in the path) are refused: apps strip them before routing, so the path authorized would not be the one served; send ";" as %3B',
      };
    else if (code < 128 && KIND[code]! > 0) path += ch;
    else if (code > 0x20 && code < 0x7f) path += `%${HEX[code >> 4]}${HEX[code & 15]}`;
    else
      return {
        ok: false,
        reason: `control or non-ASCII character (code ${code}) in the path: percent-encode it`,
      };
  }
  if (!path.startsWith('/'))
    return { ok: false, reason: 'the request target must start with "/" (origin-form) or be absolute-form' };
  path = removeDotSegments(path);
  if (mode !== 'BASE') path = path.replace(/\/{2,}/g, '/');
  return { ok: true, target: path + query };
}
