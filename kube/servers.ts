// The manager's HTTP servers: /metrics, and /healthz + /readyz (ready = every cache synced).
// Each listens on "host:port" (port 0 picks a free one; `port` tells which after start).
import { createServer, type Server as HttpServer, type RequestListener } from 'node:http';
import { ERROR_CODES, WeftError } from './errors.ts';
import type { Server } from './manager.ts';

export function parseAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  const host = i > 0 ? addr.slice(0, i) : '0.0.0.0';
  const port = Number(i >= 0 ? addr.slice(i + 1) : addr);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new WeftError(ERROR_CODES.CONFIG, `bad listen address "${addr}": want host:port`);
  return { host: host.replace(/^\[|\]$/g, ''), port };
}

export class HttpRunnable implements Server {
  /** The bound port, once started. */
  port?: number;
  private readonly server: HttpServer;
  private readonly address: string;

  constructor(address: string, handler: RequestListener) {
    this.address = address;
    this.server = createServer(handler);
  }

  async start(): Promise<void> {
    const { host, port } = parseAddress(this.address);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    this.server.closeAllConnections();
    await closed;
  }
}

/** GET /metrics from a prom-client registry. */
export function metricsServer(
  address: string,
  registry: { metrics(): Promise<string>; contentType: string },
): HttpRunnable {
  return new HttpRunnable(address, (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
}

/** GET /healthz (always ok) and /readyz (503 naming the caches that have not listed yet). */
export function healthServer(
  address: string,
  caches: () => { hasSynced: boolean; type: { plural: string } }[],
): HttpRunnable {
  return new HttpRunnable(address, (req, res) => {
    if (req.url === '/healthz') res.writeHead(200).end('ok');
    else if (req.url === '/readyz') {
      const notSynced = caches()
        .filter((i) => !i.hasSynced)
        .map((i) => i.type.plural);
      if (notSynced.length === 0) res.writeHead(200).end('ok');
      else res.writeHead(503).end(`caches not synced: ${notSynced.join(', ')}`);
    } else res.writeHead(404).end();
  });
}
