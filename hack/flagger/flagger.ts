// Progressive delivery on the real node: Flagger and Prometheus, each built from its Go module
// (pinned by hack/flagger/go.mod and hack/prometheus/go.mod), as host processes. Prometheus
// finds the meshed pods through the apiserver (kubernetes_sd, role pod) and scrapes each
// sidecar's /metrics on the health port through the pod network; Flagger reads Weft's golden
// metrics from it through the MetricTemplates of config/flagger/metric-templates.yaml and moves
// HTTPRoute weights (its `gatewayapi:v1` provider). test/e2e/flagger.test.ts uses it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { PROXY } from '../../api/constants.ts';
import { ANNOTATIONS } from '../../webhook/constants.ts';
import { freePort } from '../lib/control-plane.ts';
import { type HostProcess, startHostProcess } from '../lib/hostprocess.ts';

export type { HostProcess };

const root = join(import.meta.dirname, '..', '..');
const pins = join(root, 'hack', 'flagger');
export const FLAGGER_MODULE = 'github.com/fluxcd/flagger';
/** The Flagger version of hack/flagger/go.mod. */
export const FLAGGER_VERSION = /^require github\.com\/fluxcd\/flagger (v\S+)$/m.exec(
  readFileSync(join(pins, 'go.mod'), 'utf8'),
)![1]!;
/** The MetricTemplates users apply (their `provider.address` names their Prometheus). */
export const METRIC_TEMPLATES = join(root, 'config', 'flagger', 'metric-templates.yaml');

/** The flagger binary, built once from hack/flagger's pinned module graph (hack/go-tool.sh). */
export function flaggerBinary(): string {
  return execFileSync(
    'bash',
    [join(root, 'hack', 'go-tool.sh'), 'flagger', `${FLAGGER_MODULE}/cmd/flagger`, pins],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  ).trim();
}

