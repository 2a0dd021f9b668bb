// The serving certificate: what it covers, when it is renewed, and that a renewal keeps the
// CA (so the caBundle in the webhook configurations stays valid).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { fromSecret, issueServingCertificate, renewalReason, SERVING_LIFETIME_MS } from './tls.ts';

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
