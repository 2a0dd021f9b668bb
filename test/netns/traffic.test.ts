// The steady traffic of the fault suite (hack/lib/faults.ts, docs/reliability.md) through real
// sidecars in network namespaces under STRICT mTLS: the demo server (hack/demo-apps/server.ts,
// HTTP/1.1, gRPC over h2c and a TCP echo) on two backend pods, and the demo client
// (hack/demo-apps/client.ts) in a meshed pod calling the Service's VIP in each protocol; every
// line it prints is read by the harness's own parse (`answerOf`, `tally`). Then faults of the
// suite made here, under the three steady clients at once.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import type { Endpoint, ServicePort } from '../../api/index.ts';
import {
  type Answer,
  answeredBy,
  answerOf,
  isInFlightCut,
  PROTOCOLS,
  type Protocol,
  tally,
} from '../../hack/lib/faults.ts';
import { endpoint, proxyConfig, route, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { eventually, type Pod, sleep, Topology, waitForLine } from './netns.ts';

const VIP = '10.96.0.20';
/** The same backends, the gRPC port declared `appProtocol: grpc` (no detection outbound). */
const DECLARED_VIP = '10.96.0.21';
/** The three ports again with the default load balancer (P2C over EWMA), as in the real cluster. */
const STEADY_VIP = '10.96.0.22';
const PORTS = { http: 8080, grpc: 9090, tcp: 9000 };

const topo = new Topology();
let client: Pod;
const backends: Pod[] = [];
const proxyArgs = new Map<string, string[]>();
const servers = new Map<string, ChildProcess>();

/** The Services of the test: echo (round robin), echo-declared (round robin) and steady. */
function config() {
  const ep = (p: Pod): Endpoint => ({
    ...endpoint(p.ip, PORTS.http, { ports: PORTS }),
    pod: p.name,
    identity: spiffe('web'),
  });
  // As hack/lib/faults.ts declares them.
  const ports: ServicePort[] = [
    { name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' },
    { name: 'grpc', port: 9090, protocol: 'TCP' },
    { name: 'tcp', port: 9000, protocol: 'TCP', appProtocol: 'tcp' },
  ];
  const echo = { ...service('echo', 'shop', VIP, 8080, backends.map(ep)), ports };
  const steady = { ...service('steady', 'shop', STEADY_VIP, 8080, backends.map(ep)), ports };
  const declared = {
    ...service('echo-declared', 'shop', DECLARED_VIP, 9090, backends.map(ep)),
    ports: [{ name: 'grpc', port: 9090, protocol: 'TCP' as const, appProtocol: 'grpc' }],
  };
  // Round robin, so both backends are seen to answer every protocol within a few calls.
  const rr = (name: string) =>
    route({
      name: `shop/${name}`,
      service: `shop/${name}`,
      backends: [{ service: `shop/${name}`, weight: 1 }],
      loadBalancer: { type: 'ROUND_ROBIN' },
    });
  return proxyConfig('shop', [echo, declared, steady], [rr('echo'), rr('echo-declared')], {
    mtls: { mode: 'STRICT', ports: [] },
  });
}

/** The demo server in a backend pod, serving the three protocols; resolves once it listens. */
function startServer(p: Pod): Promise<void> {
  const server = topo.spawnIn(p, ['hack/demo-apps/server.ts'], {
    tag: `server-${p.name}`,
    env: { SERVICE_NAME: 'echo', POD_NAME: p.name, GRPC_PORT: '9090', TCP_PORT: '9000' },
  });
  servers.set(p.name, server);
  let listening = 0;
  return waitForLine(
    server,
    (l) => l.includes('listening on') && ++listening === 3,
    // Generous: .ci/run starts this beside a real cluster's bring-up on two cores.
    30_000,
    topo.logs.get(`server-${p.name}`)!,
  );
}

/** Runs the demo client in the client pod until it made `count` calls; its answers. */
async function calls(protocol: Protocol, url: string, count: number) {
  const tag = `client-${protocol}-${url.replace(/[^a-z0-9]+/g, '-')}`;
  const p = topo.spawnIn(client, ['hack/demo-apps/client.ts', url], {
    tag,
    env: { PROTOCOL: protocol, COUNT: String(count), INTERVAL_MS: '20' },
  });
  const answers: Answer[] = [];
  createInterface({ input: p.stdout! }).on('line', (l) => answers.push(answerOf(protocol, Date.now(), l)));
  const code = await new Promise((r) => p.once('exit', r));
  assert.equal(code, 0, topo.logs.get(tag)!.join(''));
  return answers;
}

/** The harness's three steady clients (a call every 50 ms each) until `stop`. */
function steadyClients(): { answers: Answer[]; stop: () => Promise<Answer[]> } {
  const urls = {
    http: `http://${STEADY_VIP}:8080/`,
    grpc: `http://${STEADY_VIP}:9090`,
    tcp: `tcp://${STEADY_VIP}:9000`,
  };
  const answers: Answer[] = [];
  const procs = PROTOCOLS.map((protocol) => {
    const p = topo.spawnIn(client, ['hack/demo-apps/client.ts', urls[protocol]], {
      tag: `steady-${protocol}`,
      env: { PROTOCOL: protocol, INTERVAL_MS: '50' },
    });
    createInterface({ input: p.stdout! }).on('line', (l) => answers.push(answerOf(protocol, Date.now(), l)));
    return p;
  });
  return {
    answers,
    stop: async () => {
      await Promise.all(
        procs.map((p) => {
          const exited = new Promise((r) => p.once('exit', r));
          p.kill('SIGTERM');
          return exited;
        }),
      );
      return answers;
    },
  };
}

/**
 * Runs `fault` under the three steady clients; the tally of their answers from its start. The
 * client's sidecar is started afresh first: no endpoint ejected or favoured by an earlier fault.
 */
async function underFault(fault: () => Promise<void>) {
  const exited = new Promise((r) => topo.proxies.get('client')!.once('exit', r));
  topo.proxies.get('client')!.kill('SIGKILL');
  await exited;
  await topo.startProxy(client, proxyArgs.get('client')!);
  const clients = steadyClients();
  // The window starts once every protocol was answered (the restarted sidecar has its config).
  const answered = await eventually(
    async () => PROTOCOLS.every((p) => clients.answers.some((a) => a.protocol === p && a.ok)),
    100,
  );
  assert.ok(answered, `the steady clients answered before the fault: ${JSON.stringify(clients.answers)}`);
  await sleep(500);
  const t0 = Date.now();
  await fault();
  await sleep(2000);
  const answers = await clients.stop();
  return tally(answers, t0, Date.now());
}
/**
 * At most one failure per protocol, and each a connection reset (or `reset`): the call in flight
 * in the process that was killed (nothing tells whether its app had it: it is not sent again).
 */
function inFlightOnly(t: ReturnType<typeof tally>, protocols: readonly Protocol[] = PROTOCOLS): void {
  for (const p of protocols) {
    assert.ok((t.byProtocol[p]?.failed ?? 0) <= 1, `${p}: ${summary(t)}`);
    // The harness's own rule (hack/lib/faults.ts), on "<protocol> <line>".
    for (const f of t.failures.filter((x) => x.split(' ')[1] === p))
      assert.ok(isInFlightCut(f), `${f} is no call in flight cut (IN_FLIGHT_CUT): ${summary(t)}`);
  }
}
const summary = (t: ReturnType<typeof tally>) =>
  `${JSON.stringify(t.byProtocol)}: ${t.failures.slice(0, 10).join(' | ')}`;

describe('the fault suite steady traffic: HTTP/1.1, gRPC (h2c) and TCP through sidecars (STRICT mTLS)', {
  timeout: 240_000,
}, () => {
  before(async () => {
    await topo.create();
    const ca = await newCa();
    client = await topo.addPod('client');
    for (const name of ['echo-a', 'echo-b']) backends.push(await topo.addPod(name));
    await topo.writeConfig(config());
    const info = await topo.tempDir('info');
    await writeLabels(info, { app: 'echo' });
    const starts: Promise<unknown>[] = [];
    for (const p of [client, ...backends]) {
      await topo.intercept(p);
      const dir = await topo.tempDir(`id-${p.name}`);
      await writeIdentity(dir, ca, p === client ? 'client' : 'web');
      proxyArgs.set(p.name, ['--identity-dir', dir, ...(p === client ? [] : ['--pod-info-dir', info])]);
      starts.push(topo.startProxy(p, proxyArgs.get(p.name)!));
    }
    for (const p of backends) starts.push(startServer(p));
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

  // Before the TCP fix, 62 of 98 TCP calls failed (ECONNRESET) until the sidecar was back: the
  // caller's sidecar kept picking the dead endpoint (its connect failures were not counted) and
  // closed the connection instead of opening it to the other endpoint.
  it("a backend's sidecar killed (SIGKILL) and started again 3 s later: no TCP connection fails; at most the one call in flight in any protocol", async () => {
    const t = await underFault(async () => {
      topo.proxies.get('echo-a')!.kill('SIGKILL');
      await sleep(3000);
      await topo.startProxy(backends[0]!, proxyArgs.get('echo-a')!);
    });
    inFlightOnly(t);
  });

  // Before the replay buffer (proxy/resilience/replay.ts), a gRPC call's body was sent with it and
  // not kept for a second try: the peer's 502 WEFT_UPSTREAM_CONNECT reached the client until
  // three ejected the endpoint (up to 4 failures with the one in flight). Now the call is sent to
  // the other endpoint with its body kept, as a GET is.
  it("a backend's app killed (SIGKILL) and started again 2 s later: no HTTP/1.1 call fails; gRPC at most the one call in flight", async () => {
    const t = await underFault(async () => {
      servers.get('echo-a')!.kill('SIGKILL');
      await sleep(2000);
      await startServer(backends[0]!);
    });
    assert.equal(t.byProtocol.http?.failed, 0, summary(t));
    // The call in flight when the app died: its stream to the app reset, the backend's sidecar
    // resets the caller's (ERR_HTTP2_STREAM_ERROR) or answers 502 WEFT_UPSTREAM_RESET.
    inFlightOnly(t, ['grpc']);
  });

  // Before the peer sidecar said its app took the connection (ALPN weft-tcp-ack), it accepted the
  // mTLS connection, then could not reach its app and closed it; the caller's sidecar could not
  // tell that from an app that closed without answering, so it neither opened it elsewhere nor
  // ejected the endpoint: about half the TCP calls failed until the app was back (35 to 38 of
  // about 70 over 2 s here).
  it("a backend's app killed (SIGKILL) and started again 2 s later: no TCP connection fails but the one in flight", async () => {
    const t = await underFault(async () => {
      servers.get('echo-a')!.kill('SIGKILL');
      await sleep(2000);
      await startServer(backends[0]!);
    });
    inFlightOnly(t, ['tcp']);
  });

  // The bench on the real node saw one gRPC call fail while the kubelet restarted (502
  // WEFT_UPSTREAM_RESET ERR_HTTP2_GOAWAY_SESSION: the backend sidecar's HTTP/2 session to its own
  // app was closing). Each new config closes the pools to addresses no Service lists, which takes
  // the session to 127.0.0.1 too: a suspect, not reproduced here yet (this passes on today's code;
  // the sidecars poll their config every 500 ms, so they see a handful of these changes).
  it('config changes under the three steady clients (150, one every 20 ms): no call fails', async () => {
    let serial = 0;
    const t = await underFault(async () => {
      for (let i = 0; i < 150; i++) {
        const c = config();
        c.version = `${c.version.slice(0, 12)}${(++serial).toString(16).padStart(4, '0')}`;
        await topo.writeConfig(c);
        await sleep(20);
      }
    });
    assert.deepEqual(t.failures, [], summary(t));
  });
});
