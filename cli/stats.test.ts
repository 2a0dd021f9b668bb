// stat/edges/top arithmetic and rendering: rates and success from counter increases, latency
// percentiles as histogram_quantile computes them, tables compared with golden files.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { assertGolden } from '../webhook/testdata/golden.ts';
import { computeStats, parsePrometheus, quantileMs, renderStats, type Scrape } from './stats.ts';

const pod = (name: string, app: string, sa: string): V1Pod => ({
  metadata: { name, namespace: 'shop', labels: { app } },
  spec: { serviceAccountName: sa, containers: [] },
});
const web = pod('web-1', 'web', 'web');
const fe = pod('frontend-1', 'frontend', 'frontend');
const idle = pod('db-0', 'db', 'db');

/** The text a proxy's /metrics gives for `n` requests of one status, all in one latency bucket. */
function metrics(
  direction: string,
  counts: Record<string, number>,
  bucket: number,
  svc = 'web.shop',
  route?: string,
): string {
  const routed = route === undefined ? '' : `,route="${route}",route_rule=""`;
  const base = `direction="${direction}",source_workload="frontend",source_namespace="shop",destination_workload="web",destination_namespace="shop",destination_service="${svc}"${routed}`;
  const les = [0.001, 0.005, 0.01, 0.1, 1];
  const lines = [
    '# HELP weft_requests_total HTTP/gRPC requests handled by the proxy.',
    '# TYPE weft_requests_total counter',
  ];
  for (const [status, n] of Object.entries(counts)) {
    const l = `${base},status_code="${status}",grpc_status=""`;
    lines.push(`weft_requests_total{${l}} ${n}`);
    for (const le of les)
      lines.push(`weft_request_duration_seconds_bucket{le="${le}",${l}} ${le >= bucket ? n : 0}`);
    lines.push(`weft_request_duration_seconds_bucket{le="+Inf",${l}} ${n}`);
  }
  return `${lines.join('\n')}\n`;
}

const scrapes = (
  p: V1Pod,
  dir: string,
  a: Record<string, number>,
  b: Record<string, number>,
  bucket: number,
) => [
  { pod: p, samples: parsePrometheus(metrics(dir, a, bucket)) },
  { pod: p, samples: parsePrometheus(metrics(dir, b, bucket)) },
];

test('parsePrometheus reads names, labels with escapes, and values', () => {
  const s = parsePrometheus('# HELP x y\nx_total{a="1",b="q\\"uote\\\\"} 3\nup 1\n\n');
  assert.deepEqual(s, [
    { name: 'x_total', labels: { a: '1', b: 'q"uote\\' }, value: 3 },
    { name: 'up', labels: {}, value: 1 },
  ]);
});

test('quantileMs interpolates inside the bucket, as histogram_quantile does', () => {
  const b = new Map([
    [0.005, 50],
    [0.01, 90],
    [0.1, 100],
    [Number.POSITIVE_INFINITY, 100],
  ]);
  assert.equal(quantileMs(0.5, b), 5);
  assert.equal(quantileMs(0.7, b), 7.5);
  assert.equal(quantileMs(0.99, b), 91);
  assert.equal(quantileMs(0.5, new Map()), undefined);
  // Past the last finite bucket: its bound (Prometheus answers the same).
  assert.equal(
    quantileMs(
      0.99,
      new Map([
        [0.1, 1],
        [Number.POSITIVE_INFINITY, 10],
      ]),
    ),
    100,
  );
});

test('stat: per workload, from the increases over the window; an idle workload is listed; a reset counter counts from zero', () => {
  const [b1, a1] = scrapes(web, 'inbound', { '200': 100, '503': 10 }, { '200': 130, '503': 20 }, 0.005);
  const before: Scrape[] = [b1!, { pod: idle, samples: [] }];
  const after: Scrape[] = [a1!, { pod: idle, samples: [] }];
  const rows = computeStats(before, after, 10, 'workload', [web, idle], 'cluster.local');
  assert.deepEqual(
    rows.map((r) => [r.name, r.requests, r.rps, r.successRate]),
    [
      ['shop/web', 40, 4, 0.75],
      ['shop/db', 0, 0, undefined],
    ],
  );
  assertGolden('weftctl-stat.txt', renderStats(rows, 'workload'));
  // The proxy restarted between the scrapes: its counters start again from 0.
  const [b2, a2] = scrapes(web, 'inbound', { '200': 500 }, { '200': 7 }, 0.005);
  assert.equal(computeStats([b2!], [a2!], 1, 'workload', [web], 'cluster.local')[0]!.requests, 7);
});

test("edges: caller -> destination from the callers' outbound metrics, with both identities", () => {
  const [b, a] = scrapes(fe, 'outbound', { '200': 0, '500': 0 }, { '200': 18, '500': 2 }, 0.1);
  const rows = computeStats([b!], [a!], 2, 'edge', [web, fe], 'cluster.local');
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0]!.source, {
    workload: 'frontend',
    namespace: 'shop',
    identity: 'spiffe://cluster.local/ns/shop/sa/frontend',
  });
  assert.equal(rows[0]!.destination?.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  assert.equal(rows[0]!.successRate, 0.9);
  assertGolden('weftctl-edges.txt', renderStats(rows, 'edge'));
});

test('edges: series that did not move make no row; the Services of one edge (split backends) are listed once each', () => {
  const text = (v1: number, v2: number, stale: number) =>
    metrics('outbound', { '200': v1 }, 0.01, 'web-v1.shop') +
    metrics('outbound', { '200': v2 }, 0.01, 'web-v2.shop') +
    metrics('outbound', { '200': stale }, 0.01, 'old.shop').replaceAll(
      'destination_workload="web"',
      'destination_workload="unknown"',
    );
  const rows = computeStats(
    [{ pod: fe, samples: parsePrometheus(text(10, 10, 5)) }],
    [{ pod: fe, samples: parsePrometheus(text(18, 12, 5)) }],
    1,
    'edge',
    [web, fe],
    'cluster.local',
  );
  assert.deepEqual(
    rows.map((r) => [r.name, r.destination?.service, r.requests]),
    [['shop/frontend -> shop/web', 'web-v1.shop,web-v2.shop', 10]],
  );
});

test("routes: per route from the callers' outbound metrics, with the backend Services; requests no route decided make no row", () => {
  const text = (canary: number, beta: number, none: number) =>
    metrics('outbound', { '200': canary }, 0.01, 'web-v1.shop', 'TrafficSplit/shop/web-canary') +
    metrics(
      'outbound',
      { '200': canary, '503': canary / 2 },
      0.1,
      'web-v2.shop',
      'TrafficSplit/shop/web-canary',
    ) +
    metrics('outbound', { '200': beta }, 0.005, 'web-v2.shop', 'HTTPRoute/shop/web-beta') +
    metrics('outbound', { '200': none }, 0.005, 'db.shop', '');
  const rows = computeStats(
    [{ pod: fe, samples: parsePrometheus(text(0, 0, 0)) }],
    [{ pod: fe, samples: parsePrometheus(text(20, 5, 7)) }],
    5,
    'route',
    [web, fe],
    'cluster.local',
  );
  assert.deepEqual(
    rows.map((r) => [r.name, r.destination?.service, r.requests, r.successRate]),
    [
      ['TrafficSplit/shop/web-canary', 'web-v1.shop,web-v2.shop', 50, 0.8],
      ['HTTPRoute/shop/web-beta', 'web-v2.shop', 5, 1],
    ],
  );
  assertGolden('weftctl-routes.txt', renderStats(rows, 'route'));
});
