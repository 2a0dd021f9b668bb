// Faults of the fault suite (docs/reliability.md) reproduced with real sidecars in network
// namespaces: a backend whose app container is down while its sidecar still runs (the app
// crashed and the kubelet has not restarted it yet, before its readiness probe fails). Its
// sidecar answers 502 WEFT_UPSTREAM_CONNECT: nothing reached the app, so the caller's sidecar
// sends the request to another endpoint instead, for any method, once, when it can send it again
// (no body, or its body not begun: a body already sent is not kept for a second try).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { endpoint, proxyConfig, route, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, eventually, type Pod, Topology } from './netns.ts';

const topo = new Topology();
let client: Pod;
let up: Pod;
let down: Pod;
let agent: Agent;

interface HttpMany {
  statuses: Record<string, number>;
  backends: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string };
}

describe('a backend whose app is down behind its running sidecar (STRICT mTLS)', { timeout: 240_000 }, () => {
  before(async () => {
    await topo.create();
    const ca = await newCa();
    client = await topo.addPod('client');
    up = await topo.addPod('up');
    down = await topo.addPod('down');
    const ep = (p: Pod) => ({ ...endpoint(p.ip, 8080), pod: `${p.name}-abc`, identity: spiffe('web') });
    await topo.writeConfig(
      proxyConfig('shop', [service('web', 'shop', '10.96.0.10', 80, [ep(up), ep(down)])], [], {
        mtls: { mode: 'STRICT', ports: [] },
      }),
    );
    const dirs: Record<string, string> = {};
    for (const p of [client, up, down]) {
      await topo.intercept(p);
      dirs[p.name] = await topo.tempDir(`id-${p.name}`);
      await writeIdentity(dirs[p.name]!, ca, p === client ? 'client' : 'web');
    }
    const info = await topo.tempDir('info');
    await writeLabels(info, { app: 'web' });
    // The app of `down` is not running: its sidecar is.
    await topo.startApp(up, { http: 8080 });
    await Promise.all(
      [client, up, down].map((p) =>
        topo.startProxy(p, [
          '--identity-dir',
          dirs[p.name]!,
          ...(p === client ? [] : ['--pod-info-dir', info]),
        ]),
      ),
    );
    agent = await topo.startAgent(client);
  });
  after(() => topo.destroy());

  for (const method of ['GET', 'POST']) {
    it(`${method} without a body: every request is answered by the endpoint whose app runs`, async () => {
      const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', method, n: 40 });
      assert.deepEqual(
        r.statuses,
        { 200: 40 },
        `answers: ${JSON.stringify(r.statuses)}; first: ${JSON.stringify(r.first)}`,
      );
    });
  }

  it('POST with a body (not sent again): the endpoint whose app is down is ejected after 3, then every request is answered', async () => {
    const r = await agent.send<HttpMany>({
      op: 'http',
      url: 'http://10.96.0.10/',
      method: 'POST',
      body: 'x'.repeat(2000),
      n: 40,
    });
    // The peer's 502 WEFT_UPSTREAM_CONNECT counts as a connect failure of that endpoint: three
    // in a row eject it (the default policy), so at most three such requests fail.
    assert.ok(
      (r.statuses['200'] ?? 0) >= 37,
      `answers: ${JSON.stringify(r.statuses)}; first: ${JSON.stringify(r.first)}`,
    );
    assert.equal((r.statuses['200'] ?? 0) + (r.statuses['502'] ?? 0), 40, JSON.stringify(r.statuses));
  });

  it('with only that endpoint, the caller gets the 502 naming the local app', async () => {
    await topo.writeConfig(
      proxyConfig(
        'shop',
        [
          service('web', 'shop', '10.96.0.10', 80, [
            { ...endpoint(down.ip, 8080), pod: 'down-abc', identity: spiffe('web') },
          ]),
        ],
        [],
        { mtls: { mode: 'STRICT', ports: [] } },
      ),
    );
    await new Promise((r) => setTimeout(r, 1500));
    const r = await agent.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n: 3 });
    assert.deepEqual(r.statuses, { 502: 3 }, JSON.stringify(r.first));
    assert.equal(r.first.headers['weft-error'], 'WEFT_UPSTREAM_CONNECT');
    assert.match(r.first.body, /local app: ECONNREFUSED/);
  });
});

