// Parity: one table of policy cases (route match, split, fault abort, rate limit, retry, route
// timeout, request limits, authorization allow/deny at the server sidecar, Gateway API route
// matches and filters) run through every transport of the client sidecar, so the paths cannot
// drift apart again: the
// HTTP/1.1 fast path, the node:http path (a route with a connection limit is handed off to it),
// h2c prior knowledge and an HTTP/1.1 Upgrade. Each (case, transport) gets a config of its own.
// Sidecars talk mutual TLS: the client pod's with the mux off (HTTP/1.1 over mTLS), a second
// client pod's with it on (h1-mux: HTTP/2 streams between the sidecars, HTTP/1.1 at both apps).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AuthzPolicy, ProxyConfig, Route } from '../../api/index.ts';
import { endpoint, proxyConfig, route, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity, writeLabels } from './mtlsfixture.ts';
import { type Agent, eventually, metricLines, metricSum, type Pod, Topology } from './netns.ts';
import { gatewayCases } from './parityroutes.ts';
import { type Case, sendVia, TRANSPORTS, type Transport } from './paritysend.ts';

const topo = new Topology();
let agent: Agent;
let muxAgent: Agent;
let client: Pod;
let muxClient: Pod;
let v1: Pod;
let v2: Pod;
let serial = 0;

const base = (name: string, r: Partial<Route>): Route => route({ name, ...r });
const publicOnly: AuthzPolicy = {
  name: 'shop/public-only',
  namespace: 'shop',
  action: 'ALLOW',
  selector: { matchLabels: { app: 'web' } },
  rules: [{ to: [{ operation: { paths: ['/public/*'] } }] }],
};

const CASES: Case[] = [
  {
    name: 'route match on a header picks its route',
    routes: (n) => [
      base(`${n}-canary`, {
        matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }],
        backends: [{ service: 'shop/web-v2', weight: 1 }],
      }),
      base(n, {}),
    ],
    headers: { 'x-canary': 'yes' },
    expect: [{ status: 'ok', backend: () => v2.name }],
  },
  {
    name: 'a split sends to its backend',
    routes: (n) => [base(n, { backends: [{ service: 'shop/web-v2', weight: 1 }] })],
    expect: [{ status: 'ok', backend: () => v2.name }],
  },
  {
    name: 'fault injection aborts',
    routes: (n) => [base(n, { faultInjection: { abort: { httpStatus: 418, percentage: 100 } } })],
    expect: [{ status: 418 }],
  },
  {
    name: 'a rate limit refuses beyond the burst',
    routes: (n) => [base(n, { rateLimit: { requestsPerSecond: 0.001, burst: 1 } })],
    expect: [{ status: 'ok', backend: () => v1.name }, { status: 429 }],
  },
  {
    name: 'authorization: a DENY on a path answers 403 at the server sidecar, other paths pass',
    routes: (n) => [base(n, {})],
    path: '/admin/x',
    policies: [
      {
        name: 'shop/no-admin',
        namespace: 'shop',
        action: 'DENY',
        selector: { matchLabels: { app: 'web' } },
        rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }],
      },
    ],
    expect: [{ status: 403 }],
  },
  {
    name: 'authorization: an ALLOW for other paths only lets those through',
    routes: (n) => [base(n, {})],
    path: '/public/x',
    policies: [publicOnly],
    expect: [{ status: 'ok', backend: () => v1.name }],
  },
  {
    name: 'authorization: an ALLOW for other paths denies this one',
    routes: (n) => [base(n, {})],
    path: '/private/x',
    policies: [publicOnly],
    expect: [{ status: 403 }],
  },
  {
    // The app answers 503 to every other request on this path: only the retry gets the 200.
    name: 'retry: a first try answered 503 is retried (retryOn 5xx) and the client gets the 200',
    routes: (n) => [
      base(n, {
        retries: { attempts: 1, retryOn: ['5xx'], budgetPercent: 100, minRetriesPerSecond: 100 },
      }),
    ],
    path: '/fail-every-other',
    transports: ['h1-fast', 'h1-node', 'h1-mux', 'h2'],
    expect: [{ status: 'ok', backend: () => v1.name }],
  },
  {
    name: 'timeout: a backend slower than the route timeout is answered 504',
    routes: (n) => [base(n, { timeoutMs: 300 })],
    path: '/delay/3000',
    transports: ['h1-fast', 'h1-node', 'h1-mux', 'h2'],
    expect: [{ status: 504 }],
  },
  {
    name: 'request limits: headers over the limit are refused 431',
    routes: (n) => [base(n, {})],
    headers: { 'x-big': 'a'.repeat(20 * 1024) },
    expect: [{ status: 431 }],
  },
  ...gatewayCases({ v1: () => v1.name, v2: () => v2.name }, seenByV2),
];

