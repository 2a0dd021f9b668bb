// The webhook's serving certificate. In bootstrap mode the webhook keeps its own CA (ECDSA
// P-256, 10 years) and a serving certificate (1 year) in a Secret, renews the serving
// certificate at two thirds of its life with the same CA (so the caBundle does not change),
// and writes the CA into the webhook configurations' caBundle. In cert-manager mode
// cert-manager writes the Secret and the cainjector the caBundle; the webhook only reads it.
// Either way the server reloads the certificate without a restart.
//
// The CA itself is replaced a year before it expires, in two steps, so that no replica ever
// serves a certificate the caBundle does not verify (the apiserver would refuse pods: the
// injector's failurePolicy is Fail): first the next CA is written into the Secret
// (`next-ca.crt`) and every replica adds it to the caBundle at its reload; only caSwitchAfterMs
// later does a replica issue the serving certificate from it, keeping the replaced CA in the
// Secret (`previous-ca.crt`) and in the caBundle for previousCaOverlapMs, while the other
// replicas pick the new certificate up at their own reloads.
// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import {
  crypto,
  EC,
  exportPkcs8,
  newKeyPair,
  pemFile,
  SIGN,
  selfSignedCa,
  serialNumber,
} from '../api/pki.ts';
import { type KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../kube/client.ts';
import { isConflict } from '../kube/errors.ts';
import { WEBHOOK_ERROR_CODES, WebhookError } from './errors.ts';

const DAY = 86_400_000;

export const CA_LIFETIME_MS = 3650 * DAY;
export const SERVING_LIFETIME_MS = 365 * DAY;

export interface ServingCertificate {
  caPem: string;
  /** The CA's private key; absent in cert-manager mode. */
  caKeyPem?: string;
  /** A CA replacing this one: in the caBundle already, signing from `since` + caSwitchAfterMs. */
  nextCa?: { caPem: string; caKeyPem: string; since: Date };
  /** The CA this one replaced: still in the caBundle until `until` (replicas may serve its certificate). */
  previousCa?: { caPem: string; until: Date };
  certPem: string;
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
}

export interface CertOptions {
  /** DNS names the certificate covers (the Service's names in-cluster). */
  dnsNames: string[];
  /** IP addresses it covers (127.0.0.1 when the apiserver calls a URL on loopback). */
  ipAddresses: string[];
  now: Date;
  servingLifetimeMs?: number;
  /** How long a next CA is in the caBundle before certificates are issued from it (default 2 min). */
  caSwitchAfterMs?: number;
  /** How long a replaced CA stays in the caBundle (default 1 h). */
  previousCaOverlapMs?: number;
}

export const DEFAULT_CA_SWITCH_AFTER_MS = 120_000;
export const DEFAULT_PREVIOUS_CA_OVERLAP_MS = 3_600_000;

/** The CAs the webhook configurations must trust now: the current one, a next one, a replaced one in its overlap. */
export function caBundleOf(c: ServingCertificate, now: Date): string {
  return pemFile(
    [
      c.caPem,
      c.nextCa?.caPem,
      c.previousCa && now.getTime() < c.previousCa.until.getTime() ? c.previousCa.caPem : undefined,
    ].filter((p): p is string => !!p),
  );
}

async function generateCa(now: Date): Promise<{ caPem: string; caKeyPem: string }> {
  const { certPem, keyPem } = await selfSignedCa({
    name: `O=Weft, CN=weft-webhook-ca ${now.toISOString()}`,
    now,
    lifetimeMs: CA_LIFETIME_MS,
    pathLength: 0,
  });
  return { caPem: certPem, caKeyPem: keyPem };
}

/** A serving certificate signed by the given CA (or by a new CA when none is given). */
export async function issueServingCertificate(
  opts: CertOptions,
  ca?: { caPem: string; caKeyPem: string },
): Promise<ServingCertificate> {
  const authority = ca ?? (await generateCa(opts.now));
  const caCert = new x509.X509Certificate(authority.caPem);
  const caKey = await crypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(authority.caKeyPem),
    EC,
    false,
    ['sign'],
  );
  const keys = await newKeyPair();
  const notBefore = new Date(opts.now.getTime() - 60_000);
  const notAfter = new Date(
    Math.min(opts.now.getTime() + (opts.servingLifetimeMs ?? SERVING_LIFETIME_MS), caCert.notAfter.getTime()),
  );
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `O=Weft, CN=${opts.dnsNames[0] ?? opts.ipAddresses[0] ?? 'weft-webhook'}`,
    issuer: caCert.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...opts.dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...opts.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return {
    caPem: authority.caPem,
    caKeyPem: authority.caKeyPem,
    certPem: cert.toString('pem'),
    keyPem: await exportPkcs8(keys.privateKey),
    notBefore,
    notAfter,
  };
}

