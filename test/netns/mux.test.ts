// HTTP/2 between sidecars over mutual TLS (the mux, docs/proxy.md): an HTTP/1.1 app's requests
// leave its sidecar as HTTP/2 streams on one long-lived mTLS connection per peer sidecar (ALPN
// weft-h2-http/1.1) and reach the peer's app as HTTP/1.1. In network namespaces with the real
// iptables rules: a client pod, two server pods of one Service, and a pod whose sidecar runs with
// the mux off (it offers weft-http/1.1 only, as a sidecar older than the mux). Proven with the
// proxies' own metrics (mTLS connections, resumed handshakes) and what the apps received.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CertificateAuthority } from '../../operator/identity/ca.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, metricLines, type Pod, Topology, metricSum as value } from './netns.ts';

const topo = new Topology();
let ca: CertificateAuthority;
let client: Pod;
let webA: Pod;
let webB: Pod;
let legacy: Pod;
let agent: Agent;
let stopA: () => void;

interface HttpMany {
  statuses: Record<string, number>;
  backends: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string; trailers?: Record<string, string> };
  firstError?: { status: number; headers: Record<string, string>; body: string };
  connections: number;
}

function config() {
  const ep = (pod: Pod, sa: string, port = 8080) => ({
    ...endpoint(pod.ip, port),
    pod: `${pod.name}-abc`,
    identity: spiffe(sa),
  });
  // web: both server pods; one: only webA (one peer, so one mux connection); old: the legacy pod.
  const web = service('web', 'shop', '10.96.0.10', 80, [ep(webA, 'web'), ep(webB, 'web')]);
  const one = service('one', 'shop', '10.96.0.11', 80, [ep(webA, 'web')]);
  const old = service('old', 'shop', '10.96.0.12', 80, [ep(legacy, 'legacy')]);
  const echo = {
    ...service('echo', 'shop', '10.96.0.20', 9000, [{ ...ep(webB, 'web', 9000), ports: { tcp: 9000 } }]),
    ports: [{ name: 'tcp', port: 9000, protocol: 'TCP' as const }],
  };
  return proxyConfig('shop', [echo, old, one, web], [], {
    mtls: { mode: 'STRICT', ports: [] },
    drainTimeoutMs: 3_000,
  });
}

async function metrics(ip: string): Promise<string> {
  const r = await agent.send<HttpMany>({ op: 'http', url: `http://${ip}:15020/metrics` });
  return r.first.body;
}

