// The operator's Prometheus metrics (one registry per operator, so tests can run several).
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export function operatorMetrics() {
  const registry = new Registry();
  /** Set by the operator: current depth per controller queue, read at scrape time. */
  const depth: { source?: () => Record<string, number> } = {};
  collectDefaultMetrics({ register: registry, prefix: 'weft_operator_' });
  // prom-client names three of its gauges `…_total`, which Prometheus reserves for counters
  // (`promtool check metrics` refuses them): they are left out.
  for (const gauge of [
    'nodejs_active_handles_total',
    'nodejs_active_requests_total',
    'nodejs_active_resources_total',
  ])
    registry.removeSingleMetric(`weft_operator_${gauge}`);
  const m = {
    registry,
    depth,
    reconciles: new Counter({
      name: 'weft_operator_reconcile_total',
      help: 'Reconciles by controller and result (success, error, terminal, timeout).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    }),
    reconcileErrors: new Counter({
      name: 'weft_operator_reconcile_errors_total',
      help: 'Reconciles that failed (will be retried with backoff unless terminal).',
      labelNames: ['controller'],
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: 'weft_operator_reconcile_duration_seconds',
      help: 'Time spent in one reconcile.',
      labelNames: ['controller'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'weft_operator_queue_depth',
      help: 'Keys waiting in each controller queue.',
      labelNames: ['controller'],
      registers: [registry],
      collect() {
        for (const [controller, n] of Object.entries(depth.source?.() ?? {})) this.set({ controller }, n);
      },
    }),
    configMapWrites: new Counter({
      name: 'weft_operator_configmap_writes_total',
      help: 'ProxyConfig ConfigMaps written (applied or deleted) per namespace.',
      labelNames: ['namespace', 'op'],
      registers: [registry],
    }),
    configBytes: new Gauge({
      name: 'weft_operator_config_bytes',
      help: 'Size of the ProxyConfig of a namespace, as JSON and gzipped.',
      labelNames: ['namespace', 'encoding'],
      registers: [registry],
    }),
    informerRestarts: new Counter({
      name: 'weft_operator_informer_restarts_total',
      help: 'List/watch restarts after errors, by kind and reason.',
      labelNames: ['kind', 'reason'],
      registers: [registry],
    }),
    isLeader: new Gauge({
      name: 'weft_operator_is_leader',
      help: '1 on the replica that holds the leader Lease.',
      registers: [registry],
    }),
    cacheSynced: new Gauge({
      name: 'weft_operator_cache_synced',
      help: '1 once every informer has listed.',
      registers: [registry],
    }),
  };
  return m;
}
export type OperatorMetrics = ReturnType<typeof operatorMetrics>;