/** Prometheus' `prometheus` or `promtool`, built once with only the Kubernetes service discovery. */
export function prometheusBinary(name: 'prometheus' | 'promtool' = 'prometheus'): string {
  return execFileSync(
    'bash',
    [
      join(root, 'hack', 'go-tool.sh'),
      name,
      `github.com/prometheus/prometheus/cmd/${name}`,
      join(root, 'hack', 'prometheus'),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  ).trim();
}

/** Flagger's CRDs (Canary, MetricTemplate, AlertProvider), read from its module at run time. */
export function flaggerCrds(): string {
  const { Dir } = JSON.parse(
    execFileSync('go', ['mod', 'download', '-json', `${FLAGGER_MODULE}@${FLAGGER_VERSION}`], {
      cwd: pins,
      encoding: 'utf8',
      env: { ...process.env, GOFLAGS: '-mod=readonly' },
    }),
  ) as { Dir: string };
  return join(Dir, 'artifacts', 'flagger', 'crd.yaml');
}

/**
 * The MetricTemplates of config/flagger/metric-templates.yaml, each pointed at `prometheusUrl`
 * and put in `namespace` (a Canary's `templateRef` names them there).
 */
export function metricTemplates(prometheusUrl: string, namespace: string): object[] {
  return (
    readFileSync(METRIC_TEMPLATES, 'utf8')
      .split(/^---$/m)
      .map((doc) => load(doc) as { metadata: object; spec: { provider: object } } | null)
      .filter((t) => t !== null) as { metadata: object; spec: { provider: object } }[]
  ).map((t) => ({
    ...t,
    metadata: { ...t.metadata, namespace },
    spec: { ...t.spec, provider: { ...t.spec.provider, address: prometheusUrl } },
  }));
}

/**
 * A Prometheus configuration scraping every meshed pod's sidecar (`/metrics` on the health
 * port) in `namespaces`, found through the apiserver with `kubeconfig`. Each pod is one target
 * (targets of one pod's containers collapse into one after relabelling), labelled with its
 * namespace and pod name. With `controlPlane` (Weft's namespace) it scrapes the operator and the
 * webhook too, as the chart's ServiceMonitors do (hack/monitoring/monitoring.ts); `ruleFiles` are
 * evaluated (config/monitoring/rules.yaml).
 */
export function prometheusConfig(o: {
  kubeconfig: string;
  namespaces: string[];
  scrapeInterval: string;
  controlPlane?: string;
  ruleFiles?: string[];
}): string {
  const meta = (name: string) => `__meta_kubernetes_pod_${name}`;
  const annotation = meta(`annotation_${ANNOTATIONS.injected.replace(/[^a-zA-Z0-9_]/g, '_')}`);
  /** The control plane's pods in `o.controlPlane` whose container port is named `port`. */
  const controlPlaneJob = (job: string, app: string, port: string, extra: object) => ({
    job_name: job,
    ...extra,
    kubernetes_sd_configs: [
      { role: 'pod', kubeconfig_file: o.kubeconfig, namespaces: { names: [o.controlPlane] } },
    ],
    relabel_configs: [
      { source_labels: [meta('label_app_kubernetes_io_name')], regex: app, action: 'keep' },
      { source_labels: [meta('container_port_name')], regex: port, action: 'keep' },
      { source_labels: [meta('phase')], regex: 'Running', action: 'keep' },
      { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
      { source_labels: [meta('name')], target_label: 'pod' },
    ],
  });
  return JSON.stringify(
    {
      global: { scrape_interval: o.scrapeInterval, evaluation_interval: o.scrapeInterval },
      ...(o.ruleFiles ? { rule_files: o.ruleFiles } : {}),
      scrape_configs: [
        ...(o.controlPlane
          ? [
              controlPlaneJob('weft-operator', 'weft', 'metrics', {}),
              // The webhook serves /metrics on its admission port with its own certificate.
              controlPlaneJob('weft-webhook', 'weft-webhook', 'https', {
                scheme: 'https',
                tls_config: { insecure_skip_verify: true },
              }),
            ]
          : []),
        {
          job_name: 'weft-sidecars',
          kubernetes_sd_configs: [
            { role: 'pod', kubeconfig_file: o.kubeconfig, namespaces: { names: o.namespaces } },
          ],
          relabel_configs: [
            { source_labels: [annotation], regex: '.+', action: 'keep' },
            { source_labels: [meta('phase')], regex: 'Running', action: 'keep' },
            {
              source_labels: [meta('ip')],
              target_label: '__address__',
              replacement: `$1:${PROXY.healthPort}`,
            },
            { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
            { source_labels: [meta('name')], target_label: 'pod' },
          ],
        },
      ],
    },
    null,
    2,
  );
}

/** Prometheus on 127.0.0.1 (a free port), its data and log under `dir`; ready when it says so. */
export async function startPrometheus(o: {
  dir: string;
  kubeconfig: string;
  namespaces: string[];
  scrapeInterval?: string;
  controlPlane?: string;
  ruleFiles?: string[];
}): Promise<HostProcess> {
  mkdirSync(o.dir, { recursive: true });
  const config = join(o.dir, 'prometheus.yml');
  writeFileSync(config, prometheusConfig({ scrapeInterval: '2s', ...o }));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = join(o.dir, 'prometheus.log');
  return startHostProcess({
    name: 'prometheus',
    cmd: prometheusBinary(),
    args: [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(o.dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
    ],
    log,
    url,
    ready: async () => (await fetch(`${url}/-/ready`)).ok,
  });
}

/** Flagger against the cluster of `kubeconfig` with the `gatewayapi:v1` provider, reading `metricsServer`. */
export async function startFlagger(o: {
  dir: string;
  kubeconfig: string;
  metricsServer: string;
}): Promise<HostProcess> {
  mkdirSync(o.dir, { recursive: true });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = join(o.dir, 'flagger.log');
  return startHostProcess({
    name: 'flagger',
    cmd: flaggerBinary(),
    args: [
      `-kubeconfig=${o.kubeconfig}`,
      '-mesh-provider=gatewayapi:v1',
      `-metrics-server=${o.metricsServer}`,
      `-port=${port}`,
      '-log-level=info',
      '-control-loop-interval=2s',
    ],
    log,
    url,
    ready: async () => (await fetch(`${url}/healthz`)).ok,
  });
}

/** One sample of an instant query's result vector. */
export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant PromQL query against Prometheus at `url` (at `time`, Unix seconds; now by default). */
export async function promQuery(url: string, expr: string, time?: number): Promise<PromSample[]> {
  const q = new URLSearchParams({ query: expr, ...(time === undefined ? {} : { time: String(time) }) });
  const res = await fetch(`${url}/api/v1/query?${q}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: PromSample[] } };
  if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
  return body.data!.result;
}
