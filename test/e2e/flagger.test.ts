// Progressive delivery driven by Flagger, for real: a real one-node cluster (hack/node) with
// Weft installed by Helm, Flagger (built from its Go module) and Prometheus (Debian's) as host
// processes (hack/flagger/flagger.ts). A meshed Deployment `podinfo` (the demo server) gets a
// Flagger Canary with the `gatewayapi:v1` provider: Flagger writes an HTTPRoute whose parentRef
// is the Service `podinfo` (GAMMA) and moves its weights between `podinfo-primary` and
// `podinfo-canary`, judging the canary by Weft's golden metrics through the MetricTemplates of
// config/flagger/metric-templates.yaml. A meshed client calls http://podinfo:9898/ all along.
// A healthy revision is promoted (weights stepped, held at the top until a confirm-promotion
// gate this file serves opens, then the primary updated); a revision answering 500 is rolled back.
// Asserted: the Canary's phases and weights, the HTTPRoute's weights and status, and how the
// client's real calls split, also as Prometheus counts it from the sidecars' metrics; the same
// Prometheus (scraping the operator and the webhook too, evaluating config/monitoring/rules.yaml)
// returns data for every dashboard panel and recording rule of hack/monitoring/monitoring.ts.
// Logged as figures (asserted on none): how long each took.
// With WEFT_TEST_KUBECONFIG it runs on that cluster instead (Prometheus must reach its pod IPs).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PROXY } from '../../api/index.ts';
import {
  flaggerCrds,
  type HostProcess,
  metricTemplates,
  promQuery,
  startFlagger,
  startPrometheus,
} from '../../hack/flagger/flagger.ts';
import { installWeft, WEFT_NAMESPACE } from '../../hack/install.ts';
import { freePort } from '../../hack/lib/control-plane.ts';
import { DEMO_IMAGE, demoServerContainer } from '../../hack/lib/demo-pod.ts';
import { startWeftNode, type WeftNode } from '../../hack/lib/weft-node.ts';
import {
  concreteExpr,
  dashboardExpressions,
  dashboards,
  grafanaJson,
  recordingRules,
} from '../../hack/monitoring/monitoring.ts';
import { resolveOptions } from '../../hack/node/index.ts';
import { startCollector } from '../../hack/otelcol/otelcol.ts';
import { CONTROLLER_NAME } from '../../operator/compile/gatewaytypes.ts';
import { repoRoot } from '../support/cluster.ts';
import { ensureBinaries } from '../support/control-plane.ts';
import { eventually as poll } from '../support/eventually.ts';

const external = process.env.WEFT_TEST_KUBECONFIG;
const isRoot = process.getuid?.() === 0;
const NS = 'weft-flagger';
const log = (l: string) => process.stderr.write(`${l}\n`);

const eventually = <T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 180_000) =>
  poll(what, fn, { timeoutMs, intervalMs: 500 });

const PORT = 9898;
const POD_CIDR = '10.127.0.0/16';
const STEP = 25;
const MAX = 50;
const THRESHOLD = 2;

/** The demo server as `podinfo`: `env` makes a revision (VERSION, STATUS). */
function podinfo(env: Record<string, string>) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'podinfo', namespace: NS },
    // No replicas: Flagger owns them (it scales the canary to 0 and back), 1 by default.
    spec: {
      selector: { matchLabels: { app: 'podinfo' } },
      template: {
        metadata: { labels: { app: 'podinfo' } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [demoServerContainer('podinfo', env)],
        },
      },
    },
  };
}

/** Flagger's Canary: GAMMA (the HTTPRoute's parent is the Service it fronts), Weft's metrics, a gate. */
function canary(gateUrl: string) {
  return {
    apiVersion: 'flagger.app/v1beta1',
    kind: 'Canary',
    metadata: { name: 'podinfo', namespace: NS },
    spec: {
      provider: 'gatewayapi:v1',
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'podinfo' },
      progressDeadlineSeconds: 120,
      service: {
        port: PORT,
        targetPort: 8080,
        portName: 'http',
        appProtocol: 'http',
        gatewayRefs: [{ group: '', kind: 'Service', name: 'podinfo', port: PORT }],
      },
      analysis: {
        interval: '5s',
        threshold: THRESHOLD,
        stepWeight: STEP,
        maxWeight: MAX,
        metrics: [
          {
            name: 'success-rate',
            templateRef: { name: 'weft-request-success-rate' },
            thresholdRange: { min: 99 },
            interval: '15s',
          },
          {
            name: 'latency-p99-ms',
            templateRef: { name: 'weft-request-duration' },
            thresholdRange: { max: 1000 },
            interval: '15s',
          },
        ],
        webhooks: [{ name: 'gate', type: 'confirm-promotion', url: gateUrl }],
      },
    },
  };
}

