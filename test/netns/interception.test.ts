// weft-proxy in network namespaces with the init container's real iptables rules: an
// unmodified client calling Service VIPs reaches the right backend through both sidecars.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { type Agent, eventually, metricLines, type Pod, Topology } from './netns.ts';

const run = promisify(execFile);
const topo = new Topology();
let agent: Agent;
let client: Pod;
let s1: Pod;
let s2: Pod;

interface HttpMany {
  statuses: Record<string, number>;
  backends: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string };
  connections: number;
}

function baseConfig() {
  const eps = (port: number, name = 'http') =>
    [s1, s2].map((p) => ({ ...endpoint(p.ip, port), ports: { [name]: port }, pod: `${p.name}-abc` }));
  const web = service('web', 'shop', '10.96.0.10', 80, eps(8080));
  const echo = {
    ...service('echo', 'shop', '10.96.0.20', 9000, eps(9000, 'tcp')),
    ports: [{ name: 'tcp', port: 9000, protocol: 'TCP' as const }],
  };
  const banner = {
    ...service('banner', 'shop', '10.96.0.21', 7000, eps(7000, 'smtp')),
    ports: [{ name: 'smtp', port: 7000, protocol: 'TCP' as const }],
  };
  const tlsEcho = {
    ...service('secure', 'shop', '10.96.0.22', 8443, eps(8443, 'https')),
    ports: [{ name: 'https', port: 8443, protocol: 'TCP' as const }],
  };
  const grpc = {
    ...service('greeter', 'shop', '10.96.0.30', 50051, eps(50051, 'grpc')),
    ports: [{ name: 'grpc', port: 50051, protocol: 'TCP' as const, appProtocol: 'grpc' }],
  };
  return proxyConfig('shop', [banner, echo, grpc, tlsEcho, web]);
}

async function adminGet(path: string): Promise<HttpMany['first']> {
  const r = await agent.send<HttpMany>({ op: 'http', url: `http://127.0.0.1:15000${path}` });
  return r.first;
}

