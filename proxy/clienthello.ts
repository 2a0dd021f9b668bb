// A small TLS ClientHello reader for the inbound listener: the proxy must know whether a TLS
// connection is a peer sidecar (ALPN offers a weft-* protocol) or the app's own TLS before it
// decides to terminate it, so it reads the first record itself, without consuming anything.
// Only what the decision needs is read (ALPN, SNI); anything malformed is "not a sidecar".

/** Most bytes a ClientHello record may take (TLS record limit plus its 5-byte header). */
export const MAX_HELLO_BYTES = 5 + 16_384;

export type HelloResult =
  | { kind: 'more'; need: number }
  | { kind: 'invalid' }
  | { kind: 'hello'; alpn: string[]; sni: string | undefined };

/**
 * Reads a ClientHello from the first bytes of a connection. `more` says how many bytes the
 * first record needs in all; `invalid` means not a (single-record) ClientHello.
 */
export function parseClientHello(buf: Buffer): HelloResult {
  if (buf.length < 5) return { kind: 'more', need: 5 };
  if (buf[0] !== 0x16 || buf[1] !== 0x03) return { kind: 'invalid' };
  const recordLen = buf.readUInt16BE(3);
  if (recordLen < 4 || recordLen > 16_384) return { kind: 'invalid' };
  if (buf.length < 5 + recordLen) return { kind: 'more', need: 5 + recordLen };
  const rec = buf.subarray(5, 5 + recordLen);
  if (rec[0] !== 0x01) return { kind: 'invalid' };
  const helloLen = (rec[1]! << 16) | (rec[2]! << 8) | rec[3]!;
  // A ClientHello split over several records is legal but no TLS stack we meet does it for
  // a hello this small; reading only the first record keeps the peek bounded.
  const body = rec.subarray(4, 4 + Math.min(helloLen, rec.length - 4));
  let p = 2 + 32; // legacy_version, random
  const u8 = () => {
    if (p + 1 > body.length) throw new RangeError('short');
    return body[p++]!;
  };
  const u16 = () => {
    if (p + 2 > body.length) throw new RangeError('short');
    const v = body.readUInt16BE(p);
    p += 2;
    return v;
  };
  const skip = (n: number) => {
    if (p + n > body.length) throw new RangeError('short');
    p += n;
  };
  try {
    skip(0);
    if (p > body.length) return { kind: 'invalid' };
    skip(u8()); // session id
    skip(u16()); // cipher suites
    skip(u8()); // compression methods
    const alpn: string[] = [];
    let sni: string | undefined;
    if (p === body.length) return { kind: 'hello', alpn, sni };
    const extEnd = p + 2 + body.readUInt16BE(p);
    p += 2;
    if (extEnd > body.length) return { kind: 'invalid' };
    while (p + 4 <= extEnd) {
      const type = u16();
      const len = u16();
      const end = p + len;
      if (end > extEnd) return { kind: 'invalid' };
      if (type === 16) {
        // application_layer_protocol_negotiation: list length, then length-prefixed names.
        let q = p + 2;
        while (q < end) {
          const n = body[q]!;
          if (q + 1 + n > end) return { kind: 'invalid' };
          alpn.push(body.toString('latin1', q + 1, q + 1 + n));
          q += 1 + n;
        }
      } else if (type === 0 && len >= 5) {
        // server_name: list length, type (0 = host_name), name length, name.
        const n = body.readUInt16BE(p + 3);
        if (body[p + 2] === 0 && p + 5 + n <= end) sni = body.toString('latin1', p + 5, p + 5 + n);
      }
      p = end;
    }
    return { kind: 'hello', alpn, sni };
  } catch {
    return { kind: 'invalid' };
  }
}

/** Whether a ClientHello's ALPN offers one of the sidecar-to-sidecar protocols. */
export function offersWeftAlpn(alpn: readonly string[]): boolean {
  return alpn.some((a) => a.startsWith('weft-'));
}