/** The route changes that make the client sidecar take `transport` (only h1-node needs one). */
function forTransport(r: Route, transport: Transport): Route {
  if (transport !== 'h1-node') return r;
  // A per-endpoint connection limit is served on the node:http path (it queues there).
  return {
    ...r,
    circuitBreaker: {
      maxConnections: 1000,
      consecutive5xxErrors: 0,
      consecutiveConnectFailures: 0,
      baseEjectionTimeMs: 30_000,
      maxEjectionPercent: 50,
    },
  };
}

function config(routes: Route[], policies: AuthzPolicy[] = []): ProxyConfig {
  // web and grpc on v1, web-v2 and grpc-v2 on v2.
  const on = (pod: Pod, name: string, vip: string, port: number, appProtocol?: string) =>
    service(
      name,
      'shop',
      vip,
      port,
      [{ ...endpoint(pod.ip, port === 80 ? 8080 : port), pod: `${pod.name}-a`, identity: spiffe('web') }],
      appProtocol,
    );
  const web = on(v1, 'web', '10.96.0.10', 80);
  const web2 = on(v2, 'web-v2', '10.96.0.11', 80);
  const grpc = on(v1, 'grpc', '10.96.0.20', 9090, 'grpc');
  const grpc2 = on(v2, 'grpc-v2', '10.96.0.21', 9090, 'grpc');
  const c = { ...proxyConfig('shop', [web, web2, grpc, grpc2], routes), authorizationPolicies: policies };
  c.version = `${c.version.slice(0, 12)}${(serial++).toString(16).padStart(4, '0')}`;
  return c;
}

async function apply(c: ProxyConfig): Promise<void> {
  await topo.writeConfig(c);
  for (const a of [agent, muxAgent]) {
    const ok = await eventually(async () => {
      const r = await a.send<{ first: { body: string } }>({
        op: 'http',
        url: 'http://127.0.0.1:15000/config',
      });
      return (JSON.parse(r.first.body) as { status: { version: string } }).status.version === c.version;
    });
    assert.ok(ok, `config ${c.version} applied`);
  }
}

const send = (t: Transport, path: string, headers: Record<string, string>, vip?: string) =>
  sendVia(t === 'h1-mux' ? muxAgent : agent, t, path, headers, vip);

/** Whether web-v2's app (pod v2) received a request for `target`, asked until it did (a mirror is sent asynchronously). */
function seenByV2(target: string): Promise<boolean> {
  return eventually(async () => {
    const r = await send('h1-fast', `/seen?target=${encodeURIComponent(target)}`, {}, '10.96.0.11');
    return r.status === 200 && r.backend === v2.name;
  }, 25);
}

