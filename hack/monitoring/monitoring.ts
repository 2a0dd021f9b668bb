// Weft's monitoring, in one place: the Prometheus Operator objects (ServiceMonitors for the
// operator and the webhook, a PodMonitor for the sidecars, a PrometheusRule), the golden-signal
// recording rules (also as a plain Prometheus rules file) and the Grafana dashboards. hack/gen-chart.ts
// writes them into the chart (off by default: values `monitoring.*`), config/monitoring/ and
// charts/weft/dashboards/; hack/monitoring/monitoring.test.ts checks every expression with
// Prometheus' own parser and promtool, and test/e2e/flagger.test.ts runs them against a real
// Prometheus (docs/observability.md).
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';

/** The sidecar's health/metrics port name, as the injector names it (webhook/inject.ts). */
export const SIDECAR_METRICS_PORT = 'weft-health';
export const OPERATOR_METRICS_SERVICE = 'weft-operator-metrics';
export const WEBHOOK_SERVICE = 'weft-webhook';

// ---------------------------------------------------------------------------------------------
// Recording rules: the golden signals (request rate, success ratio, latency p50/p95/p99).
// - workload: what a workload's own sidecars saw inbound (every caller, meshed or not);
// - route: what callers' sidecars saw outbound per route (`route` = <Kind>/<namespace>/<name> of
//   the TrafficSplit, HTTPRoute or GRPCRoute that decided; requests no route matched are left out);
// - service: the same per destination Service (the backend the route picked, or the Service
//   called when none matched; `destination_service` = <name>.<namespace>);
// - edge: caller workload → called workload, as the caller's sidecar saw it.
// ---------------------------------------------------------------------------------------------

export const RULE_WINDOW = '5m';

interface Level {
  level: 'workload' | 'route' | 'service' | 'edge';
  /** The series measured (a matcher list). */
  sel: string;
  by: string[];
}

/** Outbound requests a route decided (`route` is empty when none matched, and inbound). */
const ROUTED = 'direction="outbound", route!=""';

const LEVELS: Level[] = [
  { level: 'workload', sel: 'direction="inbound"', by: ['destination_namespace', 'destination_workload'] },
  { level: 'route', sel: ROUTED, by: ['route'] },
  { level: 'service', sel: 'direction="outbound"', by: ['destination_service'] },
  {
    level: 'edge',
    sel: 'direction="outbound"',
    by: ['source_namespace', 'source_workload', 'destination_namespace', 'destination_workload'],
  },
];

export const QUANTILES = [0.5, 0.95, 0.99] as const;

export interface Rule {
  record: string;
  expr: string;
}

/** The golden signals over `window` for series matching `sel` (a matcher list), grouped `by`. */
export function goldenSignals(sel: string, by: string[], window: string) {
  const g = by.join(', ');
  const total = `sum by (${g}) (rate(weft_requests_total{${sel}}[${window}]))`;
  const errors = `sum by (${g}) (rate(weft_requests_total{${sel}, status_code=~"5.."}[${window}]))`;
  return {
    rate: total,
    // With no 5xx at all the error series is missing: `or … * 0` makes the ratio 1, not empty.
    success: `1 - ((${errors} or ${total} * 0) / ${total})`,
    latency: (q: number) =>
      `histogram_quantile(${q}, sum by (${g}, le) (rate(weft_request_duration_seconds_bucket{${sel}}[${window}])))`,
  };
}

export function recordingRules(): Rule[] {
  const w = RULE_WINDOW;
  return LEVELS.flatMap(({ level, sel, by }) => {
    const s = goldenSignals(sel, by, w);
    return [
      { record: `${level}:weft_requests:rate${w}`, expr: s.rate },
      { record: `${level}:weft_requests_success:ratio_rate${w}`, expr: s.success },
      ...QUANTILES.map((q) => ({
        record: `${level}:weft_request_duration_seconds:p${Math.round(q * 100)}_rate${w}`,
        expr: s.latency(q),
      })),
    ];
  });
}

