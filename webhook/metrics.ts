// The webhook's Prometheus metrics, on a registry of its own (served at /metrics).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type AdmissionResult = 'injected' | 'skipped' | 'ignored' | 'allowed' | 'warned' | 'denied' | 'error';

export interface WebhookMetrics {
  registry: Registry;
  admissions: Counter<'webhook' | 'kind' | 'result'>;
  duration: Histogram<'webhook'>;
  certExpiry: Gauge;
}

export function createMetrics(registry = new Registry()): WebhookMetrics {
  return {
    registry,
    admissions: new Counter({
      name: 'weft_webhook_admissions_total',
      help: 'Admission reviews answered, by webhook (inject, validate), kind and result.',
      labelNames: ['webhook', 'kind', 'result'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'weft_webhook_admission_duration_seconds',
      help: 'Time from receiving an AdmissionReview to answering it.',
      labelNames: ['webhook'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
      registers: [registry],
    }),
    certExpiry: new Gauge({
      name: 'weft_webhook_certificate_expiry_timestamp_seconds',
      help: 'When the serving certificate in use expires (Unix seconds).',
      registers: [registry],
    }),
  };
}
