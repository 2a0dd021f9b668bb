// Demo workload: a tiny HTTP server (a "reviews"-style service) that answers with its service
// name, version and pod. Configured by environment, so a Pod spec needs no arguments:
//   PORT [8080]  SERVICE_NAME [reviews]  VERSION [v1]  POD_NAME, POD_NAMESPACE, POD_IP (downward API)
//   FILES_DIR  when set, GET /files/<name> returns that file (to show projected volumes)
//   STATUS [200]  the status of the JSON answers (500: a broken revision whose probe still passes)
//   DELAY_MS [0]  how long each JSON answer waits before it is sent (a slow revision; not /healthz)
// GET /healthz → 200 "ok"; any other path → JSON {service, version, pod, namespace, podIP, path}.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
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
const shutdown = (sig: string) => {
  process.stdout.write(`${sig}: shutting down\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
