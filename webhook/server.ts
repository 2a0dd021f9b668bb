// The admission server: HTTPS on node's https module, answering
//   POST /inject    mutating AdmissionReviews for Pods (the injector)
//   POST /validate  validating AdmissionReviews for Mesh, TrafficSplit, AuthorizationPolicy
//   GET  /healthz /readyz /metrics
// It turns the injector's result into a JSON Patch response, an annotation and an Event,
// and the validator's into a denial naming the fields, or warnings. The serving certificate
// is bootstrapped (or read from cert-manager's Secret) and reloaded without a restart.
import { randomUUID } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { V1Pod } from '@kubernetes/client-node';
import pino, { type Logger } from 'pino';
import type { Registry } from 'prom-client';
import { KubeClient, RESOURCES } from '../kube/client.ts';
import type { KubeAccess } from '../kube/kubeconfig.ts';
import { apiClusterView, type InjectionState, injectionState } from './cluster.ts';
import { WEBHOOK_ERROR_CODES, WebhookError } from './errors.ts';
import { injectPod } from './inject.ts';
import { type AdmissionResult, createMetrics } from './metrics.ts';
import {
  caBundleOf,
  ensureServingSecret,
  fingerprint,
  patchCaBundles,
  readServingSecret,
  type ServingCertificate,
} from './tls.ts';
import { type ClusterView, type ReviewedObject, validateResource } from './validate.ts';

export const WEBHOOK_PATHS = { inject: '/inject', validate: '/validate' } as const;
export const DEFAULT_TLS_SECRET = 'weft-webhook-tls';

/** Published once per answered AdmissionReview (for the benchmark and sampled logging). */
export interface AdmissionEvent {
  webhook: 'inject' | 'validate';
  kind: string;
  result: AdmissionResult;
  /** From the first byte read to the response written. */
  durationMs: number;
}
export const admissionChannel = diagnostics.channel('weft:webhook:admission');

export type TlsOptions =
  | {
      mode: 'bootstrap';
      /** Secret holding the CA and serving certificate (default weft-webhook-tls). */
      secretName?: string;
      dnsNames?: string[];
      ipAddresses?: string[];
      /** Webhook configurations whose caBundle the webhook keeps current. */
      webhookConfigurations?: { mutating?: string[]; validating?: string[] };
    }
  | {
      mode: 'cert-manager';
      /** The Secret named by the cert-manager Certificate. */
      secretName: string;
    };

export interface WebhookOptions {
  /** Credentials: kube/kubeconfig.ts's SimpleKubeConfig (or client-node's KubeConfig). */
  kubeConfig: KubeAccess;
  /** Weft's own namespace: never injected, holds the TLS Secret. */
  namespace: string;
  /** 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1; in a cluster 0.0.0.0. */
  host?: string;
  tls?: TlsOptions;
  /** How often the certificate is re-read (and renewed when due); default 60 s. */
  reloadIntervalMs?: number;
  /** How long namespace labels and the Mesh are cached; default 5 s. */
  cacheTtlMs?: number;
  /** Emit Injected / InjectionSkipped Events (default true). */
  events?: boolean;
  logger?: Logger;
  registry?: Registry;
  now?: () => Date;
}

