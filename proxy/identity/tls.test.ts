// Sidecar-to-sidecar mutual TLS with real sockets on loopback, using certificates from the
// mesh CA library: TLS 1.3, SPIFFE IDs both ways, wrong identity / foreign CA / expired
// certificate refused, and reload without dropping open connections.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import tls from 'node:tls';
import {
  type CertificateAuthority,
  createRoot,
  issueWorkloadCertificate,
} from '../../operator/identity/ca.ts';
import { writeIdentity } from '../../test/netns/mtlsfixture.ts';
import { ALPN, looksLikeTls, peerSpiffeId, protocolOfAlpn, WorkloadIdentity } from './tls.ts';

const H = 3_600_000;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function identityDir(
  ca: CertificateAuthority,
  sa: string,
  opts: { now?: Date; lifetimeMs?: number; roots?: string[] } = {},
) {
  const dir = mkdtempSync(join(tmpdir(), 'weft-id-'));
  dirs.push(dir);
  await writeIdentity(dir, ca, sa, opts);
  return dir;
}

/** An mTLS echo server that answers with the client's SPIFFE ID. */
async function server(id: WorkloadIdentity) {
  const errors: string[] = [];
  const srv = tls.createServer(id.serverOptions(), (s) => {
    s.on('error', () => {});
    s.write(`${peerSpiffeId(s)} ${s.alpnProtocol}\n`);
    s.pipe(s);
  });
  srv.on('tlsClientError', (e) => errors.push((e as Error & { code?: string }).code ?? e.message));
  id.track(srv);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { srv, port: (srv.address() as { port: number }).port, errors };
}

/** Reads until `text` arrives, leaving the socket open. */
function readUntil(sock: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    const onData = (chunk: Buffer) => {
      data += chunk;
      if (data.includes(text)) {
        sock.off('data', onData);
        resolve(data);
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
  });
}

async function firstLine(sock: tls.TLSSocket): Promise<string> {
  return (await readUntil(sock, '\n')).split('\n')[0]!;
}

test('two workloads: TLS 1.3, ALPN, and each side sees the other SPIFFE ID', async () => {
  const ca = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * H, now: new Date() });
  const api = new WorkloadIdentity(await identityDir(ca, 'api'));
  const web = new WorkloadIdentity(await identityDir(ca, 'web'));
  assert.equal(api.id, 'spiffe://cluster.local/ns/shop/sa/api');
  const { srv, port } = await server(api);
  const sock = web.connect({ host: '127.0.0.1', port, expectedId: api.id, protocol: 'h2' });
  await once(sock, 'secureConnect');
  assert.equal(sock.getProtocol(), 'TLSv1.3');
  assert.equal(sock.alpnProtocol, ALPN.h2);
  assert.equal(protocolOfAlpn(sock.alpnProtocol), 'h2');
  assert.equal(peerSpiffeId(sock), 'spiffe://cluster.local/ns/shop/sa/api');
  assert.equal(await firstLine(sock), `spiffe://cluster.local/ns/shop/sa/web ${ALPN.h2}`);
  sock.destroy();
  srv.close();
});

test('a server presenting another identity than the endpoint advertises is refused by the client', async () => {
  const ca = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * H, now: new Date() });
  const impostor = new WorkloadIdentity(await identityDir(ca, 'impostor'));
  const web = new WorkloadIdentity(await identityDir(ca, 'web'));
  const { srv, port } = await server(impostor);
  const sock = web.connect({
    host: '127.0.0.1',
    port,
    expectedId: 'spiffe://cluster.local/ns/shop/sa/api',
    protocol: 'tcp',
  });
  const [err] = (await once(sock, 'error')) as [Error & { code: string }];
  assert.equal(err.code, 'WEFT_PEER_IDENTITY');
  assert.match(
    err.message,
    /presented spiffe:\/\/cluster\.local\/ns\/shop\/sa\/impostor, but the endpoint's identity is spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api/,
  );
  srv.close();
});

