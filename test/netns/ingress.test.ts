// The proxy in gateway mode (`weft proxy --gateway`, docs/ingress.md) through real network
// namespaces: a client outside the mesh connects straight to the gateway pod's listener (no
// iptables redirect); the gateway picks the virtual host by Host and the route by path, with the
// routing table the operator's compiler writes (compileIngress), and forwards to the backend
// pods: to a meshed pod over mutual TLS with the gateway's own SPIFFE identity (STRICT mTLS),
// to a pod outside the mesh in plaintext. A Host no listener hostname covers gets 404, and the
// gateway never routes to the mesh's Services by their own names or addresses (it is not an
// open proxy). HTTPS listeners: TLS terminated with the certificate of the listener SNI names
// (exact hostname before wildcard; none for a name no listener covers), verified by the client
// against its CA; a renewed certificate file is served without restarting the proxy, and a
// broken one keeps the last good.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileIngress } from '../../operator/compile/ingress.ts';
import { indexServices } from '../../operator/compile/services.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { issueServingCertificate, type ServingCertificate } from '../../webhook/tls.ts';
import { newCa, spiffe, writeIdentity } from './mtlsfixture.ts';
import { type Agent, eventually, metricLines, type Pod, Topology } from './netns.ts';

const topo = new Topology();
let client: Agent;
let gw: Pod;
let web: Pod;
const GATEWAY_SA = 'edge-weft-gateway';
const BIND = 18_080;
const BIND_TLS = 18_443;
let certsDir: string;
let shopCert: ServingCertificate;
let wildCert: ServingCertificate;

const tlsSecret = (c: ServingCertificate) => ({
  type: 'kubernetes.io/tls',
  data: {
    'tls.crt': Buffer.from(c.certPem).toString('base64'),
    'tls.key': Buffer.from(c.keyPem).toString('base64'),
  },
});

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
  const now = new Date();
  shopCert = await issueServingCertificate({ dnsNames: ['shop.example.com'], ipAddresses: [], now });
  wildCert = await issueServingCertificate(
    { dnsNames: ['*.example.com'], ipAddresses: [], now },
    {
      caPem: shopCert.caPem,
      caKeyPem: shopCert.caKeyPem!,
    },
  );
  const secrets = new Map([
    ['shop/shop-tls', tlsSecret(shopCert)],
    ['shop/wild-tls', tlsSecret(wildCert)],
  ]);
  const https = (name: string, hostname: string, secret: string) => ({
    name,
    port: 443,
    protocol: 'HTTPS',
    hostname,
    tls: { certificateRefs: [{ name: secret }] },
  });
  const compiled = compileIngress({
    gateway: {
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        gatewayClassName: 'weft',
        listeners: [
          { name: 'http', port: 80, protocol: 'HTTP', hostname: '*.example.com' },
          https('https-wild', '*.example.com', 'wild-tls'),
          https('https-shop', 'shop.example.com', 'shop-tls'),
        ],
      },
    },
    secrets: (ns, name) => secrets.get(`${ns}/${name}`),
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
  // The test binds unprivileged ports of its own; the operator would say 15080 for port 80.
  const table = {
    ...compiled.config,
    ports: compiled.config.ports.map((p) => ({ ...p, bind: p.port === 443 ? BIND_TLS : BIND })),
  };
  const file = join(await topo.tempDir('gateway'), 'gateway.json');
  await writeFile(file, JSON.stringify(table));
  // The operator's `-tls` Secret, as the kubelet mounts it: one file per certificate and key.
  certsDir = await topo.tempDir('gateway-tls');
  for (const [name, pem] of compiled.certificates) await writeFile(join(certsDir, name), pem);
  await topo.startProxy(gw, [
    '--gateway',
    '--gateway-config',
    file,
    '--gateway-certs',
    certsDir,
    '--identity-dir',
    gwId,
  ]);
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

interface HttpsResult {
  got: string;
  error?: string;
  subject?: string;
  fingerprint?: string;
}

/** GET / over TLS to the HTTPS listener, sending `sni` and verifying the server against `ca`. */
async function getTls(sni: string | undefined, host = sni ?? 'shop.example.com', ca = shopCert.caPem) {
  const r = await client.send<HttpsResult>({
    op: 'https',
    host: gw.ip,
    port: BIND_TLS,
    servername: sni,
    ca,
    send: [`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`],
    timeoutMs: 10_000,
  });
  const [head = ''] = r.got.split('\r\n\r\n');
  return {
    error: r.error,
    subject: r.subject,
    fingerprint: r.fingerprint,
    status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0),
    backend: /\r\nx-backend: ([^\r]*)/i.exec(head)?.[1],
  };
}

const fingerprintOf = (pem: string) => new X509Certificate(pem).fingerprint256;

describe('HTTPS listeners: TLS by SNI from the Secrets the listeners name, reloaded without restart', () => {
  it('the exact hostname’s certificate is served and verifies; the request is routed as over HTTP', async () => {
    const r = await getTls('shop.example.com');
    assert.equal(r.error, undefined, `TLS to shop.example.com: ${r.error}`);
    assert.equal(r.fingerprint, fingerprintOf(shopCert.certPem));
    assert.equal(r.status, 200);
    assert.equal(r.backend, 'web');
  });

  it('another name under the wildcard listener gets the wildcard certificate', async () => {
    const r = await getTls('other.example.com');
    assert.equal(r.error, undefined, `TLS to other.example.com: ${r.error}`);
    assert.equal(r.fingerprint, fingerprintOf(wildCert.certPem));
    assert.deepEqual([r.status, r.backend], [200, 'api']);
  });

  it('a server name no HTTPS listener covers gets no certificate (handshake refused)', async () => {
    const r = await getTls('example.org', 'example.org');
    assert.ok(r.error, 'the handshake must fail');
    assert.equal(r.status, 0);
  });

  it('a renewed certificate file is served to new connections; a broken one keeps the last good', async () => {
    const renewed = await issueServingCertificate(
      { dnsNames: ['shop.example.com'], ipAddresses: [], now: new Date() },
      {
        caPem: shopCert.caPem,
        caKeyPem: shopCert.caKeyPem!,
      },
    );
    // As the kubelet swaps a Secret volume: each file replaced whole.
    const put = async (name: string, text: string) => {
      await writeFile(join(certsDir, `${name}.tmp`), text);
      await rename(join(certsDir, `${name}.tmp`), join(certsDir, name));
    };
    await put('https-shop.key', renewed.keyPem);
    await put('https-shop.crt', renewed.certPem);
    let last: Awaited<ReturnType<typeof getTls>> | undefined;
    const served = await eventually(async () => {
      last = await getTls('shop.example.com');
      return last.fingerprint === fingerprintOf(renewed.certPem);
    });
    assert.ok(served, `the renewed certificate is served: ${JSON.stringify(last)}`);
    assert.deepEqual([last!.status, last!.backend], [200, 'web']);

    await put('https-shop.crt', 'not a certificate\n');
    // Two polls of the gateway's files (2 s each) at least: still the renewed certificate.
    await new Promise((r) => setTimeout(r, 5_000));
    const after = await getTls('shop.example.com');
    assert.equal(after.error, undefined);
    assert.equal(after.fingerprint, fingerprintOf(renewed.certPem), 'a broken file keeps the last good');
  });
});
