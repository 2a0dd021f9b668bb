// The whole sidecar: config watcher, data plane, admin and health servers, logging, tracing,
// and the SIGTERM drain. main.ts parses flags and calls startSidecar; tests call it with port 0.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { PROXY } from '../api/constants.ts';
import type { ProxyConfig } from '../api/proxyconfig.ts';
import { adminHandler, healthHandler, listen } from './admin.ts';
import { ApiConfigSource, type ApiServerAccess } from './apisource.ts';
import { PolicyEnforcer } from './authz/enforce.ts';
import type { ProxyError } from './errors.ts';
import { GatewayTable } from './gatewaytable.ts';
import { WorkloadIdentity } from './identity/tls.ts';
import { ProxyMetrics } from './metrics.ts';
import { type Authorize, type Identity, type Limits, type ProxyHandle, startProxy } from './proxy.ts';
import { createOtlpTracing, type Tracing } from './tracing.ts';
import { ConfigWatcher } from './watcher.ts';

export interface SidecarOptions {
  configDir: string;
  podInfoDir?: string;
  /** Where the workload certificate is read from (tls.crt, tls.key, ca.crt); without it, plaintext. */
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
  /** The config fast path: watch the namespace's proxy-config ConfigMap (apisource.ts). */
  apiServer?: ApiServerAccess;
  /** Accept requests before the first config is valid (it will answer 503); default true. */
  startWithoutConfig?: boolean;
  /** Gateway mode (docs/ingress.md): the Gateway's routing table (GatewayConfig JSON), polled (gatewaytable.ts). */
  gatewayConfig?: string;
  /** Gateway mode: the directory of the PEM files its HTTPS listeners name, polled with it. */
  gatewayCerts?: string;
  /** Gateway mode: its ConfigMap, watched through the apiserver too (the fast path, with apiServer). */
  gatewayConfigMap?: string;
}

