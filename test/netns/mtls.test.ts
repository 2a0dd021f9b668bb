// Sidecar-to-sidecar mutual TLS in network namespaces with the real iptables rules: a client pod
// and a server pod, both with weft-proxy and identity directories written from the mesh CA
// library, plus a pod without a sidecar as the plaintext caller. Proven with the proxies' own
// metrics (TLS version and the peer's SPIFFE ID on both sides) and the answers callers get.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CertificateAuthority } from '../../operator/identity/ca.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, eventually, metricLines, type Pod, Topology, metricSum as value } from './netns.ts';

const topo = new Topology();
let ca: CertificateAuthority;
let client: Pod;
let server: Pod;
let plain: Pod;
let clientAgent: Agent;
let plainAgent: Agent;
let serverAgent: Agent;
let clientId = '';
let serverId = '';

interface HttpMany {
  statuses: Record<string, number>;
  backends: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string };
}

function config(mode: 'STRICT' | 'PERMISSIVE', serverIdentity = spiffe('web')) {
  const web = service('web', 'shop', '10.96.0.10', 80, [
    { ...endpoint(server.ip, 8080), pod: 'server-abc', identity: serverIdentity },
  ]);
  const echo = {
    ...service('echo', 'shop', '10.96.0.20', 9000, [
      { ...endpoint(server.ip, 9000), ports: { tcp: 9000 }, identity: serverIdentity },
    ]),
    ports: [{ name: 'tcp', port: 9000, protocol: 'TCP' as const }],
  };
  // A Service whose only endpoint is the server pod itself: the server pod calls it (hairpin).
  const self = service('self', 'shop', '10.96.0.30', 80, [
    { ...endpoint(server.ip, 8080), pod: 'server-abc', identity: serverIdentity },
  ]);
  return proxyConfig('shop', [echo, self, web], [], { mtls: { mode, ports: [] } });
}

async function apply(c: ReturnType<typeof config>): Promise<void> {
  await topo.writeConfig(c);
  for (const ip of ['127.0.0.1', server.ip]) {
    const ok = await eventually(async () => {
      const m = await metrics(clientAgent, ip);
      return m.includes(`weft_config_info{version="${c.version}"}`);
    });
    assert.ok(ok, `config ${c.version} applied at ${ip}`);
  }
}

async function metrics(agent: Agent, ip: string): Promise<string> {
  const r = await agent.send<HttpMany>({ op: 'http', url: `http://${ip}:15020/metrics` });
  return r.first.body;
}

