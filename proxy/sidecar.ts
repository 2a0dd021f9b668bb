// The whole sidecar: config watcher, data plane, admin and health servers, logging, tracing,
// and the SIGTERM drain. main.ts parses flags and calls startSidecar; tests call it with port 0.
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { PROXY, type ProxyConfig } from '../api/index.ts';
import { adminHandler, healthHandler, listen } from './admin.ts';
import type { ProxyError } from './errors.ts';
import { ProxyMetrics } from './metrics.ts';
import { type Authorize, type Identity, type Limits, type ProxyHandle, startProxy } from './proxy.ts';
import { createOtlpTracing, type Tracing } from './tracing.ts';
import { ConfigWatcher } from './watcher.ts';

export interface SidecarOptions {
  configDir: string;
  podInfoDir?: string;
  /** Where the workload certificate will be read from (mTLS, a later issue). */
  identityDir?: string;
  namespace: string;
  podName: string;
  workload?: string;
  ports?: Partial<{ outbound: number; inbound: number; admin: number; health: number }>;
  host?: string;
  adminHost?: string;
  inboundTarget?: string;
  limits?: Partial<Limits>;
  pollMs?: number;
  authorize?: Authorize;
  logger?: Logger;
  /** Accept requests before the first config is valid (it will answer 503); default true. */
  startWithoutConfig?: boolean;
}

export interface Sidecar {
  ports: { outbound: number; inbound: number; admin: number; health: number };
  proxy: ProxyHandle;
  watcher: ConfigWatcher;
  metrics: ProxyMetrics;
  drain(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Parses a downward-API labels file: one `key="value"` per line. */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([^=]+)="(.*)"$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!.replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  }
  return out;
}

/** The workload name: the app label, else the pod name less its ReplicaSet/pod suffixes. */
export function workloadOf(labels: Record<string, string>, podName: string): string {
  return (
    labels['app.kubernetes.io/name'] ??
    labels.app ??
    podName.replace(/-[a-z0-9]{8,10}-[a-z0-9]{5}$/, '').replace(/-[a-z0-9]{5}$/, '') ??
    podName
  );
}

export async function startSidecar(o: SidecarOptions): Promise<Sidecar> {
  const logger = o.logger ?? pino({ name: 'weft-proxy', level: process.env.WEFT_LOG_LEVEL ?? 'info' });
  const log = logger.child({ component: 'proxy' });
  const metrics = new ProxyMetrics();
  let labels: Record<string, string> = {};
  if (o.podInfoDir) {
    try {
      labels = parseLabels(await readFile(join(o.podInfoDir, 'labels'), 'utf8'));
    } catch {
      log.warn({ dir: o.podInfoDir }, 'no pod labels file; authorization selectors will see no labels');
    }
  }
  const identity: Identity = {
    namespace: o.namespace,
    podName: o.podName,
    workload: o.workload ?? workloadOf(labels, o.podName),
    labels,
  };
  let accessLogger: Logger | undefined;
  let tracing: Tracing | undefined;
  let tracingKey = '';
  let draining = false;
  const ports = {
    outbound: o.ports?.outbound ?? PROXY.outboundPort,
    inbound: o.ports?.inbound ?? PROXY.inboundPort,
    admin: o.ports?.admin ?? PROXY.adminPort,
    health: o.ports?.health ?? PROXY.healthPort,
  };
  const tracingProxy: Tracing = {
    active: () => tracing !== undefined,
    start: (...args) => tracing?.start(...args),
    shutdown: async () => tracing?.shutdown(),
  };
  const proxy = await startProxy({
    identity,
    ports,
    host: o.host,
    inboundTarget: o.inboundTarget,
    limits: o.limits,
    metrics,
    tracing: tracingProxy,
    accessLog: { enabled: () => accessLogger !== undefined, write: (e) => accessLogger?.info(e, 'access') },
    authorize: o.authorize,
    inboundFastPath: process.env.WEFT_INBOUND_FAST !== '0',
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
  });

  const applyTelemetry = (c: ProxyConfig) => {
    logger.level = c.mesh.logLevel || logger.level;
    accessLogger = c.mesh.telemetry.accessLogs ? logger.child({ component: 'access' }) : undefined;
    const tr = c.mesh.telemetry.tracing;
    const key = tr ? `${tr.endpoint}|${tr.samplingPercent}` : '';
    if (key === tracingKey) return;
    tracingKey = key;
    const old = tracing;
    tracing = undefined;
    void old?.shutdown();
    if (tr) {
      createOtlpTracing(tr.endpoint, tr.samplingPercent, `${identity.workload}.${identity.namespace}`).then(
        (t) => {
          if (tracingKey === key) tracing = t;
        },
        (e: Error) => log.error({ err: e.message }, 'tracing could not start; spans are not exported'),
      );
    }
  };

  const watcher = new ConfigWatcher(
    o.configDir,
    {
      apply(c) {
        proxy.apply(c);
        applyTelemetry(c);
        metrics.configReloads.inc();
        metrics.setConfigVersion(c.version);
        log.info(
          { version: c.version, services: c.services.length, routes: c.routes.length },
          'config applied',
        );
      },
      rejected(err: ProxyError) {
        metrics.configFailures.inc({ reason: err.code ?? 'WEFT_CONFIG_INVALID' });
        log.warn(
          { code: err.code, kept: watcher.status.version ?? null },
          `config refused, keeping the last good one (${watcher.status.version ?? 'none yet'}): ${err.message}`,
        );
      },
    },
    o.pollMs,
  );
  await watcher.start();

  const deps = { proxy, status: watcher.status, metrics, draining: () => draining };
  const admin = await listen(adminHandler(deps), ports.admin, o.adminHost ?? '127.0.0.1');
  const health = await listen(healthHandler(deps), ports.health, o.host ?? '0.0.0.0');
  const servers: http.Server[] = [admin.server, health.server];

  const sidecar: Sidecar = {
    ports: { ...proxy.ports, admin: admin.port, health: health.port },
    proxy,
    watcher,
    metrics,
    async drain(timeoutMs) {
      draining = true;
      const t = timeoutMs ?? proxy.table()?.config.mesh.drainTimeoutMs ?? 30_000;
      log.info({ timeoutMs: t }, 'draining: no new connections, waiting for in-flight requests');
      watcher.stop();
      await proxy.drain(t);
      await sidecar.close();
    },
    async close() {
      watcher.stop();
      proxy.close();
      for (const s of servers) {
        s.closeAllConnections();
        s.close();
      }
      await tracing?.shutdown();
    },
  };
  log.info(
    { ports: sidecar.ports, workload: identity.workload, version: watcher.status.version ?? null },
    'weft-proxy started',
  );
  return sidecar;
}