/** Why the stored certificate cannot be served as is, or undefined when it can. */
export function renewalReason(cert: ServingCertificate, opts: CertOptions): string | undefined {
  const leaf = new x509.X509Certificate(cert.certPem);
  const life = leaf.notAfter.getTime() - leaf.notBefore.getTime();
  if (opts.now.getTime() >= leaf.notBefore.getTime() + (life * 2) / 3)
    return 'two thirds of its lifetime have passed';
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  const names = new Set((san?.names.items ?? []).map((n) => n.value));
  const missing = [...opts.dnsNames, ...opts.ipAddresses].filter((n) => !names.has(n));
  if (missing.length > 0) return `it does not cover ${missing.join(', ')}`;
  const ca = new x509.X509Certificate(cert.caPem);
  if (opts.now.getTime() >= ca.notAfter.getTime() - SERVING_LIFETIME_MS)
    return 'its CA expires within a year';
  return undefined;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

type SecretObj = KubeObject & { type?: string; data?: Record<string, string> };
type WebhookConfigurationObj = KubeObject & { webhooks?: { clientConfig: { caBundle?: string } }[] };

export function fromSecret(secret: { data?: Record<string, string> }): ServingCertificate | undefined {
  const d = secret.data ?? {};
  const certPem = unb64(d['tls.crt']);
  const keyPem = unb64(d['tls.key']);
  const caPem = unb64(d['ca.crt']);
  if (!certPem || !keyPem || !caPem) return undefined;
  try {
    const leaf = new x509.X509Certificate(certPem);
    const caKeyPem = unb64(d['ca.key']);
    const next = {
      caPem: unb64(d['next-ca.crt']),
      caKeyPem: unb64(d['next-ca.key']),
      since: unb64(d['next-ca.since']),
    };
    const previous = { caPem: unb64(d['previous-ca.crt']), until: unb64(d['previous-ca.until']) };
    const date = (t: string) => (Number.isNaN(Date.parse(t)) ? undefined : new Date(t));
    const since = date(next.since);
    const until = date(previous.until);
    return {
      caPem,
      certPem,
      keyPem,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      ...(caKeyPem ? { caKeyPem } : {}),
      ...(next.caPem && next.caKeyPem && since
        ? { nextCa: { caPem: next.caPem, caKeyPem: next.caKeyPem, since } }
        : {}),
      ...(previous.caPem && until ? { previousCa: { caPem: previous.caPem, until } } : {}),
    };
  } catch {
    return undefined;
  }
}

function toSecretData(c: ServingCertificate): Record<string, string> {
  const data: Record<string, string> = {
    'tls.crt': b64(c.certPem),
    'tls.key': b64(c.keyPem),
    'ca.crt': b64(c.caPem),
  };
  if (c.caKeyPem) data['ca.key'] = b64(c.caKeyPem);
  if (c.nextCa) {
    data['next-ca.crt'] = b64(c.nextCa.caPem);
    data['next-ca.key'] = b64(c.nextCa.caKeyPem);
    data['next-ca.since'] = b64(c.nextCa.since.toISOString());
  }
  if (c.previousCa) {
    data['previous-ca.crt'] = b64(c.previousCa.caPem);
    data['previous-ca.until'] = b64(c.previousCa.until.toISOString());
  }
  return data;
}

/**
 * Bootstrap mode: returns the certificate stored in the Secret, creating or renewing it
 * first when needed. Safe with several replicas: creation and replacement are conditional,
 * and the loser of a race reads the winner's certificate.
 */
export async function ensureServingSecret(
  client: KubeClient,
  ref: { namespace: string; name: string },
  opts: CertOptions,
  log: (msg: string) => void = () => {},
): Promise<ServingCertificate> {
  for (let attempt = 0; attempt < 5; attempt++) {
    let secret: SecretObj | undefined;
    try {
      secret = await client.find<SecretObj>(RESOURCES.secrets, ref.name, ref.namespace);
    } catch (err) {
      throw new WebhookError(WEBHOOK_ERROR_CODES.TLS, `reading Secret ${ref.namespace}/${ref.name} failed`, {
        cause: err,
      });
    }
    const current = secret && fromSecret(secret);
    const why = current ? renewalReason(current, opts) : 'there is none';
    if (current && !why) return current;
    const now = opts.now.getTime();
    // A replaced CA still in its overlap stays in the Secret (and the caBundle).
    const previousCa =
      current?.previousCa && now < current.previousCa.until.getTime() ? current.previousCa : undefined;
    let next: ServingCertificate;
    if (current?.caKeyPem && why?.startsWith('its CA')) {
      if (!current.nextCa) {
        // First the next CA goes into the caBundle; the serving certificate stays.
        const ca = await generateCa(opts.now);
        next = { ...current, previousCa, nextCa: { ...ca, since: opts.now } };
        log(
          `publishing a new webhook CA in the caBundle because ${why}; the serving certificate is issued from it after ${(opts.caSwitchAfterMs ?? DEFAULT_CA_SWITCH_AFTER_MS) / 1000} s`,
        );
      } else if (
        now <
        current.nextCa.since.getTime() + (opts.caSwitchAfterMs ?? DEFAULT_CA_SWITCH_AFTER_MS)
      ) {
        return current;
      } else {
        // Every replica has had time to publish the next CA: serve from it; the old one stays trusted.
        next = {
          ...(await issueServingCertificate(opts, current.nextCa)),
          previousCa: {
            caPem: current.caPem,
            until: new Date(now + (opts.previousCaOverlapMs ?? DEFAULT_PREVIOUS_CA_OVERLAP_MS)),
          },
        };
        log(
          `issuing a webhook serving certificate from the new CA published at ${current.nextCa.since.toISOString()}`,
        );
      }
    } else {
      // Keep the CA when it can still sign, so the caBundle stays valid across renewals.
      const keepCa =
        current?.caKeyPem && !(why ?? '').startsWith('its CA')
          ? { caPem: current.caPem, caKeyPem: current.caKeyPem }
          : undefined;
      next = await issueServingCertificate(opts, keepCa);
      if (keepCa) {
        if (previousCa) next.previousCa = previousCa;
        if (current?.nextCa) next.nextCa = current.nextCa;
      } else if (current) {
        // A new CA at once (the Secret had no CA key): the replaced one stays trusted.
        next.previousCa = {
          caPem: current.caPem,
          until: new Date(now + (opts.previousCaOverlapMs ?? DEFAULT_PREVIOUS_CA_OVERLAP_MS)),
        };
      }
      log(`issuing a webhook serving certificate because ${why}`);
    }
    const body: SecretObj = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {
        name: ref.name,
        namespace: ref.namespace,
        labels: { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'webhook' },
        ...(secret?.metadata.resourceVersion ? { resourceVersion: secret.metadata.resourceVersion } : {}),
      },
      data: toSecretData(next),
    };
    try {
      if (secret) await client.update(RESOURCES.secrets, body);
      else await client.create(RESOURCES.secrets, body);
      return next;
    } catch (err) {
      if (isConflict(err)) continue; // another replica wrote it first: read theirs
      throw new WebhookError(WEBHOOK_ERROR_CODES.TLS, `writing Secret ${ref.namespace}/${ref.name} failed`, {
        cause: err,
      });
    }
  }
  throw new WebhookError(
    WEBHOOK_ERROR_CODES.TLS,
    `Secret ${ref.namespace}/${ref.name} kept changing under us`,
  );
}

