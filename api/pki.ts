// ECDSA P-256 certificates on WebCrypto with @peculiar/x509: what the mesh CA
// (operator/identity/ca.ts) and the webhook's own CA (webhook/tls.ts) share. Not re-exported from
// api/index.ts, so importing the API does not load the X.509 library.
// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

export const crypto = webcrypto;
x509.cryptoProvider.set(crypto);

export const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A random positive 128-bit serial number, hex. */
export function serialNumber(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0]! &= 0x7f;
  return Buffer.from(b).toString('hex');
}

/**
 * PEM blocks as one file (a chain or a trust bundle), one after the other on their own lines: a
 * bare join glues "-----END CERTIFICATE----------BEGIN CERTIFICATE-----", and OpenSSL then
 * trusts or sends only one of them. One block comes out as it went in.
 */
export function pemFile(pems: readonly string[]): string {
  return pems.map((p) => p.trim()).join('\n');
}

/** A new ECDSA P-256 key pair (extractable, for PKCS#8 export). */
export async function newKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/** A private key as PKCS#8 PEM. */
export async function exportPkcs8(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/**
 * A self-signed CA with a new key: CA:TRUE with `pathLength`, keyCertSign and cRLSign, a subject
 * key identifier and `extensions`; valid from a minute before `now` (clock skew) for `lifetimeMs`.
 */
export async function selfSignedCa(opts: {
  name: string;
  now: Date;
  lifetimeMs: number;
  pathLength: number;
  extensions?: x509.Extension[];
  /** An existing key pair (the same CA re-issued with other dates); default a new one. */
  keys?: webcrypto.CryptoKeyPair;
}): Promise<{ cert: x509.X509Certificate; certPem: string; keyPem: string }> {
  const keys = opts.keys ?? (await newKeyPair());
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: opts.name,
    notBefore: new Date(opts.now.getTime() - 60_000),
    notAfter: new Date(opts.now.getTime() + opts.lifetimeMs),
    keys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, opts.pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ...(opts.extensions ?? []),
    ],
  });
  return { cert, certPem: cert.toString('pem'), keyPem: await exportPkcs8(keys.privateKey) };
}