test('a certificate from a foreign CA is refused, in both directions', async () => {
  const ours = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * H, now: new Date() });
  const theirs = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * H, now: new Date() });
  const api = new WorkloadIdentity(await identityDir(ours, 'api'));
  const foreign = new WorkloadIdentity(await identityDir(theirs, 'web'));
  const { srv, port } = await server(api);
  const sock = foreign.connect({ host: '127.0.0.1', port, protocol: 'tcp' });
  const [err] = (await once(sock, 'error')) as [Error & { code: string }];
  assert.match(err.code, /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/);
  srv.close();

  // The other way: our client does not trust a server signed by the foreign CA.
  const foreignServer = await server(new WorkloadIdentity(await identityDir(theirs, 'api')));
  const web = new WorkloadIdentity(await identityDir(ours, 'web'));
  const s2 = web.connect({ host: '127.0.0.1', port: foreignServer.port, protocol: 'tcp' });
  const [err2] = (await once(s2, 'error')) as [Error & { code: string }];
  assert.match(err2.code, /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/);
  foreignServer.srv.close();
});

test('an expired client certificate is refused by the server', async () => {
  const long = new Date(Date.now() - 10 * H);
  const ca = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 48 * H, now: long });
  const api = new WorkloadIdentity(await identityDir(ca, 'api'));
  const old = new WorkloadIdentity(await identityDir(ca, 'web', { now: long, lifetimeMs: H }));
  let served = 0;
  const { srv, port, errors } = await server(api);
  srv.on('secureConnection', () => served++);
  const sock = old.connect({ host: '127.0.0.1', port, protocol: 'tcp' });
  let received = '';
  sock.on('data', (d) => (received += d));
  sock.on('error', () => {});
  // In TLS 1.3 the server checks the client's certificate after the client finished its side
  // of the handshake; on failure it drops the connection before serving anything.
  await once(sock, 'close');
  assert.equal(served, 0, 'the server never accepted the connection');
  assert.equal(received, '', 'nothing was served');
  assert.equal(errors.length, 1, 'the server reported the refused handshake');
  srv.close();
});

test('renewed certificate files are picked up for new connections while open ones keep working', async () => {
  const ca = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * H, now: new Date() });
  const apiDir = await identityDir(ca, 'api');
  const reloads: (Error | undefined)[] = [];
  const api = new WorkloadIdentity(apiDir, (e) => reloads.push(e)).watch();
  const web = new WorkloadIdentity(await identityDir(ca, 'web'));
  const { srv, port } = await server(api);

  const open = web.connect({ host: '127.0.0.1', port, expectedId: api.id, protocol: 'tcp' });
  await once(open, 'secureConnect');
  const serialBefore = open.getPeerCertificate().serialNumber;
  await firstLine(open);

  // Rotate the server's certificate on disk; the watcher reloads it.
  await writeIdentity(apiDir, ca, 'api');
  for (let i = 0; i < 100 && reloads.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(reloads, [undefined], 'one successful reload');

  const fresh = web.connect({ host: '127.0.0.1', port, expectedId: api.id, protocol: 'tcp' });
  await once(fresh, 'secureConnect');
  assert.notEqual(
    fresh.getPeerCertificate().serialNumber,
    serialBefore,
    'new connections get the renewed certificate',
  );
  fresh.destroy();

  // The connection opened before the rotation still echoes.
  open.write('still here\n');
  assert.match(await readUntil(open, 'still here'), /still here/);
  open.destroy();

  // A certificate read before its new key arrived (two separate renames) is refused, and the
  // previous identity stays: OpenSSL alone would accept the pair and fail every handshake.
  const keyBefore = readFileSync(join(apiDir, 'tls.key'), 'utf8');
  const renewed = await issueWorkloadCertificate(ca, {
    trustDomain: 'cluster.local',
    namespace: 'shop',
    serviceAccount: 'api',
    lifetimeMs: H,
    now: new Date(),
  });
  writeFileSync(join(apiDir, 'tls.crt'), renewed.chainPem);
  assert.equal(api.reload(), false);
  assert.equal((reloads.at(-1) as unknown as { code: string }).code, 'WEFT_IDENTITY_MISMATCH');
  const stillOld = web.connect({ host: '127.0.0.1', port, expectedId: api.id, protocol: 'tcp' });
  await once(stillOld, 'secureConnect');
  stillOld.destroy();
  writeFileSync(join(apiDir, 'tls.key'), renewed.keyPem);
  assert.equal(api.reload(), true, 'the matching pair is accepted once both files are there');
  assert.notEqual(keyBefore, renewed.keyPem);

  // A broken write (a key that is not a key) is refused and the previous identity stays.
  writeFileSync(join(apiDir, 'tls.key'), 'not a key');
  assert.equal(api.reload(), false);
  assert.equal((reloads.at(-1) as unknown as { code: string }).code, 'WEFT_IDENTITY_INVALID');
  const after2 = web.connect({ host: '127.0.0.1', port, expectedId: api.id, protocol: 'tcp' });
  await once(after2, 'secureConnect');
  after2.destroy();
  api.close();
  srv.close();
});