export interface Sidecar {
  ports: { outbound: number; inbound: number; admin: number; health: number };
  proxy: ProxyHandle;
  watcher: ConfigWatcher;
  apiSource: ApiConfigSource | undefined;
  /** Gateway mode: the routing table's sources and status. */
  gateway: GatewayTable | undefined;
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
  let initialLabelsText = '';
  if (o.podInfoDir) {
    try {
      initialLabelsText = await readFile(join(o.podInfoDir, 'labels'), 'utf8');
      labels = parseLabels(initialLabelsText);
    } catch {
      log.warn({ dir: o.podInfoDir }, 'no pod labels file; authorization selectors will see no labels');
    }
  }
  const readLabels = async () => {
    if (!o.podInfoDir) return;
    try {
      const text = await readFile(join(o.podInfoDir, 'labels'), 'utf8');
      if (text !== labelsText) {
        labelsText = text;
        // A new object: the enforcer recompiles when it sees another labels object.
        identity.labels = parseLabels(text);
        log.info({ labels: identity.labels }, 'pod labels changed; authorization recompiled');
      }
    } catch {}
  };
  let labelsText = initialLabelsText;
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
  const enforcer = new PolicyEnforcer(() => identity.labels, metrics);
  const proxy = await startProxy({
    identity,
    ports,
    host: o.host,
    inboundTarget: o.inboundTarget,
    limits: o.limits,
    metrics,
    tracing: tracingProxy,
    accessLog: { enabled: () => accessLogger !== undefined, write: (e) => accessLogger?.info(e, 'access') },
    authorize: o.authorize ?? enforcer.authorize,
    debugHeaders: () => logger.isLevelEnabled('debug'),
    inboundFastPath: process.env.WEFT_INBOUND_FAST !== '0',
    outboundFastPath: process.env.WEFT_OUTBOUND_FAST !== '0',
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
  // The volume first (start-up source, works with the apiserver down), then the fast path.
  const apiSource = o.apiServer
    ? new ApiConfigSource(o.apiServer, o.namespace, watcher, (level, msg, fields) =>
        log[level](fields ?? {}, msg),
      )
    : undefined;
  apiSource?.start();

  // Workload identity: mTLS once the operator's Secret is there; plaintext (logged, counted) until then.
  let workloadIdentity: WorkloadIdentity | undefined;
  /** Told of each identity (re)load: the operator's long poll answers when the trust changes. */
  const identityListeners = new Set<() => void>();
  const identityChanged = () => {
    for (const fn of identityListeners) fn();
  };
  const idLog = logger.child({ component: 'identity' });
  const loadIdentity = (): boolean => {
    if (!o.identityDir || !existsSync(join(o.identityDir, 'tls.crt'))) return false;
    try {
      const wi = new WorkloadIdentity(o.identityDir, (err) => {
        metrics.identityReloads.inc({ result: err ? ((err as { code?: string }).code ?? 'error') : 'ok' });
        if (err)
          idLog.warn({ err: err.message }, 'workload certificate reload refused; keeping the previous one');
        else idLog.info({ id: wi.id }, 'workload certificate reloaded');
        if (!err) identityChanged();
      }).watch();
      workloadIdentity = wi;
      identityChanged();
      proxy.setWorkloadIdentity(wi);
      metrics.identityState.set(1);
      idLog.info({ id: wi.id, dir: o.identityDir }, 'workload identity loaded: mTLS on');
      return true;
    } catch (e) {
      metrics.identityState.set(0);
      idLog.warn({ err: (e as Error).message }, 'workload identity not usable yet; plaintext to peers');
      return false;
    }
  };
  metrics.identityState.set(0);
  let identityTimer: NodeJS.Timeout | undefined;
  if (!loadIdentity()) {
    idLog.warn(
      { dir: o.identityDir ?? null },
      'no workload identity (identity Secret not mounted yet?): mTLS off, traffic to peers is plaintext (weft_plaintext_connections_total) and STRICT ports refuse plaintext callers',
    );
    if (o.identityDir) {
      identityTimer = setInterval(() => {
        if (loadIdentity()) clearInterval(identityTimer);
      }, o.pollMs ?? 2000);
      identityTimer.unref();
    }
  }
  // Gateway mode: the volume first, then the fast path on the gateway's own ConfigMap.
  const gateway = o.gatewayConfig
    ? new GatewayTable({ file: o.gatewayConfig, certsDir: o.gatewayCerts, proxy, log, pollMs: o.pollMs })
    : undefined;
  await gateway?.start();
  const gatewaySource =
    gateway && o.apiServer && o.gatewayConfigMap
      ? new ApiConfigSource(
          o.apiServer,
          o.namespace,
          gateway.target(o.gatewayConfigMap),
          (level, msg, fields) => log[level](fields ?? {}, msg),
        )
      : undefined;
  gatewaySource?.start();
  const labelsTimer = o.podInfoDir ? setInterval(() => void readLabels(), o.pollMs ?? 2000) : undefined;
  labelsTimer?.unref();

  const deps = {
    proxy,
    status: watcher.status,
    metrics,
    draining: () => draining,
    onApplied: (fn: () => void) => {
      const off = watcher.onApplied(fn);
      identityListeners.add(fn);
      return () => {
        off();
        identityListeners.delete(fn);
      };
    },
    certificate: () => workloadIdentity?.certificate(),
    trust: () => workloadIdentity?.trust,
    gateway: gateway && (() => gateway.status),
  };
  const admin = await listen(adminHandler(deps), ports.admin, o.adminHost ?? '127.0.0.1');
  const health = await listen(healthHandler(deps), ports.health, o.host ?? '0.0.0.0');
  const servers: http.Server[] = [admin.server, health.server];

  const sidecar: Sidecar = {
    ports: { ...proxy.ports, admin: admin.port, health: health.port },
    proxy,
    watcher,
    apiSource,
    gateway,
    metrics,
    async drain(timeoutMs) {
      draining = true;
      const t = timeoutMs ?? proxy.table()?.config.mesh.drainTimeoutMs ?? 30_000;
      log.info({ timeoutMs: t }, 'draining: no new connections, waiting for in-flight requests');
      watcher.stop();
      apiSource?.stop();
      gatewaySource?.stop();
      await proxy.drain(t);
      await sidecar.close();
    },
    async close() {
      watcher.stop();
      apiSource?.stop();
      gatewaySource?.stop();
      gateway?.stop();
      clearInterval(identityTimer);
      clearInterval(labelsTimer);
      workloadIdentity?.close();
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
