// The JSON the dashboard's server gives the page (golden), and what the server refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { AuthorizationPolicy } from '../api/index.ts';
import type { KubeClient } from '../kube/client.ts';
import { assertGolden } from '../webhook/testdata/golden.ts';
import { buildDashboard, serveDashboard } from './dashboard.ts';
import { runWeftctl } from './main.ts';
import { parsePrometheus, scrape } from './stats.ts';
import { rowOf } from './status.ts';

const pod = (name: string, app: string, sa: string): V1Pod => ({
  metadata: { name, namespace: 'shop', labels: { app } },
  spec: { serviceAccountName: sa, containers: [] },
});
const fe = pod('frontend-1', 'frontend', 'frontend');
const reviews = pod('reviews-v1-1', 'reviews', 'reviews');

/** A caller's outbound requests to one backend Service, all answered 200 within 5 ms. */
function sent(svc: string, n: number): string {
  const l = `direction="outbound",source_workload="frontend",source_namespace="shop",destination_workload="reviews",destination_namespace="shop",destination_service="${svc}",status_code="200",grpc_status=""`;
  return [
    `weft_requests_total{${l}} ${n}`,
    `weft_request_duration_seconds_bucket{le="0.005",${l}} ${n}`,
    `weft_request_duration_seconds_bucket{le="+Inf",${l}} ${n}`,
  ].join('\n');
}
const served = (ok: number, denied: number) =>
  [
    `weft_requests_total{direction="inbound",source_workload="frontend",source_namespace="shop",destination_workload="reviews",destination_namespace="shop",destination_service="reviews.shop",status_code="200",grpc_status=""} ${ok}`,
    `weft_requests_total{direction="inbound",source_workload="intruder",source_namespace="shop",destination_workload="reviews",destination_namespace="shop",destination_service="reviews.shop",status_code="403",grpc_status=""} ${denied}`,
    `weft_authz_decisions_total{decision="allow",policy="shop/reviews-from-frontend",rule="0",reason="allowed-by-policy"} ${ok}`,
    `weft_authz_decisions_total{decision="deny",policy="",rule="",reason="no-allow-match"} ${denied}`,
    `weft_authz_decisions_total{decision="deny",policy="shop/deny-admin",rule="1",reason="denied-by-policy"} 0`,
  ].join('\n');

const policy = (name: string, action: 'ALLOW' | 'DENY', app: string): AuthorizationPolicy =>
  ({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'shop' },
    spec: { action, selector: { matchLabels: { app } }, rules: [{}] },
  }) as unknown as AuthorizationPolicy;

test('the page data: graph from two scrapes, configured against observed split weights, denials naming the policy, status (golden)', () => {
  const split = {
    metadata: { name: 'reviews-canary', namespace: 'shop', generation: 2 },
    spec: {
      service: 'reviews',
      backends: [
        { service: 'reviews-v1', weight: 90 },
        { service: 'reviews-v2', weight: 10 },
      ],
    },
    status: {
      observedGeneration: 2,
      conditions: [{ type: 'Ready', status: 'True', reason: 'Accepted', message: 'routes reviews' }],
    },
  };
  const data = buildDashboard({
    before: [
      {
        pod: fe,
        samples: parsePrometheus(`${sent('reviews-v1.shop', 100)}\n${sent('reviews-v2.shop', 10)}`),
      },
      { pod: reviews, samples: parsePrometheus(served(100, 0)) },
    ],
    after: [
      {
        pod: fe,
        samples: parsePrometheus(`${sent('reviews-v1.shop', 180)}\n${sent('reviews-v2.shop', 30)}`),
      },
      { pod: reviews, samples: parsePrometheus(served(200, 5)) },
    ],
    windowSec: 10,
    pods: [fe, reviews],
    trustDomain: 'cluster.local',
    splits: [split],
    policies: [
      policy('reviews-from-frontend', 'ALLOW', 'reviews'),
      policy('ratings-from-reviews', 'ALLOW', 'ratings'),
      policy('deny-admin', 'DENY', 'reviews'),
    ],
    status: [rowOf('TrafficSplit', split)],
    errors: ['shop/db-0: metrics not read: 503'],
  });
  const backends = data.trafficSplits[0]!.backends;
  assert.deepEqual(
    backends.map((b) => [b.service, b.configured, b.observed]),
    [
      ['reviews-v1', 0.9, 0.8],
      ['reviews-v2', 0.1, 0.2],
    ],
  );
  // The denial without a policy label names the ALLOW policy that selects reviews (not ratings').
  assert.deepEqual(data.authz[0], {
    workload: 'shop/reviews',
    decision: 'deny',
    policy: '',
    rule: '',
    reason: 'no-allow-match',
    count: 5,
    allowPolicies: ['shop/reviews-from-frontend'],
  });
  assertGolden('weftctl-dashboard.json', data);
});

test('the server: the page and its script, only GET, only with a loopback Host', async () => {
  const { server, url } = await serveDashboard({} as KubeClient, {
    address: '127.0.0.1',
    port: 0,
    windowMs: 1000,
  });
  try {
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<script src="\/app.js"/);
    const js = await fetch(`${url}app.js`);
    assert.match(js.headers.get('content-type')!, /^text\/javascript/);
    assert.equal((await fetch(url, { method: 'POST' })).status, 405);
    assert.equal((await fetch(`${url}nope`)).status, 404);
    // A page of another site that resolved its name to 127.0.0.1 (DNS rebinding) sends its own Host.
    const port = new URL(url).port;
    const rebound = await new Promise<number>((resolve, reject) => {
      import('node:http').then(({ get }) =>
        get(
          { host: '127.0.0.1', port, path: '/api/dashboard', headers: { host: `evil.example:${port}` } },
          (r) => {
            r.resume();
            resolve(r.statusCode!);
          },
        ).on('error', reject),
      );
    });
    assert.equal(rebound, 403);
  } finally {
    server.close();
  }
});

test('dashboard flags: a non-loopback address, a bad port and a window under 1s are refused, naming the flag', async () => {
  for (const [args, message] of [
    [['--address', '0.0.0.0'], /--address: "0.0.0.0" is not a loopback address.*ssh -L/],
    [['--port', '70000'], /--port: "70000" is not a port number/],
    [['--window', '0s'], /--window: "0s" is under 1s/],
  ] as const)
    await assert.rejects(runWeftctl(['dashboard', ...args]), message);
});

test('a sidecar the apiserver cannot reach is left out after the timeout, not waited for', async () => {
  // The apiserver holds a pods/proxy GET for its own dial timeout; only the abort ends it here.
  const hung = {
    requestText: (_m: string, _p: string, o: { signal?: AbortSignal }) =>
      new Promise((_, reject) => o.signal?.addEventListener('abort', () => reject(o.signal!.reason))),
  } as unknown as KubeClient;
  const errors: string[] = [];
  const got = await scrape(
    hung,
    [fe, reviews],
    (p, e) => errors.push(`${p.metadata?.name}: ${e.message}`),
    50,
  );
  assert.deepEqual(got, []);
  const why = "no answer within 0.05s through the apiserver (is the pod's network up?)";
  assert.deepEqual(errors.sort(), [`frontend-1: ${why}`, `reviews-v1-1: ${why}`]);
});
