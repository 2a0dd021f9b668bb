// Weft's metrics and monitoring checked by Prometheus' own tools (promtool, built from the
// Prometheus Go module pinned in hack/prometheus): every component's /metrics text is lint-clean
// under `promtool check metrics`, the recording rules pass `promtool check rules`, and every
// PromQL expression of the rules and the dashboards parses with Prometheus' parser.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import * as yaml from 'js-yaml';
import { operatorMetrics } from '../../operator/metrics.ts';
import { ProxyMetrics } from '../../proxy/metrics.ts';
import { createMetrics } from '../../webhook/metrics.ts';
import { prometheusBinary } from '../flagger/flagger.ts';
import { renderMonitoringFiles } from '../gen-chart.ts';
import { helmBinary } from '../install.ts';
import { concreteExpr, dashboardExpressions, dashboards, recordingRules } from './monitoring.ts';

const root = join(import.meta.dirname, '..', '..');
const promtool = prometheusBinary('promtool');
const dir = mkdtempSync(join(tmpdir(), 'weft-monitoring-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** `promtool check metrics` on `text`: its complaints (empty when clean). */
function lint(text: string): string {
  const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`.trim() + (r.status === 0 ? '' : ` (exit ${r.status})`);
}

/** Parses one PromQL expression with Prometheus' parser (promtool's `promql format`). */
function parse(expr: string): { ok: boolean; out: string } {
  const r = spawnSync(promtool, ['--experimental', 'promql', 'format', expr], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

test('the proxy /metrics text is lint-clean under promtool check metrics, every family with samples', async () => {
  const m = new ProxyMetrics();
  const req = {
    direction: 'inbound',
    source_workload: 'a',
    source_namespace: 'ns',
    destination_workload: 'b',
    destination_namespace: 'ns',
    destination_service: 'b.ns',
    route: 'HTTPRoute/ns/b',
    route_rule: '0',
    status_code: '200',
    grpc_status: '',
  };
  const tcp = {
    direction: 'outbound',
    source_workload: 'a',
    source_namespace: 'ns',
    destination_service: 'b.ns',
  };
  m.requests.inc(req);
  m.duration.observe(req, 0.01);
  m.tcpOpened.inc(tcp);
  m.tcpOpen.set({ direction: 'inbound' }, 1);
  m.tcpReceived.inc(tcp, 10);
  m.tcpSent.inc(tcp, 10);
  m.configReloads.inc();
  m.configFailures.inc({ reason: 'WEFT_CONFIG_INVALID' });
  m.setConfigVersion('v1');
  m.proxyErrors.inc({ direction: 'outbound', code: 'WEFT_NO_ROUTE' });
  m.retries.inc({ destination_service: 'b.ns', outcome: 'sent' });
  m.ejections.inc({ destination_service: 'b.ns' });
  m.mtlsConnections.inc({ direction: 'inbound', tls_version: 'TLSv1.3', peer: 'spiffe://x/ns/ns/sa/a' });
  m.mtlsResumed.inc({ direction: 'outbound' });
  m.mtlsFailures.inc({ direction: 'outbound', reason: 'WEFT_PEER_IDENTITY' });
  m.mtlsRefused.inc({ reason: 'plaintext' });
  m.plaintextHops.inc({ direction: 'inbound', reason: 'permissive' });
  m.identityState.set(1);
  m.identityReloads.inc({ result: 'ok' });
  m.authzDecisions.inc({ decision: 'allow', policy: 'p', rule: '0', reason: 'matched' });
  const text = await m.registry.metrics();
  for (const family of (await m.registry.getMetricsAsJSON()).map((f) => f.name))
    assert.match(
      text,
      new RegExp(`^${family}(_bucket)?[{ ]`, 'm'),
      `${family} has a sample in the checked text`,
    );
  assert.equal(lint(text), '');
});

test('the operator /metrics text (its own and the Node.js process metrics) is lint-clean', async () => {
  const m = operatorMetrics();
  m.reconciles.inc({ controller: 'mesh', result: 'success' });
  m.reconcileErrors.inc({ controller: 'mesh' });
  m.reconcileDuration.observe({ controller: 'mesh' }, 0.01);
  m.depth.source = () => ({ mesh: 1 });
  m.configMapWrites.inc({ namespace: 'ns', op: 'apply' });
  m.configBytes.set({ namespace: 'ns', encoding: 'gzip' }, 100);
  m.informerRestarts.inc({ kind: 'Pod', reason: 'error' });
  m.isLeader.set(1);
  m.cacheSynced.set(1);
  assert.equal(lint(await m.registry.metrics()), '');
});

test('the webhook /metrics text is lint-clean', async () => {
  const m = createMetrics();
  m.admissions.inc({ webhook: 'inject', kind: 'Pod', result: 'injected' });
  m.duration.observe({ webhook: 'inject' }, 0.002);
  m.certExpiry.set(Date.now() / 1000 + 3600);
  assert.equal(lint(await m.registry.metrics()), '');
});

test('the recording rules pass promtool check rules, and config/monitoring and the dashboards are generated', () => {
  for (const [file, text] of renderMonitoringFiles())
    assert.equal(readFileSync(join(root, file), 'utf8'), text, `${file} is stale: run npm run chart`);
  const out = execFileSync(promtool, ['check', 'rules', join(root, 'config', 'monitoring', 'rules.yaml')], {
    encoding: 'utf8',
  });
  assert.match(out, new RegExp(`SUCCESS: ${recordingRules().length} rules found`));
  // The PrometheusRule's spec is the same rules file (promtool checks it as one too).
  const monitoring = readFileSync(join(root, 'config', 'monitoring', 'monitoring.yaml'), 'utf8');
  assert.ok(monitoring.includes('kind: PrometheusRule'));
});

test('promtool check rules refuses a broken rule (the check can fail)', () => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    'groups:\n  - name: x\n    rules:\n      - record: x:y\n        expr: sum(rate(a[5m]) by (b)\n',
  );
  const r = spawnSync(promtool, ['check', 'rules', bad], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.ok(!parse('sum(rate(a[5m]) by (b)').ok, 'the parser refuses an unbalanced expression');
});

test("every PromQL expression of the dashboards' JSON and of the rules parses with Prometheus' parser", () => {
  const files = readdirSync(join(root, 'charts', 'weft', 'dashboards')).filter((f) => f.endsWith('.json'));
  assert.deepEqual(
    files.sort(),
    dashboards()
      .map((d) => `${d.uid}.json`)
      .sort(),
  );
  const exprs = [
    ...files.flatMap((f) =>
      dashboardExpressions(
        JSON.parse(readFileSync(join(root, 'charts', 'weft', 'dashboards', f), 'utf8')),
      ).map((e) => ({ where: `${f}: ${e.title}`, expr: concreteExpr(e.expr, '1m') })),
    ),
    ...recordingRules().map((r) => ({ where: `rule ${r.record}`, expr: r.expr })),
  ];
  assert.ok(exprs.length > 30, `${exprs.length} expressions`);
  // All at once, as the expressions of one rules file (one promtool run); when that fails, one by
  // one to name the expression the parser refuses.
  const all = join(dir, 'exprs.yaml');
  writeFileSync(
    all,
    yaml.dump({
      groups: [{ name: 'exprs', rules: exprs.map((e, i) => ({ record: `weft_check:e${i}`, expr: e.expr })) }],
    }),
  );
  if (spawnSync(promtool, ['check', 'rules', all], { encoding: 'utf8' }).status === 0) return;
  for (const { where, expr } of exprs) {
    const r = parse(expr);
    assert.ok(r.ok, `${where}: ${r.out}\n${expr}`);
  }
  assert.fail('promtool check rules refused the expressions, each of which parses alone');
});

test('the chart renders the monitoring objects only when asked, valid against the Prometheus Operator schemas', () => {
  type Obj = { kind: string; metadata: { name: string; namespace: string; labels: Record<string, string> } };
  const render = (...set: string[]) =>
    (
      yaml.loadAll(
        execFileSync(
          helmBinary(),
          [
            'template',
            'weft',
            join(root, 'charts', 'weft'),
            '--kube-version',
            '1.34.4',
            '-n',
            'mon',
            ...set.flatMap((x) => ['--set', x]),
          ],
          { encoding: 'utf8' },
        ),
      ) as (Obj | null)[]
    ).filter((o): o is Obj => o !== null);
  const monitoringKinds = ['ServiceMonitor', 'PodMonitor', 'PrometheusRule'];
  const off = render();
  assert.deepEqual(
    off.filter((o) => monitoringKinds.includes(o.kind) || o.metadata.name === 'weft-dashboards'),
    [],
    'nothing by default',
  );
  const on = render(
    'monitoring.serviceMonitors=true',
    'monitoring.rules=true',
    'monitoring.dashboards=true',
    'monitoring.labels.release=kps',
  );
  const picked = on.filter((o) => monitoringKinds.includes(o.kind) || o.metadata.name === 'weft-dashboards');
  assert.deepEqual(picked.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'ConfigMap/weft-dashboards',
    'PodMonitor/weft-sidecars',
    'PrometheusRule/weft-golden-signals',
    'ServiceMonitor/weft-operator',
    'ServiceMonitor/weft-webhook',
  ]);
  for (const o of picked) {
    assert.equal(o.metadata.namespace, 'mon', `${o.kind} follows the release namespace`);
    assert.equal(o.metadata.labels.release, 'kps', `${o.kind} carries monitoring.labels`);
  }
  // The typed models validate against the Prometheus Operator's CRD schemas.
  const models = { ServiceMonitor, PodMonitor, PrometheusRule } as const;
  for (const o of picked)
    if (o.kind in models) new models[o.kind as keyof typeof models](o as never).validate();
  const cm = picked.find((o) => o.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
  assert.deepEqual(
    Object.keys(cm.data).sort(),
    dashboards()
      .map((d) => `${d.uid}.json`)
      .sort(),
  );
  for (const [file, json] of Object.entries(cm.data))
    assert.equal(
      JSON.stringify(JSON.parse(json)),
      JSON.stringify(JSON.parse(readFileSync(join(root, 'charts', 'weft', 'dashboards', file), 'utf8'))),
    );
});
