// The proxy in gateway mode (`weft proxy --gateway`, docs/ingress.md) through real network
// namespaces: a client outside the mesh connects straight to the gateway pod's listener (no
// iptables redirect); the gateway picks the virtual host by Host and the route by path, with the
// routing table the operator's compiler writes (compileIngress), and forwards to the backend
// pods: to a meshed pod over mutual TLS with the gateway's own SPIFFE identity (STRICT mTLS),
// to a pod outside the mesh in plaintext. A Host no listener hostname covers gets 404, and the
// gateway never routes to the mesh's Services by their own names or addresses (it is not an
// open proxy).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileIngress } from '../../operator/compile/ingress.ts';
import { indexServices } from '../../operator/compile/services.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, spiffe, writeIdentity } from './mtlsfixture.ts';
import { type Agent, eventually, metricLines, type Pod, Topology } from './netns.ts';

const topo = new Topology();
let client: Agent;
let gw: Pod;
let web: Pod;
const GATEWAY_SA = 'edge-weft-gateway';
const BIND = 18_080;

const svcObj = (name: string, ip: string) => ({
  metadata: { name, namespace: 'shop' },
  spec: { clusterIP: ip, ports: [{ name: 'http', port: 80 }] },
});
const route = (name: string, spec: Record<string, unknown>) => ({
  metadata: { name, namespace: 'shop', generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: { parentRefs: [{ name: 'edge' }], ...spec },
});

before(async () => {
  await topo.create();
  gw = await topo.addPod('gw');
  web = await topo.addPod('web');
  const api = await topo.addPod('api');
  const outside = await topo.addPod('outside');
  // web is meshed (its sidecar, STRICT mTLS); api is outside the mesh.
  await topo.writeConfig(
    proxyConfig(
      'shop',
      [
        service('web', 'shop', '10.96.0.10', 80, [{ ...endpoint(web.ip, 8080), identity: spiffe('web') }]),
        service('api', 'shop', '10.96.0.11', 80, [endpoint(api.ip, 8080, { meshed: false })]),
      ],
      [],
      { mtls: { mode: 'STRICT', ports: [] } },
    ),
  );
  const ca = await newCa();
  const gwId = await topo.tempDir('id-gw');
  const webId = await topo.tempDir('id-web');
  await writeIdentity(gwId, ca, GATEWAY_SA);
  await writeIdentity(webId, ca, 'web');
  await topo.intercept(web);
  await topo.startApp(web, { http: 8080 });
  await topo.startApp(api, { http: 8080 });
  await topo.startProxy(web, ['--identity-dir', webId]);
  const compiled = compileIngress({
    gateway: {
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        gatewayClassName: 'weft',
        listeners: [{ name: 'http', port: 80, protocol: 'HTTP', hostname: '*.example.com' }],
      },
    },
    httpRoutes: [
      route('shop', {
        hostnames: ['shop.example.com'],
        rules: [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
            backendRefs: [{ name: 'api', port: 80 }],
          },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/' } }],
            backendRefs: [{ name: 'web', port: 80 }],
          },
        ],
      }),
      route('wild', { rules: [{ backendRefs: [{ name: 'api', port: 80 }] }] }),
    ],
    services: indexServices([svcObj('web', '10.96.0.10'), svcObj('api', '10.96.0.11')]),
  });
  // The test binds an unprivileged port of its own; the operator would say 15080 for port 80.
  const table = { ...compiled.config, ports: compiled.config.ports.map((p) => ({ ...p, bind: BIND })) };
  const file = join(await topo.tempDir('gateway'), 'gateway.json');
  await writeFile(file, JSON.stringify(table));
  await topo.startProxy(gw, ['--gateway', '--gateway-config', file, '--identity-dir', gwId]);
  client = await topo.startAgent(outside);
});

after(async () => {
  await topo.destroy();
});

async function get(host: string, path = '/'): Promise<{ status: number; backend?: string }> {
  const r = await client.send<{ got: string }>({
    op: 'raw',
    host: gw.ip,
    port: BIND,
    send: [`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`],
    timeoutMs: 10_000,
  });
  const [head = ''] = r.got.split('\r\n\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  const backend = /\r\nx-backend: ([^\r]*)/i.exec(head)?.[1];
  return { status, backend };
}

async function metrics(ip: string): Promise<string> {
  const r = await client.send<{ first: { body: string } }>({ op: 'http', url: `http://${ip}:15020/metrics` });
  return r.first.body;
}
const count = (text: string, ...parts: string[]) =>
  metricLines(text, ...parts).reduce((n, l) => n + Number(l.split(' ').pop()), 0);

describe('the proxy in gateway mode routes by Host, then by the route matches', () => {
  it('a listener hostname’s route picks its backend by path', async () => {
    assert.deepEqual(await get('shop.example.com', '/'), { status: 200, backend: 'web' });
    assert.deepEqual(await get('shop.example.com', '/api/items'), { status: 200, backend: 'api' });
    assert.deepEqual(
      await get('SHOP.example.com:80', '/'),
      { status: 200, backend: 'web' },
      'Host is case-insensitive, port ignored',
    );
  });

  it('another host under the listener’s wildcard takes the wildcard route', async () => {
    assert.deepEqual(await get('other.example.com', '/'), { status: 200, backend: 'api' });
  });

  it('a Host the listener does not cover gets 404, and mesh Service names are not routed', async () => {
    assert.equal((await get('example.org')).status, 404);
    assert.equal((await get('web.shop.svc.cluster.local')).status, 404);
    assert.equal((await get('10.96.0.10')).status, 404);
  });

  it('the gateway calls a meshed backend over mutual TLS with its own SPIFFE identity', async () => {
    assert.deepEqual(await get('shop.example.com', '/'), { status: 200, backend: 'web' });
    let wm = '';
    const seen = await eventually(async () => {
      wm = await metrics(web.ip);
      return (
        count(wm, 'weft_mtls_connections_total{', 'direction="inbound"', `peer="${spiffe(GATEWAY_SA)}"`) >= 1
      );
    });
    assert.ok(seen, `web's sidecar saw the gateway's identity:\n${metricLines(wm, 'weft_mtls').join('\n')}`);
    const gm = await metrics(gw.ip);
    assert.ok(
      count(gm, 'weft_mtls_connections_total{', 'direction="outbound"', `peer="${spiffe('web')}"`) >= 1,
      `the gateway verified web's identity:\n${metricLines(gm, 'weft_mtls').join('\n')}`,
    );
  });
});
