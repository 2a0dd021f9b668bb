// What the real-node scenario "webhook certificate rotated" (hack/lib/faults.ts
// webhookCertRotation) does to the webhook's Secret, and what it checks: the serving
// certificate made due for renewal (a certificate from the same CA whose two thirds of life
// have passed), the CA made due for replacement (the same CA key and name re-issued to expire
// within a year), and whether the caBundle verifies the certificate a replica serves.
// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { splitPem } from '../../api/pem.ts';
import { crypto, EC, selfSignedCa } from '../../api/pki.ts';
import { issueServingCertificate } from '../../webhook/tls.ts';

const DAY = 86_400_000;

type Data = Record<string, string>;
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** The Secret's data with a serving certificate from its own CA, 300 of its 365 days gone. */
export async function servingCertDue(data: Data): Promise<Data> {
  const leaf = new X509Certificate(unb64(data['tls.crt']));
  const names = (leaf.subjectAltName ?? '').split(', ');
  const c = await issueServingCertificate(
    {
      dnsNames: names.filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4)),
      ipAddresses: names.filter((n) => n.startsWith('IP Address:')).map((n) => n.slice(11)),
      now: new Date(Date.now() - 300 * DAY),
      servingLifetimeMs: 365 * DAY,
    },
    { caPem: unb64(data['ca.crt']), caKeyPem: unb64(data['ca.key']) },
  );
  return { ...data, 'tls.crt': b64(c.certPem), 'tls.key': b64(c.keyPem) };
}

/** The Secret's data with its CA re-issued (same key and name, so the served certificate still verifies) to expire in 300 days. */
export async function caDue(data: Data): Promise<Data> {
  const ca = new x509.X509Certificate(unb64(data['ca.crt']));
  const privateKey = await crypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(unb64(data['ca.key'])),
    EC,
    true,
    ['sign'],
  );
  const publicKey = await ca.publicKey.export(EC, ['verify'], crypto);
  const again = await selfSignedCa({
    name: ca.subject,
    now: new Date(),
    lifetimeMs: 300 * DAY,
    pathLength: 0,
    keys: { privateKey, publicKey },
  });
  return { ...data, 'ca.crt': b64(again.certPem) };
}

/** The certificate served at host:port, or undefined when it cannot be reached. */
export function servedCertificate(host: string, port: number): Promise<X509Certificate | undefined> {
  return new Promise((resolve) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, timeout: 3000 }, () => {
      const c = s.getPeerX509Certificate();
      s.end();
      resolve(c);
    });
    s.on('timeout', () => s.destroy());
    s.on('error', () => resolve(undefined));
    s.on('close', () => resolve(undefined));
  });
}

/** Whether a CA of the PEM bundle issued the certificate. */
export function bundleVerifies(bundlePem: string, cert: X509Certificate): boolean {
  return splitPem(bundlePem)
    .map((p) => new X509Certificate(p))
    .some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
}
