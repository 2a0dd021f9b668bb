// The Prometheus configuration and the MetricTemplates the Flagger e2e test (and users) run,
// checked by Prometheus' own promtool (built from its module): the configuration loads, and each
// template's query, rendered as Flagger renders it, is valid PromQL over Weft's metric names.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FLAGGER_VERSION, metricTemplates, prometheusBinary, prometheusConfig } from './flagger.ts';

describe('Flagger support', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-flagger-unit-'));
  const promtool = prometheusBinary('promtool');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the Flagger version comes from hack/flagger/go.mod', () => {
    assert.match(FLAGGER_VERSION, /^v1\.\d+\.\d+$/);
  });

  test('the Prometheus configuration passes promtool and scrapes the sidecars on the health port', () => {
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
    const config = join(dir, 'prometheus.yml');
    const text = prometheusConfig({ kubeconfig, namespaces: ['a', 'b'], scrapeInterval: '2s' });
    writeFileSync(config, text);
    const out = spawnSync(promtool, ['check', 'config', config], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stdout + out.stderr);
    const job = JSON.parse(text).scrape_configs[0];
    assert.deepEqual(job.kubernetes_sd_configs[0].namespaces.names, ['a', 'b']);
    assert.ok(job.relabel_configs.some((r: { replacement?: string }) => r.replacement === '$1:15020'));
    assert.ok(
      job.relabel_configs.some(
        (r: { source_labels: string[]; action?: string }) =>
          r.action === 'keep' && r.source_labels[0] === '__meta_kubernetes_pod_annotation_weft_dev_injected',
      ),
    );
  });

  test('with the control plane and the rules, the configuration still passes promtool (rule files included)', () => {
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
    const config = join(dir, 'prometheus-cp.yml');
    const rules = join(import.meta.dirname, '..', '..', 'config', 'monitoring', 'rules.yaml');
    const text = prometheusConfig({
      kubeconfig,
      namespaces: ['a'],
      scrapeInterval: '2s',
      controlPlane: 'weft-system',
      ruleFiles: [rules],
    });
    writeFileSync(config, text);
    const out = spawnSync(promtool, ['check', 'config', config], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stdout + out.stderr);
    assert.match(out.stdout, /SUCCESS: \d+ rules found/);
    const jobs = JSON.parse(text).scrape_configs as { job_name: string; scheme?: string }[];
    assert.deepEqual(
      jobs.map((j) => j.job_name),
      ['weft-operator', 'weft-webhook', 'weft-sidecars'],
    );
    assert.equal(jobs[1]!.scheme, 'https');
  });

  test('each MetricTemplate is valid PromQL over weft_ metrics, pointed at the given Prometheus', () => {
    const templates = metricTemplates('http://127.0.0.1:9', 'ns1') as {
      metadata: { name: string; namespace: string };
      spec: { provider: { type: string; address: string }; query: string };
    }[];
    assert.deepEqual(
      templates.map((t) => t.metadata.name),
      ['weft-request-success-rate', 'weft-request-duration'],
    );
    const rules: string[] = [];
    for (const t of templates) {
      assert.equal(t.metadata.namespace, 'ns1');
      assert.deepEqual(t.spec.provider, { type: 'prometheus', address: 'http://127.0.0.1:9' });
      assert.match(t.spec.query, /weft_request/);
      // As Flagger renders it (Go templates with these three functions).
      const q = t.spec.query
        .replaceAll('{{ namespace }}', 'ns1')
        .replaceAll('{{ target }}', 'podinfo')
        .replaceAll('{{ interval }}', '1m');
      assert.doesNotMatch(q, /\{\{/, 'every template function is one Flagger provides');
      rules.push(
        `      - record: weft:${t.metadata.name.replaceAll('-', '_')}\n        expr: ${JSON.stringify(q)}`,
      );
    }
    const file = join(dir, 'rules.yml');
    writeFileSync(file, `groups:\n  - name: flagger\n    rules:\n${rules.join('\n')}\n`);
    const out = spawnSync(promtool, ['check', 'rules', file], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stdout + out.stderr);
    // A broken query is caught by the same check (this test can fail).
    writeFileSync(file, readFileSync(file, 'utf8').replace('sum(rate(', 'sum(rate(('));
    assert.notEqual(spawnSync(promtool, ['check', 'rules', file]).status, 0);
  });
});