// A kubelet restart: the restarted kubelet reports every container not Ready until its first
// readiness probe, so every endpoint of the backend turns ready=false, serving=false,
// terminating=false at once for a second or two, then ready again (docs/reliability.md). A
// caller's sidecar keeps sending to the endpoints it saw ready rather than answering 503; an
// endpoint it never saw ready, or one that terminates, gets nothing; a dead one is passed over.
describe('every endpoint of a Service not ready at once (a kubelet restart)', { timeout: 240_000 }, () => {
  const t = new Topology();
  let a: Pod;
  let b: Pod;
  let caller: Agent;
  let serial = 0;
  const NOT_READY = { ready: false, serving: false, terminating: false };
  const GONE = { ready: false, serving: false, terminating: true };
  // Nothing listens there and it has no sidecar: a connection to it is refused at once.
  const DEAD = '10.244.0.1';
  const ep = (address: string, over = {}) => ({ ...endpoint(address, 8080), pod: `${address}-pod`, ...over });
  async function apply(endpoints: ReturnType<typeof endpoint>[]): Promise<void> {
    // Round robin, so every kept endpoint is seen to take requests.
    const c = proxyConfig(
      'shop',
      [service('web', 'shop', '10.96.0.10', 80, endpoints)],
      [route({ loadBalancer: { type: 'ROUND_ROBIN' } })],
    );
    c.version = `${c.version.slice(0, 12)}${(serial++).toString(16).padStart(4, '0')}`;
    await t.writeConfig(c);
    const ok = await eventually(async () => {
      const r = await caller.send<HttpMany>({ op: 'http', url: 'http://127.0.0.1:15000/config' });
      return (JSON.parse(r.first.body) as { status: { version: string } }).status.version === c.version;
    });
    assert.ok(ok, `config ${c.version} applied`);
  }
  const get = (n: number) => caller.send<HttpMany>({ op: 'http', url: 'http://10.96.0.10/', n });

  before(async () => {
    await t.create();
    const c = await t.addPod('client');
    a = await t.addPod('a');
    b = await t.addPod('b');
    await t.writeConfig(proxyConfig('shop', [service('web', 'shop', '10.96.0.10', 80, [])]));
    for (const p of [c, a, b]) await t.intercept(p);
    await Promise.all([t.startApp(a, { http: 8080 }), t.startApp(b, { http: 8080 })]);
    await Promise.all([t.startProxy(c), t.startProxy(a), t.startProxy(b)]);
    caller = await t.startAgent(c);
  });
  after(() => t.destroy());

  it('the endpoints that were ready keep every request; once one is ready again, only it', async () => {
    await apply([ep(a.ip), ep(b.ip)]);
    assert.deepEqual((await get(10)).statuses, { 200: 10 });
    await apply([ep(a.ip, NOT_READY), ep(b.ip, NOT_READY)]);
    const r = await get(40);
    assert.deepEqual(
      r.statuses,
      { 200: 40 },
      `answers: ${JSON.stringify(r.statuses)}; first: ${r.first.body}`,
    );
    assert.deepEqual(r.backends, { a: 20, b: 20 }, 'both kept');
    // Still none ready in the next config (another endpoint's change): still kept.
    await apply([ep(a.ip, NOT_READY), ep(b.ip, NOT_READY), ep(DEAD, { ...NOT_READY, pod: 'new-pod' })]);
    assert.deepEqual((await get(20)).statuses, { 200: 20 });
    await apply([ep(a.ip), ep(b.ip, NOT_READY)]);
    assert.deepEqual((await get(20)).backends, { a: 20 });
  });

  it('an endpoint never seen ready gets no request: 503 WEFT_NO_ENDPOINTS', async () => {
    await apply([ep(a.ip)]);
    // `a` replaced by a new pod (another name) that is not ready yet, even at the same address.
    await apply([ep(a.ip, { ...NOT_READY, pod: 'a-new' }), ep(b.ip, NOT_READY)]);
    const r = await get(3);
    assert.deepEqual(r.statuses, { 503: 3 }, r.first.body);
    assert.equal(r.first.headers['weft-error'], 'WEFT_NO_ENDPOINTS');
  });

  it('endpoints that terminate and no longer serve are not kept', async () => {
    await apply([ep(a.ip), ep(b.ip)]);
    await apply([ep(a.ip, GONE), ep(b.ip, GONE)]);
    const r = await get(3);
    assert.deepEqual(r.statuses, { 503: 3 }, r.first.body);
  });

  it('a kept endpoint that is dead is passed over (connection refused: sent to the other)', async () => {
    await apply([ep(a.ip), ep(DEAD)]);
    await apply([ep(a.ip, NOT_READY), ep(DEAD, NOT_READY)]);
    const r = await get(30);
    assert.deepEqual(r.statuses, { 200: 30 }, r.first.body);
    assert.deepEqual(r.backends, { a: 30 });
  });
});
