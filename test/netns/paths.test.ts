// Path normalization before authorization and routing, through real proxies in network
// namespaces. A DENY policy on /admin* must hold against every spelling an app would resolve to
// /admin (dot segments, percent-encoding, backslashes, path parameters, absolute-form targets),
// and the app must receive exactly the normalized path that was authorized.
//
// Each variant is sent four ways: from a meshed caller through its outbound sidecar to the
// Service VIP (HTTP/1.1 on the fast paths, HTTP/1.0 on the node:http paths), and from a pod
// without a sidecar straight to the server's inbound sidecar (HTTP/1.1, HTTP/1.0), plus HTTP/2
// for the variants HTTP/2 can carry. The app answers every request with `x-backend` and the
// target it saw (`x-seen-path`): a response carrying `x-backend` reached the app.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type AuthzPolicy, contentVersion, type ProxyConfig } from '../../api/index.ts';
import type { PathNormalization } from '../../proxy/pathnorm.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { type Agent, eventually, metricLines, type Pod, Topology } from './netns.ts';

const topo = new Topology();
let caller: Agent;
let bare: Agent;
let server: Pod;

const noAdmin: AuthzPolicy = {
  name: 'shop/no-admin',
  namespace: 'shop',
  action: 'DENY',
  rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }],
};

// Hosts: lower case, a trailing dot ignored, a pattern without a port matching any port.
const noInternalHost: AuthzPolicy = {
  name: 'shop/no-internal-host',
  namespace: 'shop',
  action: 'DENY',
  rules: [{ to: [{ operation: { hosts: ['internal.shop'] } }] }],
};

function config(mode?: PathNormalization): ProxyConfig {
  const web = service('web', 'shop', '10.96.0.10', 80, [endpoint(server.ip, 8080)]);
  const grpc = service(
    'greeter',
    'shop',
    '10.96.0.30',
    50051,
    [{ ...endpoint(server.ip, 50051), ports: { http: 50051 } }],
    'grpc',
  );
  const base = proxyConfig('shop', [grpc, web], [], mode ? { pathNormalization: mode } : {});
  const { version: _v, ...doc } = { ...base, authorizationPolicies: [noAdmin, noInternalHost] };
  return { ...doc, version: contentVersion(doc) };
}

interface Seen {
  status: number;
  backend?: string;
  seenPath?: string;
  error?: string;
}

/** One raw HTTP/1.x request (Connection: close, or a WebSocket upgrade) and the status and headers of its answer. */
async function h1(
  agent: Agent,
  host: string,
  port: number,
  target: string,
  version: '1.0' | '1.1',
  hostHeader: string,
  upgrade = false,
) {
  const connection = upgrade
    ? 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
    : 'Connection: close\r\n';
  const r = await agent.send<{ got: string }>({
    op: 'raw',
    host,
    port,
    send: [`GET ${target} HTTP/${version}\r\nHost: ${hostHeader}\r\n${connection}\r\n`],
    timeoutMs: upgrade ? 3_000 : 10_000,
  });
  const [head = ''] = r.got.split('\r\n\r\n');
  const lines = head.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? -1);
  const h: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c > 0) h[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
  }
  const seen: Seen = { status, backend: h['x-backend'], error: h['weft-error'] };
  if (h['x-seen-path'] !== undefined) seen.seenPath = decodeURIComponent(h['x-seen-path']);
  return seen;
}

async function h2(target: string): Promise<Seen> {
  const r = await bare.send<{ status?: number; backend?: string; seenPath?: string; error?: string }>({
    op: 'grpc',
    url: `http://${server.ip}:50051`,
    headers: { ':path': target },
  });
  return {
    status: Number(r.status ?? -1),
    backend: r.backend,
    seenPath: r.seenPath !== undefined ? decodeURIComponent(r.seenPath) : undefined,
    error: r.error,
  };
}

/** Every way a request reaches the server's sidecar, by name. */
async function sendAllWays(target: string, hostHeader = 'web.shop'): Promise<Record<string, Seen>> {
  const out: Record<string, Seen> = {};
  out['caller HTTP/1.1 (fast paths)'] = await h1(caller, '10.96.0.10', 80, target, '1.1', hostHeader);
  out['caller HTTP/1.0 (node:http)'] = await h1(caller, '10.96.0.10', 80, target, '1.0', hostHeader);
  out['no sidecar HTTP/1.1 (inbound fast path)'] = await h1(bare, server.ip, 8080, target, '1.1', hostHeader);
  out['no sidecar HTTP/1.0 (inbound node:http)'] = await h1(bare, server.ip, 8080, target, '1.0', hostHeader);
  if (target.startsWith('/')) out['no sidecar HTTP/2'] = await h2(target);
  return out;
}

/** Asserts that no way of sending `target` (nor a WebSocket upgrade to it) reached the app. */
async function refusedEverywhere(target: string, hostHeader = 'web.shop'): Promise<void> {
  const ways = await sendAllWays(target, hostHeader);
  ways['no sidecar WebSocket upgrade (node:http)'] = await h1(
    bare,
    server.ip,
    8080,
    target,
    '1.1',
    hostHeader,
    true,
  );
  for (const [how, r] of Object.entries(ways)) {
    assert.equal(
      r.backend,
      undefined,
      `${JSON.stringify(target)} via ${how} reached the app as ${JSON.stringify(r.seenPath)} (status ${r.status})`,
    );
    assert.ok(
      r.status === 403 || r.status === 400,
      `${JSON.stringify(target)} via ${how}: status ${r.status}${r.error ? ` (${r.error})` : ''}`,
    );
  }
}