/** The plain Prometheus rules file (`rule_files:`), the same rules as the PrometheusRule. */
export function rulesFile() {
  return { groups: [{ name: 'weft-golden-signals', interval: '30s', rules: recordingRules() }] };
}

// ---------------------------------------------------------------------------------------------
// Prometheus Operator objects
// ---------------------------------------------------------------------------------------------

export function serviceMonitors(namespace: string): ServiceMonitor[] {
  return [
    new ServiceMonitor({
      metadata: { name: 'weft-operator', namespace, labels: { 'app.kubernetes.io/name': 'weft' } },
      spec: {
        selector: {
          matchLabels: { 'app.kubernetes.io/name': 'weft', 'app.kubernetes.io/component': 'operator' },
        },
        namespaceSelector: { matchNames: [namespace] },
        endpoints: [{ port: 'metrics', path: '/metrics' }],
      },
    }),
    new ServiceMonitor({
      metadata: { name: 'weft-webhook', namespace, labels: { 'app.kubernetes.io/name': 'weft' } },
      spec: {
        selector: { matchLabels: { 'app.kubernetes.io/name': WEBHOOK_SERVICE } },
        namespaceSelector: { matchNames: [namespace] },
        // The webhook serves /metrics on its admission port, with its self-bootstrapped (or
        // cert-manager) certificate, whose CA Prometheus does not hold.
        endpoints: [
          {
            port: 'https',
            path: '/metrics',
            scheme: 'https',
            tlsConfig: { serverName: `${WEBHOOK_SERVICE}.${namespace}.svc`, insecureSkipVerify: true },
          },
        ],
      },
    }),
  ];
}

/** Every meshed pod's sidecar: the pods that have the sidecar's named metrics port, in any namespace. */
export function podMonitor(namespace: string): PodMonitor {
  return new PodMonitor({
    metadata: { name: 'weft-sidecars', namespace, labels: { 'app.kubernetes.io/name': 'weft' } },
    spec: {
      selector: {},
      namespaceSelector: { any: true },
      podMetricsEndpoints: [{ port: SIDECAR_METRICS_PORT, path: '/metrics' }],
    },
  });
}

