// The proxy's own ports (outbound 15001, inbound 15006) are reachable only through the pod's own
// redirect, attacked from a pod without a sidecar on the same network: it must never borrow a
// meshed pod's sidecar (and its SPIFFE identity) to pass a policy that admits only that pod.
// Also: stalled TLS handshakes and silent sockets on the inbound side are closed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type AuthzPolicy, contentVersion, type ProxyConfig } from '../../api/index.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, metricLines, type Pod, Topology } from './netns.ts';

const topo = new Topology();
const MAX_CONNECTIONS = 20;
let server: Pod;
let frontendPod: Pod;
let frontend: Agent;
let intruder: Agent;

interface HttpMany {
  statuses: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string };
}

const onlyFrontend: AuthzPolicy = {
  name: 'shop/web-callers',
  namespace: 'shop',
  action: 'ALLOW',
  selector: { matchLabels: { app: 'web' } },
  rules: [{ from: [{ source: { serviceAccounts: ['frontend'] } }] }],
};

// PERMISSIVE: plaintext is admitted at the inbound side, so only the port checks stand between
// the intruder and the frontend's sidecar (STRICT would refuse the plaintext hop anyway).
function config(): ProxyConfig {
  const web = service('web', 'shop', '10.96.0.10', 80, [
    { ...endpoint(server.ip, 8080), identity: spiffe('web') },
  ]);
  const base = proxyConfig('shop', [web], [], { mtls: { mode: 'PERMISSIVE', ports: [] } });
  const { version: _v, ...doc } = { ...base, authorizationPolicies: [onlyFrontend] };
  return { ...doc, version: contentVersion(doc) };
}

/** Requests the server sidecar let through: each one reached the app with an allowed identity. */
async function allowedAtServer(): Promise<number> {
  const m = (await frontend.send<HttpMany>({ op: 'http', url: `http://${server.ip}:15020/metrics` })).first
    .body;
  return metricLines(m, 'weft_authz_decisions_total{', 'decision="allow"').reduce(
    (n, l) => n + Number(l.split(' ').pop()),
    0,
  );
}

async function frontendMetrics(): Promise<string> {
  return (await frontend.send<HttpMany>({ op: 'http', url: 'http://127.0.0.1:15020/metrics' })).first.body;
}

