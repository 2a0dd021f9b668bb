// Demo workload: calls a URL in a loop and prints one line per answer.
//   node hack/demo-apps/client.ts [url]
//   TARGET_URL (when no argument) — default http://$REVIEWS_SERVICE_HOST:$REVIEWS_SERVICE_PORT/
//   INTERVAL_MS [1000]  COUNT [0 = forever]  TIMEOUT_MS [2000]
//   PROTOCOL [http]  how each call is made (the demo server serves all three, server.ts):
//     http  GET <url> over HTTP/1.1 (a keep-alive pool, fetch)
//     grpc  the unary gRPC call /weft.demo.Echo/Echo to <url> (http://host:port) over h2c: HTTP/2
//           prior knowledge on one long-lived connection, as gRPC clients do; a new connection
//           only once the old one closed or was told to go away
//     tcp   a new TCP connection to <url> (tcp://host:port) per call: one line sent, one line read
//           ("<service> <version> <pod>"), closed
// Output, one format for the three (hack/lib/faults.ts reads it): "<n> <status> <service>
// <version> <pod> <ms>ms", where status is the HTTP status (200 when it went well), grpc-<code>
// (grpc-0) or ok (tcp); or "<n> <status> <what came back> <ms>ms" (an HTTP error status, a gRPC
// error code and message); or "<n> error <message>" (no answer: refused, reset, closed, timed out).
import { lookup as dnsLookup } from 'node:dns/promises';
import http2 from 'node:http2';
import net from 'node:net';

const env = process.env;
const fallback = env.REVIEWS_SERVICE_HOST
  ? `http://${env.REVIEWS_SERVICE_HOST}:${env.REVIEWS_SERVICE_PORT ?? 80}/`
  : '';
const url = process.argv[2] ?? env.TARGET_URL ?? fallback;
if (!url) {
  process.stderr.write('usage: client.ts <url>  (or TARGET_URL, or a reviews Service in the namespace)\n');
  process.exit(2);
}
const interval = Number(env.INTERVAL_MS ?? 1000);
const count = Number(env.COUNT ?? 0);
const timeout = Number(env.TIMEOUT_MS ?? 2000);
const protocol = env.PROTOCOL ?? 'http';

async function httpCall(): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeout) });
  const text = await res.text();
  let summary = text.trim().slice(0, 200);
  try {
    const j = JSON.parse(text) as { service?: string; version?: string; pod?: string };
    summary = `${j.service} ${j.version} ${j.pod}`;
  } catch {}
  return `${res.status} ${summary}`;
}

const timedOut = () => new Error(`timeout: no answer within ${timeout} ms`);

/** The protobuf string fields of a message (field number → text); other wire types end it. */
function stringFields(b: Buffer): Map<number, string> {
  const out = new Map<number, string>();
  for (let i = 0; i + 1 < b.length && (b[i]! & 7) === 2; ) {
    const len = b[i + 1]!;
    out.set(b[i]! >> 3, b.subarray(i + 2, i + 2 + len).toString());
    i += 2 + len;
  }
  return out;
}

let session: http2.ClientHttp2Session | undefined;
function h2c(): http2.ClientHttp2Session {
  if (session && !session.closed && !session.destroyed) return session;
  const s = http2.connect(new URL(url).origin);
  // Its errors reach the streams on it, which name them.
  s.on('error', () => {});
  const forget = () => {
    if (session === s) session = undefined;
  };
  s.on('close', forget);
  s.on('goaway', forget);
  session = s;
  return s;
}

/** An empty EchoRequest: the 5-byte gRPC prefix (not compressed, length 0). */
const EMPTY_MESSAGE = Buffer.alloc(5);