export interface WebhookHandle {
  /** https://<host>:<port>, the base of WEBHOOK_PATHS. */
  url: string;
  port: number;
  /** The CA that signed the serving certificate, PEM and base64 (for clientConfig.caBundle). */
  caPem: string;
  caBundle: string;
  registry: Registry;
  /** Re-reads (and renews when due) the certificate now, as the periodic reload does. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

interface AdmissionRequest {
  uid: string;
  kind: { group: string; version: string; kind: string };
  namespace?: string;
  name?: string;
  operation: string;
  object?: Record<string, unknown>;
  oldObject?: Record<string, unknown> | null;
  dryRun?: boolean;
}

interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  warnings?: string[];
  status?: {
    code: number;
    reason?: string;
    message: string;
    details?: { name?: string; kind?: string; causes?: { field: string; message: string; reason: string }[] };
  };
}

const MAX_BODY = 16 * 1024 * 1024;

function readBody(req: import('node:http').IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new WebhookError(WEBHOOK_ERROR_CODES.BAD_REVIEW, 'AdmissionReview larger than 16 MiB'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startWebhook(opts: WebhookOptions): Promise<WebhookHandle> {
  const log = (opts.logger ?? pino({ level: process.env.WEFT_LOG_LEVEL ?? 'info' })).child({
    component: 'webhook',
  });
  const now = opts.now ?? (() => new Date());
  const metrics = createMetrics(opts.registry);
  const client = new KubeClient(opts.kubeConfig, 'weft-webhook');
  const state: InjectionState = injectionState(client, opts.cacheTtlMs ?? 5000, () => now().getTime());
  const view: ClusterView = apiClusterView(client);
  const host = opts.host ?? '127.0.0.1';
  const tls: TlsOptions = opts.tls ?? { mode: 'bootstrap' };
  const secretRef = { namespace: opts.namespace, name: tls.secretName ?? DEFAULT_TLS_SECRET };
  const instance = hostname();

  const reloadIntervalMs = opts.reloadIntervalMs ?? 60_000;
  const certOptions = () => ({
    dnsNames:
      tls.mode === 'bootstrap' && tls.dnsNames
        ? tls.dnsNames
        : [`weft-webhook.${opts.namespace}.svc`, `weft-webhook.${opts.namespace}.svc.cluster.local`],
    ipAddresses:
      tls.mode === 'bootstrap' && tls.ipAddresses
        ? tls.ipAddresses
        : host === '127.0.0.1' || host === '0.0.0.0'
          ? ['127.0.0.1']
          : [host],
    now: now(),
    // Each replica reloads once per interval: the next CA is in the caBundle for two of them
    // before it signs, and a replaced CA stays trusted for sixty (an hour by default).
    caSwitchAfterMs: 2 * reloadIntervalMs,
    previousCaOverlapMs: 60 * reloadIntervalMs,
  });

  const loadCert = async (): Promise<ServingCertificate> => {
    if (tls.mode === 'bootstrap')
      return ensureServingSecret(client, secretRef, certOptions(), (m) => log.info({ secret: secretRef }, m));
    // cert-manager issues asynchronously: wait for its Secret.
    for (let i = 0; ; i++) {
      const c = await readServingSecret(client, secretRef);
      if (c) return c;
      if (i % 20 === 0)
        log.info(
          { secret: secretRef },
          'waiting for cert-manager to write the serving certificate Secret; check the Certificate with kubectl describe certificate',
        );
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  let cert = await loadCert();
  metrics.certExpiry.set(cert.notAfter.getTime() / 1000);

  // --- admission ---------------------------------------------------------------------

  const emitEvent = (
    pod: V1Pod,
    namespace: string,
    reason: 'Injected' | 'InjectionSkipped',
    message: string,
  ) => {
    const owner = pod.metadata?.ownerReferences?.[0];
    const target = pod.metadata?.name
      ? { kind: 'Pod', apiVersion: 'v1', name: pod.metadata.name }
      : owner
        ? { kind: owner.kind, apiVersion: owner.apiVersion, name: owner.name, uid: owner.uid }
        : undefined;
    if (!target || opts.events === false) return;
    const stamp = now();
    const body = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${target.name}.${randomUUID().slice(0, 8)}`, namespace },
      involvedObject: { ...target, namespace },
      reason,
      message: message.slice(0, 1024),
      type: 'Normal',
      source: { component: 'weft-webhook' },
      firstTimestamp: stamp,
      lastTimestamp: stamp,
      count: 1,
      reportingComponent: 'weft.dev/webhook',
      reportingInstance: instance,
    };
    client.create(RESOURCES.events, body).catch((err: unknown) => {
      log.warn(
        { err, namespace, pod: target.name },
        'could not record the injection Event; check the webhook RBAC (create events)',
      );
    });
  };

  const inject = async (req: AdmissionRequest): Promise<[AdmissionResponse, AdmissionResult]> => {
    if (req.kind.kind !== 'Pod' || req.operation !== 'CREATE' || !req.object)
      return [{ uid: req.uid, allowed: true }, 'ignored'];
    const pod = req.object as V1Pod;
    const namespace = req.namespace ?? pod.metadata?.namespace ?? 'default';
    const [ns, mesh] = await Promise.all([state.namespace(namespace), state.mesh()]);
    const r = injectPod(pod, ns, mesh, { meshNamespace: opts.namespace });
    const podName = pod.metadata?.name ?? `${pod.metadata?.generateName ?? ''}<generated>`;
    const plog = log.child({ namespace, pod: podName });
    switch (r.action) {
      case 'deny':
        plog.info({ reasons: r.reasons }, 'pod refused: fix the annotation and create it again');
        return [
          {
            uid: req.uid,
            allowed: false,
            status: {
              code: 400,
              reason: 'BadRequest',
              message: `Weft cannot inject pod ${podName}: ${r.reasons.join('; ')}`,
            },
          },
          'denied',
        ];
      case 'ignore':
        plog.debug({ reasons: r.reasons }, 'pod not injected');
        return [{ uid: req.uid, allowed: true }, 'ignored'];
      case 'skip':
      case 'inject': {
        const injected = r.action === 'inject';
        if (!req.dryRun)
          emitEvent(
            pod,
            namespace,
            injected ? 'Injected' : 'InjectionSkipped',
            injected
              ? `Weft proxy injected${r.reasons.length ? ` (${r.reasons.join('; ')})` : ''}`
              : `Weft proxy not injected: ${r.reasons.join('; ')}`,
          );
        plog.info({ reasons: r.reasons }, injected ? 'proxy injected' : 'injection skipped');
        const res: AdmissionResponse = { uid: req.uid, allowed: true };
        if (r.patch.length > 0) {
          res.patchType = 'JSONPatch';
          res.patch = Buffer.from(JSON.stringify(r.patch)).toString('base64');
        }
        return [res, injected ? 'injected' : 'skipped'];
      }
    }
  };

  const validate = async (req: AdmissionRequest): Promise<[AdmissionResponse, AdmissionResult]> => {
    const kind = req.kind.kind;
    if (
      (kind !== 'Mesh' && kind !== 'TrafficSplit' && kind !== 'AuthorizationPolicy') ||
      (req.operation !== 'CREATE' && req.operation !== 'UPDATE') ||
      !req.object
    )
      return [{ uid: req.uid, allowed: true }, 'allowed'];
    const meta = (req.object.metadata ?? {}) as { name?: string; namespace?: string };
    const obj: ReviewedObject = {
      kind,
      operation: req.operation,
      name: req.name ?? meta.name ?? '',
      namespace: req.namespace ?? meta.namespace ?? '',
      spec: req.object.spec,
      oldSpec: req.oldObject?.spec,
    };
    const r = await validateResource(obj, view, { meshNamespace: opts.namespace });
    const id = obj.namespace ? `${obj.namespace}/${obj.name}` : obj.name;
    if (r.errors.length > 0) {
      log.info({ kind, name: id, errors: r.errors }, 'resource refused');
      return [
        {
          uid: req.uid,
          allowed: false,
          status: {
            code: 422,
            reason: 'Invalid',
            message: `${kind} ${id} is invalid: ${r.errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`,
            details: {
              name: obj.name,
              kind,
              causes: r.errors.map((e) => ({
                field: e.field,
                message: e.message,
                reason: 'FieldValueInvalid',
              })),
            },
          },
        },
        'denied',
      ];
    }
    const res: AdmissionResponse = { uid: req.uid, allowed: true };
    if (r.warnings.length > 0) res.warnings = r.warnings;
    return [res, r.warnings.length > 0 ? 'warned' : 'allowed'];
  };

  const send = (
    res: import('node:http').ServerResponse,
    status: number,
    body: string,
    type = 'application/json',
  ) => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  const handle = async (
    which: 'inject' | 'validate',
    req: import('node:http').IncomingMessage,
    res: import('node:http').ServerResponse,
  ) => {
    const end = metrics.duration.startTimer({ webhook: which });
    const t0 = process.hrtime.bigint();
    let review: { apiVersion?: string; request?: AdmissionRequest };
    try {
      review = JSON.parse((await readBody(req)).toString('utf8'));
      if (!review.request?.uid) throw new WebhookError(WEBHOOK_ERROR_CODES.BAD_REVIEW, 'no request.uid');
    } catch (err) {
      metrics.admissions.inc({ webhook: which, kind: 'unknown', result: 'error' });
      end();
      return send(res, 400, JSON.stringify({ message: `not an AdmissionReview: ${(err as Error).message}` }));
    }
    const request = review.request;
    let response: AdmissionResponse;
    let result: AdmissionResult;
    try {
      [response, result] = await (which === 'inject' ? inject(request) : validate(request));
    } catch (err) {
      // Not a decision but a failure (the apiserver could not be read, say): answer 500 so the
      // apiserver applies the configuration's failurePolicy, i.e. Fail for labelled namespaces
      // and the CRs, Ignore elsewhere (see docs/webhook.md).
      log.error({ err, kind: request.kind.kind, namespace: request.namespace }, 'admission failed');
      metrics.admissions.inc({ webhook: which, kind: request.kind.kind, result: 'error' });
      end();
      return send(res, 500, JSON.stringify({ message: `Weft webhook error: ${(err as Error).message}` }));
    }
    metrics.admissions.inc({ webhook: which, kind: request.kind.kind, result });
    send(
      res,
      200,
      JSON.stringify({
        apiVersion: review.apiVersion ?? 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response,
      }),
    );
    end();
    if (admissionChannel.hasSubscribers) {
      const event: AdmissionEvent = {
        webhook: which,
        kind: request.kind.kind,
        result,
        durationMs: Number(process.hrtime.bigint() - t0) / 1e6,
      };
      admissionChannel.publish(event);
    }
  };

  const server = https.createServer(
    { cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.2' },
    (req, res) => {
      const path = (req.url ?? '/').split('?', 1)[0];
      if (req.method === 'POST' && path === WEBHOOK_PATHS.inject) return void handle('inject', req, res);
      if (req.method === 'POST' && path === WEBHOOK_PATHS.validate) return void handle('validate', req, res);
      if (path === '/healthz' || path === '/readyz') return send(res, 200, 'ok\n', 'text/plain');
      if (path === '/metrics') {
        metrics.registry.metrics().then(
          (text) => send(res, 200, text, metrics.registry.contentType),
          (err: Error) => send(res, 500, `${err.message}\n`, 'text/plain'),
        );
        return;
      }
      send(
        res,
        404,
        `not found: try POST ${WEBHOOK_PATHS.inject}, POST ${WEBHOOK_PATHS.validate}, /healthz, /metrics\n`,
        'text/plain',
      );
    },
  );
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) =>
    server.once('error', reject).listen(opts.port ?? 0, host, resolve),
  );
  const port = (server.address() as AddressInfo).port;

  // --- certificate reload ----------------------------------------------------------------

  /**
   * The Secret's CAs (current, next, replaced in its overlap: caBundleOf), and previousCaPem,
   * the CA this replica served before a change it did not write (also trusted until the next
   * reload, so calls in flight keep working).
   */
  const syncCaBundles = async (previousCaPem?: string) => {
    if (tls.mode !== 'bootstrap' || !tls.webhookConfigurations) return;
    const own = caBundleOf(cert, now());
    const bundle =
      previousCaPem && !own.includes(previousCaPem.trim()) ? `${own.trim()}\n${previousCaPem.trim()}\n` : own;
    const changed = await patchCaBundles(client, bundle, tls.webhookConfigurations);
    if (changed.length > 0)
      log.info({ configurations: changed }, 'caBundle written into the webhook configurations');
  };

