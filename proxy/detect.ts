// Protocol detection from the first bytes a client sends, and the Service appProtocol that
// overrides it. Detection needs at most 24 bytes (the HTTP/2 preface).
export type Protocol = 'http1' | 'h2' | 'tls' | 'tcp';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const H2_PREFACE_LENGTH = H2_PREFACE.length;
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const MAX_METHOD = 8;

/** Classifies the first bytes; 'more' means the bytes so far are a prefix of several answers. */
export function detectProtocol(buf: Buffer): Protocol | 'more' {
  if (buf.length === 0) return 'more';
  if (buf[0] === 0x16) {
    if (buf.length < 2) return 'more';
    return buf[1] === 0x03 ? 'tls' : 'tcp';
  }
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n)))
    return buf.length >= H2_PREFACE.length ? 'h2' : 'more';
  // An HTTP/1 request line starts with a method token and a space.
  const head = buf.subarray(0, MAX_METHOD + 1).toString('latin1');
  for (const m of METHODS) {
    if (head.length > m.length) {
      if (head.startsWith(`${m} `)) return 'http1';
    } else if (`${m} `.startsWith(head)) {
      return 'more';
    }
  }
  return 'tcp';
}

/**
 * The protocol a Service port's appProtocol names, or undefined to detect. Unknown values mean
 * opaque TCP: an appProtocol the proxy does not speak must never be parsed as HTTP.
 */
export function protocolForAppProtocol(appProtocol: string | undefined): Protocol | undefined {
  if (!appProtocol) return undefined;
  switch (appProtocol.toLowerCase()) {
    case 'http':
    case 'http1':
    case 'http/1.1':
    case 'ws':
    case 'websocket':
      return 'http1';
    case 'http2':
    case 'h2c':
    case 'grpc':
    case 'kubernetes.io/h2c':
      return 'h2';
    case 'tls':
    case 'https':
    case 'kubernetes.io/wss':
      return 'tls';
    default:
      return 'tcp';
  }
}

/**
 * Ports where the server speaks first (MySQL, SMTP, SSH, FTP, POP3, IMAP, …): no detection, so
 * the server's greeting is never delayed waiting for client bytes that will not come.
 */
export const SERVER_FIRST_PORTS: ReadonlySet<number> = new Set([21, 22, 25, 110, 143, 587, 3306, 4222]);