describe('interception in network namespaces', { timeout: 180_000 }, () => {
  before(async () => {
    await topo.create();
    client = await topo.addPod('client');
    s1 = await topo.addPod('s1');
    s2 = await topo.addPod('s2');
    await topo.writeConfig(baseConfig());
    for (const p of [client, s1, s2]) await topo.intercept(p);
    // A self-signed certificate for the TLS echo (openssl, in the test's own temp dir).
    const certDir = await topo.tempDir('tls');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=secure.shop',
      '-keyout',
      join(certDir, 'key.pem'),
      '-out',
      join(certDir, 'cert.pem'),
    ]);
    const tlsCfg = { port: 8443, key: join(certDir, 'key.pem'), cert: join(certDir, 'cert.pem') };
    await Promise.all([
      topo.startApp(s1, { http: 8080, grpc: 50051, tcp: 9000, banner: 7000, tls: tlsCfg }),
      topo.startApp(s2, { http: 8080, grpc: 50051, tcp: 9000, banner: 7000, tls: tlsCfg }),
    ]);
    await Promise.all([
      topo.startProxy(client, ['--headers-timeout-ms', '1000', '--max-connections', '200']),
      topo.startProxy(s1),
      topo.startProxy(s2),
    ]);
    agent = await topo.startAgent(client);
  });
  after(() => topo.destroy());

  it("the sidecar's outbound and inbound listeners queue 4096 connections (Node's default backlog of 511 dropped a flood's SYNs: new connections waited for the SYN retransmit)", async () => {
    const { stdout } = await run('ip', ['netns', 'exec', s1.ns, 'ss', '-ltnH']);
    // LISTEN <Recv-Q> <Send-Q = the backlog> <local address:port> <peer>
    const backlog = (port: number) =>
      stdout
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f[0] === 'LISTEN' && f[3]?.endsWith(`:${port}`))?.[2];
    assert.equal(backlog(15001), '4096', stdout);
    assert.equal(backlog(15006), '4096', stdout);
  });

  it('HTTP/1.1 to a Service VIP reaches both backends through the sidecars, on kept-alive connections', async () => {
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 40 });
    assert.deepEqual(r.statuses, { 200: 40 });
    assert.equal((r.backends.s1 ?? 0) + (r.backends.s2 ?? 0), 40);
    assert.ok(r.backends.s1 && r.backends.s2, `both backends used: ${JSON.stringify(r.backends)}`);
    assert.equal(r.connections, 1, 'one client connection for 40 sequential requests (keep-alive)');
  });

  it('the server sidecar saw the request as inbound, and the app sees source metadata stripped', async () => {
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/headers' });
    const headers = JSON.parse(r.first.body) as Record<string, string>;
    assert.equal(r.first.status, 200);
    assert.equal(headers.host, '10.96.0.10');
    assert.equal(headers['weft-src-workload'], undefined, 'sidecar metadata does not reach the app');
    assert.equal(r.first.headers['weft-dst-workload'], undefined, 'nor the client');
  });

  it('routes by Host when the destination is not a VIP (ALLOW_ANY passthrough otherwise)', async () => {
    // The client dials an address where nothing listens but names the service: Host routing
    // picks `web`, where a passthrough to the dialled address would have failed.
    const r = await agent.send<HttpMany>({
      op: 'http',
      url: 'http://10.244.0.200:8080/',
      headers: { host: 'web.shop.svc.cluster.local' },
      n: 10,
    });
    assert.deepEqual(r.statuses, { 200: 10 });
    assert.equal((r.backends.s1 ?? 0) + (r.backends.s2 ?? 0), 10);
    const unknown = await agent.send<HttpMany>({
      op: 'http',
      url: 'http://10.244.0.200:8080/',
      headers: { host: 'nowhere.example' },
      timeoutMs: 5000,
    });
    assert.equal(
      unknown.first.status,
      502,
      'ALLOW_ANY passthrough to the dialled address, which does not answer',
    );
  });

  it('streams a large request body (8 MiB) intact', async () => {
    const r = await agent.send<HttpMany>({
      op: 'http',
      url: 'http://10.96.0.10/echo',
      method: 'POST',
      bodyBytes: 8 * 1024 * 1024,
    });
    assert.equal(r.first.status, 200);
    assert.equal((JSON.parse(r.first.body) as { bytes: number }).bytes, 8 * 1024 * 1024);
  });

  it('opaque TCP: echo through both sidecars', async () => {
    const r = await agent.send<{ got: string; error?: string }>({
      op: 'tcp',
      host: '10.96.0.20',
      port: 9000,
      send: ['hello ', 'weft'],
    });
    assert.equal(r.error, undefined);
    assert.equal(r.got, 'hello weft');
  });

  it('opaque TCP half-close: a client that ends its side at once still gets a late answer', async () => {
    // The client sends, waits 20 ms and half-closes; the app answers after 300 ms.
    const r = await agent.send<{ got: string; error?: string }>({
      op: 'tcp',
      host: '10.96.0.20',
      port: 9000,
      send: ['slow:late answer'],
    });
    assert.equal(r.error, undefined);
    assert.equal(r.got, 'slow:late answer');
  });

  it('server-first TCP: the greeting arrives before the client sends anything', async () => {
    const r = await agent.send<{ got: string; error?: string }>({
      op: 'tcp',
      host: '10.96.0.21',
      port: 7000,
      waitFirstMs: 1,
      send: ['EHLO weft\r\n'],
    });
    assert.equal(r.error, undefined);
    assert.match(r.got, /^220 s[12] ready\r\n250 EHLO weft\r\n$/);
  });

  it("TLS is detected and passed through end to end (the app's certificate reaches the client)", async () => {
    const r = await agent.send<{ got: string; protocol: string; subject: string; error?: string }>({
      op: 'tls',
      host: '10.96.0.22',
      port: 8443,
      message: 'secret',
    });
    assert.equal(r.error, undefined);
    assert.match(r.got, /^s[12]:secret$/);
    assert.equal(r.subject, 'secure.shop', 'the handshake was with the app, not the proxy');
  });

  it('probe passthrough: /app-health/<port>/<path> on 15020 reaches the app', async () => {
    const r = await agent.send<HttpMany>({ op: 'http', url: `http://${s1.ip}:15020/app-health/8080/` });
    assert.equal(r.first.status, 200);
    assert.equal(r.first.body, 'hello from s1\n');
    const down = await agent.send<HttpMany>({ op: 'http', url: `http://${s1.ip}:15020/app-health/8099/` });
    assert.equal(down.first.status, 503, 'a dead app fails the probe');
  });

  it('WebSocket upgrade and echo', async () => {
    const r = await agent.send<{ got: string[]; error?: string }>({
      op: 'ws',
      url: 'ws://10.96.0.10/ws',
      send: ['one', 'two'],
    });
    assert.equal(r.error, undefined);
    assert.equal(r.got.length, 2);
    assert.match(r.got[0]!, /^s[12]:one$/);
    assert.match(r.got[1]!, /^s[12]:two$/);
  });

  it('gRPC over HTTP/2 (appProtocol grpc): messages, trailers and non-zero status pass through', async () => {
    const ok = await agent.send<{ status: number; grpcStatus: string; message: string }>({
      op: 'grpc',
      url: 'http://10.96.0.30:50051',
      message: 'hi',
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.grpcStatus, '0');
    assert.equal(ok.message, 'hi');
    const bad = await agent.send<{ grpcStatus: string; grpcMessage: string }>({
      op: 'grpc',
      url: 'http://10.96.0.30:50051',
      headers: { 'x-grpc-status': '7' },
    });
    assert.equal(bad.grpcStatus, '7');
    assert.equal(bad.grpcMessage, 'failed on purpose');
  });

  it('golden metrics: requests with labels, gRPC status, TCP bytes, config reloads', async () => {
    const m = (await agent.send<HttpMany>({ op: 'http', url: 'http://127.0.0.1:15020/metrics' })).first.body;
    const web200 = metricLines(
      m,
      'weft_requests_total{',
      'direction="outbound"',
      'destination_service="web.shop"',
      'status_code="200"',
      'source_workload="client"',
    );
    assert.equal(web200.length >= 1, true, m.slice(0, 3000));
    assert.ok(
      metricLines(m, 'weft_requests_total{', 'destination_workload="s1"').length >= 1,
      'destination workload learnt from the server sidecar',
    );
    assert.ok(metricLines(m, 'weft_requests_total{', 'grpc_status="7"').length === 1);
    assert.ok(
      metricLines(m, 'weft_request_duration_seconds_bucket{', 'destination_service="web.shop"').length > 0,
    );
    const sent = metricLines(m, 'weft_tcp_sent_bytes_total{', 'destination_service="echo.shop"')[0];
    assert.ok(sent && Number(sent.split(' ').pop()) >= 10, `tcp bytes counted: ${sent}`);
    assert.ok(metricLines(m, 'weft_config_reloads_total 1').length === 1);
  });

  it('admin: /ready, /live, /config shows the applied version, /stats', async () => {
    assert.equal((await adminGet('/ready')).status, 200);
    assert.equal((await adminGet('/live')).status, 200);
    const cfg = JSON.parse((await adminGet('/config')).body) as { status: { version: string } };
    assert.equal(cfg.status.version, baseConfig().version);
    const stats = JSON.parse((await adminGet('/stats')).body) as { endpoints: unknown[] };
    assert.ok(stats.endpoints.length >= 2);
  });

  it('robustness: malformed request 400, oversized headers 431, slow headers 408, upstream crash 502', async () => {
    const malformed = await agent.send<{ got: string }>({
      op: 'raw',
      host: '10.96.0.10',
      port: 80,
      send: ['GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'],
    });
    assert.match(malformed.got, /^HTTP\/1\.1 400 /);
    const big = await agent.send<{ got: string }>({
      op: 'raw',
      host: '10.96.0.10',
      port: 80,
      send: [`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`],
    });
    assert.match(big.got, /^HTTP\/1\.1 431 /);
    const slow = await agent.send<{ got: string }>({
      op: 'raw',
      host: '10.96.0.10',
      port: 80,
      send: ['GET / HTTP/1.1\r\nHost: x\r\n'],
      timeoutMs: 8000,
    });
    assert.match(slow.got, /^HTTP\/1\.1 408 /);
    const crash = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/crash' });
    assert.equal(crash.first.status, 502);
    const after = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 5 });
    assert.deepEqual(after.statuses, { 200: 5 }, 'the proxy is still serving');
  });

  it('config reload: a new version applies; an invalid file is kept out and reported', async () => {
    const next = baseConfig();
    next.services = next.services.map((s) =>
      s.name === 'web' ? { ...s, endpoints: s.endpoints.filter((e) => e.address === s1.ip) } : s,
    );
    next.version = `${next.version.slice(0, 12)}beef`;
    await topo.writeConfig(next);
    const applied = await eventually(
      async () => JSON.parse((await adminGet('/config')).body).status.version === next.version,
    );
    assert.ok(applied, 'new version applied');
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 20 });
    assert.deepEqual(r.backends, { s1: 20 }, 'only the endpoint left in the config');

    await topo.writeConfig(
      new Map([
        ['proxyconfig.json', JSON.stringify({ ...next, version: 'broken', routes: [{ name: 'x' }] })],
      ]),
    );
    const refused = await eventually(async () => {
      const m = (await agent.send<HttpMany>({ op: 'http', url: 'http://127.0.0.1:15020/metrics' })).first
        .body;
      return metricLines(m, 'weft_config_reload_failures_total{reason="WEFT_CONFIG_INVALID"}').length === 1;
    });
    assert.ok(refused, 'refusal counted');
    const status = JSON.parse((await adminGet('/config')).body).status as {
      version: string;
      lastError: { code: string; message: string };
    };
    assert.equal(status.version, next.version, 'last good config still applied');
    assert.equal(status.lastError.code, 'WEFT_CONFIG_INVALID');
    assert.match(status.lastError.message, /routes/);
    const still = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 5 });
    assert.deepEqual(still.statuses, { 200: 5 });
  });

  it('a flood of connections is capped at --max-connections and the proxy keeps serving', async () => {
    const r = await agent.send<{ connected: number; closedByPeer: number }>(
      { op: 'flood', host: '10.96.0.20', port: 9000, n: 400, expectClosed: 150 },
      60_000,
    );
    // The kernel accepts them all (the listener is REDIRECTed); the proxy closes those over its limit.
    assert.equal(r.connected, 400);
    assert.ok(r.closedByPeer >= 150, `connections over the limit were closed: ${r.closedByPeer}`);
    const stats = JSON.parse((await adminGet('/stats')).body) as { connections: number };
    assert.ok(stats.connections <= 200, `open downstream connections ${stats.connections} within the limit`);
    await agent.send({ op: 'unflood' });
    await eventually(
      async () => (JSON.parse((await adminGet('/stats')).body) as { connections: number }).connections < 10,
      30,
      100,
    );
    const ok = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 5 });
    assert.deepEqual(ok.statuses, { 200: 5 });
  });

  it("tracing: traceparent continues the caller's trace, spans go to the OTLP endpoint; access logs when enabled", async () => {
    await agent.send({ op: 'collector', port: 4318 });
    const traced = baseConfig();
    traced.mesh.telemetry = {
      metrics: true,
      accessLogs: true,
      tracing: { endpoint: 'http://127.0.0.1:4318/v1/traces', samplingPercent: 100 },
    };
    traced.version = `${traced.version.slice(0, 12)}0707`;
    await topo.writeConfig(traced);
    assert.ok(
      await eventually(
        async () => JSON.parse((await adminGet('/config')).body).status.version === traced.version,
      ),
    );
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    let seen: Record<string, string> = {};
    // The tracer starts asynchronously after the config applies: retry (bounded) until it is on.
    await eventually(
      async () => {
        const r = await agent.send<HttpMany>({
          op: 'http',
          url: 'http://10.96.0.10/headers',
          headers: { traceparent: `00-${traceId}-${parent}-01` },
        });
        seen = JSON.parse(r.first.body) as Record<string, string>;
        return seen.traceparent !== `00-${traceId}-${parent}-01`;
      },
      20,
      200,
    );
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(seen.traceparent ?? '');
    assert.ok(m, `traceparent forwarded: ${seen.traceparent}`);
    assert.equal(m[1], traceId, 'same trace');
    assert.notEqual(m[2], parent, 'a new span id: the proxies made child spans');
    let got: string[] = [];
    const exported = await eventually(
      async () => {
        got = await agent.send<string[]>({ op: 'collected' });
        // OTLP/HTTP JSON carries the trace id as hex text, protobuf as bytes: look for either.
        return got.some(
          (g) =>
            g.startsWith('POST /v1/traces') &&
            (g.includes(traceId) || g.includes(Buffer.from(traceId).toString('hex'))),
        );
      },
      40,
      250,
    );
    assert.ok(
      exported,
      `spans with the trace id reached the collector: ${got.map((g) => g.slice(0, 120)).join('\n')}`,
    );
    const logs = topo.logs.get('proxy-client')!.join('');
    assert.match(logs, /"component":"access".*"status":200/);
  });

  it('drain on SIGTERM: the in-flight request finishes, then the proxy exits 0', async () => {
    const slow = agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/delay/1500' });
    await eventually(
      async () => {
        const s = JSON.parse((await adminGet('/stats')).body) as { inflight: number };
        return s.inflight > 0;
      },
      50,
      50,
    );
    const proxy = topo.proxies.get('client')!;
    const exited = new Promise<number | null>((r) => proxy.once('exit', (code) => r(code)));
    // setpriv execs node, so the pid we hold is `ip netns exec`'s, which became node.
    proxy.kill('SIGTERM');
    const r = await slow;
    assert.equal(r.first.status, 200, 'in-flight request completed during drain');
    assert.equal(await exited, 0);
    const refused = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', timeoutMs: 3000 });
    assert.equal(refused.first.status, -1, 'nothing listens on 15001 any more');
  });
});