function grpcCall(): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = h2c().request({
      ':method': 'POST',
      ':path': '/weft.demo.Echo/Echo',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let head: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders = {};
    let error: Error | undefined;
    const body: Buffer[] = [];
    const timer = setTimeout(() => {
      error = timedOut();
      req.close(http2.constants.NGHTTP2_CANCEL);
    }, timeout);
    req.on('response', (h) => {
      head = h;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (d: Buffer) => body.push(d));
    // A connection that failed cancels its streams, the cause naming why (ECONNREFUSED, …).
    req.on('error', (e: Error & { code?: string; cause?: { code?: string } }) => {
      error ??= new Error(e.cause?.code ?? e.code ?? e.message);
    });
    req.on('close', () => {
      clearTimeout(timer);
      const bytes = Buffer.concat(body);
      if (error) return reject(error);
      if (!head) return reject(new Error(`stream closed without an answer (RST_STREAM code ${req.rstCode})`));
      const status = Number(head[':status']);
      if (status !== 200) {
        const weftError = head['weft-error'] ? `${head['weft-error']} ` : '';
        return resolve(`${status} ${weftError}${bytes.toString().trim().slice(0, 200)}`);
      }
      // Trailers-only answers carry the status in the head.
      const grpcStatus = trailers['grpc-status'] ?? head['grpc-status'];
      if (grpcStatus === undefined)
        return reject(new Error(`no grpc-status (stream closed, RST_STREAM code ${req.rstCode})`));
      if (grpcStatus !== '0') {
        const message = String(trailers['grpc-message'] ?? head['grpc-message'] ?? '');
        return resolve(`grpc-${grpcStatus} ${decodeURIComponent(message).slice(0, 200)}`);
      }
      const fields = stringFields(bytes.subarray(5));
      resolve(`grpc-0 ${fields.get(1)} ${fields.get(2)} ${fields.get(3)}`);
    });
    req.end(EMPTY_MESSAGE);
  });
}

// The Service name is resolved once, as a gRPC channel or a keep-alive HTTP client in effect does:
// a lookup per connection measured the cluster's DNS, not the mesh (during a kubelet restart
// CoreDNS's own endpoint can drop for a moment: EAI_AGAIN, then a lookup that hung).
let tcpAddress: string | undefined;

async function tcpCall(n: number): Promise<string> {
  const target = new URL(url);
  tcpAddress ??= (await dnsLookup(target.hostname)).address;
  const address = tcpAddress;
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(target.port), address);
    let got = '';
    const done = (err: Error | undefined, line?: string) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(line!);
    };
    const timer = setTimeout(() => done(timedOut()), timeout);
    socket.on('connect', () => socket.write(`call ${n}\n`));
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const i = got.indexOf('\n');
      if (i < 0) return;
      const answer = got.slice(0, i).trim();
      if (answer.split(' ').length === 3) done(undefined, `ok ${answer}`);
      else done(new Error(`unexpected answer: ${answer.slice(0, 200)}`));
    });
    socket.on('error', (e: Error & { code?: string }) => done(new Error(e.code ?? e.message)));
    socket.on('close', () => done(new Error('closed before an answer')));
  });
}

/** Each protocol's call: "<status> <summary>" when something answered; throws when nothing did. */
const calls: Record<string, (n: number) => Promise<string>> = {
  http: httpCall,
  grpc: grpcCall,
  tcp: tcpCall,
};
const call = calls[protocol];
if (!call) {
  process.stderr.write(`PROTOCOL=${protocol}: must be http, grpc or tcp (or unset for http)\n`);
  process.exit(2);
}
if (protocol !== 'http' && !/^[a-z]+:\/\/[^/]+:\d+\/?$/.test(url)) {
  process.stderr.write(
    `${url}: PROTOCOL=${protocol} needs a URL with a host and a port, e.g. ${protocol === 'grpc' ? 'http://echo:9090' : 'tcp://echo:9000'}\n`,
  );
  process.exit(2);
}

let stopped = false;
process.on('SIGTERM', () => {
  stopped = true;
  session?.close();
});
for (let n = 1; !stopped && (count === 0 || n <= count); n++) {
  const t0 = performance.now();
  try {
    const answer = await call(n);
    process.stdout.write(`${n} ${answer} ${Math.round(performance.now() - t0)}ms\n`);
  } catch (err) {
    process.stdout.write(`${n} error ${(err as Error).cause ?? (err as Error).message}\n`);
  }
  if (!stopped && (count === 0 || n < count)) await new Promise((r) => setTimeout(r, interval));
}
session?.close();