describe('mutual TLS between sidecars', { timeout: 240_000 }, () => {
  before(async () => {
    await topo.create();
    ca = await newCa();
    client = await topo.addPod('client');
    server = await topo.addPod('server');
    plain = await topo.addPod('plain');
    await topo.writeConfig(config('STRICT'));
    await topo.intercept(client);
    await topo.intercept(server);
    const clientDir = await topo.tempDir('id-client');
    const serverDir = await topo.tempDir('id-server');
    const serverInfo = await topo.tempDir('info-server');
    await writeIdentity(clientDir, ca, 'client');
    await writeIdentity(serverDir, ca, 'web');
    await writeLabels(serverInfo, { app: 'web' });
    clientId = spiffe('client');
    serverId = spiffe('web');
    await topo.startApp(server, { http: 8080, tcp: 9000 });
    await Promise.all([
      topo.startProxy(client, ['--identity-dir', clientDir]),
      topo.startProxy(server, ['--identity-dir', serverDir, '--pod-info-dir', serverInfo]),
    ]);
    clientAgent = await topo.startAgent(client);
    plainAgent = await topo.startAgent(plain);
    serverAgent = await topo.startAgent(server);
    (globalThis as { serverDir?: string }).serverDir = serverDir;
  });
  after(() => topo.destroy());

  it('HTTP through both sidecars is mutual TLS 1.3 with the expected SPIFFE IDs on both sides', async () => {
    const r = await clientAgent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 20 });
    assert.deepEqual(r.statuses, { 200: 20 });
    const cm = await metrics(clientAgent, '127.0.0.1');
    const sm = await metrics(clientAgent, server.ip);
    assert.ok(
      value(
        cm,
        'weft_mtls_connections_total{',
        'direction="outbound"',
        'tls_version="TLSv1.3"',
        `peer="${serverId}"`,
      ) >= 1,
      `client sidecar verified the server as ${serverId}:\n${metricLines(cm, 'weft_mtls').join('\n')}`,
    );
    assert.ok(
      value(
        sm,
        'weft_mtls_connections_total{',
        'direction="inbound"',
        'tls_version="TLSv1.3"',
        `peer="${clientId}"`,
      ) >= 1,
      `server sidecar verified the client as ${clientId}:\n${metricLines(sm, 'weft_mtls').join('\n')}`,
    );
    // Every inbound request came over mTLS: none was served as plaintext.
    assert.equal(value(sm, 'weft_plaintext_connections_total{', 'direction="inbound"'), 0);
    assert.ok(
      value(
        sm,
        'weft_requests_total{',
        'direction="inbound"',
        'source_namespace="shop"',
        'status_code="200"',
      ) >= 20,
    );
  });

  it('a pod calling a Service whose endpoint is itself goes through its own inbound side over mTLS (hairpin)', async () => {
    // The sidecar's mTLS connection to its own pod IP leaves over lo: it must reach the inbound
    // listener, not the app's plaintext port (the conformance suite's client calls its own pod).
    const inBefore = value(
      await metrics(clientAgent, server.ip),
      'weft_requests_total{',
      'direction="inbound"',
      'status_code="200"',
    );
    const r = await serverAgent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.30/', n: 5 });
    assert.deepEqual(r.statuses, { 200: 5 }, JSON.stringify(r.first));
    const sm = await metrics(clientAgent, server.ip);
    assert.ok(
      value(sm, 'weft_mtls_connections_total{', 'direction="inbound"', `peer="${serverId}"`) >= 1,
      `the server sidecar took its own call as an mTLS peer:\n${metricLines(sm, 'weft_mtls').join('\n')}`,
    );
    assert.ok(
      value(sm, 'weft_requests_total{', 'direction="inbound"', 'status_code="200"') >= inBefore + 5,
      'the calls were served by the inbound side',
    );
  });

  it('opaque TCP to a meshed endpoint is mutual TLS too (weft-tcp), bytes intact', async () => {
    const before = value(
      await metrics(clientAgent, server.ip),
      'weft_mtls_connections_total{',
      'direction="inbound"',
    );
    const r = await clientAgent.send<{ got: string; error?: string }>({
      op: 'tcp',
      host: '10.96.0.20',
      port: 9000,
      send: ['hello ', 'mesh'],
    });
    assert.equal(r.got, 'hello mesh');
    const after = value(
      await metrics(clientAgent, server.ip),
      'weft_mtls_connections_total{',
      'direction="inbound"',
    );
    assert.equal(after, before + 1, 'one more inbound mTLS connection');
  });

  it('STRICT: a plaintext caller without a sidecar is refused (HTTP gets 403 naming mTLS) and counted', async () => {
    const r = await plainAgent.send<HttpMany>({ op: 'http', url: `http://${server.ip}:8080/` });
    assert.equal(r.first.status, 403);
    assert.equal(r.first.headers['weft-error'], 'WEFT_MTLS_REQUIRED');
    assert.match(r.first.body, /mutual TLS is required/);
    const tcp = await plainAgent.send<{ got: string }>({
      op: 'tcp',
      host: server.ip,
      port: 9000,
      send: ['x'],
    });
    assert.equal(tcp.got, '', 'plaintext TCP is closed without reaching the app');
    const sm = await metrics(clientAgent, server.ip);
    assert.ok(value(sm, 'weft_mtls_refused_total{reason="plaintext"}') >= 2);
  });

  it('PERMISSIVE: the same plaintext caller is served, and sidecars still use mTLS', async () => {
    await apply(config('PERMISSIVE'));
    const r = await plainAgent.send<HttpMany>({ op: 'http', url: `http://${server.ip}:8080/`, n: 5 });
    assert.deepEqual(r.statuses, { 200: 5 });
    const plainBefore = value(await metrics(clientAgent, server.ip), 'weft_plaintext_connections_total{');
    const m = await clientAgent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 5 });
    assert.deepEqual(m.statuses, { 200: 5 });
    const tcp = await clientAgent.send<{ got: string }>({
      op: 'tcp',
      host: '10.96.0.20',
      port: 9000,
      send: ['p'],
    });
    assert.equal(tcp.got, 'p');
    assert.equal(
      value(await metrics(clientAgent, server.ip), 'weft_plaintext_connections_total{'),
      plainBefore,
      'no sidecar-to-sidecar connection was plaintext',
    );
    assert.equal(value(await metrics(clientAgent, '127.0.0.1'), 'weft_plaintext_connections_total{'), 0);
    await apply(config('STRICT'));
  });

  it('a server sidecar presenting another identity than the endpoint’s is refused by the client sidecar', async () => {
    await apply(config('STRICT', spiffe('payments')));
    const r = await clientAgent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 3 });
    assert.deepEqual(r.statuses, { 503: 3 }, JSON.stringify(r.first));
    assert.equal(r.first.headers['weft-error'], 'WEFT_UPSTREAM_CONNECT');
    const cm = await metrics(clientAgent, '127.0.0.1');
    assert.ok(
      value(cm, 'weft_mtls_failures_total{', 'direction="outbound"', 'reason="WEFT_PEER_IDENTITY"') >= 3,
    );
    await apply(config('STRICT'));
    const ok = await clientAgent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 3 });
    assert.deepEqual(ok.statuses, { 200: 3 });
  });

  it('certificate rotation on the server during steady traffic (500 requests) fails no request', async () => {
    const dir = (globalThis as { serverDir?: string }).serverDir!;
    const traffic = clientAgent.send<HttpMany>(
      { op: 'http', url: 'http://10.96.0.10/', n: 500, concurrency: 8, headers: { connection: 'close' } },
      120_000,
    );
    // Rotate twice while the requests run (new key and certificate each time, kubelet-style renames).
    for (let i = 0; i < 2; i++) {
      await new Promise((r) => setTimeout(r, 300));
      await writeIdentity(dir, ca, 'web');
    }
    // New mTLS connections while the certificates change: each TCP connection is a handshake.
    const mtlsBefore = value(
      await metrics(clientAgent, server.ip),
      'weft_mtls_connections_total{',
      'direction="inbound"',
    );
    for (let i = 0; i < 30; i++) {
      const t = await clientAgent.send<{ got: string }>({
        op: 'tcp',
        host: '10.96.0.20',
        port: 9000,
        send: [`m${i}`],
      });
      if (t.got !== `m${i}`) {
        // Say everything the next reader needs: the agent's error and both proxies' TLS counters.
        const counters = async (ip: string) =>
          (await metrics(clientAgent, ip))
            .split('\n')
            .filter((l) => /^weft_(mtls|identity)_/.test(l))
            .join('\n');
        assert.fail(
          `TCP connection ${i} during rotation: ${JSON.stringify(t)}\nserver:\n${await counters(server.ip)}\nclient:\n${await counters(client.ip)}`,
        );
      }
    }
    const r = await traffic;
    assert.deepEqual(r.statuses, { 200: 500 });
    const mtlsAfter = value(
      await metrics(clientAgent, server.ip),
      'weft_mtls_connections_total{',
      'direction="inbound"',
    );
    assert.ok(mtlsAfter >= mtlsBefore + 30, 'the TCP connections were new mTLS handshakes');
    const ok = await eventually(
      async () =>
        value(await metrics(clientAgent, server.ip), 'weft_identity_reloads_total{result="ok"}') >= 1,
    );
    assert.ok(ok, 'the server sidecar reloaded its certificate');
  });

  it('an expired certificate and one from a foreign CA are refused by the peer', async () => {
    const dir = (globalThis as { serverDir?: string }).serverDir!;
    // Expired: issued two hours ago for one hour. The server loads it (it is well-formed), the
    // client sidecar refuses the handshake.
    await writeIdentity(dir, ca, 'web', { now: new Date(Date.now() - 2 * 3_600_000), lifetimeMs: 3_600_000 });
    const failing = async (reason: string) => {
      const before = value(await metrics(clientAgent, '127.0.0.1'), 'weft_mtls_failures_total{');
      // New connections (opaque TCP: one handshake each) are refused: closed, nothing echoed.
      let last: { got: string } | undefined;
      const refused = await eventually(async () => {
        last = await clientAgent.send<{ got: string }>({
          op: 'tcp',
          host: '10.96.0.20',
          port: 9000,
          send: ['x'],
        });
        return last.got === '';
      });
      assert.ok(refused, `${reason}: refused (last answer ${JSON.stringify(last)})`);
      const after = value(await metrics(clientAgent, '127.0.0.1'), 'weft_mtls_failures_total{');
      assert.ok(after > before, `${reason}: counted as an mTLS failure`);
    };
    await failing('expired');
    const foreign = await newCa();
    await writeIdentity(dir, foreign, 'web', { roots: ca.rootsPem });
    await failing('foreign CA');
    // Back to a good certificate: traffic flows again.
    await writeIdentity(dir, ca, 'web');
    const back = await eventually(async () => {
      const r = await clientAgent.send<{ got: string }>({
        op: 'tcp',
        host: '10.96.0.20',
        port: 9000,
        send: ['y'],
      });
      return r.got === 'y';
    });
    assert.ok(back, 'a valid certificate again restores traffic');
  });
});