describe('outbound policy parity across transports', { timeout: 300_000 }, () => {
  before(async () => {
    await topo.create();
    client = await topo.addPod('client');
    muxClient = await topo.addPod('muxc');
    v1 = await topo.addPod('v1');
    v2 = await topo.addPod('v2');
    await topo.writeConfig(config([]));
    for (const p of [client, muxClient, v1, v2]) await topo.intercept(p);
    await Promise.all([
      topo.startApp(v1, { http: 8080, grpc: 9090 }),
      topo.startApp(v2, { http: 8080, grpc: 9090 }),
    ]);
    // The server pods carry the labels the policies select (downward-API file).
    const info = await topo.tempDir('info-web');
    await writeLabels(info, { app: 'web' });
    const ca = await newCa();
    const ids = { client: await topo.tempDir('id-client'), web: await topo.tempDir('id-web') };
    await writeIdentity(ids.client, ca, 'client');
    await writeIdentity(ids.web, ca, 'web');
    await Promise.all([
      topo.startProxy(client, ['--identity-dir', ids.client, '--mux-connections', '0']),
      topo.startProxy(muxClient, ['--identity-dir', ids.client, '--mux-connections', '2']),
      topo.startProxy(v1, ['--pod-info-dir', info, '--identity-dir', ids.web, '--mux-connections', '2']),
      topo.startProxy(v2, ['--pod-info-dir', info, '--identity-dir', ids.web, '--mux-connections', '2']),
    ]);
    agent = await topo.startAgent(client);
    muxAgent = await topo.startAgent(muxClient);
  });
  after(() => topo.destroy());

  for (const c of CASES) {
    it(c.name, async () => {
      const failures: string[] = [];
      for (const transport of c.transports ?? TRANSPORTS) {
        const routes = c.routes(`shop/${transport}`).map((r) => forTransport(r, transport));
        await apply(config(routes, c.policies));
        const path = typeof c.path === 'function' ? c.path(transport) : (c.path ?? '/');
        for (const [i, want] of c.expect.entries()) {
          const got = await send(transport, want.path ?? path, c.headers ?? {});
          const okStatus = transport === 'upgrade' ? 101 : 200;
          const status = want.status === 'ok' ? okStatus : want.status;
          const backend = want.backend?.();
          if (got.status !== status || (backend !== undefined && got.backend !== backend))
            failures.push(
              `${transport} request ${i + 1}: got ${got.status} from ${got.backend}, want ${status}${backend ? ` from ${backend}` : ''}`,
            );
          for (const [h, v] of Object.entries(want.headers ?? {}))
            if (got.headers[h] !== v)
              failures.push(`${transport} request ${i + 1}: header ${h} is ${got.headers[h]}, want ${v}`);
        }
        const wrong = await c.verify?.(transport);
        if (wrong) failures.push(wrong);
      }
      assert.deepEqual(failures, []);
    });
  }

  it('HTTPRoute: a RequestHeaderModifier cannot change the framing (content-length, transfer-encoding)', async () => {
    // A route that sets content-length: 0 on a POST would leave its body on the pooled connection
    // to the server sidecar, read there as the next request (smuggling).
    const failures: string[] = [];
    for (const transport of ['h1-fast', 'h1-node', 'h1-mux'] as const) {
      const filters: Route['filters'] = [
        {
          type: 'RequestHeaderModifier',
          set: [{ name: 'Content-Length', value: '0' }],
          add: [{ name: 'Transfer-Encoding', value: 'chunked' }],
        },
      ];
      await apply(config([forTransport(route({ name: `shop/${transport}`, filters }), transport)]));
      const r = await (transport === 'h1-mux' ? muxAgent : agent).send<{
        first: { status: number; body: string };
      }>({
        op: 'http',
        url: 'http://10.96.0.10/echo',
        method: 'POST',
        body: 'x'.repeat(1000),
        headers: { connection: 'close' },
      });
      const bytes = r.first.status === 200 ? (JSON.parse(r.first.body) as { bytes: number }).bytes : -1;
      if (r.first.status !== 200 || bytes !== 1000)
        failures.push(`${transport}: ${r.first.status}, the app read ${bytes} of 1000 body bytes`);
    }
    assert.deepEqual(failures, []);
  });

  it('request metrics name the route that decided (kind/namespace/name and rule), never the path; none when no route matched', async () => {
    // Upgrades report no request metrics (bytes only, as TCP): the other transports each.
    const failures: string[] = [];
    for (const transport of ['h1-fast', 'h1-node', 'h1-mux', 'h2'] as const) {
      const a = transport === 'h1-mux' ? muxAgent : agent;
      const routes = [
        // An HTTPRoute rule as the operator compiles it (rule 1, named "api"), under /api only.
        route({
          name: `shop/metrics-${transport}/1`,
          source: {
            kind: 'HTTPRoute',
            namespace: 'shop',
            name: `metrics-${transport}`,
            rule: 1,
            ruleName: 'api',
          },
          matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
          backends: [{ service: 'shop/web-v2', weight: 1 }],
        }),
        // A TrafficSplit (no source) that refuses: the route is named on the refusal too.
        route({
          name: `shop/abort-${transport}`,
          matches: [{ headers: [{ name: 'x-abort', value: 'yes' }] }],
          faultInjection: { abort: { httpStatus: 418, percentage: 100 } },
        }),
      ].map((r) => forTransport(r, transport));
      await apply(config(routes));
      const scrape = async () =>
        (await a.send<{ first: { body: string } }>({ op: 'http', url: 'http://127.0.0.1:15020/metrics' }))
          .first.body;
      const unrouted = (m: string) =>
        metricSum(
          m,
          'weft_requests_total{',
          'route=""',
          'destination_service="web.shop"',
          'status_code="200"',
        );
      const before = await scrape();
      const got = [
        await send(transport, `/api/secret-${transport}?token=x`, {}),
        await send(transport, `/plain-${transport}`, {}),
        await send(transport, '/', { 'x-abort': 'yes' }),
      ].map((o) => `${o.status} ${o.backend ?? '-'}`);
      const want = [`200 ${v2.name}`, `200 ${v1.name}`, '418 -'];
      if (got.join() !== want.join())
        failures.push(`${transport}: answers ${got.join(', ')}, want ${want.join(', ')}`);
      const m = await scrape();
      const routed = metricSum(
        m,
        'weft_requests_total{',
        `route="HTTPRoute/shop/metrics-${transport}"`,
        'route_rule="api"',
        'destination_service="web-v2.shop"',
        'status_code="200"',
      );
      const aborted = metricSum(
        m,
        'weft_requests_total{',
        `route="TrafficSplit/shop/abort-${transport}"`,
        'route_rule=""',
        'status_code="418"',
      );
      const none = unrouted(m) - unrouted(before);
      if (routed !== 1 || aborted !== 1 || none !== 1)
        failures.push(
          `${transport}: requests by the HTTPRoute rule ${routed}, by the aborting split ${aborted}, by no route ${none} (want 1 each)`,
        );
      // Bounded: the paths and the query never become label values, in any request series.
      const leaked = metricLines(m, 'weft_request').filter((l) => /secret|plain-|token/.test(l));
      if (leaked.length > 0) failures.push(`${transport}: a path in a label: ${leaked[0]}`);
    }
    assert.deepEqual(failures, []);
  });

  it('GRPCRoute: a method match (compiled to a path) picks its backend over h2c', async () => {
    // The compiled entries of GRPCRoute shop/grpc-route: rule 0 matches method Say.
    const rule = (i: number, path: NonNullable<Route['matches'][number]['path']>, backend: string): Route =>
      route({
        name: 'shop/grpc-route',
        service: 'shop/grpc',
        source: { kind: 'GRPCRoute', namespace: 'shop', name: 'grpc-route', rule: i },
        matches: [{ path }],
        backends: [{ service: backend, weight: 1 }],
      });
    const grpcRoutes = [
      rule(0, { type: 'Exact', value: '/weft.test.Echo/Say' }, 'shop/grpc-v2'),
      rule(1, { type: 'PathPrefix', value: '/' }, 'shop/grpc'),
    ];
    await apply(config(grpcRoutes));
    const call = (method: string) =>
      agent.send<{ status?: number; backend?: string; grpcStatus?: string }>({
        op: 'grpc',
        url: 'http://10.96.0.20:9090',
        headers: { ':path': `/weft.test.Echo/${method}` },
      });
    const say = await call('Say');
    const other = await call('Other');
    assert.deepEqual(
      [say.status, say.grpcStatus, say.backend, other.status, other.grpcStatus, other.backend],
      [200, '0', v2.name, 200, '0', v1.name],
    );
  });
});
