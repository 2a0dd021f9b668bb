// The sidecar as an image ships it: dist/weft.js (hack/build-dist.ts, esbuild bundle, plain
// JavaScript) run as `weft proxy`, in network namespaces behind the real iptables rules. The
// parts the bundle changes are exercised: the addon found next to the bundle, the precompiled
// validators (a bad config is kept out, naming the field), node:http2 and node:tls loaded on first
// use (gRPC; mutual TLS between the sidecars), the HTTP fast path and opaque TCP.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildDist } from '../../hack/build-dist.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity } from './mtlsfixture.ts';
import { type Agent, eventually, metricLines, type Pod, Topology } from './netns.ts';

const topo = new Topology();
let agent: Agent;
let distDir = '';
let client: Pod;
let server: Pod;

interface HttpMany {
  statuses: Record<string, number>;
  backends: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string };
}

function config() {
  const serverId = spiffe('web');
  const ep = (port: number, name: string) => ({
    ...endpoint(server.ip, port),
    ports: { [name]: port },
    pod: 'server-abc',
    identity: serverId,
  });
  const web = service('web', 'shop', '10.96.0.10', 80, [ep(8080, 'http')]);
  const echo = {
    ...service('echo', 'shop', '10.96.0.20', 9000, [ep(9000, 'tcp')]),
    ports: [{ name: 'tcp', port: 9000, protocol: 'TCP' as const }],
  };
  const grpc = {
    ...service('greeter', 'shop', '10.96.0.30', 50051, [ep(50051, 'grpc')]),
    ports: [{ name: 'grpc', port: 50051, protocol: 'TCP' as const, appProtocol: 'grpc' }],
  };
  return proxyConfig('shop', [echo, grpc, web]);
}

async function metrics(ip: string): Promise<string> {
  return (await agent.send<HttpMany>({ op: 'http', url: `http://${ip}:15020/metrics` })).first.body;
}