/** cert-manager mode: reads the Secret cert-manager writes; undefined until it exists. */
export async function readServingSecret(
  client: KubeClient,
  ref: { namespace: string; name: string },
): Promise<ServingCertificate | undefined> {
  let secret: SecretObj | undefined;
  try {
    secret = await client.find<SecretObj>(RESOURCES.secrets, ref.name, ref.namespace);
  } catch (err) {
    throw new WebhookError(WEBHOOK_ERROR_CODES.TLS, `reading Secret ${ref.namespace}/${ref.name} failed`, {
      cause: err,
    });
  }
  return secret && fromSecret(secret);
}

/**
 * Writes caBundle into every webhook of the named configurations that does not already carry
 * it. Missing configurations are skipped (they may be applied later; the next reload patches
 * them). Returns the names of the configurations changed.
 */
export async function patchCaBundles(
  client: KubeClient,
  caPem: string,
  names: { mutating?: string[]; validating?: string[] },
): Promise<string[]> {
  const bundle = b64(caPem);
  const changed: string[] = [];
  const update = async (type: ResourceType, name: string) => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cfg = await client.find<WebhookConfigurationObj>(type, name);
      if (!cfg) return;
      const hooks = cfg.webhooks ?? [];
      if (hooks.every((h) => h.clientConfig.caBundle === bundle)) return;
      for (const h of hooks) h.clientConfig.caBundle = bundle;
      try {
        await client.update(type, cfg);
        changed.push(name);
        return;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
  };
  for (const name of names.mutating ?? []) await update(RESOURCES.mutatingWebhookConfigurations, name);
  for (const name of names.validating ?? []) await update(RESOURCES.validatingWebhookConfigurations, name);
  return changed;
}

/** SHA-256 fingerprint of a PEM certificate (hex), for logs and tests. */
export async function fingerprint(certPem: string): Promise<string> {
  const der = x509.PemConverter.decodeFirst(certPem);
  return Buffer.from(await crypto.subtle.digest('SHA-256', der)).toString('hex');
}