/** The meshed client: calls http://podinfo:9898/ every 50 ms, one line per answer. */
const loadgen = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'loadgen', namespace: NS },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: 'loadgen' } },
    template: {
      metadata: { labels: { app: 'loadgen' } },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'app',
            image: DEMO_IMAGE,
            command: ['node', 'hack/demo-apps/client.ts', `http://podinfo:${PORT}/`],
            env: [{ name: 'INTERVAL_MS', value: '50' }],
          },
        ],
      },
    },
  },
};

/** Client lines "<n> <status> <service> <version> <pod> <ms>ms" → counts by "<status> <version>". */
function tally(lines: string[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const l of lines) {
    const [, status, , version] = l.split(' ');
    const k = `${status} ${version ?? ''}`.trim();
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
}

describe('Flagger drives a canary of a meshed Deployment through HTTPRoute weights', {
  skip: isRoot || external ? false : 'needs root (containerd, kubelet, iptables)',
}, () => {
  let weft: WeftNode | undefined;
  /** Prometheus' and Flagger's data and logs. */
  let dir: string | undefined;
  let kubeconfig: string;
  let kubectlBin: string;
  let prometheus: HostProcess | undefined;
  let flagger: HostProcess | undefined;
  let gate: Server | undefined;
  let collector: HostProcess | undefined;
  let recorder: Server | undefined;
  /** Whether the confirm-promotion gate lets Flagger promote. */
  let gateOpen = false;
  const kubectl = (...args: string[]) =>
    execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const json = (...args: string[]) => JSON.parse(kubectl(...args, '-o', 'json'));
  /** Server-side apply (field manager weft-test). */
  const apply = (...objs: object[]) =>
    execFileSync(
      kubectlBin,
      ['--kubeconfig', kubeconfig, 'apply', '--server-side', '--field-manager=weft-test', '-f', '-'],
      {
        input: objs.map((o) => JSON.stringify(o)).join('\n'),
        encoding: 'utf8',
      },
    );
  const canaryStatus = () =>
    (json('get', 'canary', 'podinfo', '-n', NS).status ?? {}) as {
      phase?: string;
      canaryWeight?: number;
      lastAppliedSpec?: string;
    };
  /** The HTTPRoute Flagger writes: backend name → weight, and Weft's status of its parent. */
  const route = () => {
    const r = json('get', 'httproute', 'podinfo', '-n', NS);
    const weights: Record<string, number> = {};
    for (const b of r.spec.rules[0].backendRefs) weights[b.name] = b.weight;
    return { weights, status: r.status, generation: r.metadata.generation as number };
  };
  const clientLines = (): string[] => {
    try {
      return kubectl('logs', '-n', NS, 'deploy/loadgen', '-c', 'app').trim().split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  /** The client sidecar's outbound requests to podinfo's workloads, as Prometheus last scraped them. */
  const LOADGEN_OUT = `weft_requests_total{direction="outbound", source_workload="loadgen", destination_namespace="${NS}"}`;
  const outboundCounts = async (): Promise<Record<string, number>> => {
    const r = await promQuery(prometheus!.url, `sum by (destination_workload) (${LOADGEN_OUT})`);
    return Object.fromEntries(r.map((x) => [x.metric.destination_workload ?? '', Number(x.value[1])]));
  };
  /**
   * Polls the Canary until `until` holds, recording every phase and weight it passed through
   * (each lasts at least one analysis interval, 5 s; polled every 0.5 s).
   */
  const watchCanary = async (what: string, until: (s: ReturnType<typeof canaryStatus>) => boolean) => {
    const phases: string[] = [];
    const weights: number[] = [];
    const s = await eventually(
      what,
      () => {
        const s = canaryStatus();
        if (s.phase && phases.at(-1) !== s.phase) phases.push(s.phase);
        if (s.canaryWeight !== undefined && weights.at(-1) !== s.canaryWeight) weights.push(s.canaryWeight);
        return until(s) ? s : undefined;
      },
      300_000,
    ).catch((err) => {
      throw new Error(
        `${err.message}; phases ${phases.join(' → ')}, weights ${weights.join(' → ')}; flagger log ${flagger?.log}`,
        { cause: err },
      );
    });
    return { s, phases, weights };
  };
  /** The next `n` client lines after the first `seen`. */
  const nextLines = (seen: number, n: number) =>
    eventually(`${n} client calls`, () => {
      const l = clientLines().slice(seen);
      return l.length >= n ? l.slice(0, n) : undefined;
    });

  /**
   * Once the client's sidecar has the route's 100/0, every call goes to the primary: waits for
   * 30 calls in a row answered 200 by a primary pod at `version`.
   */
  const primaryAnswersAll = (version: string) => {
    const seen = clientLines().length;
    const ok = new RegExp(`^\\d+ 200 podinfo ${version} podinfo-primary-`);
    return eventually(`30 calls in a row answered 200 by the primary at ${version}`, () => {
      const l = clientLines().slice(seen);
      return l.some((_, i) => l.slice(i, i + 30).length === 30 && l.slice(i, i + 30).every((x) => ok.test(x)))
        ? true
        : undefined;
    });
  };

  before(async () => {
    // Ranges and bridge of its own (mesh.test.ts: 10.121-122, the demo: 10.123-124, the node test: 10.125-126).
    if (external) {
      kubeconfig = external;
      kubectlBin = join(ensureBinaries(), 'kubectl');
      await installWeft({ kubeconfig, kubectl: kubectlBin, log });
    } else {
      weft = await startWeftNode({
        dirPrefix: 'weft-flagger-',
        podCIDR: POD_CIDR,
        serviceCIDR: '10.128.0.0/16',
        bridge: `wf${process.pid % 100000}`,
        log,
        ...(process.env.WEFT_NODE_SYNC_FREQUENCY
          ? { syncFrequency: process.env.WEFT_NODE_SYNC_FREQUENCY }
          : {}),
      });
      kubeconfig = weft.node.kubeconfigPath;
      kubectlBin = weft.node.kubectl;
    }
    dir = mkdtempSync(join(tmpdir(), 'weft-flagger-host-'));
    kubectl('apply', '--server-side', '-f', flaggerCrds());
    kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-f',
      join(repoRoot, 'config', 'demo', 'mesh.yaml'),
    );
    apply({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS, labels: { 'weft.dev/inject': 'enabled' } },
    });

    // The confirm-promotion gate: Flagger holds the top weight until it answers 200.
    gate = createServer((req, res) => {
      req.resume();
      res.writeHead(gateOpen ? 200 : 403).end(gateOpen ? 'promote\n' : 'hold\n');
    });
    await new Promise<void>((r) => gate!.listen(0, '127.0.0.1', r));
    const gateUrl = `http://127.0.0.1:${(gate.address() as { port: number }).port}/gate`;

    prometheus = await startPrometheus({
      dir: join(dir, 'prometheus'),
      kubeconfig,
      namespaces: [NS],
      controlPlane: WEFT_NAMESPACE,
      ruleFiles: [join(repoRoot, 'config', 'monitoring', 'rules.yaml')],
    });
    apply(...metricTemplates(prometheus.url, NS));
    flagger = await startFlagger({ dir: join(dir, 'flagger'), kubeconfig, metricsServer: prometheus.url });
    log(`[flagger] Prometheus at ${prometheus.url} (log ${prometheus.log}), Flagger log ${flagger.log}`);

    apply(podinfo({ VERSION: 'v1' }));
    await eventually('deployment podinfo available', () =>
      json('get', 'deployment', 'podinfo', '-n', NS).status.availableReplicas === 1 ? true : undefined,
    );
    const t0 = Date.now();
    apply(canary(gateUrl));
    await watchCanary('the Canary Initialized', (s) => s.phase === 'Initialized');
    log(`[e2e] figure: Canary created to Initialized: ${Date.now() - t0} ms`);
    apply(loadgen);
    await eventually('the client gets 200 from v1 (the primary)', () =>
      clientLines().some((l) => / 200 podinfo v1 podinfo-primary-/.test(l)) ? true : undefined,
    );
  });

  after(async () => {
    gate?.close();
    await collector?.stop();
    recorder?.close();
    await flagger?.stop();
    await prometheus?.stop();
    if (external) kubectl('delete', 'namespace', NS, '--ignore-not-found', '--wait=true');
    await weft?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('Flagger initialized the GAMMA route: the Service podinfo is its parent, all traffic on the primary, Weft accepted it', async () => {
    const r = await eventually('Weft to accept the HTTPRoute', () => {
      const r = route();
      const parent = r.status?.parents?.find(
        (p: { parentRef: { kind?: string }; controllerName: string }) =>
          p.parentRef.kind === 'Service' && p.controllerName === CONTROLLER_NAME,
      );
      const accepted = parent?.conditions?.find((c: { type: string }) => c.type === 'Accepted');
      return accepted?.status === 'True' ? { ...r, parent } : undefined;
    });
    assert.deepEqual(r.weights, { 'podinfo-primary': 100, 'podinfo-canary': 0 });
    assert.equal(r.parent.parentRef.name, 'podinfo');
    const resolved = r.parent.conditions.find((c: { type: string }) => c.type === 'ResolvedRefs');
    assert.equal(resolved?.status, 'True', JSON.stringify(r.parent.conditions));
    // Every call so far went to the primary.
    const lines = await nextLines(0, 40);
    assert.deepEqual(tally(lines), { '200 v1': 40 }, lines.slice(0, 3).join(' | '));
  });

  test('a healthy revision is promoted: weights stepped, held at the top until the gate opens, then the primary updated', async () => {
    const t0 = Date.now();
    apply(podinfo({ VERSION: 'v2' }));
    const held = await watchCanary(
      'the Canary at the top weight, waiting for the gate',
      (s) => s.phase === 'WaitingPromotion',
    );
    assert.deepEqual(
      held.weights.filter((w) => w > 0),
      [STEP, MAX],
      `weights stepped: ${held.weights.join(' → ')}`,
    );
    // Flagger's status reads canaryWeight 0 in any phase but Progressing and Waiting (its
    // setStatusPhase), WaitingPromotion included: the weight in effect is the HTTPRoute's.
    assert.deepEqual(route().weights, { 'podinfo-primary': 100 - MAX, 'podinfo-canary': MAX });
    log(`[e2e] figure: new revision to the top weight (${MAX}%): ${Date.now() - t0} ms`);

    // The client's real calls split about 50/50 once its sidecar has the new weights: find the
    // first v2 answer after the hold began, then count the next 200 calls.
    const seen = clientLines().length;
    const atProxies = await outboundCounts();
    const lines = await eventually('200 calls after the first v2 answer', () => {
      const l = clientLines().slice(seen);
      const first = l.findIndex((x) => x.split(' ')[3] === 'v2');
      return first >= 0 && l.length >= first + 200 ? l.slice(first, first + 200) : undefined;
    });
    const t = tally(lines);
    log(`[e2e] figure: 200 calls at ${MAX}/${100 - MAX}: ${JSON.stringify(t)}`);
    assert.equal((t['200 v1'] ?? 0) + (t['200 v2'] ?? 0), 200, JSON.stringify(t));
    // p = 0.5 over 200 calls: the standard deviation is ~7 calls; the band is ±30 of them.
    assert.ok(t['200 v2']! >= 70 && t['200 v2']! <= 130, `v2 got ${t['200 v2']} of 200`);

    // Prometheus sees the same split in the client sidecar's metrics: what its outbound counters
    // grew by since the hold began, against the client's own calls over about the same span.
    const end = Date.now() / 1000;
    const calls = clientLines().slice(seen);
    const scraped = await eventually('a scrape of the client sidecar after the 200 calls', async () => {
      const [ts] = await promQuery(prometheus!.url, `max(timestamp(${LOADGEN_OUT}))`);
      return ts && Number(ts.value[1]) > end ? true : undefined;
    });
    assert.ok(scraped);
    const later = await outboundCounts();
    const grew = (w: string) => (later[w] ?? 0) - (atProxies[w] ?? 0);
    const promTotal = grew('podinfo') + grew('podinfo-primary');
    const promShare = grew('podinfo') / promTotal;
    const clientShare = calls.filter((l) => l.split(' ')[3] === 'v2').length / calls.length;
    log(
      `[e2e] figure: split at ${MAX}/${100 - MAX} by PromQL: canary ${grew('podinfo')}, primary ${grew('podinfo-primary')}; the client counted ${calls.length} calls, ${Math.round(clientShare * 100)}% on v2`,
    );
    assert.ok(
      promTotal >= calls.length * 0.8,
      `Prometheus counted ${promTotal} calls, the client ${calls.length}`,
    );
    assert.ok(
      Math.abs(promShare - clientShare) <= 0.1,
      `the canary's share by PromQL (${promShare.toFixed(2)}) is the client's (${clientShare.toFixed(2)})`,
    );
    assert.ok(promShare >= 0.3 && promShare <= 0.7, `the canary's share by PromQL: ${promShare.toFixed(2)}`);

    gateOpen = true;
    const done = await watchCanary('the Canary Succeeded', (s) => s.phase === 'Succeeded');
    gateOpen = false;
    for (const p of ['Promoting', 'Finalising', 'Succeeded'])
      assert.ok(done.phases.includes(p), `phases ${done.phases.join(' → ')} include ${p}`);
    assert.equal(done.s.canaryWeight, 0);
    assert.deepEqual(route().weights, { 'podinfo-primary': 100, 'podinfo-canary': 0 });
    const primary = json('get', 'deployment', 'podinfo-primary', '-n', NS);
    assert.ok(
      primary.spec.template.spec.containers[0].env.some(
        (e: { name: string; value?: string }) => e.name === 'VERSION' && e.value === 'v2',
      ),
      'the primary runs v2',
    );
    log(
      `[e2e] figure: new revision to Succeeded: ${Date.now() - t0} ms (phases ${done.phases.join(' → ')}; HTTPRoute generation ${route().generation})`,
    );
    // From now on the primary (v2) answers every call.
    await primaryAnswersAll('v2');
  });

  test('a revision answering 500 is rolled back: the analysis fails on Weft success rate, all traffic back on the primary', async () => {
    const t0 = Date.now();
    const seen = clientLines().length;
    apply(podinfo({ VERSION: 'v3', STATUS: '500' }));
    const failed = await watchCanary('the Canary Failed', (s) => s.phase === 'Failed');
    assert.ok(failed.phases.includes('Progressing'), `phases ${failed.phases.join(' → ')}`);
    assert.ok(
      failed.weights.some((w) => w > 0),
      `the canary got traffic: weights ${failed.weights.join(' → ')}`,
    );
    assert.equal(failed.s.canaryWeight, 0);
    assert.deepEqual(route().weights, { 'podinfo-primary': 100, 'podinfo-canary': 0 });
    log(
      `[e2e] figure: broken revision to Failed: ${Date.now() - t0} ms (phases ${failed.phases.join(' → ')}, weights ${failed.weights.join(' → ')}; HTTPRoute generation ${route().generation})`,
    );
    // Flagger halted on the success rate Weft's sidecars measured, not on anything else.
    const events = json(
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.kind=Canary,involvedObject.name=podinfo',
    ).items.map((e: { message: string }) => e.message) as string[];
    assert.ok(
      events.some((m) => /success-rate .* < 99/.test(m)),
      `an event says the success rate fell below 99: ${events.slice(-5).join(' | ')}`,
    );
    // (Failed resets status.failedChecks: the threshold shows in the rollback's Event.)
    assert.ok(
      events.some((m) => m.includes(`failed checks threshold reached ${THRESHOLD}`)),
      `an event says the rollback came from ${THRESHOLD} failed checks: ${events.slice(-5).join(' | ')}`,
    );
    // The client met the broken canary (real calls reached it) and the primary kept v2.
    const during = tally(clientLines().slice(seen));
    assert.ok((during['500 v3'] ?? 0) > 0, `the client got 500 from v3: ${JSON.stringify(during)}`);
    const primary = json('get', 'deployment', 'podinfo-primary', '-n', NS);
    assert.ok(
      primary.spec.template.spec.containers[0].env.some(
        (e: { name: string; value?: string }) => e.name === 'VERSION' && e.value === 'v2',
      ),
    );
    await primaryAnswersAll('v2');
  });

  test('every dashboard panel and every recording rule returns data from the real Prometheus', async () => {
    const t0 = Date.now();
    const exprs = [
      ...dashboards().flatMap((d) =>
        dashboardExpressions(grafanaJson(d) as Parameters<typeof dashboardExpressions>[0]).map((e) => ({
          where: `${d.uid}: ${e.title}`,
          expr: concreteExpr(e.expr, '5m'),
        })),
      ),
      // The recorded series (the group evaluates every 30 s).
      ...recordingRules().map((r) => ({ where: `rule ${r.record}`, expr: r.record })),
    ];
    const empty = new Map<string, string>();
    await eventually(
      'data for every panel and rule',
      async () => {
        empty.clear();
        for (const e of exprs)
          if ((await promQuery(prometheus!.url, e.expr)).length === 0) empty.set(e.where, e.expr);
        return empty.size === 0 ? true : undefined;
      },
      90_000,
    ).catch((err) => {
      throw new Error(`${err.message}; empty: ${[...empty].map(([w, e]) => `${w}: ${e}`).join(' | ')}`, {
        cause: err,
      });
    });
    log(`[e2e] figure: ${exprs.length} dashboard and rule expressions return data (${Date.now() - t0} ms)`);
  });

  test('tracing: a real OpenTelemetry Collector on the node gets one trace through the client’s and the server’s sidecars', {
    skip: external ? 'the collector listens on the test node’s address' : false,
  }, async () => {
    // The collector runs on the host, listening on the node's address (the pods' gateway), and
    // forwards what it receives as OTLP/HTTP JSON to a recorder here.
    type Span = { traceId: string; spanId: string; parentSpanId?: string; kind: number; service: string };
    const spans: Span[] = [];
    recorder = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as {
          resourceSpans?: {
            resource: { attributes: { key: string; value: { stringValue?: string } }[] };
            scopeSpans: { spans: Omit<Span, 'service'>[] }[];
          }[];
        };
        for (const rs of body.resourceSpans ?? []) {
          const service =
            rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
          for (const ss of rs.scopeSpans) for (const sp of ss.spans) spans.push({ ...sp, service });
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => recorder!.listen(0, '127.0.0.1', r));
    const nodeIp = resolveOptions({ dir: dir!, podCIDR: POD_CIDR }).gateway;
    const listen = `${nodeIp}:${await freePort(nodeIp)}`;
    collector = await startCollector({
      dir: join(dir!, 'otelcol'),
      listen,
      forward: `http://127.0.0.1:${(recorder.address() as { port: number }).port}`,
    });
    const t0 = Date.now();
    kubectl(
      'patch',
      'mesh',
      'default',
      '--type=merge',
      '-p',
      JSON.stringify({
        spec: { telemetry: { tracing: { endpoint: `http://${listen}/v1/traces`, samplingPercent: 100 } } },
      }),
    );
    // The client (loadgen) calls without a traceparent: its sidecar's CLIENT span is the root,
    // the server sidecar's SERVER span its child, in the same trace.
    const pair = await eventually(
      'a trace with the client sidecar’s span as the parent of the server sidecar’s',
      () => {
        for (const c of spans.filter(
          (x) => x.kind === 3 && x.service.startsWith(`loadgen.${NS}`) && !x.parentSpanId,
        )) {
          const s = spans.find((x) => x.kind === 2 && x.traceId === c.traceId && x.parentSpanId === c.spanId);
          if (s) return { c, s, trace: spans.filter((x) => x.traceId === c.traceId) };
        }
        return undefined;
      },
      120_000,
    ).catch((err) => {
      // What the client's sidecar said about tracing (it logs when the tracer cannot start).
      let sidecar = '';
      try {
        sidecar = kubectl('logs', '-n', NS, 'deploy/loadgen', '-c', PROXY.containerName, '--tail=300')
          .split('\n')
          .filter((l) => /tracing|otlp|export/i.test(l))
          .join(' | ');
      } catch {}
      throw new Error(
        `${err.message}; ${spans.length} spans received (collector log ${collector?.log}); loadgen's sidecar: ${sidecar}`,
        { cause: err },
      );
    });
    log(`[e2e] figure: tracing on to the first complete trace at the collector: ${Date.now() - t0} ms`);
    assert.match(pair.s.service, new RegExp(`^podinfo(-primary)?\\.${NS}$`));
    assert.equal(pair.trace.length, 2, `one span per sidecar: ${JSON.stringify(pair.trace)}`);
  });
});