  const reload = async () => {
    const next = await loadCert();
    if (next.certPem !== cert.certPem || next.keyPem !== cert.keyPem) {
      // Publish the new CA (beside the old one) before serving a certificate it signed.
      const prev = cert;
      cert = next;
      if (next.caPem !== prev.caPem) await syncCaBundles(prev.caPem);
      server.setSecureContext({ cert: next.certPem, key: next.keyPem, minVersion: 'TLSv1.2' });
      metrics.certExpiry.set(next.notAfter.getTime() / 1000);
      log.info(
        { fingerprint: await fingerprint(next.certPem), notAfter: next.notAfter },
        'serving certificate reloaded',
      );
    } else {
      // The same certificate; the CAs beside it (next, replaced) may have changed.
      cert = next;
      await syncCaBundles();
    }
  };

  await syncCaBundles();
  let reloading: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    reloading = reload().catch((err: unknown) =>
      log.error(
        { err },
        'certificate reload failed; serving the previous certificate, retrying at the next interval',
      ),
    );
  }, reloadIntervalMs);
  timer.unref();

  log.info({ port, host, tls: tls.mode }, 'webhook serving');
  return {
    url: `https://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    port,
    get caPem() {
      return cert.caPem;
    },
    get caBundle() {
      return Buffer.from(cert.caPem).toString('base64');
    },
    registry: metrics.registry,
    reload,
    stop: async () => {
      clearInterval(timer);
      await reloading;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      client.close();
    },
  };
}
