// Tracing through two real sidecars, received by a real OpenTelemetry Collector (built from its
// Go modules: hack/otelcol). A client calls a Service through its sidecar; the server's sidecar
// hands the request to the app. The collector runs in the topology's router namespace (the pods'
// gateway, 10.244.0.1) and forwards what it receives as OTLP/HTTP JSON to a recorder beside it.
// The sidecars run from the bundle the image ships (dist/weft.js), where the OpenTelemetry SDK's
// modules once came as CommonJS `default` exports and tracing never started.
// Asserted: one trace with two spans, the client sidecar's outbound span the root and the
// server sidecar's inbound span its child, and the app got the W3C traceparent of that child.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PROXY } from '../../api/index.ts';
import { buildDist } from '../../hack/build-dist.ts';
import { prometheusBinary } from '../../hack/flagger/flagger.ts';
import { collectorConfig, otelcolBinary } from '../../hack/otelcol/otelcol.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { type Agent, eventually, type Pod, sleep, Topology } from './netns.ts';

const isRoot = process.getuid?.() === 0;
// Built here, outside the suite's timeout: the first build takes minutes (cached afterwards).
const bin = isRoot ? otelcolBinary() : '';
const topo = new Topology();
const COLLECTOR = '10.244.0.1:4318';
const RECORDER_PORT = 4319;

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
}
interface OtlpExport {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: OtlpSpan[] }[];
  }[];
}
type Span = OtlpSpan & { service: string };