test('TLS detection looks at the record header only', () => {
  assert.equal(looksLikeTls(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])), true);
  assert.equal(looksLikeTls(Buffer.from('GET / HTTP/1.1\r\n')), false);
  assert.equal(looksLikeTls(Buffer.from('PRI * HTTP/2.0')), false);
});

test('a TLS session resumes until the server reloads its identity: no ticket outlives the certificate it was issued under', async () => {
  const ca = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * H, now: new Date() });
  const apiDir = await identityDir(ca, 'api');
  const api = new WorkloadIdentity(apiDir);
  const web = new WorkloadIdentity(await identityDir(ca, 'web'));
  const { srv, port } = await server(api);
  /** Connects (offering `session`) and answers whether it resumed and the ticket to offer next. */
  const visit = async (session?: Buffer) => {
    const s = web.connect({ host: '127.0.0.1', port, expectedId: api.id, protocol: 'tcp', session });
    const ticket = new Promise<Buffer>((r) => s.once('session', r));
    s.resume();
    await once(s, 'secureConnect');
    // A resumed handshake may bring no new ticket: the one offered stays usable.
    const resumed = s.isSessionReused();
    const got = { resumed, ticket: resumed && session ? session : await ticket };
    s.destroy();
    return got;
  };
  const first = await visit();
  assert.equal(first.resumed, false);
  const second = await visit(first.ticket);
  assert.equal(second.resumed, true, 'a ticket from the same identity resumes');
  // A new certificate for the server: tickets issued before are refused, a full handshake follows.
  await writeIdentity(apiDir, ca, 'api');
  assert.equal(api.reload(), true);
  const third = await visit(second.ticket);
  assert.equal(third.resumed, false, 'a ticket issued before the reload does not resume');
  srv.close();
});

test('the trust summary names the roots of ca.crt and the one that issued the certificate', async () => {
  const now = new Date();
  const a = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: H, now });
  const b = await createRoot({ trustDomain: 'cluster.local', lifetimeMs: H, now });
  const fp = (pem: string) => new X509Certificate(pem).fingerprint256;
  const both = new WorkloadIdentity(await identityDir(b, 'web', { roots: [a.certPem, b.certPem] }));
  assert.deepEqual(both.trust, { roots: [fp(a.certPem), fp(b.certPem)].sort(), signedBy: fp(b.certPem) });
  // A certificate none of the trusted roots issued: no signedBy.
  const foreign = new WorkloadIdentity(await identityDir(b, 'web', { roots: [a.certPem] }));
  assert.deepEqual(foreign.trust, { roots: [fp(a.certPem)] });
});
