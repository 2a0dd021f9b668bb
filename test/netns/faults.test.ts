// Faults of the fault suite (docs/reliability.md) reproduced with real sidecars in network
// namespaces: a backend whose app container is down while its sidecar still runs (the app
// crashed and the kubelet has not restarted it yet, before its readiness probe fails). Its
// sidecar answers 502 WEFT_UPSTREAM_CONNECT: nothing reached the app, so the caller's sidecar
// sends the request to another endpoint instead, for any method, once, when it can send it again:
// no body, its body not begun, or its body kept whole so far (up to REPLAY_LIMIT, 64 KiB:
// proxy/resilience/replay.ts). A larger body is not kept, so that request gets the 502.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Endpoint } from '../../api/index.ts';
import { REPLAY_LIMIT } from '../../proxy/resilience/replay.ts';
import { endpoint, proxyConfig, route, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, eventually, type Pod, sleep, Topology } from './netns.ts';

const topo = new Topology();
let client: Pod;
let up: Pod;
let down: Pod;
let agent: Agent;
const clientArgs: string[] = [];

interface HttpMany {
  statuses: Record<string, number>;
  backends: Record<string, number>;
  first: { status: number; headers: Record<string, string>; body: string };
  firstError?: { status: number; headers: Record<string, string>; body: string };
}

interface GrpcAnswer {
  error?: string;
  status?: number;
  backend?: string;
  grpcStatus?: string;
  message: string;
}

/** A body's size and SHA-256 as the app's /echo reports them. */
const digest = (b: string) => ({ bytes: b.length, sha256: createHash('sha256').update(b).digest('hex') });

/**
 * The caller's sidecar started afresh: no endpoint ejected by an earlier case (each case below
 * must meet the endpoint whose app is down). The agent's pooled connections to the old one are
 * closed by then.
 */
async function freshCaller(): Promise<void> {
  const old = topo.proxies.get('client')!;
  const exited = new Promise((r) => old.once('exit', r));
  old.kill('SIGKILL');
  await exited;
  await topo.startProxy(client, clientArgs);
  await sleep(300);
}

/** `n` unary gRPC calls, one after the other, to the rpc Service (or `vip`); every answer. */
async function grpcCalls(n: number, message: string, vip = '10.96.0.11'): Promise<GrpcAnswer[]> {
  const out: GrpcAnswer[] = [];
  for (let i = 0; i < n; i++)
    out.push(await agent.send<GrpcAnswer>({ op: 'grpc', url: `http://${vip}:9090`, message }, 30_000));
  return out;
}
const brief = (answers: GrpcAnswer[]) =>
  JSON.stringify(
    answers.map(
      (a) => a.error ?? `${a.status} ${a.grpcStatus ?? '-'} ${a.backend ?? '-'} ${a.message.length}`,
    ),
  );

