// The request families (weft_requests_total, weft_request_duration_seconds) are kept as plain
// numbers per label set rather than prom-client children: the text they write must stay what
// prom-client's Counter and Histogram wrote for the same requests, escaping included.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DURATION_BUCKETS, ProxyMetrics, type RequestLabels } from './metrics.ts';
import { Counter, Histogram, Registry } from './promclient.ts';

const labels = (status: string, workload: string, route = ''): RequestLabels => ({
  direction: 'outbound',
  source_workload: workload,
  source_namespace: 'shop',
  destination_workload: 'web',
  destination_namespace: 'shop',
  destination_service: 'web.shop',
  route,
  route_rule: route ? 'api' : '',
  status_code: status,
  grpc_status: '',
});

test("the request families write the same text as prom-client's Counter and Histogram", async () => {
  const requests: Array<[RequestLabels, number]> = [
    [labels('200', 'frontend', 'HTTPRoute/shop/web'), 0.0004],
    [labels('200', 'frontend', 'HTTPRoute/shop/web'), 0.004],
    [labels('200', 'frontend', 'HTTPRoute/shop/web'), 0.001],
    [labels('503', 'frontend'), 0.3],
    [labels('200', 'odd "name" \\ with\nnewline'), 42],
  ];
  const ours = new ProxyMetrics();
  for (const [l, s] of requests) ours.requestSeries(l).finished(s);
  // One counter-only increment, as a test or a tool may write.
  ours.requests.inc(labels('404', 'frontend'), 3);

  const registry = new Registry();
  const names = Object.keys(labels('200', 'x'));
  const c = new Counter({
    name: 'weft_requests_total',
    help: ours.requests.help,
    labelNames: names,
    registers: [registry],
  });
  const h = new Histogram({
    name: 'weft_request_duration_seconds',
    help: ours.duration.help,
    labelNames: names,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  for (const [l, s] of requests) {
    c.inc(l);
    h.observe(l, s);
  }
  c.inc(labels('404', 'frontend'), 3);

  const families = (text: string) =>
    text
      .split('\n\n')
      .filter((f) => f.includes('weft_request'))
      .join('\n\n')
      .trim();
  const got = families(await ours.registry.metrics());
  assert.equal(got, families(await registry.metrics()));
  assert.match(got, /route="HTTPRoute\/shop\/web",route_rule="api"/);
  // The families are still listed as such (promtool lints the whole text in hack/monitoring).
  const listed = (await ours.registry.getMetricsAsJSON()).map((f) => `${f.name} ${f.type}`);
  assert.ok(listed.includes('weft_requests_total counter'));
  assert.ok(listed.includes('weft_request_duration_seconds histogram'));
});

test('a label the request families do not have is refused, naming it', () => {
  const m = new ProxyMetrics();
  assert.throws(
    () => m.requests.inc({ ...labels('200', 'x'), path: '/users/42' } as unknown as RequestLabels),
    /label "path" is not one of the request metrics'/,
  );
});
