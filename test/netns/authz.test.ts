// Authorization enforced by the server sidecar in network namespaces: two meshed callers with
// different ServiceAccounts (their identities proven by mTLS), AuthorizationPolicies from the
// ProxyConfig matched against the server pod's downward-API labels. HTTP denials answer 403
// naming the policy and rule, TCP denials close the connection, and every decision is counted.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type AuthzPolicy, contentVersion, type ProxyConfig } from '../../api/index.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, eventually, metricLines, type Pod, Topology } from './netns.ts';

const topo = new Topology();
let server: Pod;
let good: Agent;
let bad: Agent;
let goodPod: Pod;

interface HttpMany {
  statuses: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string };
}

const policies: AuthzPolicy[] = [
  {
    name: 'shop/web-callers',
    namespace: 'shop',
    action: 'ALLOW',
    selector: { matchLabels: { app: 'web' } },
    rules: [
      { from: [{ source: { serviceAccounts: ['frontend'] } }], to: [{ operation: { ports: [8080] } }] },
    ],
  },
  {
    name: 'shop/no-admin',
    namespace: 'shop',
    action: 'DENY',
    selector: { matchLabels: { app: 'web' } },
    rules: [
      { to: [{ operation: { paths: ['/nothing'] } }] },
      { to: [{ operation: { paths: ['/admin*'] } }] },
    ],
  },
  {
    name: 'shop/no-raw-tcp',
    namespace: 'shop',
    action: 'DENY',
    selector: { matchLabels: { app: 'web' } },
    rules: [{ to: [{ operation: { ports: [9000] } }] }],
  },
  {
    // Istio's string matches on methods: "G*" (prefix) and "*" (any method).
    name: 'shop/wildcard-methods',
    namespace: 'shop',
    action: 'DENY',
    selector: { matchLabels: { app: 'web' } },
    rules: [
      { to: [{ operation: { methods: ['G*'], paths: ['/g/*'] } }] },
      { to: [{ operation: { methods: ['*'], paths: ['/any/*'] } }] },
    ],
  },
  {
    // Selects other pods only: must not apply to the server.
    name: 'shop/db-only',
    namespace: 'shop',
    action: 'DENY',
    selector: { matchLabels: { app: 'db' } },
    rules: [{}],
  },
];

function config(): ProxyConfig {
  const id = spiffe('web');
  const web = service('web', 'shop', '10.96.0.10', 80, [{ ...endpoint(server.ip, 8080), identity: id }]);
  const echo = {
    ...service('echo', 'shop', '10.96.0.20', 9000, [
      { ...endpoint(server.ip, 9000), ports: { tcp: 9000 }, identity: id },
    ]),
    ports: [{ name: 'tcp', port: 9000, protocol: 'TCP' as const }],
  };
  const base = proxyConfig('shop', [echo, web], [], {
    mtls: { mode: 'STRICT', ports: [] },
    logLevel: 'debug',
    telemetry: { metrics: true, accessLogs: true },
  });
  const { version: _v, ...doc } = { ...base, authorizationPolicies: policies };
  return { ...doc, version: contentVersion(doc) };
}

async function serverMetrics(): Promise<string> {
  return (await good.send<HttpMany>({ op: 'http', url: `http://${server.ip}:15020/metrics` })).first.body;
}

