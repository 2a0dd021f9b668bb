// The inbound mTLS port checked from outside with `openssl s_client` (the system's OpenSSL, not
// Node's TLS): a pod without a sidecar offers the sidecar-to-sidecar ALPN with certificates made
// by the mesh CA library or openssl. TLS 1.3 only, a client certificate required, the SPIFFE URI
// SAN verified (present, in the mesh's trust domain); expired and foreign-CA certificates refused.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type CertificateAuthority, issueWorkloadCertificate } from '../../operator/identity/ca.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { HOUR, newCa, spiffe, writeIdentity } from './mtlsfixture.ts';
import { type Agent, metricLines, type Pod, Topology } from './netns.ts';

const run = promisify(execFile);
const topo = new Topology();
let ca: CertificateAuthority;
let server: Pod;
let plain: Pod;
let agent: Agent;
let dir = '';

interface SClient {
  out: string;
  err: string;
}

/** openssl s_client from the pod without a sidecar: an HTTP request once connected, then what came back. */
function sClient(args: string[]): Promise<SClient> {
  return new Promise((resolve) => {
    const p = spawn(
      'ip',
      [
        ...['netns', 'exec', plain.ns, 'openssl', 's_client', '-connect', `${server.ip}:8080`],
        ...['-alpn', 'weft-http/1.1', '-CAfile', join(dir, 'ca.crt'), '-ign_eof', ...args],
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    // Bounded: a refused handshake ends at once, an accepted one when the app closes.
    const t = setTimeout(() => p.kill('SIGKILL'), 8000);
    p.on('close', () => {
      clearTimeout(t);
      resolve({ out, err });
    });
    p.stdin.end('GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n');
  });
}

/** Writes a certificate and key as <name>.crt and <name>.key; returns the s_client flags. */
async function clientCert(name: string, certPem: string, keyPem: string): Promise<string[]> {
  await writeFile(join(dir, `${name}.crt`), certPem);
  await writeFile(join(dir, `${name}.key`), keyPem);
  return ['-cert', join(dir, `${name}.crt`), '-key', join(dir, `${name}.key`)];
}

async function issue(
  sa: string,
  opts: { trustDomain?: string; now?: Date; from?: CertificateAuthority } = {},
) {
  return issueWorkloadCertificate(opts.from ?? ca, {
    trustDomain: opts.trustDomain ?? 'cluster.local',
    namespace: 'shop',
    serviceAccount: sa,
    lifetimeMs: HOUR,
    now: opts.now ?? new Date(),
  });
}

async function failures(): Promise<string[]> {
  const m = (
    await agent.send<{ first: { body: string } }>({ op: 'http', url: `http://${server.ip}:15020/metrics` })
  ).first.body;
  return metricLines(m, 'weft_mtls_failures_total{', 'direction="inbound"');
}

const served = (r: SClient) => /HTTP\/1\.1 200 OK/.test(r.out) && /hello from server/.test(r.out);

describe('the inbound mTLS port, checked with openssl s_client', { timeout: 180_000 }, () => {
  before(async () => {
    await topo.create();
    ca = await newCa();
    server = await topo.addPod('server');
    plain = await topo.addPod('plain');
    const web = service('web', 'shop', '10.96.0.10', 80, [
      { ...endpoint(server.ip, 8080), identity: spiffe('web') },
    ]);
    await topo.writeConfig(proxyConfig('shop', [web], [], { mtls: { mode: 'STRICT', ports: [] } }));
    await topo.intercept(server);
    const id = await topo.tempDir('id-server');
    await writeIdentity(id, ca, 'web');
    dir = await topo.tempDir('openssl');
    await writeFile(join(dir, 'ca.crt'), ca.rootsPem.join(''));
    await topo.startApp(server, { http: 8080 });
    await topo.startProxy(server, ['--identity-dir', id]);
    agent = await topo.startAgent(plain);
  });
  after(() => topo.destroy());

  it('a mesh certificate over TLS 1.3 is served; the server presents its SPIFFE ID, verified against the mesh CA', async () => {
    const w = await issue('client');
    const r = await sClient([...(await clientCert('good', w.chainPem, w.keyPem)), '-tls1_3']);
    assert.ok(served(r), `served:\n${r.out.slice(-1500)}\n${r.err.slice(-500)}`);
    assert.match(r.out, /TLSv1\.3/);
    assert.match(r.out, /Verify return code: 0 \(ok\)/);
    const peer = await run('ip', [
      ...['netns', 'exec', plain.ns, 'sh', '-c'],
      `echo | openssl s_client -connect ${server.ip}:8080 -alpn weft-http/1.1 -cert ${join(dir, 'good.crt')} -key ${join(dir, 'good.key')} 2>/dev/null | openssl x509 -noout -ext subjectAltName`,
    ]);
    assert.match(peer.stdout, /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/);
  });

  it('TLS 1.2 is refused', async () => {
    const w = await issue('client');
    const r = await sClient([...(await clientCert('good12', w.chainPem, w.keyPem)), '-tls1_2']);
    assert.ok(!served(r), r.out);
    assert.match(r.out, /Cipher is \(NONE\)/, 'no TLS 1.2 session was negotiated');
  });

  it('no client certificate is refused', async () => {
    const r = await sClient(['-tls1_3']);
    assert.ok(!served(r), r.out);
    assert.match(`${r.out}${r.err}`, /certificate required|alert/i);
  });

  it('an expired certificate of the mesh CA is refused', async () => {
    const w = await issue('client', { now: new Date(Date.now() - 3 * HOUR) });
    const r = await sClient([...(await clientCert('expired', w.chainPem, w.keyPem)), '-tls1_3']);
    assert.ok(!served(r), r.out);
  });

  it('a certificate of a foreign CA is refused', async () => {
    const other = await newCa();
    const w = await issue('client', { from: other });
    const r = await sClient([...(await clientCert('foreign', w.chainPem, w.keyPem)), '-tls1_3']);
    assert.ok(!served(r), r.out);
  });

  it('a certificate of the mesh CA for another trust domain is refused', async () => {
    const before = (await failures()).join('\n');
    const w = await issue('client', { trustDomain: 'evil.example' });
    const r = await sClient([...(await clientCert('evil', w.chainPem, w.keyPem)), '-tls1_3']);
    assert.ok(!served(r), `another trust domain must not be served:\n${r.out.slice(-800)}`);
    const after = (await failures()).join('\n');
    assert.match(after, /reason="WEFT_PEER_IDENTITY"/, `counted: ${before} -> ${after}`);
  });

  it('a certificate of the mesh CA without a SPIFFE URI SAN is refused', async () => {
    await writeFile(join(dir, 'ca.key'), ca.keyPem);
    await writeFile(join(dir, 'ext.cnf'), 'extendedKeyUsage=clientAuth\nsubjectAltName=DNS:client.shop\n');
    const sh = (cmd: string) => run('sh', ['-c', cmd], { cwd: dir });
    await sh(
      'openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout nospiffe.key -subj /CN=client.shop -out nospiffe.csr 2>/dev/null',
    );
    await sh(
      'openssl x509 -req -in nospiffe.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out nospiffe.crt 2>/dev/null',
    );
    const r = await sClient([
      '-cert',
      join(dir, 'nospiffe.crt'),
      '-key',
      join(dir, 'nospiffe.key'),
      '-tls1_3',
    ]);
    assert.ok(!served(r), r.out);
  });
});
