import assert from 'node:assert/strict';
import { type webcrypto as wc, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { test } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import {
  createRoot,
  IdentityError,
  inspect,
  issueWorkloadCertificate,
  loadCa,
  renewalTime,
  spiffeId,
  trustBundle,
} from './ca.ts';

const now = new Date('2026-11-24T12:00:00Z');
const H = 3_600_000;

test('a workload certificate carries the SPIFFE URI SAN, P-256, and is signed by the root', async () => {
  const ca = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 10 * 24 * H, now });
  const w = await issueWorkloadCertificate(ca, {
    trustDomain: 'cluster.local',
    namespace: 'shop',
    serviceAccount: 'web',
    lifetimeMs: 24 * H,
    now,
  });
  assert.equal(w.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
  const leaf = new X509Certificate(w.certPem);
  const root = new X509Certificate(ca.certPem);
  assert.ok(leaf.verify(root.publicKey), 'leaf is signed by the root');
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/web');
  assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(leaf.ca, false);
  assert.equal(root.ca, true);
  assert.equal(w.notAfter.getTime() - now.getTime(), 24 * H);
  assert.deepEqual(inspect(w.certPem).spiffeId, w.spiffeId);
});

test('a workload certificate never outlives its CA', async () => {
  const ca = await createRoot({ trustDomain: 'td', lifetimeMs: 2 * H, now });
  const w = await issueWorkloadCertificate(ca, {
    trustDomain: 'td',
    namespace: 'a',
    serviceAccount: 'b',
    lifetimeMs: 24 * H,
    now,
  });
  assert.equal(w.notAfter.getTime(), ca.notAfter.getTime());
});

test('renewal happens at two thirds of the lifetime by default, or renewBefore the end', () => {
  const cert = { notBefore: now, notAfter: new Date(now.getTime() + 24 * H) };
  assert.equal(renewalTime(cert).getTime(), now.getTime() + 16 * H);
  assert.equal(renewalTime(cert, 2 * H).getTime(), now.getTime() + 22 * H);
});

test('an intermediate from a user Secret signs leaves that chain to the user root', async () => {
  const root = await createRoot({ trustDomain: 'corp', lifetimeMs: 100 * 24 * H, now });
  // Make an intermediate signed by the root, using the same issuing code path as a CA.
  const inter = await issueIntermediate(root);
  const ca = await loadCa({ certPem: inter.certPem, keyPem: inter.keyPem, caPem: root.certPem });
  const fp = (pem: string) => new X509Certificate(pem).fingerprint256;
  assert.deepEqual(ca.rootsPem.map(fp), [fp(root.certPem)]);
  const w = await issueWorkloadCertificate(ca, {
    trustDomain: 'corp',
    namespace: 'n',
    serviceAccount: 's',
    lifetimeMs: H,
    now,
  });
  const certs = w.chainPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!;
  assert.equal(certs.length, 2, 'leaf + intermediate');
  assert.ok(new X509Certificate(certs[1]!).verify(new X509Certificate(root.certPem).publicKey));
});

test('a CA Secret whose key does not match its certificate is refused with a stable code', async () => {
  const a = await createRoot({ trustDomain: 'td', lifetimeMs: H, now });
  const b = await createRoot({ trustDomain: 'td', lifetimeMs: H, now });
  await assert.rejects(
    loadCa({ certPem: a.certPem, keyPem: b.keyPem }),
    (e: unknown) => e instanceof IdentityError && e.code === 'WEFT_CA_MISMATCH',
  );
  await assert.rejects(
    loadCa({ certPem: a.certPem, keyPem: 'garbage' }),
    (e: unknown) => e instanceof IdentityError && e.code === 'WEFT_CA_KEY',
  );
});

test('the trust bundle keeps a previous root only during its overlap', () => {
  const bundle = trustBundle(['NEW'], [{ pem: 'OLD', trustedUntil: new Date(now.getTime() + H) }], now);
  assert.deepEqual(bundle, ['NEW', 'OLD']);
  assert.deepEqual(trustBundle(['NEW'], [{ pem: 'OLD', trustedUntil: new Date(now.getTime() - 1) }], now), [
    'NEW',
  ]);
});

test('the certificates work for TLS 1.3 mutual authentication in node:tls', async () => {
  const realNow = new Date();
  const ca = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * H, now: realNow });
  const server = await issueWorkloadCertificate(ca, {
    trustDomain: 'cluster.local',
    namespace: 'shop',
    serviceAccount: 'api',
    lifetimeMs: H,
    now: realNow,
  });
  const client = await issueWorkloadCertificate(ca, {
    trustDomain: 'cluster.local',
    namespace: 'shop',
    serviceAccount: 'web',
    lifetimeMs: H,
    now: realNow,
  });
  const srv = createServer(
    {
      cert: server.chainPem,
      key: server.keyPem,
      ca: ca.rootsPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    },
    (s: TLSSocket) => {
      s.end(s.getPeerCertificate().subjectaltname ?? '');
    },
  );
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  const sock = connect({
    host: '127.0.0.1',
    port,
    cert: client.chainPem,
    key: client.keyPem,
    ca: ca.rootsPem,
    servername: 'x',
    checkServerIdentity: () => undefined,
  });
  let data = '';
  sock.on('data', (d) => (data += d));
  await once(sock, 'end');
  assert.equal(sock.getProtocol(), 'TLSv1.3');
  assert.equal(sock.getPeerCertificate().subjectaltname, `URI:${spiffeId('cluster.local', 'shop', 'api')}`);
  assert.equal(data, `URI:${spiffeId('cluster.local', 'shop', 'web')}`);
  srv.close();
});

// An intermediate CA for the test, made with the x509 library directly.
async function issueIntermediate(root: Awaited<ReturnType<typeof createRoot>>) {
  const x509 = await import('@peculiar/x509');
  const { webcrypto } = await import('node:crypto');
  const c = webcrypto;
  const EC = { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = (await c.subtle.generateKey(EC, true, ['sign', 'verify'])) as wc.CryptoKeyPair;
  const rootKey = await c.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(root.keyPem), EC, false, [
    'sign',
  ]);
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'CN=intermediate',
    issuer: new x509.X509Certificate(root.certPem).subject,
    notBefore: new Date(now.getTime() - H),
    notAfter: new Date(now.getTime() + 50 * 24 * H),
    publicKey: keys.publicKey,
    signingKey: rootKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const keyPem = x509.PemConverter.encode(await c.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { certPem: cert.toString('pem'), keyPem };
}
