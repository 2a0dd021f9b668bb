// The mesh's built-in certificate authority: a root (generated, or supplied by the user as
// a root or intermediate), and one ECDSA P-256 workload certificate per ServiceAccount with
// the URI SAN spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. Pure functions of
// their inputs and a clock, on @peculiar/x509 over WebCrypto; the identity controller stores
// the results in Secrets.
// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import type { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { CodedError } from '../../api/errors.ts';
import {
  crypto,
  EC,
  exportPkcs8,
  newKeyPair,
  pemFile,
  SIGN,
  selfSignedCa,
  serialNumber,
} from '../../api/pki.ts';

export class IdentityError extends CodedError {}

export interface CertificateAuthority {
  /** The signing certificate (root or intermediate), PEM. */
  certPem: string;
  /** Its PKCS#8 private key, PEM. */
  keyPem: string;
  /** Certificates above the signer up to the root (empty for a root), PEM. */
  chainPem: string[];
  /** The root(s) that peers must trust, PEM. */
  rootsPem: string[];
  notAfter: Date;
}

export interface WorkloadCertificate {
  spiffeId: string;
  certPem: string;
  keyPem: string;
  /** The leaf followed by intermediates: what a TLS server or client presents. */
  chainPem: string;
  notBefore: Date;
  notAfter: Date;
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

async function importSigningKey(pem: string): Promise<webcrypto.CryptoKey> {
  try {
    const der = x509.PemConverter.decodeFirst(pem);
    return await crypto.subtle.importKey('pkcs8', der, EC, true, ['sign']);
  } catch (err) {
    throw new IdentityError(
      'WEFT_CA_KEY',
      'the CA private key must be an ECDSA P-256 key in PKCS#8 PEM ("BEGIN PRIVATE KEY"); convert it with `openssl pkcs8 -topk8 -nocrypt`',
      { cause: err },
    );
  }
}

/** A new self-signed root for the trust domain. */
export async function createRoot(opts: {
  trustDomain: string;
  lifetimeMs: number;
  now: Date;
}): Promise<CertificateAuthority> {
  const { certPem, keyPem } = await selfSignedCa({
    name: `O=Weft, CN=weft root ${opts.trustDomain} ${opts.now.toISOString()}`,
    now: opts.now,
    lifetimeMs: opts.lifetimeMs,
    pathLength: 1,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${opts.trustDomain}` }]),
    ],
  });
  const notAfter = new Date(opts.now.getTime() + opts.lifetimeMs);
  return { certPem, keyPem, chainPem: [], rootsPem: [certPem], notAfter };
}

/**
 * A CA from user-supplied material (the Secret's tls.crt, tls.key and ca.crt): tls.crt may be
 * the root itself or an intermediate whose chain up to the root is in ca.crt.
 */
export async function loadCa(material: {
  certPem: string;
  keyPem: string;
  caPem?: string;
}): Promise<CertificateAuthority> {
  const certs = x509.PemConverter.decodeWithHeaders(material.certPem).filter((p) => p.type === 'CERTIFICATE');
  if (certs.length === 0)
    throw new IdentityError('WEFT_CA_CERT', 'tls.crt of the CA Secret holds no certificate');
  const signer = new x509.X509Certificate(certs[0]!.rawData);
  const bc = signer.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca)
    throw new IdentityError(
      'WEFT_CA_CERT',
      'tls.crt of the CA Secret is not a CA certificate (basicConstraints CA:TRUE)',
    );
  const key = await importSigningKey(material.keyPem);
  // The key must belong to the certificate: sign and verify a probe.
  const probe = new TextEncoder().encode('weft');
  const sig = await crypto.subtle.sign(SIGN, key, probe);
  const pub = await signer.publicKey.export(EC, ['verify'], crypto);
  if (!(await crypto.subtle.verify(SIGN, pub, sig, probe))) {
    throw new IdentityError('WEFT_CA_MISMATCH', 'tls.key of the CA Secret does not match tls.crt');
  }
  const extra = [
    ...certs.slice(1),
    ...x509.PemConverter.decodeWithHeaders(material.caPem ?? '').filter((p) => p.type === 'CERTIFICATE'),
  ].map((p) => new x509.X509Certificate(p.rawData));
  const isSelfSigned = await signer.isSelfSigned();
  const roots = isSelfSigned ? [signer] : extra.filter((c) => c.subject === c.issuer);
  if (roots.length === 0)
    throw new IdentityError('WEFT_CA_CHAIN', 'an intermediate CA needs its root in ca.crt of the CA Secret');
  return {
    certPem: signer.toString('pem'),
    keyPem: material.keyPem,
    chainPem: isSelfSigned ? [] : extra.filter((c) => c.subject !== c.issuer).map((c) => c.toString('pem')),
    rootsPem: roots.map((r) => r.toString('pem')),
    notAfter: signer.notAfter,
  };
}

/** Issues the workload certificate of one ServiceAccount. */
export async function issueWorkloadCertificate(
  ca: CertificateAuthority,
  opts: { trustDomain: string; namespace: string; serviceAccount: string; lifetimeMs: number; now: Date },
): Promise<WorkloadCertificate> {
  const id = spiffeId(opts.trustDomain, opts.namespace, opts.serviceAccount);
  const signer = new x509.X509Certificate(ca.certPem);
  const signingKey = await importSigningKey(ca.keyPem);
  const keys = await newKeyPair();
  const notBefore = new Date(opts.now.getTime() - 60_000);
  // Never outlive the CA that signs it.
  const notAfter = new Date(Math.min(opts.now.getTime() + opts.lifetimeMs, signer.notAfter.getTime()));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `O=Weft, CN=${opts.serviceAccount}.${opts.namespace}`,
    issuer: signer.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true),
      await x509.AuthorityKeyIdentifierExtension.create(signer.publicKey),
    ],
  });
  const certPem = cert.toString('pem');
  return {
    spiffeId: id,
    certPem,
    keyPem: await exportPkcs8(keys.privateKey),
    chainPem: pemFile(
      [certPem, ca.certPem !== ca.rootsPem[0] ? ca.certPem : '', ...ca.chainPem].filter(Boolean),
    ),
    notBefore,
    notAfter,
  };
}

/**
 * When a certificate must be renewed: renewBeforeMs before it expires (default: a third of
 * its lifetime, i.e. at two thirds of it).
 */
export function renewalTime(cert: { notBefore: Date; notAfter: Date }, renewBeforeMs?: number): Date {
  const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime();
  const before = Math.min(renewBeforeMs ?? lifetime / 3, lifetime);
  return new Date(cert.notAfter.getTime() - before);
}

/** The validity and SPIFFE ID of a PEM certificate (the first in the text). */
export function inspect(certPem: string): {
  spiffeId?: string;
  notBefore: Date;
  notAfter: Date;
  issuer: string;
  subject: string;
} {
  const cert = new x509.X509Certificate(certPem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uri = san?.names.items.find((n) => n.type === 'url')?.value;
  return {
    spiffeId: uri,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    issuer: cert.issuer,
    subject: cert.subject,
  };
}

/**
 * The roots peers trust during a CA rotation: the new root, plus the previous ones until
 * their overlap ends (workloads still present certificates they signed until renewal).
 */
export function trustBundle(
  current: string[],
  previous: { pem: string; trustedUntil: Date }[],
  now: Date,
): string[] {
  const out = [...current];
  for (const p of previous)
    if (p.trustedUntil.getTime() > now.getTime() && !out.includes(p.pem)) out.push(p.pem);
  return out;
}