describe('authorization at the server sidecar', { timeout: 240_000 }, () => {
  before(async () => {
    await topo.create();
    const ca = await newCa();
    goodPod = await topo.addPod('frontend');
    const badPod = await topo.addPod('intruder');
    server = await topo.addPod('server');
    await topo.writeConfig(config());
    for (const p of [goodPod, badPod, server]) await topo.intercept(p);
    const dirs: Record<string, string> = {};
    for (const [pod, sa] of [
      ['frontend', 'frontend'],
      ['intruder', 'intruder'],
      ['server', 'web'],
    ] as const) {
      dirs[pod] = await topo.tempDir(`id-${pod}`);
      await writeIdentity(dirs[pod]!, ca, sa);
    }
    const info = await topo.tempDir('info-server');
    await writeLabels(info, { app: 'web', 'pod-template-hash': '7d9f8b6c5d' });
    await topo.startApp(server, { http: 8080, tcp: 9000 });
    await Promise.all([
      topo.startProxy(goodPod, ['--identity-dir', dirs.frontend!]),
      topo.startProxy(badPod, ['--identity-dir', dirs.intruder!]),
      topo.startProxy(server, ['--identity-dir', dirs.server!, '--pod-info-dir', info]),
    ]);
    good = await topo.startAgent(goodPod);
    bad = await topo.startAgent(badPod);
  });
  after(() => topo.destroy());

  it('an ALLOW policy by serviceAccount lets the right caller in and answers the other 403 naming the policy', async () => {
    const ok = await good.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 5 });
    assert.deepEqual(ok.statuses, { 200: 5 });
    const no = await bad.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 3 });
    assert.deepEqual(no.statuses, { 403: 3 });
    assert.equal(no.first.headers['weft-error'], 'WEFT_DENIED');
    assert.match(no.first.body, /^RBAC: access denied/);
    assert.match(no.first.body, /shop\/web-callers/, `the body names the ALLOW policy: ${no.first.body}`);
    // Debug log level: the explanation is also a response header.
    assert.match(no.first.headers['x-weft-authz'] ?? '', /shop\/web-callers/);
  });

  it('a DENY policy on a path refuses even the allowed caller, naming the policy and rule', async () => {
    const r = await good.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/admin/users' });
    assert.equal(r.first.status, 403);
    assert.match(r.first.body, /access denied by shop\/no-admin rule 1/);
    const other = await good.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/administrator-not' });
    assert.equal(other.first.status, 403, '/admin* is a prefix match');
    const fine = await good.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/ad' });
    assert.equal(fine.first.status, 200);
  });

  it('a DENY with methods ["G*"] or ["*"] denies what it names (Istio prefix and presence matches)', async () => {
    const g = await good.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/g/x' });
    assert.equal(g.first.status, 403);
    assert.match(g.first.body, /access denied by shop\/wildcard-methods rule 0/);
    const post = await good.send<HttpMany>({
      op: 'http',
      url: 'http://10.96.0.10/g/x',
      method: 'POST',
      body: 'x',
    });
    assert.equal(post.first.status, 200, 'G* does not match POST');
    for (const method of ['GET', 'DELETE', 'PATCH']) {
      const any = await good.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/any/x', method });
      assert.equal(any.first.status, 403, `* matches ${method}`);
      assert.match(any.first.body, /access denied by shop\/wildcard-methods rule 1/);
    }
  });

  it('a denied opaque TCP connection is closed before reaching the app', async () => {
    const r = await good.send<{ got: string; error?: string }>({
      op: 'tcp',
      host: '10.96.0.20',
      port: 9000,
      send: ['ping'],
    });
    assert.equal(r.got, '', 'nothing echoed: the app never saw the connection');
  });

  it('every decision is counted with decision, policy, rule and reason; the access log names the policy and rule', async () => {
    const m = await serverMetrics();
    const count = (...parts: string[]) =>
      metricLines(m, 'weft_authz_decisions_total{', ...parts).reduce(
        (n, l) => n + Number(l.split(' ').pop()),
        0,
      );
    const all = metricLines(m, 'weft_authz').join('\n');
    assert.ok(
      count('decision="allow"', 'policy="shop/web-callers"', 'rule="0"', 'reason="allowed-by-policy"') >= 6,
      all,
    );
    assert.ok(
      count('decision="deny"', 'policy=""', 'reason="no-allow-match"') >= 3,
      metricLines(m, 'weft_authz').join('\n'),
    );
    assert.ok(
      count('decision="deny"', 'policy="shop/no-admin"', 'rule="1"', 'reason="denied-by-policy"') >= 2,
    );
    // The TCP connection: DENY rules with HTTP-only fields still apply to TCP (fail closed,
    // Istio semantics), so the first DENY policy by name, shop/no-admin rule 0, decided it.
    assert.ok(
      count('decision="deny"', 'policy="shop/no-admin"', 'rule="0"', 'reason="denied-by-policy"') >= 1,
      all,
    );
    assert.equal(count('policy="shop/db-only"'), 0, 'a policy selecting other labels never decides here');
    const logged = await eventually(async () => {
      const lines = (topo.logs.get('proxy-server') ?? []).join('').split('\n');
      return lines.some(
        (l) =>
          l.includes('"authz":"deny"') && l.includes('"policy":"shop/no-admin"') && l.includes('"rule":1'),
      );
    });
    assert.ok(logged, 'the access log line of the denied request names the policy and rule');
  });
});
