// The admin server (127.0.0.1:15000: /config, /ready, /live, /stats) and the health server
// (:15020: /metrics, /healthz/ready, and /app-health/<port>/<path> probe passthrough, so the
// kubelet's HTTP probes of the app still work once all inbound traffic goes through the proxy).
// The health server also answers /config/version, the applied config's version and generation,
// which the operator long-polls (`?known=<version>&waitMs=<ms>`: answered when the version
// differs from `known`, else when it changes or the wait ends) to count proxies in sync,
// /stats/inbound, the inbound requests' count, 5xx count and latency histogram, which the operator
// reads to gate a canary progression (docs/progressive-delivery.md), and /config/applied, read-only: the applied config's status, the config itself and the workload
// certificate's public facts (SPIFFE ID, issuer, validity; never a key), which
// `weftctl proxy-config` reads through the apiserver's pods/proxy (the admin port listens on
// loopback only, which pods/proxy cannot reach).
import type HttpTypes from 'node:http';
import type { AddressInfo } from 'node:net';
import { type TrustSummary, trustKey } from '../api/pem.ts';
import { http } from './builtins.ts';
import type { GatewayTableStatus } from './gatewaytable.ts';
import type { CertificateSummary } from './identity/tls.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { ProxyHandle } from './proxy.ts';
import type { ConfigStatus } from './watcher.ts';

export interface AdminDeps {
  proxy: ProxyHandle;
  status: ConfigStatus;
  metrics: ProxyMetrics;
  draining: () => boolean;
  appProbeHost?: string;
  /** Calls fn after each applied config (and identity reload); returns the unsubscribe function. */
  onApplied?: (fn: () => void) => () => void;
  /** The roots the workload identity trusts and the one its certificate comes from; undefined: no identity. */
  trust?: () => TrustSummary | undefined;
  /** The workload certificate in use; undefined while the proxy has none (plaintext). */
  certificate?: () => CertificateSummary | undefined;
  /** Gateway mode: the routing table's status (generation, source). */
  gateway?: () => GatewayTableStatus;
}

/** The longest /config/version holds a request. */
const MAX_VERSION_WAIT_MS = 60_000;
/**
 * How many /config/version requests are held at once. The health port is open to the pod
 * network and the operator needs one per replica: past this, a request is answered at once, so
 * whoever floods the port holds no sockets or timers of the proxy (a poller just polls again).
 */
export const MAX_HELD_VERSION_POLLS = 8;
let held = 0;

function configVersion(d: AdminDeps, req: HttpTypes.IncomingMessage, res: HttpTypes.ServerResponse): void {
  const q = new URL(req.url ?? '/', 'http://x').searchParams;
  const known = q.get('known');
  // The generation the caller knows too (optional): the same content rewritten under a newer
  // generation answers at once, as a new version does.
  const knownGeneration = q.get('generation');
  // The trust the caller knows (optional, as trustKey() gives it): a reloaded identity that
  // trusts other roots answers at once too (the operator's root rotation waits for it).
  const knownTrust = q.get('trust');
  const waitMs = Math.min(Math.max(Number(q.get('waitMs')) || 0, 0), MAX_VERSION_WAIT_MS);
  const answer = () =>
    send(res, 200, {
      version: d.status.version ?? null,
      generation: d.status.generation ?? null,
      source: d.status.source ?? null,
      trust: d.trust?.() ?? null,
    });
  if (
    known === null ||
    known !== (d.status.version ?? '') ||
    (knownGeneration !== null && knownGeneration !== String(d.status.generation ?? '')) ||
    (knownTrust !== null && knownTrust !== trustKey(d.trust?.())) ||
    waitMs === 0 ||
    !d.onApplied ||
    held >= MAX_HELD_VERSION_POLLS
  ) {
    answer();
    return;
  }
  held++;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    held--;
    clearTimeout(timer);
    off();
    if (!res.destroyed) answer();
  };
  const off = d.onApplied(finish);
  const timer = setTimeout(finish, waitMs);
  res.on('close', finish);
}

