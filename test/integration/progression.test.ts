// Canary progressions on a real kube-apiserver, with the operator in-process and simulated
// proxies: each backend pod's "proxy" is an HTTP server answering /stats/inbound (the channel the
// real proxy serves, proxy/admin.ts) with counters the test moves. The operator's clock is the
// test's: steps pass when the test says the interval is over. What is checked is what a user
// sees: status.progression, the conditions, the Events, the weights in the ProxyConfig
// ConfigMaps, and that an operator restart keeps a paused or running progression where it was.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { PROGRESSION_ANNOTATION, type TrafficSplit } from '../../api/index.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { isConflict } from '../../kube/errors.ts';
import { decode } from '../../operator/distribution.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { type InboundStats, WindowSampler } from '../../operator/progression/sampler.ts';
import { readInboundStats } from '../../operator/progression/stats.ts';
import { progressionReconciler } from '../../operator/reconcilers/progression.ts';
import type { PodObj } from '../../operator/types.ts';
import {
  createNamespaces,
  installCrds,
  repoRoot,
  startTestCluster,
  type TestCluster,
} from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

const NS = 'shop';
const run = promisify(execFile);
const BUCKETS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
let cluster: TestCluster;
let client: KubeClient;
let op: OperatorHandle | undefined;
/** The operator's clock: moved by the test. */
let now = Date.parse('2026-11-30T12:00:00Z');