describe('a backend whose app is down behind its running sidecar (STRICT mTLS)', { timeout: 240_000 }, () => {
  before(async () => {
    await topo.create();
    const ca = await newCa();
    client = await topo.addPod('client');
    up = await topo.addPod('up');
    down = await topo.addPod('down');
    const ep = (p: Pod): Endpoint => ({
      ...endpoint(p.ip, 8080, { ports: { http: 8080, grpc: 50051 } }),
      pod: `${p.name}-abc`,
      identity: spiffe('web'),
    });
    const eps = [ep(up), ep(down)];
    // Round robin: the endpoint whose app is down gets every other request until it is ejected.
    const rr = (name: string, over = {}) =>
      route({
        name: `shop/${name}`,
        service: `shop/${name}`,
        backends: [{ service: `shop/${name}`, weight: 1 }],
        loadBalancer: { type: 'ROUND_ROBIN' },
        ...over,
      });
    const grpc = (name: string, vip: string) => ({
      ...service(name, 'shop', vip, 9090, eps),
      ports: [{ name: 'grpc', port: 9090, protocol: 'TCP' as const, appProtocol: 'grpc' }],
    });
    const delayed = { faultInjection: { delay: { fixedDelayMs: 300, percentage: 100 } } };
    await topo.writeConfig(
      proxyConfig(
        'shop',
        [
          service('web', 'shop', '10.96.0.10', 80, eps),
          grpc('rpc', '10.96.0.11'),
          service('bulk', 'shop', '10.96.0.12', 80, eps),
          grpc('bulkrpc', '10.96.0.13'),
        ],
        [
          rr('web'),
          rr('rpc'),
          // Held before its first try, so the caller's sidecar has read more of the body than it
          // keeps by the time the try begins (the HTTP/1.1 path reads up to 64 KiB ahead, HTTP/2
          // up to its flow-control window and stream buffer): the body is not kept, whatever the
          // timing of the peer's answer.
          rr('bulk', delayed),
          rr('bulkrpc', delayed),
        ],
        { mtls: { mode: 'STRICT', ports: [] } },
      ),
    );
    const dirs: Record<string, string> = {};
    for (const p of [client, up, down]) {
      await topo.intercept(p);
      dirs[p.name] = await topo.tempDir(`id-${p.name}`);
      await writeIdentity(dirs[p.name]!, ca, p === client ? 'client' : 'web');
    }
    const info = await topo.tempDir('info');
    await writeLabels(info, { app: 'web' });
    clientArgs.push('--identity-dir', dirs.client!);
    // The app of `down` is not running: its sidecar is.
    await topo.startApp(up, { http: 8080, grpc: 50051 });
    await Promise.all(
      [client, up, down].map((p) =>
        topo.startProxy(
          p,
          p === client ? clientArgs : ['--identity-dir', dirs[p.name]!, '--pod-info-dir', info],
        ),
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

  // Before the replay buffer, a request whose body had begun was not sent again: the peer's 502
  // WEFT_UPSTREAM_CONNECT reached the client until three of them ejected the endpoint.
  const bodies: [string, Record<string, unknown>, string][] = [
    ['a 2 KB body (content-length)', { body: 'p'.repeat(2000) }, 'p'.repeat(2000)],
    ['a 40 KB body (chunked, 16 KiB chunks)', { bodyBytes: 40_000 }, 'x'.repeat(40_000)],
  ];
  for (const [what, body, sent] of bodies)
    it(`HTTP/1.1 POST with ${what}, kept for a second try: every request is answered, whole, by the endpoint whose app runs`, async () => {
      await freshCaller();
      const r = await agent.send<HttpMany>({
        op: 'http',
        url: 'http://10.96.0.10/echo',
        method: 'POST',
        n: 40,
        ...body,
      });
      assert.deepEqual(
        r.statuses,
        { 200: 40 },
        `answers: ${JSON.stringify(r.statuses)}; first error: ${JSON.stringify(r.firstError ?? r.first)}`,
      );
      assert.deepEqual(r.backends, { up: 40 });
      // The first request went to the endpoint whose app is down (round robin), then again.
      assert.deepEqual(JSON.parse(r.first.body), digest(sent));
    });

  it('a unary gRPC call (its body always begun), kept for a second try: every call answers grpc-0, whole, from the endpoint whose app runs', async () => {
    await freshCaller();
    const message = 'hello '.repeat(100);
    const answers = await grpcCalls(20, message);
    const ok = answers.filter(
      (a) => a.status === 200 && a.grpcStatus === '0' && a.backend === 'up' && a.message === message,
    );
    assert.equal(ok.length, 20, brief(answers));
  });

  it(`HTTP/1.1 POST with a body over the ${REPLAY_LIMIT / 1024} KiB kept: not sent again, the 502 reaches the client until the endpoint is ejected`, async () => {
    await freshCaller();
    const r = await agent.send<HttpMany>(
      { op: 'http', url: 'http://10.96.0.12/echo', method: 'POST', n: 8, bodyBytes: 200_000 },
      60_000,
    );
    const failed = r.statuses['502'] ?? 0;
    assert.ok(failed >= 1 && failed <= 3, `answers: ${JSON.stringify(r.statuses)}`);
    assert.equal((r.statuses['200'] ?? 0) + failed, 8, JSON.stringify(r.statuses));
    assert.equal(r.firstError?.headers['weft-error'], 'WEFT_UPSTREAM_CONNECT', JSON.stringify(r.firstError));
  });

  it(`a gRPC call with a message over the ${REPLAY_LIMIT / 1024} KiB kept: not sent again, the 502 reaches the client until the endpoint is ejected`, async () => {
    await freshCaller();
    const message = 'y'.repeat(200_000);
    const answers = await grpcCalls(8, message, '10.96.0.13');
    const failed = answers.filter((a) => a.status === 502).length;
    const ok = answers.filter((a) => a.status === 200 && a.grpcStatus === '0' && a.message === message);
    assert.ok(failed >= 1 && failed <= 3, brief(answers));
    assert.equal(ok.length + failed, 8, brief(answers));
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

// A backend pod killed without grace (`kubectl delete pod --grace-period=0 --force`): its network
// namespace goes with its veth, so nothing it had open answers again, not even with a reset.
// Requests in flight to it, idle pooled connections to it and new connections' SYNs all meet
// silence. The caller's sidecar must not hang its app's requests on it, whether the endpoint
// leaves the config a moment later (the EndpointSlice update) or stays listed for a while: steady
// traffic (the fault suite's client: a 2 s timeout) through the demo's setup (STRICT mTLS,
// HTTP/1.1 over mTLS between sidecars), and through callers that mux HTTP/1.1 as HTTP/2 streams.
describe('a backend pod killed without grace (its network namespace gone: no reset ever)', {
  timeout: 400_000,
}, () => {
  const t = new Topology();
  let ca: Awaited<ReturnType<typeof newCa>>;
  let survivor: Pod;
  const callers: Record<'h1' | 'mux', Agent> = {} as never;
  let serial = 0;
  const ep = (p: Pod) => ({ ...endpoint(p.ip, 8080), pod: `${p.name}-pod`, identity: spiffe('web') });
  async function apply(pods: Pod[]): Promise<void> {
    const c = proxyConfig('shop', [service('web', 'shop', '10.96.0.10', 80, pods.map(ep))], [], {
      mtls: { mode: 'STRICT', ports: [] },
    });
    c.version = `${c.version.slice(0, 12)}${(serial++).toString(16).padStart(4, '0')}`;
    await t.writeConfig(c);
    for (const caller of Object.values(callers)) {
      const ok = await eventually(async () => {
        const r = await caller.send<HttpMany>({ op: 'http', url: 'http://127.0.0.1:15000/config' });
        return (JSON.parse(r.first.body) as { status: { version: string } }).status.version === c.version;
      });
      assert.ok(ok, `config ${c.version} applied`);
    }
  }
  /** A meshed pod: iptables, identity, app (not for callers) and sidecar. */
  async function meshed(name: string, sa: string, app: boolean, extra: string[] = []): Promise<Pod> {
    const p = await t.addPod(name);
    await t.intercept(p);
    const dir = await t.tempDir(`id-${name}`);
    await writeIdentity(dir, ca, sa);
    const info = await t.tempDir(`info-${name}`);
    await writeLabels(info, { app: sa });
    if (app) await t.startApp(p, { http: 8080 });
    await t.startProxy(p, ['--identity-dir', dir, '--pod-info-dir', info, ...extra]);
    return p;
  }
  /** A backend pod with its app and sidecar, in the config beside the survivor. */
  async function victim(name: string): Promise<Pod> {
    const v = await meshed(name, 'web', true);
    await apply([survivor, v]);
    return v;
  }
  /** The pod's veth deleted: its packets go nowhere, and nothing comes back from it. */
  const kill = (p: Pod) => t.ip(t.router, 'ip', 'link', 'del', `v${p.name}`.slice(0, 15));
  type Result = HttpMany & { slowestMs: number };
  /**
   * Steady traffic from a caller while `fault` runs 1.5 s in: `concurrency` clients, each answer
   * taking 100 ms at the app so requests are in flight on every endpoint when one dies.
   */
  async function during(
    caller: Agent,
    fault: () => Promise<void>,
    o: { n: number; concurrency: number; method?: string },
  ): Promise<Result> {
    const traffic = caller.send<Result>(
      { op: 'http', url: 'http://10.96.0.10/delay/100', timeoutMs: 2000, ...o },
      120_000,
    );
    await sleep(1500);
    await fault();
    return traffic;
  }
  const show = (r: Result) =>
    `answers: ${JSON.stringify(r.statuses)} by ${JSON.stringify(r.backends)}; slowest ${r.slowestMs} ms; first error: ${JSON.stringify(r.firstError)}`;
  /** Kills `v`, and `leaves` ms later (unless undefined) its endpoint leaves the config. */
  const killThenRemove = (v: Pod, leaves: number | undefined) => async () => {
    await kill(v);
    if (leaves === undefined) return;
    if (leaves > 0) await sleep(leaves);
    await apply([survivor]);
  };

  before(async () => {
    await t.create();
    ca = await newCa();
    await t.writeConfig(proxyConfig('shop', [service('web', 'shop', '10.96.0.10', 80, [])]));
    survivor = await meshed('up', 'web', true);
    const h1 = await meshed('client', 'client', false);
    const mux = await meshed('muxclient', 'client', false, ['--mux-connections', '2']);
    callers.h1 = await t.startAgent(h1);
    callers.mux = await t.startAgent(mux);
  });
  after(() => t.destroy());

  for (const [kind, leaves] of [
    // Written at once, applied within the caller's config poll (500 ms): before the caller
    // could find the pod silent by itself (a probe after 200 ms of waiting, 1 s to connect).
    ['its endpoint leaves the config a moment later', 0],
    ['its endpoint stays listed', undefined],
  ] as const) {
    for (const via of ['h1', 'mux'] as const) {
      it(`${kind} (${via === 'h1' ? 'HTTP/1.1 over mTLS' : 'mux'}): no GET fails`, async (tc) => {
        const v = await victim(`g${via}${leaves ?? 'x'}`);
        const r = await during(callers[via], killThenRemove(v, leaves), { n: 160, concurrency: 4 });
        tc.diagnostic(show(r));
        assert.deepEqual(r.statuses, { 200: 160 }, show(r));
      });
    }
  }

  it('its endpoint stays listed, one client (its idle pooled connection reused, no new connection beside it): no GET fails', async (tc) => {
    const v = await victim('gone1c');
    const r = await during(callers.h1, killThenRemove(v, undefined), { n: 40, concurrency: 1 });
    tc.diagnostic(show(r));
    assert.deepEqual(r.statuses, { 200: 40 }, show(r));
  });

  it('a POST in flight (not sent twice) is answered at once, 503 WEFT_ENDPOINT_GONE, rather than hanging', async (tc) => {
    const v = await victim('gonepost');
    const r = await during(callers.h1, killThenRemove(v, 0), { n: 160, concurrency: 4, method: 'POST' });
    tc.diagnostic(show(r));
    // The requests in flight on the dead pod (a few) end with the proxy's answer; no client waits
    // out its timeout (-1).
    const { 200: ok = 0, 503: gone = 0, ...others } = r.statuses;
    assert.deepEqual(others, {}, show(r));
    assert.equal(ok + gone, 160, show(r));
    if (gone > 0) assert.equal(r.firstError?.headers['weft-error'], 'WEFT_ENDPOINT_GONE', show(r));
  });
});
