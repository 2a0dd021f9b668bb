// Demo workload: a tiny HTTP server (a "reviews"-style service) that answers with its service
// name, version and pod. Configured by environment, so a Pod spec needs no arguments:
//   PORT [8080]  SERVICE_NAME [reviews]  VERSION [v1]  POD_NAME, POD_NAMESPACE, POD_IP (downward API)
//   FILES_DIR  when set, GET /files/<name> returns that file (to show projected volumes)
//   STATUS [200]  the status of the JSON answers (500: a broken revision whose probe still passes)
//   DELAY_MS [0]  how long each JSON answer waits before it is sent (a slow revision; not /healthz)
//   GRPC_PORT [unset: off]  gRPC over h2c (HTTP/2 prior knowledge) on that port, e.g. 9090
//   TCP_PORT [unset: off]  an opaque TCP echo on that port, e.g. 9000
// GET /healthz → 200 "ok"; any other path → JSON {service, version, pod, namespace, podIP, path}.
// gRPC: one unary method, /weft.demo.Echo/Echo: any request message; the answer is the message
// {1: service, 2: version, 3: pod} (protobuf strings) with `grpc-status: 0` in the trailers and
// the pod in the `x-served-by` header; any other method gets grpc-status 12 (UNIMPLEMENTED).
// TCP: for each line received, one line back: "<service> <version> <pod>".
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server as NetServer } from 'node:net';
import { basename, join } from 'node:path';

const env = process.env;
const port = Number(env.PORT ?? 8080);
const info = {
  service: env.SERVICE_NAME ?? 'reviews',
  version: env.VERSION ?? 'v1',
  pod: env.POD_NAME ?? env.HOSTNAME ?? 'unknown',
  namespace: env.POD_NAMESPACE ?? 'default',
  podIP: env.POD_IP ?? '',
};

const status = Number(env.STATUS ?? 200);
if (!Number.isInteger(status) || status < 200 || status > 599) {
  process.stderr.write(
    `STATUS=${env.STATUS}: must be an HTTP status from 200 to 599 (e.g. 500), or unset for 200\n`,
  );
  process.exit(2);
}

const delayMs = Number(env.DELAY_MS ?? 0);
if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 60_000) {
  process.stderr.write(
    `DELAY_MS=${env.DELAY_MS}: must be a whole number of milliseconds from 0 to 60000 (e.g. 300), or unset for 0\n`,
  );
  process.exit(2);
}

/** GRPC_PORT / TCP_PORT: a port number, or undefined when unset. */
function optionalPort(name: 'GRPC_PORT' | 'TCP_PORT'): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535 || n === port) {
    process.stderr.write(
      `${name}=${v}: must be a port number from 1 to 65535 other than PORT (${port}), e.g. ${name === 'GRPC_PORT' ? 9090 : 9000}, or unset for none\n`,
    );
    process.exit(2);
  }
  return n;
}
const grpcPort = optionalPort('GRPC_PORT');
const tcpPort = optionalPort('TCP_PORT');

const server = createServer(async (req, res) => {
  const path = (req.url ?? '/').split('?')[0]!;
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (path.startsWith('/files/') && env.FILES_DIR) {
    try {
      const body = await readFile(join(env.FILES_DIR, basename(decodeURIComponent(path.slice(7)))));
      res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no such file\n');
    }
    return;
  }
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  const body = JSON.stringify({ ...info, path, uid: process.getuid?.() });
  res.writeHead(status, { 'content-type': 'application/json', 'x-served-by': info.pod }).end(`${body}\n`);
});

server.listen(port, '0.0.0.0', () => {
  process.stdout.write(`${info.service} ${info.version} (pod ${info.pod}) listening on :${port}\n`);
});

/** The gRPC and TCP servers, when asked for (closed with the HTTP server). */
const others: NetServer[] = [];
if (grpcPort !== undefined) {
  const { createServer: createH2cServer } = await import('node:http2');
  // A protobuf string field, short enough for a one-byte length.
  const field = (n: number, s: string) => {
    const b = Buffer.from(s).subarray(0, 127);
    return Buffer.concat([Buffer.from([(n << 3) | 2, b.length]), b]);
  };
  const reply = Buffer.concat([field(1, info.service), field(2, info.version), field(3, info.pod)]);
  const message = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), reply]);
  message.writeUInt32BE(reply.length, 1);
  const grpc = createH2cServer();
  grpc.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    if (headers[':path'] !== '/weft.demo.Echo/Echo') {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': '12',
          'grpc-message': 'unknown method',
        },
        { endStream: true },
      );
      return;
    }
    // Unary: the answer once the request message is all read.
    stream.resume();
    stream.on('end', () => {
      if (stream.destroyed) return;
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'x-served-by': info.pod },
        { waitForTrailers: true },
      );
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(message);
    });
  });
  grpc.listen(grpcPort, '0.0.0.0', () => process.stdout.write(`gRPC (h2c) listening on :${grpcPort}\n`));
  others.push(grpc);
}
if (tcpPort !== undefined) {
  const { createServer: createTcpServer } = await import('node:net');
  const tcp = createTcpServer((socket) => {
    socket.on('error', () => {});
    let pending = '';
    socket.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      if (pending.length > 4096) socket.destroy();
      for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
        pending = pending.slice(i + 1);
        socket.write(`${info.service} ${info.version} ${info.pod}\n`);
      }
    });
    socket.on('end', () => socket.end());
  });
  tcp.listen(tcpPort, '0.0.0.0', () => process.stdout.write(`TCP echo listening on :${tcpPort}\n`));
  others.push(tcp);
}

const shutdown = (sig: string) => {
  process.stdout.write(`${sig}: shutting down\n`);
  for (const s of others) s.close();
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