function send(res: HttpTypes.ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = typeof body === 'string' ? body : `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The process's memory in MB: RSS, V8's heap (used and reserved) and memory outside it (Buffers). */
function memoryMB(): Record<string, number> {
  const m = process.memoryUsage();
  const mb = (n: number) => Math.round((n / 1048576) * 10) / 10;
  return {
    rss: mb(m.rss),
    heapTotal: mb(m.heapTotal),
    heapUsed: mb(m.heapUsed),
    external: mb(m.external),
    arrayBuffers: mb(m.arrayBuffers),
  };
}

function ready(d: AdminDeps): boolean {
  return d.status.version !== undefined && !d.draining();
}

export function adminHandler(d: AdminDeps): HttpTypes.RequestListener {
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    switch (path) {
      case '/config':
        return send(res, 200, {
          status: d.status,
          ...(d.gateway ? { gateway: d.gateway() } : {}),
          config: d.proxy.table()?.config ?? null,
        });
      case '/ready':
        return ready(d)
          ? send(res, 200, 'ready\n', 'text/plain')
          : send(res, 503, 'not ready: no config applied yet, or draining\n', 'text/plain');
      case '/live':
        return send(res, 200, 'live\n', 'text/plain');
      case '/stats':
        return send(res, 200, { config: d.status, ...d.proxy.stats(), memory: memoryMB() });
      default:
        return send(res, 404, 'not found: try /config /ready /live /stats\n', 'text/plain');
    }
  };
}

export function healthHandler(d: AdminDeps): HttpTypes.RequestListener {
  return (req, res) => {
    const path = req.url ?? '/';
    if (path === '/metrics') {
      d.metrics.registry.metrics().then(
        (text) => send(res, 200, text, d.metrics.registry.contentType),
        (e: Error) => send(res, 500, `${e.message}\n`, 'text/plain'),
      );
      return;
    }
    if (path === '/config/version' || path.startsWith('/config/version?')) return configVersion(d, req, res);
    if (path === '/stats/inbound') return send(res, 200, d.metrics.inbound);
    if (path === '/config/applied' || path === '/config/applied?config=false')
      return send(res, 200, {
        status: d.status,
        ...(d.gateway ? { gateway: d.gateway() } : {}),
        certificate: d.certificate?.() ?? null,
        // ?config=false: the status and certificate only (weftctl check --proxy asks every pod).
        ...(path === '/config/applied' ? { config: d.proxy.table()?.config ?? null } : {}),
      });
    if (path === '/healthz/ready')
      return ready(d) ? send(res, 200, 'ready\n', 'text/plain') : send(res, 503, 'not ready\n', 'text/plain');
    const m = /^\/app-health\/(\d+)(\/.*)?$/.exec(path);
    if (m) {
      // The kubelet's probe, forwarded to the app on loopback as the kubelet would have sent it.
      const up = http.request(
        {
          host: d.appProbeHost ?? '127.0.0.1',
          port: Number(m[1]),
          path: m[2] ?? '/',
          method: req.method,
          timeout: 10_000,
          headers: { 'user-agent': req.headers['user-agent'] ?? 'kube-probe' },
        },
        (r) => {
          res.writeHead(r.statusCode ?? 502, { 'content-type': r.headers['content-type'] ?? 'text/plain' });
          r.pipe(res);
        },
      );
      up.on('timeout', () => up.destroy(new Error('probe timed out')));
      up.on('error', (e) => {
        if (!res.headersSent) send(res, 503, `app probe failed: ${e.message}\n`, 'text/plain');
        else res.destroy();
      });
      up.end();
      return;
    }
    send(
      res,
      404,
      'not found: try /metrics /healthz/ready /config/version /config/applied /stats/inbound /app-health/<port>/<path>\n',
      'text/plain',
    );
  };
}

export async function listen(
  handler: HttpTypes.RequestListener,
  port: number,
  host: string,
): Promise<{ server: HttpTypes.Server; port: number }> {
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, handler);
  await new Promise<void>((r, j) => server.once('error', j).listen(port, host, () => r()));
  return { server, port: (server.address() as AddressInfo).port };
}