/** One simulated proxy per pod: cumulative inbound counters served at /stats/inbound. */
const proxies = new Map<string, { server: Server; address: string; stats: InboundStats }>();
async function fakeProxy(pod: string): Promise<void> {
  const stats: InboundStats = {
    requests: 0,
    errors: 0,
    bucketsMs: BUCKETS_MS,
    counts: BUCKETS_MS.map(() => 0),
  };
  stats.counts.push(0);
  const server = createServer((req, res) => {
    const answer = (body: unknown) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/stats/inbound') answer(stats);
    // The operator's long poll of /config/version: held as a proxy holds it (nothing changes here).
    else if (req.url?.includes('known='))
      setTimeout(() => answer({ version: null, generation: null }), 20_000).unref();
    else answer({ version: null, generation: null });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxies.set(pod, {
    server,
    address: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    stats,
  });
}
/** `n` requests served by pod, `errors` of them 5xx, each taking `ms`. */
function serve(pod: string, n: number, errors: number, ms: number): void {
  const s = proxies.get(pod)!.stats;
  s.requests += n;
  s.errors += errors;
  const i = BUCKETS_MS.findIndex((b) => ms <= b);
  s.counts[i === -1 ? BUCKETS_MS.length : i]! += n;
}

const startOp = () =>
  startOperator({
    kubeConfig: cluster.kc,
    namespace: 'weft-system',
    identity: false,
    proxyAddress: (p: PodObj) => proxies.get(p.metadata.name)?.address,
    progression: { now: () => now, pollMs: 200 },
  });

/** Services <app>, <app>-v1, <app>-v2, a pod behind each version (and its simulated proxy). */
async function app(name: string): Promise<void> {
  for (const svc of [name, `${name}-v1`, `${name}-v2`])
    await client.create(RESOURCES.services, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: svc, namespace: NS },
      spec: { ports: [{ name: 'http', port: 9080, targetPort: 8080, appProtocol: 'http' }] },
    });
  for (const [i, v] of ['v1', 'v2'].entries()) {
    const pod = `${name}-${v}-0`;
    await fakeProxy(pod);
    await client.create(RESOURCES.pods, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: pod, namespace: NS, labels: { app: name, version: v } },
      spec: {
        containers: [
          { name: 'app', image: 'app' },
          { name: 'weft-proxy', image: 'weft' },
        ],
      },
    });
    const ip = `10.244.${name.length}.${i + 1}`;
    await client.apply(
      RESOURCES.pods,
      { metadata: { name: pod, namespace: NS }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } },
      { subresource: 'status', fieldManager: 'weft-test' },
    );
    await client.create(RESOURCES.endpointSlices, {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${name}-${v}-x`,
        namespace: NS,
        labels: { 'kubernetes.io/service-name': `${name}-${v}` },
      },
      addressType: 'IPv4',
      endpoints: [
        {
          addresses: [ip],
          conditions: { ready: true },
          targetRef: { kind: 'Pod', name: pod, namespace: NS },
        },
      ],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
}

type Split = KubeObject & TrafficSplit;
const getSplit = (name: string) => client.get<Split>(RESOURCES.trafficSplits, name, NS);
const cond = (s: Split, type: string) => s.status?.conditions?.find((c) => c.type === type);
const waitSplit = (what: string, name: string, pred: (s: Split) => boolean) =>
  eventually(
    what,
    async () => {
      const s = await getSplit(name);
      return pred(s) ? s : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
/** The weights the proxies get for a route: backend service → weight. */
async function weights(route: string): Promise<Record<string, number> | undefined> {
  const list = await client.list<KubeObject & { data?: Record<string, string> }>(RESOURCES.configMaps, {
    namespace: NS,
    labelSelector: 'app.kubernetes.io/managed-by=weft',
  });
  if (list.items.length === 0) return undefined;
  const cfg = decode(new Map(list.items.map((c) => [c.metadata.name, c])));
  const r = cfg.routes.find((x) => x.name === `${NS}/${route}`);
  return r && Object.fromEntries(r.backends.map((b) => [b.service.split('/')[1]!, b.weight]));
}
const waitWeights = (what: string, route: string, want: Record<string, number>) =>
  eventually(
    what,
    async () => {
      const w = await weights(route);
      return w && JSON.stringify(w) === JSON.stringify(want) ? w : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
async function events(name: string): Promise<{ reason: string; type: string; message: string }[]> {
  const list = await client.list<KubeObject & { reason: string; type: string; message: string }>(
    RESOURCES.events,
    { namespace: NS, fieldSelector: `involvedObject.name=${name}` },
  );
  return list.items.map((e) => ({ reason: e.reason, type: e.type, message: e.message }));
}

function splitOf(name: string, progression: Record<string, unknown>) {
  return {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'TrafficSplit',
    metadata: { name, namespace: NS },
    spec: {
      service: name,
      backends: [
        { service: `${name}-v1`, weight: 100 },
        { service: `${name}-v2`, weight: 0 },
      ],
      progression: {
        canary: `${name}-v2`,
        interval: '10s',
        gates: { minSuccessRate: 99, maxLatency: { percentile: 99, threshold: '100ms' }, minRequests: 20 },
        ...progression,
      },
    },
  };
}
/** The real weftctl, as a user runs it. */
async function weftctl(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [
    join(repoRoot, 'cli', 'main.ts'),
    '--kubeconfig',
    cluster.kubeconfigPath,
    ...args,
  ]);
  return stdout;
}

before(async () => {
  cluster = await startTestCluster();
  await installCrds(cluster);
  client = new KubeClient(cluster.kc, 'weft-test');
  await createNamespaces(client, { 'weft-system': {}, [NS]: { 'weft.dev/inject': 'enabled' } });
  for (const a of ['reviews', 'ratings', 'details', 'slow']) await app(a);
  op = await startOp();
});

after(async () => {
  await op?.stop();
  client?.close();
  await cluster?.stop();
  for (const p of proxies.values()) {
    p.server.closeAllConnections();
    p.server.close();
  }
});

describe('canary progression on a real apiserver, with simulated proxies', () => {
  test('a healthy canary is promoted step by step; the proxies get the weights of each step', async () => {
    await client.create(RESOURCES.trafficSplits, splitOf('reviews', { stepWeights: [20, 50] }) as never);
    let s = await waitSplit('step 1 at 20 %', 'reviews', (x) => x.status?.progression?.canaryWeight === 20);
    assert.equal(s.status?.progression?.phase, 'Progressing');
    assert.equal(cond(s, 'Progressing')?.status, 'True');
    assert.equal(cond(s, 'Promoted')?.status, 'False');
    // The operator never writes spec.
    assert.deepEqual(
      s.spec.backends.map((b) => b.weight),
      [100, 0],
    );
    await waitWeights('80/20 in the ProxyConfig', 'reviews', { 'reviews-v1': 8000, 'reviews-v2': 2000 });
    // The trafficsplit reconciler's conditions stay beside the progression's.
    s = await waitSplit('Ready', 'reviews', (x) => cond(x, 'Ready')?.status === 'True');
    assert.equal(cond(s, 'Progressing')?.status, 'True');

    // Healthy traffic, but the step's time is not up: it stays.
    serve('reviews-v2-0', 30, 0, 20);
    serve('reviews-v1-0', 120, 0, 20);
    s = await waitSplit(
      'figures observed',
      'reviews',
      (x) => x.status?.progression?.observed?.canary.requests === 30,
    );
    assert.equal(s.status?.progression?.observed?.canary.successRate, 100);
    assert.equal(s.status?.progression?.observed?.canary.latencyMs, 25);
    assert.equal(s.status?.progression?.observed?.stable.requests, 120);
    assert.equal(s.status?.progression?.step, 0);

    now += 10_000;
    s = await waitSplit('step 2 at 50 %', 'reviews', (x) => x.status?.progression?.canaryWeight === 50);
    await waitWeights('50/50 in the ProxyConfig', 'reviews', { 'reviews-v1': 5000, 'reviews-v2': 5000 });
    // A new window: the figures of step 1 do not count for step 2.
    now += 10_000;
    await new Promise((r) => setTimeout(r, 1000));
    s = await getSplit('reviews');
    assert.equal(s.status?.progression?.step, 1, 'no promotion without the minimum requests of step 2');
    assert.match(s.status?.progression?.message ?? '', /waiting for requests: 0\/20/);
    serve('reviews-v2-0', 25, 0, 8);
    s = await waitSplit('promoted', 'reviews', (x) => x.status?.progression?.phase === 'Promoted');
    assert.equal(s.status?.progression?.canaryWeight, 100);
    assert.equal(cond(s, 'Promoted')?.status, 'True');
    assert.equal(cond(s, 'Progressing')?.status, 'False');
    assert.equal(cond(s, 'RolledBack')?.status, 'False');
    await waitWeights('0/100 in the ProxyConfig', 'reviews', { 'reviews-v1': 0, 'reviews-v2': 10000 });
    assert.deepEqual(
      s.status?.progression?.history?.map((h) => [h.decision, h.canaryWeight]),
      [
        ['Started', 20],
        ['Step', 50],
        ['Promoted', 100],
      ],
    );
    const ev = await eventually('the Events', async () => {
      const e = await events('reviews');
      return e.some((x) => x.reason === 'ProgressionPromoted') ? e : undefined;
    });
    assert.deepEqual(ev.map((e) => `${e.type} ${e.reason}`).sort(), [
      'Normal ProgressionPromoted',
      'Normal ProgressionStarted',
      'Normal ProgressionStep',
    ]);
  });

  test('a canary that answers errors is rolled back within its step, before the step ends', async () => {
    await client.create(RESOURCES.trafficSplits, splitOf('ratings', { stepWeights: [10, 50] }) as never);
    await waitSplit('step 1', 'ratings', (x) => x.status?.progression?.canaryWeight === 10);
    await waitWeights('90/10', 'ratings', { 'ratings-v1': 9000, 'ratings-v2': 1000 });
    serve('ratings-v2-0', 20, 4, 5);
    const s = await waitSplit('rolled back', 'ratings', (x) => x.status?.progression?.phase === 'RolledBack');
    assert.equal(s.status?.progression?.canaryWeight, 0);
    assert.equal(cond(s, 'RolledBack')?.status, 'True');
    assert.match(
      cond(s, 'RolledBack')?.message ?? '',
      /success rate 80\.0 % \(4 errors in 20 requests\) is below the gate 99 %/,
    );
    await waitWeights('100/0', 'ratings', { 'ratings-v1': 10000, 'ratings-v2': 0 });
    const ev = await eventually('the Warning Event', async () =>
      (await events('ratings')).find((e) => e.reason === 'ProgressionRolledBack'),
    );
    assert.equal(ev.type, 'Warning');
    // Stopped: more (good) traffic and time change nothing.
    serve('ratings-v2-0', 100, 0, 5);
    now += 60_000;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await getSplit('ratings')).status?.progression?.phase, 'RolledBack');
  });

  test('a slow canary is rolled back on the latency gate', async () => {
    await client.create(RESOURCES.trafficSplits, splitOf('slow', { stepWeights: [10] }) as never);
    await waitSplit('step 1', 'slow', (x) => x.status?.progression?.canaryWeight === 10);
    serve('slow-v2-0', 30, 0, 400);
    const s = await waitSplit('rolled back', 'slow', (x) => x.status?.progression?.phase === 'RolledBack');
    assert.match(s.status?.progression?.message ?? '', /latency p99 up to 500 ms exceeds the gate 100ms/);
  });

  test('a paused progression stays paused across an operator restart; a restart mid-step resumes from status', async () => {
    await client.create(
      RESOURCES.trafficSplits,
      splitOf('details', { stepWeightRange: { start: 10, increment: 30, max: 70 } }) as never,
    );
    await waitSplit('step 1', 'details', (x) => x.status?.progression?.canaryWeight === 10);
    assert.match(await weftctl('split', 'pause', 'details', '-n', NS), /details: pause requested/);
    assert.match(
      (await getSplit('details')).metadata.annotations?.[PROGRESSION_ANNOTATION] ?? '',
      /^pause@\d{4}-/,
    );
    await waitSplit('paused', 'details', (x) => x.status?.progression?.phase === 'Paused');
    await op?.stop();
    op = undefined;
    // Time passes, traffic flows while no operator runs.
    now += 600_000;
    serve('details-v2-0', 100, 0, 5);
    op = await startOp();
    await op.leading();
    await op.resync();
    await new Promise((r) => setTimeout(r, 1000));
    let s = await getSplit('details');
    assert.equal(s.status?.progression?.phase, 'Paused');
    assert.equal(s.status?.progression?.canaryWeight, 10);
    assert.equal(cond(s, 'Progressing')?.reason, 'Paused');
    await waitWeights('still 90/10', 'details', { 'details-v1': 9000, 'details-v2': 1000 });

    const shown = await weftctl('split', 'status', 'details', '-n', NS);
    assert.match(shown, /phase: +Paused, step 1, canary at 10 %/);
    assert.match(shown, /gates: +≥ 20 requests, success ≥ 99 %, p99 ≤ 100ms per step of 10s/);
    assert.match(shown, /Paused +10 % +paused on demand at step 1\/3/);
    await weftctl('split', 'resume', 'details', '-n', NS);
    s = await waitSplit('resumed', 'details', (x) => x.status?.progression?.phase === 'Progressing');
    const started = s.status?.progression?.stepStartedAt;
    assert.equal(started, new Date(now).toISOString(), 'the step starts its window again');
    serve('details-v2-0', 30, 0, 5);
    now += 10_000;
    s = await waitSplit('step 2 at 40 %', 'details', (x) => x.status?.progression?.canaryWeight === 40);
    const stepStart = s.status?.progression?.stepStartedAt;
    // Restart mid-step: the step and its start time are kept.
    await op.stop();
    now += 5000;
    op = await startOp();
    await op.leading();
    await op.resync();
    s = await getSplit('details');
    assert.equal(s.status?.progression?.step, 1);
    assert.equal(s.status?.progression?.stepStartedAt, stepStart);
    // The new operator opened its window at its first reading: it needs this step's requests.
    now += 5000;
    // Requests keep coming until the step passes, whenever its new window opened.
    await waitSplit('step 3 at 70 %', 'details', (x) => {
      if (x.status?.progression?.step === 1) serve('details-v2-0', 5, 0, 5);
      return x.status?.progression?.canaryWeight === 70;
    });
    // weftctl shows the step's figures as they come, against the gates (a poll that saw step 2
    // just before the step changed may have added 5 to this window).
    serve('details-v2-0', 5, 0, 5);
    s = await waitSplit(
      '5 requests seen',
      'details',
      (x) => (x.status?.progression?.observed?.canary.requests ?? 0) >= 5,
    );
    const n = s.status?.progression?.observed?.canary.requests;
    const live = await weftctl('split', 'status', 'details', '-n', NS);
    assert.match(live, new RegExp(`canary: +${n} req, 100 % ok, ≤ 5 ms`));
    assert.match(live, new RegExp(`waiting for requests: ${n}/20 in this step`));
    await weftctl('split', 'promote', 'details', '-n', NS);
    s = await waitSplit('promoted on demand', 'details', (x) => x.status?.progression?.phase === 'Promoted');
    assert.match(s.status?.progression?.message ?? '', /promoted on demand/);
    // One run from start to end: neither restart started it again or took a step twice.
    assert.deepEqual(
      s.status?.progression?.history?.map((h) => `${h.decision} ${h.canaryWeight}`),
      ['Started 10', 'Paused 10', 'Resumed 10', 'Step 40', 'Step 70', 'Promoted 100'],
    );
  });

  test('removing spec.progression removes status.progression and its conditions; spec weights apply again', async () => {
    const s = await getSplit('ratings');
    const { progression: _, ...spec } = s.spec;
    await client.update(RESOURCES.trafficSplits, {
      ...s,
      spec: {
        ...spec,
        backends: [
          { service: 'ratings-v1', weight: 70 },
          { service: 'ratings-v2', weight: 30 },
        ],
      },
    });
    assert.ok(s.status?.progression);
    const after = await waitSplit('progression gone', 'ratings', (x) => !x.status?.progression);
    assert.equal(cond(after, 'Progressing'), undefined);
    assert.equal(cond(after, 'Ready')?.status, 'True');
    await waitWeights('70/30', 'ratings', { 'ratings-v1': 70, 'ratings-v2': 30 });
  });
  test('a decision taken on a stale cached status is refused by the apiserver, never written back', async () => {
    const current = await getSplit('reviews');
    assert.equal(current.status?.progression?.phase, 'Promoted');
    // What a lagging cache would hold: the object before the run had a status.
    const stale = { ...current, metadata: { ...current.metadata, resourceVersion: '1' }, status: {} };
    const reconcile = progressionReconciler({
      splits: { get: () => stale },
      resultOf: () => ({ key: 'shop/reviews', accepted: { ok: true }, programmed: 'current' }),
      podsOf: () => [],
      sampler: new WindowSampler({ read: readInboundStats() }),
      client,
      events: { warn: async () => {}, normal: async () => {} },
      stats: { configMapWrites: 0, configMapDeletes: 0, statusWrites: 0, events: 0 },
      now: () => now,
    });
    await assert.rejects(reconcile('shop/reviews', {} as never), (e: Error) => isConflict(e));
    const after = await getSplit('reviews');
    assert.equal(after.status?.progression?.phase, 'Promoted');
    assert.equal(after.status?.progression?.canaryWeight, 100);
  });
});
