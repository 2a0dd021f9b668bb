// Faults of the fault suite (docs/reliability.md) reproduced with real sidecars in network
// namespaces: a backend whose app container is down while its sidecar still runs (the app
// crashed and the kubelet has not restarted it yet, before its readiness probe fails). Its
// sidecar answers 502 WEFT_UPSTREAM_CONNECT: nothing reached the app, so the caller's sidecar
// sends the request to another endpoint instead, for any method, once, when it can send it again
// (no body, or its body not begun: a body already sent is not kept for a second try).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, type Pod, Topology } from './netns.ts';

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