describe('the bundled sidecar (dist/weft.js proxy)', { timeout: 180_000 }, () => {
  before(async () => {
    const dist = await buildDist();
    distDir = dist.outdir;
    topo.proxyCommand = [dist.entry, 'proxy'];
    await topo.create();
    client = await topo.addPod('client');
    server = await topo.addPod('server');
    await topo.writeConfig(config());
    for (const p of [client, server]) await topo.intercept(p);
    const ca = await newCa();
    const ids = { client: await topo.tempDir('id-client'), server: await topo.tempDir('id-server') };
    await writeIdentity(ids.client, ca, 'client');
    await writeIdentity(ids.server, ca, 'web');
    await topo.startApp(server, { http: 8080, grpc: 50051, tcp: 9000 });
    await Promise.all([
      topo.startProxy(client, ['--identity-dir', ids.client]),
      topo.startProxy(server, ['--identity-dir', ids.server]),
    ]);
    agent = await topo.startAgent(client);
  });
  after(() => topo.destroy());

  it('runs from dist/ without the TypeScript sources: the log names the bundle, the addon loads', () => {
    assert.match(topo.proxyCommand[0]!, /dist\/weft\.js$/);
    const log = topo.logs.get('proxy-client')!.join('');
    assert.match(log, /weft-proxy started/);
    assert.doesNotMatch(log, /WEFT_NATIVE_UNAVAILABLE/);
  });

  it('weft proxy does not evaluate ajv or the API schemas at start (gateway mode loads them when it validates)', () => {
    // Every chunk an ES module imports statically is evaluated when it loads: the chunks of
    // `weft proxy` are its command chunk and what that imports, transitively (not import()).
    const code = (f: string) => readFileSync(join(distDir, f), 'utf8');
    const chunks = readdirSync(distDir).filter((f) => f.endsWith('.js'));
    const proxyChunk = chunks.find((f) => /function startSidecar\(/.test(code(f)));
    assert.ok(proxyChunk, `a chunk defines startSidecar: ${chunks.join(' ')}`);
    const loaded = new Set<string>();
    const visit = (f: string) => {
      if (loaded.has(f)) return;
      loaded.add(f);
      for (const m of code(f).matchAll(
        /\b(?:import|export)\s*(?:\{[^}]*\}\s*from\s*)?["']\.\/([\w.-]+\.js)["']/g,
      ))
        visit(m[1]!);
    };
    visit(proxyChunk);
    // ajv's constructor, as esbuild wraps the CommonJS package, and a TypeBox schema builder.
    const ajv = /\brequire_ajv\b/;
    assert.ok(
      chunks.some((f) => ajv.test(code(f))),
      'ajv is in the bundle (gateway mode, operator)',
    );
    const eager = [...loaded].filter((f) => ajv.test(code(f)));
    assert.deepEqual(eager, [], `chunks loaded by weft proxy at start: ${[...loaded].join(' ')}`);
  });

  it('HTTP/1.1 to a Service VIP through both sidecars, over mutual TLS 1.3', async () => {
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 20 });
    assert.deepEqual(r.statuses, { 200: 20 });
    const m = await metrics('127.0.0.1');
    const mtls = metricLines(m, 'weft_mtls_connections_total{', 'direction="outbound"', 'TLSv1.3');
    assert.ok(mtls.length > 0, `the hop is mTLS 1.3:\n${metricLines(m, 'weft_mtls').join('\n')}`);
  });

  it('gRPC (HTTP/2, loaded on first use) keeps its status and trailers', async () => {
    const ok = await agent.send<{ status: number; grpcStatus: string; message: string }>({
      op: 'grpc',
      url: 'http://10.96.0.30:50051',
      message: 'hi',
    });
    assert.equal(ok.grpcStatus, '0');
    assert.equal(ok.message, 'hi');
  });

  it('opaque TCP echo', async () => {
    const r = await agent.send<{ got: string; error?: string }>({
      op: 'tcp',
      host: '10.96.0.20',
      port: 9000,
      send: ['hello ', 'dist'],
    });
    assert.equal(r.error, undefined);
    assert.equal(r.got, 'hello dist');
  });

  it('the precompiled validator keeps a bad config out and names the field; a good one then applies', async () => {
    const good = config();
    const bad = { ...good, version: 'bad-1', services: [{ ...good.services[0]!, clusterIPs: 'nope' }] };
    await topo.writeConfig(bad as unknown as ReturnType<typeof config>);
    const refused = await eventually(async () =>
      topo.logs.get('proxy-client')!.join('').includes('services[0].clusterIPs'),
    );
    assert.ok(
      refused,
      `the refusal names services[0].clusterIPs:\n${topo.logs.get('proxy-client')!.join('')}`,
    );
    const m = await metrics('127.0.0.1');
    assert.ok(metricLines(m, 'weft_config_reload_failures_total{').length > 0);
    assert.ok(m.includes(`weft_config_info{version="${good.version}"}`), 'the last good config stays');
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 5 });
    assert.deepEqual(r.statuses, { 200: 5 });
  });

  it('RegularExpression matches run on the RE2 addon shipped next to the bundle', async () => {
    const c = config();
    // A route whose only backend is a Service without endpoints: matched requests get 503.
    c.services.push(service('nowhere', 'shop', '10.96.0.40', 80, []));
    c.routes = [
      {
        name: 'shop/redos',
        service: 'shop/web',
        matches: [{ path: { type: 'RegularExpression', value: '^/(a+)+$' } }],
        backends: [{ service: 'shop/nowhere', weight: 1 }],
      },
    ];
    c.version = 'regex-1';
    await topo.writeConfig(c);
    const applied = await eventually(async () => (await metrics('127.0.0.1')).includes('version="regex-1"'));
    assert.ok(applied, `applied:\n${topo.logs.get('proxy-client')!.join('')}`);
    const matched = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/aaa' });
    assert.equal(matched.first.status, 503, 'the regex route matched');
    const attack = await agent.send<HttpMany>({
      op: 'http',
      url: `http://10.96.0.10/${'a'.repeat(2000)}!`,
      n: 3,
    });
    assert.deepEqual(attack.statuses, { 200: 3 }, 'no match, served by the default route, in linear time');
  });
});