describe('tracing: a real OpenTelemetry Collector receives the sidecars’ spans', {
  skip: isRoot ? false : 'needs root (network namespaces, iptables)',
  timeout: 240_000,
}, () => {
  let client: Pod;
  let server: Pod;
  let agent: Agent;
  let recorder: Agent;
  let collector: ChildProcess;

  /** Every span the collector forwarded so far, with its resource's service.name. */
  const forwarded = async (): Promise<Span[]> => {
    const got = await recorder.send<string[]>({ op: 'collected' });
    return got.flatMap((line) => {
      const [method, url, , hex] = line.split(' ');
      if (method !== 'POST' || url !== '/v1/traces' || !hex) return [];
      const body = JSON.parse(Buffer.from(hex, 'hex').toString('utf8')) as OtlpExport;
      return body.resourceSpans.flatMap((rs) => {
        const svc = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        return rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, service: svc })));
      });
    });
  };

  before(async () => {
    // The sidecars run as the image ships them: the esbuild bundle (hack/build-dist.ts).
    const dist = await buildDist(join(await topo.tempDir('dist'), 'dist'));
    topo.proxyCommand = [dist.entry, 'proxy'];
    await topo.create();
    client = await topo.addPod('client');
    server = await topo.addPod('server');
    const web = service('web', 'shop', '10.96.0.10', 80, [
      { ...endpoint(server.ip, 8080), pod: `${server.name}-abc` },
    ]);
    await topo.writeConfig(
      proxyConfig('shop', [web], [], {
        telemetry: {
          metrics: true,
          accessLogs: false,
          tracing: { endpoint: `http://${COLLECTOR}/v1/traces`, samplingPercent: 100 },
        },
      }),
    );
    // The recorder: the netns agent's OTLP stand-in, here behind the real collector.
    const router = { name: 'router', ns: topo.router, ip: '10.244.0.1' };
    recorder = await topo.startAgent(router);
    await recorder.send({ op: 'collector', port: RECORDER_PORT });
    const dir = await topo.tempDir('otelcol');
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      collectorConfig({ listen: COLLECTOR, forward: `http://127.0.0.1:${RECORDER_PORT}` }),
    );
    const log: string[] = [];
    collector = spawn('ip', ['netns', 'exec', topo.router, bin, `--config=${config}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    topo.procs.push(collector);
    topo.logs.set('otelcol', log);
    // The collector logs to stderr.
    collector.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
    const ready = await eventually(
      async () => collector.exitCode === null && log.join('').includes('Everything is ready'),
      240,
      250,
    );
    assert.ok(ready, `the collector is ready: ${log.join('').slice(-2000)}`);

    for (const p of [client, server]) await topo.intercept(p);
    await topo.startApp(server, { http: 8080 });
    await topo.startProxy(server);
    await topo.startProxy(client);
    agent = await topo.startAgent(client);
  });

  after(async () => {
    await topo.destroy();
  });

  it('one request through two sidecars is one trace: client span → server span → the app’s traceparent', async () => {
    // Each proxy loads its tracer asynchronously after start: call until a request is traced
    // end to end (the server's span seen as the child of the client's).
    let last = '';
    let trace: { app: string; spans: Span[] } | undefined;
    for (let attempt = 0; attempt < 8 && !trace; attempt++) {
      const t0 = Date.now();
      const r = await agent.send<{ first: { status: number; body: string } }>({
        op: 'http',
        url: 'http://10.96.0.10/headers',
      });
      assert.equal(r.first.status, 200, r.first.body);
      const app = (JSON.parse(r.first.body) as Record<string, string>).traceparent ?? '';
      last = app;
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(app);
      if (!m) {
        await sleep(250);
        continue;
      }
      // The proxies export in batches every 5 s (the SDK's BatchSpanProcessor).
      let spans: Span[] = [];
      await eventually(
        async () => {
          spans = (await forwarded()).filter((s) => s.traceId === m[1]);
          return spans.length >= 2;
        },
        60,
        250,
      );
      process.stderr.write(`[tracing] attempt ${attempt}: ${spans.length} spans in ${Date.now() - t0} ms\n`);
      if (spans.length >= 2) trace = { app, spans };
    }
    assert.ok(
      trace,
      `a request traced by both sidecars (last traceparent at the app: ${last || 'none'}); collector log: ${topo.logs.get('otelcol')!.join('').slice(-2000)}`,
    );
    const [, traceId, appParent] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(trace.app)!;
    assert.equal(trace.spans.length, 2, JSON.stringify(trace.spans));
    const out = trace.spans.find((s) => s.service === 'client.shop');
    const inb = trace.spans.find((s) => s.service === 'server.shop');
    assert.ok(out && inb, `a span from each sidecar: ${JSON.stringify(trace.spans)}`);
    // OTLP span kinds: 2 SERVER, 3 CLIENT.
    assert.equal(out.kind, 3, 'the client sidecar’s span is a CLIENT span');
    assert.equal(inb.kind, 2, 'the server sidecar’s span is a SERVER span');
    assert.ok(!out.parentSpanId, `the client sidecar's span is the root: parent ${out.parentSpanId}`);
    assert.equal(inb.parentSpanId, out.spanId, 'the server span is the child of the client span');
    assert.equal(out.traceId, traceId);
    assert.equal(appParent, inb.spanId, 'the app got the W3C traceparent of the server sidecar’s span');
  });

  it('each sidecar’s /metrics, scraped after the traffic, is lint-clean under promtool check metrics', async () => {
    const promtool = prometheusBinary('promtool');
    // Scraped by the client's agent: its own sidecar on loopback, the server's on the pod address.
    for (const [pod, host] of [
      [client, '127.0.0.1'],
      [server, server.ip],
    ] as const) {
      const got = await agent.send<{ first: { status: number; body: string } }>({
        op: 'http',
        url: `http://${host}:${PROXY.healthPort}/metrics`,
      });
      assert.equal(got.first.status, 200);
      const r = got.first.body;
      assert.match(r, /^weft_requests_total\{/m, `${pod.name}'s sidecar counted the requests`);
      const out = spawnSync(promtool, ['check', 'metrics'], { input: r, encoding: 'utf8' });
      assert.equal(out.status, 0, `${pod.name}: ${out.stdout}${out.stderr}`);
    }
  });
});
