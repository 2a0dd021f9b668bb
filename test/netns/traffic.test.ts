// The steady traffic of the fault suite (hack/lib/faults.ts, docs/reliability.md) through real
// sidecars in network namespaces under STRICT mTLS: the demo server (hack/demo-apps/server.ts,
// HTTP/1.1, gRPC over h2c and a TCP echo) on two backend pods, and the demo client
// (hack/demo-apps/client.ts) in a meshed pod calling the Service's VIP in each protocol; every
// line it prints is read by the harness's own parse (`answerOf`).
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { type Answer, answeredBy, answerOf, type Protocol, tally } from '../../hack/lib/faults.ts';
import type { Endpoint } from '../../api/index.ts';
import { endpoint, proxyConfig, route, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Pod, Topology, waitForLine } from './netns.ts';

const VIP = '10.96.0.20';
/** The same backends, the gRPC port declared `appProtocol: grpc` (no detection outbound). */
const DECLARED_VIP = '10.96.0.21';
const PORTS = { http: 8080, grpc: 9090, tcp: 9000 };

const topo = new Topology();
let client: Pod;
const backends: Pod[] = [];

/** Runs the demo client in the client pod until it made `count` calls; its answers. */
async function calls(protocol: Protocol, url: string, count: number, env: Record<string, string> = {}) {
  const p = topo.spawnIn(client, ['hack/demo-apps/client.ts', url], {
    tag: `client-${protocol}-${url}`,
    env: { PROTOCOL: protocol, COUNT: String(count), INTERVAL_MS: '20', ...env },
  });
  const answers: Answer[] = [];
  createInterface({ input: p.stdout! }).on('line', (l) => answers.push(answerOf(protocol, Date.now(), l)));
  const code = await new Promise((r) => p.once('exit', r));
  assert.equal(code, 0, topo.logs.get(`client-${protocol}-${url}`)!.join(''));
  return answers;
}

describe('the fault suite steady traffic: HTTP/1.1, gRPC (h2c) and TCP through sidecars (STRICT mTLS)', {
  timeout: 240_000,
}, () => {
  before(async () => {
    await topo.create();
    const ca = await newCa();
    client = await topo.addPod('client');
    for (const name of ['echo-a', 'echo-b']) backends.push(await topo.addPod(name));
    const ep = (p: Pod): Endpoint => ({
      ...endpoint(p.ip, PORTS.http, { ports: PORTS }),
      pod: p.name,
      identity: spiffe('web'),
    });
    const echo = service('echo', 'shop', VIP, 8080, backends.map(ep));
    echo.ports = [
      { name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' },
      { name: 'grpc', port: 9090, protocol: 'TCP' },
      { name: 'tcp', port: 9000, protocol: 'TCP', appProtocol: 'tcp' },
    ];
    const declared = service('echo-declared', 'shop', DECLARED_VIP, 9090, backends.map(ep));
    declared.ports = [{ name: 'grpc', port: 9090, protocol: 'TCP', appProtocol: 'grpc' }];
    // Round robin, so both backends are seen to answer every protocol within a few calls.
    const rr = (name: string) =>
      route({
        name: `shop/${name}`,
        service: `shop/${name}`,
        backends: [{ service: `shop/${name}`, weight: 1 }],
        loadBalancer: { type: 'ROUND_ROBIN' },
      });
    await topo.writeConfig(
      proxyConfig('shop', [echo, declared], [rr('echo'), rr('echo-declared')], {
        mtls: { mode: 'STRICT', ports: [] },
      }),
    );
    const info = await topo.tempDir('info');
    await writeLabels(info, { app: 'echo' });
    const starts: Promise<unknown>[] = [];
    for (const p of [client, ...backends]) {
      await topo.intercept(p);
      const dir = await topo.tempDir(`id-${p.name}`);
      await writeIdentity(dir, ca, p === client ? 'client' : 'web');
      starts.push(
        topo.startProxy(p, ['--identity-dir', dir, ...(p === client ? [] : ['--pod-info-dir', info])]),
      );
    }
    for (const p of backends) {
      const server = topo.spawnIn(p, ['hack/demo-apps/server.ts'], {
        tag: `server-${p.name}`,
        env: { SERVICE_NAME: 'echo', POD_NAME: p.name, GRPC_PORT: '9090', TCP_PORT: '9000' },
      });
      let listening = 0;
      starts.push(
        waitForLine(
          server,
          (l) => l.includes('listening on') && ++listening === 3,
          15_000,
          topo.logs.get(`server-${p.name}`)!,
        ),
      );
    }
    await Promise.all(starts);
  });
  after(() => topo.destroy());

  const cases: [Protocol, string, string][] = [
    ['http', `http://${VIP}:8080/`, 'HTTP/1.1'],
    ['grpc', `http://${VIP}:9090`, 'gRPC to a port named grpc without appProtocol (h2c preface detected)'],
    ['grpc', `http://${DECLARED_VIP}:9090`, 'gRPC to a port declared appProtocol grpc'],
    ['tcp', `tcp://${VIP}:9000`, 'TCP to a port declared appProtocol tcp (opaque)'],
  ];
  for (const [protocol, url, what] of cases)
    it(`${what}: every call answered, by both backends, in the line format the harness reads`, async () => {
      const answers = await calls(protocol, url, 30);
      const t = tally(answers, 0, Date.now());
      assert.deepEqual(t.failures, [], `${t.failed} of ${t.requests} failed`);
      assert.deepEqual(t.byProtocol, { [protocol]: { requests: 30, failed: 0, maxRecoverySeconds: 0 } });
      assert.deepEqual(t.servedBy, ['echo-a', 'echo-b']);
      // "<n> <status> echo v1 <pod> <ms>ms"
      for (const a of answers) assert.match(a.line, /^\d+ (200|grpc-0|ok) echo v1 echo-[ab] \d+ms$/);
      assert.ok(answers.every((a) => ['echo-a', 'echo-b'].includes(answeredBy(a))));
    });
});