describe('HTTP/2 between sidecars over mutual TLS (mux)', { timeout: 240_000 }, () => {
  before(async () => {
    await topo.create();
    ca = await newCa();
    client = await topo.addPod('client');
    webA = await topo.addPod('weba');
    webB = await topo.addPod('webb');
    legacy = await topo.addPod('legacy');
    await topo.writeConfig(config());
    const pods: Array<[Pod, string, string[]]> = [
      [client, 'client', ['--mux-connections', '2']],
      [webA, 'web', ['--mux-connections', '2']],
      [webB, 'web', ['--mux-connections', '2']],
      [legacy, 'legacy', ['--mux-connections', '0']],
    ];
    await Promise.all(
      pods.map(async ([pod, sa, extra]) => {
        await topo.intercept(pod);
        const dir = await topo.tempDir(`id-${pod.name}`);
        const info = await topo.tempDir(`info-${pod.name}`);
        await writeIdentity(dir, ca, sa);
        await writeLabels(info, { app: sa });
        if (pod !== client) await topo.startApp(pod, { http: 8080, tcp: 9000 });
        const p = await topo.startProxy(pod, ['--identity-dir', dir, '--pod-info-dir', info, ...extra]);
        if (pod === webA) stopA = () => p.kill('SIGTERM');
      }),
    );
    agent = await topo.startAgent(client);
  });
  after(() => topo.destroy());

  it("a keep-alive client's concurrent requests share ONE mTLS connection to the peer sidecar", async () => {
    const cBefore = await metrics('127.0.0.1');
    const sBefore = await metrics(webA.ip);
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.11/', n: 400, concurrency: 16 });
    assert.deepEqual(r.statuses, { 200: 400 }, JSON.stringify(r.first));
    assert.ok(r.connections >= 8, `the app opened several connections (${r.connections})`);
    const cAfter = await metrics('127.0.0.1');
    const sAfter = await metrics(webA.ip);
    const out = (t: string) =>
      value(t, 'weft_mtls_connections_total{', 'direction="outbound"', `peer="${spiffe('web')}"`);
    const inb = (t: string) => value(t, 'weft_mtls_connections_total{', 'direction="inbound"');
    assert.equal(
      out(cAfter) - out(cBefore),
      1,
      `one mTLS connection from the client sidecar:\n${metricLines(cAfter, 'weft_mtls').join('\n')}`,
    );
    assert.equal(inb(sAfter) - inb(sBefore), 1, 'one mTLS connection at the server sidecar');
    const served = (t: string) =>
      value(t, 'weft_requests_total{', 'direction="inbound"', 'status_code="200"');
    assert.ok(served(sAfter) - served(sBefore) >= 400, 'the server sidecar served every request');
  });

  it('HTTP/1.1 semantics cross the HTTP/2 hop: Host, hop-by-hop headers, a chunked body, trailers', async () => {
    const h = await agent.send<HttpMany>({
      op: 'http',
      url: 'http://10.96.0.11/headers',
      headers: { host: 'one.shop:80', connection: 'x-hop', 'x-hop': 'secret', 'x-keep': 'yes' },
    });
    assert.equal(h.first.status, 200, h.first.body);
    const seen = JSON.parse(h.first.body) as Record<string, string>;
    assert.equal(seen.host, 'one.shop:80', 'the app sees the Host the client sent');
    assert.equal(seen['x-keep'], 'yes');
    assert.equal(seen['x-hop'], undefined, 'a header named by Connection is hop-by-hop');
    assert.equal(seen['weft-src-workload'], undefined, 'sidecar metadata is stripped before the app');
    // 300 KiB streamed without a length (chunked), echoed as a length and a hash.
    const e = await agent.send<HttpMany>({
      op: 'http',
      url: 'http://10.96.0.11/echo',
      method: 'POST',
      bodyBytes: 300 * 1024,
    });
    assert.equal(e.first.status, 200, e.first.body);
    assert.equal((JSON.parse(e.first.body) as { bytes: number }).bytes, 300 * 1024);
    const t = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.11/trailers' });
    assert.equal(t.first.body, 'part one\npart two\n');
    assert.deepEqual(t.first.trailers, { 'x-checksum': 'abc123' }, "the app's trailer reaches the client");
  });

  it('a sidecar that does not offer weft-h2-http/1.1 (an older one) is served HTTP/1.1 over mTLS', async () => {
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.12/', n: 40, concurrency: 4 });
    assert.deepEqual(r.statuses, { 200: 40 }, JSON.stringify(r.first));
    assert.equal(r.first.headers['x-backend'], 'legacy');
    const lm = await metrics(legacy.ip);
    assert.ok(
      value(lm, 'weft_mtls_connections_total{', 'direction="inbound"', `peer="${spiffe('client')}"`) >= 1,
      'the legacy sidecar was reached over mTLS',
    );
    assert.equal(value(lm, 'weft_plaintext_connections_total{'), 0);
  });

  it('new mTLS connections to a peer resume the last TLS session (counted both sides)', async () => {
    const cBefore = value(await metrics('127.0.0.1'), 'weft_mtls_resumed_total{', 'direction="outbound"');
    const sBefore = value(await metrics(webB.ip), 'weft_mtls_resumed_total{', 'direction="inbound"');
    // Opaque TCP: one mTLS connection each.
    for (let i = 0; i < 5; i++) {
      const t = await agent.send<{ got: string }>({
        op: 'tcp',
        host: '10.96.0.20',
        port: 9000,
        send: [`r${i}`],
      });
      assert.equal(t.got, `r${i}`);
    }
    const cAfter = value(await metrics('127.0.0.1'), 'weft_mtls_resumed_total{', 'direction="outbound"');
    const sAfter = value(await metrics(webB.ip), 'weft_mtls_resumed_total{', 'direction="inbound"');
    assert.ok(cAfter - cBefore >= 4, `resumed at the client: ${cAfter - cBefore} of 5`);
    assert.ok(sAfter - sBefore >= 4, `resumed at the server: ${sAfter - sBefore} of 5`);
  });

  it('a peer sidecar that drains sends GOAWAY: no request in flight or sent meanwhile fails', async () => {
    // Steady traffic over both server pods, each request 150 ms in the app; webA drains in the middle.
    const traffic = agent.send<HttpMany>(
      { op: 'http', url: 'http://10.96.0.10/delay/150', n: 400, concurrency: 12 },
      120_000,
    );
    await new Promise((r) => setTimeout(r, 1_000));
    stopA();
    const r = await traffic;
    assert.deepEqual(r.statuses, { 200: 400 }, JSON.stringify(r.firstError ?? r.first));
    assert.ok((r.backends['weba'] ?? 0) > 0 && (r.backends['webb'] ?? 0) > 0, JSON.stringify(r.backends));
  });
});