describe("a pod's proxy ports, attacked from a pod without a sidecar", { timeout: 240_000 }, () => {
  before(async () => {
    await topo.create();
    const ca = await newCa();
    frontendPod = await topo.addPod('frontend');
    const intruderPod = await topo.addPod('intruder');
    server = await topo.addPod('server');
    await topo.writeConfig(config());
    for (const p of [frontendPod, server]) await topo.intercept(p);
    const dirs: Record<string, string> = {};
    for (const [pod, sa] of [
      ['frontend', 'frontend'],
      ['server', 'web'],
    ] as const) {
      dirs[pod] = await topo.tempDir(`id-${pod}`);
      await writeIdentity(dirs[pod]!, ca, sa);
    }
    const info = await topo.tempDir('info-server');
    await writeLabels(info, { app: 'web' });
    await topo.startApp(server, { http: 8080 });
    // The frontend also runs an app (a TCP echo that never closes a connection itself) and has
    // no policy: the worst case for sockets that stall, which the proxy alone must close.
    await topo.startApp(frontendPod, { tcp: 9000 });
    // Short detection and handshake timeouts so the stalled-socket tests are quick; the
    // connection limit is what stalled sockets would exhaust.
    const limits = [
      ...['--detect-timeout-ms', '1000', '--handshake-timeout-ms', '1000'],
      ...['--max-connections', String(MAX_CONNECTIONS)],
    ];
    await Promise.all([
      topo.startProxy(frontendPod, ['--identity-dir', dirs.frontend!, ...limits]),
      topo.startProxy(server, ['--identity-dir', dirs.server!, '--pod-info-dir', info, ...limits]),
    ]);
    frontend = await topo.startAgent(frontendPod);
    intruder = await topo.startAgent(intruderPod);
  });
  after(() => topo.destroy());

  it('the policy admits the frontend through its sidecar and refuses the intruder calling the server directly', async () => {
    const ok = await frontend.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 3 });
    assert.deepEqual(ok.statuses, { 200: 3 });
    const no = await intruder.send<HttpMany>({ op: 'http', url: `http://${server.ip}:8080/` });
    assert.equal(no.first.status, 403);
  });

  for (const port of [15001, 15006]) {
    it(`the intruder calling the frontend's ${port} with Host of the service is not proxied with the frontend's identity`, async () => {
      const before = await allowedAtServer();
      for (const host of ['web.shop:80', 'web', '10.96.0.10']) {
        const r = await intruder.send<HttpMany>({
          op: 'http',
          url: `http://${frontendPod.ip}:${port}/`,
          headers: { host },
          timeoutMs: 5000,
        });
        assert.notEqual(r.first.status, 200, `Host ${host} via ${port}: ${JSON.stringify(r.first)}`);
      }
      assert.equal(await allowedAtServer(), before, 'no request reached the server as the frontend');
    });
  }

  it('without the inbound capture of 15001 (rules of an older init container), the outbound listener refuses the intruder by itself', async () => {
    // Defence in depth: the listener checks that the connection came through the pod's own
    // OUTPUT redirect, whatever the rules in front of it.
    const rule = ['-t', 'nat', '-I', 'WEFT_INBOUND', '1', '-p', 'tcp', '--dport', '15001', '-j', 'RETURN'];
    await topo.ip(frontendPod.ns, 'iptables', '-w', '5', ...rule);
    try {
      const before = await allowedAtServer();
      const r = await intruder.send<HttpMany>({
        op: 'http',
        url: `http://${frontendPod.ip}:15001/`,
        headers: { host: 'web.shop:80' },
        timeoutMs: 5000,
      });
      assert.notEqual(r.first.status, 200, JSON.stringify(r.first));
      assert.equal(await allowedAtServer(), before, 'no request reached the server as the frontend');
      const m = await frontendMetrics();
      assert.ok(
        metricLines(m, 'weft_proxy_errors_total{', 'direction="outbound"', 'code="WEFT_NOT_REDIRECTED"')
          .length > 0,
        `the refusal is counted:\n${metricLines(m, 'weft_proxy_errors_total').join('\n')}`,
      );
    } finally {
      await topo.ip(
        frontendPod.ns,
        'iptables',
        '-w',
        '5',
        ...rule.map((a) => (a === '-I' ? '-D' : a)).filter((a) => a !== '1'),
      );
    }
  });

  for (const stall of ['silent', 'partial-hello', 'hello'] as const) {
    it(`inbound sockets that stall (${stall}) are closed, and a legitimate caller still gets in`, async () => {
      // As many stalled sockets as the listener admits: unless the proxy closes them, nobody
      // else connects. 'hello' is a whole ClientHello offering weft-http/1.1 (the sidecar-to-
      // sidecar ALPN, so the proxy starts its mTLS handshake), then nothing.
      const r = await intruder.send<{ connected: number; closedByPeer: number }>({
        op: 'flood',
        host: frontendPod.ip,
        port: 9000,
        n: MAX_CONNECTIONS,
        expectClosed: MAX_CONNECTIONS,
        stall,
      });
      await intruder.send({ op: 'unflood' });
      assert.equal(r.connected, MAX_CONNECTIONS);
      assert.equal(
        r.closedByPeer,
        MAX_CONNECTIONS,
        `every stalled socket was closed by the proxy: ${JSON.stringify(r)}`,
      );
      const echo = await intruder.send<{ got: string }>({
        op: 'tcp',
        host: frontendPod.ip,
        port: 9000,
        send: ['ping'],
      });
      assert.equal(echo.got, 'ping');
    });
  }

  it("the pod's own app calling 127.0.0.1:15001 directly is not routed by Host (no original destination)", async () => {
    const before = await allowedAtServer();
    const r = await frontend.send<HttpMany>({
      op: 'http',
      url: 'http://127.0.0.1:15001/',
      headers: { host: 'web.shop:80' },
      timeoutMs: 5000,
    });
    assert.notEqual(r.first.status, 200, JSON.stringify(r.first));
    assert.equal(await allowedAtServer(), before);
    // The redirected path still works.
    const ok = await frontend.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/' });
    assert.equal(ok.first.status, 200);
  });
});
