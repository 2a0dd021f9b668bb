// The serving certificate: what it covers, when it is renewed, and that a renewal keeps the
// CA (so the caBundle in the webhook configurations stays valid).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import {
  caBundleOf,
  fromSecret,
  issueServingCertificate,
  renewalReason,
  SERVING_LIFETIME_MS,
} from './tls.ts';

const NAMES = { dnsNames: ['weft-webhook.weft-system.svc'], ipAddresses: ['127.0.0.1'] };
const T0 = new Date('2026-01-01T00:00:00Z');

test('the serving certificate covers the Service name and loopback, and chains to its CA', async () => {
  const c = await issueServingCertificate({ ...NAMES, now: T0 });
  const leaf = new X509Certificate(c.certPem);
  const ca = new X509Certificate(c.caPem);
  assert.match(leaf.subjectAltName!, /DNS:weft-webhook\.weft-system\.svc/);
  assert.match(leaf.subjectAltName!, /IP Address:127\.0\.0\.1/);
  assert.ok(leaf.verify(ca.publicKey), 'signed by the CA');
  assert.ok(ca.ca && !leaf.ca);
  assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'ECDSA P-256');
  assert.ok(leaf.checkPrivateKey(await import('node:crypto').then((m) => m.createPrivateKey(c.keyPem))));
});

test('renewal is due at two thirds of the lifetime or when a name is missing, and keeps the CA', async () => {
  const c = await issueServingCertificate({ ...NAMES, now: T0 });
  assert.equal(
    renewalReason(c, { ...NAMES, now: new Date(T0.getTime() + SERVING_LIFETIME_MS / 2) }),
    undefined,
  );
  assert.match(
    renewalReason(c, { ...NAMES, now: new Date(T0.getTime() + (SERVING_LIFETIME_MS * 2) / 3 + 60_000) })!,
    /two thirds/,
  );
  assert.match(
    renewalReason(c, { ...NAMES, dnsNames: ['other.svc'], now: T0 })!,
    /does not cover other\.svc/,
  );
  const renewed = await issueServingCertificate(
    { ...NAMES, now: T0 },
    { caPem: c.caPem, caKeyPem: c.caKeyPem! },
  );
  assert.equal(renewed.caPem, c.caPem);
  assert.notEqual(renewed.certPem, c.certPem);
  assert.ok(new X509Certificate(renewed.certPem).verify(new X509Certificate(c.caPem).publicKey));
});

test('a Secret round-trips; an incomplete one reads as absent', async () => {
  const c = await issueServingCertificate({ ...NAMES, now: T0 });
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const secret = {
    data: {
      'tls.crt': b64(c.certPem),
      'tls.key': b64(c.keyPem),
      'ca.crt': b64(c.caPem),
      'ca.key': b64(c.caKeyPem!),
    },
  };
  const back = fromSecret(secret)!;
  assert.equal(back.certPem, c.certPem);
  assert.equal(back.caKeyPem, c.caKeyPem);
  assert.equal(fromSecret({ data: { 'tls.crt': b64(c.certPem) } }), undefined);
  assert.equal(
    fromSecret({ data: { 'tls.crt': b64('junk'), 'tls.key': b64('k'), 'ca.crt': b64('c') } }),
    undefined,
  );
});

test('the caBundle carries the next CA and the replaced one until its overlap ends; the Secret keeps both', async () => {
  const c = await issueServingCertificate({ ...NAMES, now: T0 });
  const next = await issueServingCertificate({ ...NAMES, now: T0 });
  const old = await issueServingCertificate({ ...NAMES, now: T0 });
  const until = new Date(T0.getTime() + 3_600_000);
  const full = {
    ...c,
    nextCa: { caPem: next.caPem, caKeyPem: next.caKeyPem!, since: T0 },
    previousCa: { caPem: old.caPem, until },
  };
  const count = (pem: string) => pem.match(/BEGIN CERTIFICATE/g)?.length ?? 0;
  assert.equal(count(caBundleOf(c, T0)), 1);
  assert.equal(count(caBundleOf(full, T0)), 3);
  assert.ok(
    !caBundleOf(full, until).includes(old.caPem.trim()),
    'the replaced CA leaves at the end of its overlap',
  );
  assert.match(
    caBundleOf(full, T0),
    /-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----/,
    'one block a line',
  );
  // Written to and read from the Secret's data unchanged.
  const data: Record<string, string> = {
    'tls.crt': c.certPem,
    'tls.key': c.keyPem,
    'ca.crt': c.caPem,
    'ca.key': c.caKeyPem!,
    'next-ca.crt': next.caPem,
    'next-ca.key': next.caKeyPem!,
    'next-ca.since': T0.toISOString(),
    'previous-ca.crt': old.caPem,
    'previous-ca.until': until.toISOString(),
  };
  const read = fromSecret({
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  })!;
  assert.deepEqual(read.nextCa, full.nextCa);
  assert.deepEqual(read.previousCa, full.previousCa);
});