/** Asserts that every way of sending `target` reached the app with exactly `expected`. */
async function forwardedAs(target: string, expected: string): Promise<void> {
  for (const [how, r] of Object.entries(await sendAllWays(target))) {
    assert.equal(r.status, 200, `${JSON.stringify(target)} via ${how}: status ${r.status}`);
    assert.equal(r.seenPath, expected, `${JSON.stringify(target)} via ${how}`);
  }
}

// Spellings of /admin that BASE (the default) must refuse.
const BASE_VARIANTS = [
  '/./admin',
  '/%2e/admin',
  '/api/../admin',
  '/api/v1/../../admin',
  '/x//../../admin',
  '/%61dmin',
  '/%2e%2e/admin',
  '/x/%2E%2E/admin',
  '/x/.%2e/admin',
  '/;x/admin',
  '/..;/admin',
  '/api/..;/admin',
  '\\admin',
  '/api/..\\admin',
  '/api\\..\\admin',
  '/admin#/../public',
  'http://web.shop/admin',
  'http://web.shop/api/../admin',
];
// Spellings that only merging slashes catches (BASE forwards them with the slashes kept).
const SLASH_VARIANTS = ['//admin', '///admin', '/\\admin'];
// Spellings that only decoding %2F and %5C catches.
const ENCODED_SLASH_VARIANTS = ['/%2Fadmin', '/x/..%2Fadmin', '/x/..%5Cadmin', '/x/%2e%2e%2fadmin'];

async function applied(mode?: PathNormalization): Promise<void> {
  const cfg = config(mode);
  await topo.writeConfig(cfg);
  const line = `weft_config_info{version="${cfg.version}"}`;
  const has = async (agent: Agent, url: string) => {
    const r = await agent.send<{ first: { body: string } }>({ op: 'http', url });
    return metricLines(r.first.body, line).length > 0;
  };
  const ok = await eventually(
    async () =>
      (await has(bare, `http://${server.ip}:15020/metrics`)) &&
      (await has(caller, 'http://127.0.0.1:15020/metrics')),
  );
  assert.ok(ok, `both proxies applied config ${cfg.version}`);
}

describe('path normalization before authorization and routing', { timeout: 300_000 }, () => {
  before(async () => {
    await topo.create();
    const callerPod = await topo.addPod('caller');
    const barePod = await topo.addPod('bare');
    server = await topo.addPod('server');
    await topo.writeConfig(config());
    for (const p of [callerPod, server]) await topo.intercept(p);
    await topo.startApp(server, { http: 8080, grpc: 50051 });
    await Promise.all([topo.startProxy(callerPod), topo.startProxy(server)]);
    caller = await topo.startAgent(callerPod);
    bare = await topo.startAgent(barePod);
  });
  after(() => topo.destroy());

  it('BASE (the default): every dot-segment, percent-encoded, backslash, path-parameter and absolute-form spelling of /admin is refused', async () => {
    for (const v of BASE_VARIANTS) await refusedEverywhere(v);
    // An absolute-form target naming another authority than Host is refused (400).
    const r = await h1(bare, server.ip, 8080, 'http://admin.internal/admin', '1.1', 'web.shop');
    assert.equal(r.status, 400);
    assert.equal(r.backend, undefined);
  });

  it('a DENY on hosts holds whatever the case, a trailing dot or a port in Host', async () => {
    for (const host of [
      'internal.shop',
      'INTERNAL.Shop',
      'internal.shop.',
      'internal.shop:80',
      'internal.shop.:8080',
    ]) {
      const r = await h1(bare, server.ip, 8080, '/', '1.1', host);
      assert.equal(r.status, 403, `Host: ${host}`);
      assert.equal(r.backend, undefined, `Host: ${host}`);
      const viaCaller = await h1(caller, '10.96.0.10', 80, '/', '1.1', host);
      assert.equal(viaCaller.status, 403, `Host: ${host} through the caller's sidecar`);
    }
    const other = await h1(bare, server.ip, 8080, '/', '1.1', 'internal.shop.example');
    assert.equal(other.status, 200, 'another host is not denied');
  });

  it('BASE: the app receives the normalized path that was authorized, query untouched', async () => {
    await forwardedAs('/api/./v1/../items%7e%2f?q=%2e%2e/x', '/api/items~%2F?q=%2e%2e/x');
    await forwardedAs('/public/%2e%2e/public/a', '/public/a');
    // Slashes are kept under BASE (as Istio does): the app sees exactly what was authorized.
    await forwardedAs('//public//a', '//public//a');
    await forwardedAs('/public/\\a', '/public//a');
  });

  it('BASE: a DENY also covers the slash-merged spelling (//admin), which many apps resolve to /admin', async () => {
    for (const v of SLASH_VARIANTS) await refusedEverywhere(v);
  });

  it('MERGE_SLASHES: repeated slashes are merged, so //admin is refused too', async () => {
    await applied('MERGE_SLASHES');
    for (const v of [...SLASH_VARIANTS, ...BASE_VARIANTS]) await refusedEverywhere(v);
    await forwardedAs('/%2Fadmin', '/%2Fadmin');
  });

  it('DECODE_AND_MERGE_SLASHES: %2F and %5C are decoded first, so encoded slashes cannot hide /admin', async () => {
    await applied('DECODE_AND_MERGE_SLASHES');
    for (const v of [...ENCODED_SLASH_VARIANTS, ...SLASH_VARIANTS, ...BASE_VARIANTS])
      await refusedEverywhere(v);
    await forwardedAs('/a%2Fb%5Cc', '/a/b/c');
  });
});