export function prometheusRule(namespace: string): PrometheusRule {
  return new PrometheusRule({
    metadata: { name: 'weft-golden-signals', namespace, labels: { 'app.kubernetes.io/name': 'weft' } },
    spec: rulesFile(),
  });
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboards. Template variables are regex matchers (`=~"$namespace"`) whose "All" is
// `.*`; the rate window is Grafana's $__rate_interval. Panels of events that may never happen
// (proxy errors, retries, refused configs) end in `or vector(0)`: a flat 0, not "No data".
// ---------------------------------------------------------------------------------------------

export interface Panel {
  title: string;
  unit: string;
  exprs: { expr: string; legend: string }[];
}

export interface Dashboard {
  uid: string;
  title: string;
  vars: string[];
  panels: Panel[];
}

const RI = '$__rate_interval';

function golden(sel: string, by: string[], legend: string): Panel[] {
  const s = goldenSignals(sel, by, RI);
  return [
    { title: 'Request rate', unit: 'reqps', exprs: [{ expr: s.rate, legend }] },
    { title: 'Success rate', unit: 'percentunit', exprs: [{ expr: s.success, legend }] },
    {
      title: 'Latency',
      unit: 's',
      exprs: QUANTILES.map((q) => ({ expr: s.latency(q), legend: `p${Math.round(q * 100)} ${legend}` })),
    },
  ];
}

export function dashboards(): Dashboard[] {
  const inbound =
    'direction="inbound", destination_namespace=~"$namespace", destination_workload=~"$workload"';
  return [
    {
      uid: 'weft-mesh',
      title: 'Weft / Mesh overview',
      vars: [],
      panels: [
        ...golden(
          'direction="inbound"',
          ['destination_namespace', 'destination_workload'],
          '{{destination_workload}}.{{destination_namespace}}',
        ),
        {
          title: 'Proxy errors (requests the proxy ended itself)',
          unit: 'reqps',
          exprs: [
            { expr: `sum by (code) (rate(weft_proxy_errors_total[${RI}])) or vector(0)`, legend: '{{code}}' },
          ],
        },
        {
          title: 'Authorization decisions',
          unit: 'reqps',
          exprs: [
            { expr: `sum by (decision) (rate(weft_authz_decisions_total[${RI}]))`, legend: '{{decision}}' },
          ],
        },
        {
          title: 'Sidecars with a workload certificate loaded',
          unit: 'short',
          exprs: [{ expr: 'sum(weft_identity_loaded)', legend: 'loaded' }],
        },
        {
          title: 'Applied config versions (sidecars per version)',
          unit: 'short',
          exprs: [{ expr: 'count by (version) (weft_config_info)', legend: '{{version}}' }],
        },
      ],
    },
    {
      uid: 'weft-workload',
      title: 'Weft / Workload',
      vars: ['namespace', 'workload'],
      panels: [
        ...golden(inbound, ['destination_workload'], 'inbound {{destination_workload}}'),
        {
          title: 'Inbound by caller',
          unit: 'reqps',
          exprs: [
            {
              expr: `sum by (source_namespace, source_workload) (rate(weft_requests_total{${inbound}}[${RI}]))`,
              legend: '{{source_workload}}.{{source_namespace}}',
            },
          ],
        },
        {
          title: 'Outbound by destination',
          unit: 'reqps',
          exprs: [
            {
              expr: `sum by (destination_namespace, destination_workload) (rate(weft_requests_total{direction="outbound", source_namespace=~"$namespace", source_workload=~"$workload"}[${RI}]))`,
              legend: '{{destination_workload}}.{{destination_namespace}}',
            },
          ],
        },
      ],
    },
    {
      uid: 'weft-route',
      title: 'Weft / Route (TrafficSplit, HTTPRoute, GRPCRoute, as callers see it)',
      vars: ['route', 'service'],
      panels: [
        ...golden(`${ROUTED}, route=~"$route"`, ['route'], '{{route}}'),
        {
          title: 'Requests per rule',
          unit: 'reqps',
          exprs: [
            {
              expr: `sum by (route, route_rule) (rate(weft_requests_total{${ROUTED}, route=~"$route"}[${RI}]))`,
              legend: '{{route}} {{route_rule}}',
            },
          ],
        },
        {
          title: 'Split: requests per backend Service and workload',
          unit: 'reqps',
          exprs: [
            {
              expr: `sum by (route, destination_service, destination_workload) (rate(weft_requests_total{${ROUTED}, route=~"$route", destination_service=~"$service"}[${RI}]))`,
              legend: '{{route}} → {{destination_service}} → {{destination_workload}}',
            },
          ],
        },
        {
          title: 'Retries per backend Service',
          unit: 'reqps',
          exprs: [
            {
              expr: `sum by (destination_service, outcome) (rate(weft_retries_total{destination_service=~"$service"}[${RI}])) or vector(0)`,
              legend: '{{destination_service}} {{outcome}}',
            },
          ],
        },
      ],
    },
    {
      uid: 'weft-control-plane',
      title: 'Weft / Control plane',
      vars: [],
      panels: [
        {
          title: 'Reconciles by controller and result',
          unit: 'ops',
          exprs: [
            {
              expr: `sum by (controller, result) (rate(weft_operator_reconcile_total[${RI}]))`,
              legend: '{{controller}} {{result}}',
            },
          ],
        },
        {
          title: 'Reconcile duration p99',
          unit: 's',
          exprs: [
            {
              expr: `histogram_quantile(0.99, sum by (controller, le) (rate(weft_operator_reconcile_duration_seconds_bucket[${RI}])))`,
              legend: '{{controller}}',
            },
          ],
        },
        {
          title: 'Queue depth',
          unit: 'short',
          exprs: [{ expr: 'max by (controller) (weft_operator_queue_depth)', legend: '{{controller}}' }],
        },
        {
          title: 'Leader',
          unit: 'short',
          exprs: [{ expr: 'max by (pod) (weft_operator_is_leader)', legend: '{{pod}}' }],
        },
        {
          title: 'Admissions by webhook and result',
          unit: 'ops',
          exprs: [
            {
              expr: `sum by (webhook, result) (rate(weft_webhook_admissions_total[${RI}]))`,
              legend: '{{webhook}} {{result}}',
            },
          ],
        },
        {
          title: 'Admission duration p99',
          unit: 's',
          exprs: [
            {
              expr: `histogram_quantile(0.99, sum by (webhook, le) (rate(weft_webhook_admission_duration_seconds_bucket[${RI}])))`,
              legend: '{{webhook}}',
            },
          ],
        },
        {
          title: 'Webhook certificate: time to expiry',
          unit: 's',
          exprs: [
            { expr: 'min(weft_webhook_certificate_expiry_timestamp_seconds) - time()', legend: 'expires in' },
          ],
        },
        {
          title: 'Sidecar config rejections',
          unit: 'ops',
          exprs: [
            {
              expr: `sum by (reason) (rate(weft_config_reload_failures_total[${RI}])) or vector(0)`,
              legend: '{{reason}}',
            },
          ],
        },
      ],
    },
  ];
}

const VAR_QUERIES: Record<string, string> = {
  namespace: 'label_values(weft_requests_total{direction="inbound"}, destination_namespace)',
  workload:
    'label_values(weft_requests_total{direction="inbound", destination_namespace=~"$namespace"}, destination_workload)',
  route: 'label_values(weft_requests_total{direction="outbound", route!=""}, route)',
  // The backends of the routes chosen (every Service the callers called, with "All" routes).
  service: 'label_values(weft_requests_total{direction="outbound", route=~"$route"}, destination_service)',
};

/** A dashboard as Grafana's JSON model (schemaVersion 39), datasource chosen by a variable. */
export function grafanaJson(d: Dashboard): object {
  const ds = { type: 'prometheus', uid: '$datasource' };
  return {
    uid: d.uid,
    title: d.title,
    tags: ['weft'],
    schemaVersion: 39,
    editable: true,
    refresh: '30s',
    time: { from: 'now-1h', to: 'now' },
    templating: {
      list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus' },
        ...d.vars.map((v) => ({
          name: v,
          type: 'query',
          datasource: ds,
          query: VAR_QUERIES[v],
          includeAll: true,
          allValue: '.*',
          multi: true,
          current: { text: 'All', value: '$__all' },
          refresh: 2,
        })),
      ],
    },
    panels: d.panels.map((p, i) => ({
      id: i + 1,
      type: 'timeseries',
      title: p.title,
      datasource: ds,
      gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
      fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
      targets: p.exprs.map((e, j) => ({
        refId: String.fromCharCode(65 + j),
        datasource: ds,
        expr: e.expr,
        legendFormat: e.legend,
      })),
    })),
  };
}

/** Every PromQL expression a dashboard JSON holds (panel targets), by panel title. */
export function dashboardExpressions(json: {
  panels: { title: string; targets: { expr: string }[] }[];
}): { title: string; expr: string }[] {
  return json.panels.flatMap((p) => p.targets.map((t) => ({ title: p.title, expr: t.expr })));
}

/**
 * An expression with the dashboards' variables filled in: every template variable matches all
 * (`.*`) and the rate window is `window`: what Prometheus' parser and the e2e query see.
 */
export function concreteExpr(expr: string, window: string): string {
  return expr.replaceAll('$__rate_interval', window).replace(/\$[a-z_]+/g, '.*');
}
