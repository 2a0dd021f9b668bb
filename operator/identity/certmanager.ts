// cert-manager mode: instead of signing, the operator asks cert-manager for each workload
// identity with a Certificate resource (same URI SAN, Secret name and renewal as the built-in
// CA), and takes the trust bundle from the issued Secret's ca.crt. workloadCertificate() is
// the pure model; reconcileCertManager() is the identity reconciler's cert-manager branch.
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import type { KubeClient, KubeObject } from '../../kube/client.ts';
import { isNotFound } from '../../kube/errors.ts';
import type { Logger } from '../../kube/log.ts';
import type { ReconcileResult } from '../../kube/queue.ts';
import { labelSelector } from '../cache.ts';
import { inspect } from './ca.ts';
import {
  CERTIFICATES,
  IDENTITY_CONDITION,
  IDENTITY_REASON,
  type IdentitySettings,
  saKey,
  splitPem,
  type TrustOutcome,
  trusted,
  unb64,
} from './model.ts';
import { IDENTITY_LABELS, identitySecretName, SERVICE_ACCOUNT_ANNOTATION } from './plan.ts';
import type { IdentitySecrets } from './secrets.ts';

export interface IssuerRef {
  name: string;
  kind?: 'Issuer' | 'ClusterIssuer';
  group?: string;
}

/** Go-style duration for cert-manager from milliseconds, e.g. 86400000 → "24h0m0s". */
export function goDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m${s % 60}s`;
}

export function workloadCertificate(opts: {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
  issuerRef: IssuerRef;
  lifetimeMs: number;
  renewBeforeMs?: number;
}): Certificate {
  const name = identitySecretName(opts.serviceAccount);
  const cert = new Certificate({
    metadata: {
      name,
      namespace: opts.namespace,
      labels: { ...IDENTITY_LABELS },
      annotations: { [SERVICE_ACCOUNT_ANNOTATION]: opts.serviceAccount },
    },
    spec: {
      secretName: name,
      secretTemplate: {
        labels: { ...IDENTITY_LABELS },
        annotations: { [SERVICE_ACCOUNT_ANNOTATION]: opts.serviceAccount },
      },
      uris: [`spiffe://${opts.trustDomain}/ns/${opts.namespace}/sa/${opts.serviceAccount}`],
      commonName: `${opts.serviceAccount}.${opts.namespace}`,
      duration: goDuration(opts.lifetimeMs),
      renewBefore: goDuration(opts.renewBeforeMs ?? opts.lifetimeMs / 3),
      privateKey: { algorithm: 'ECDSA', size: 256, rotationPolicy: 'Always', encoding: 'PKCS8' },
      usages: ['digital signature', 'key agreement', 'server auth', 'client auth'],
      issuerRef: {
        name: opts.issuerRef.name,
        kind: opts.issuerRef.kind ?? 'ClusterIssuer',
        group: opts.issuerRef.group ?? 'cert-manager.io',
      },
    },
  });
  // Validates against cert-manager's own schema; throws with the field on a mistake.
  cert.validate();
  return cert;
}

/** True when every field of `want` has the same value in `have` (arrays compared whole). */
function contains(have: unknown, want: unknown): boolean {
  if (want && typeof want === 'object' && !Array.isArray(want)) {
    if (!have || typeof have !== 'object') return false;
    return Object.entries(want).every(
      ([k, v]) => v === undefined || contains((have as Record<string, unknown>)[k], v),
    );
  }
  return JSON.stringify(have) === JSON.stringify(want);
}

/**
 * One Certificate per meshed ServiceAccount; Certificates and Secrets nobody uses removed; the
 * trust bundle is every ca.crt of the issued Secrets still in use.
 */
export async function reconcileCertManager(
  rlog: Logger,
  o: {
    client: KubeClient;
    secrets: IdentitySecrets;
    settings: IdentitySettings;
    wanted: { namespace: string; serviceAccount: string }[];
  },
): Promise<TrustOutcome & ReconcileResult> {
  const s = o.settings;
  const issuerRef = s.ca.certManager!.issuerRef;
  let certs: (KubeObject & { spec?: unknown })[];
  try {
    certs = (
      await o.client.list<KubeObject & { spec?: unknown }>(CERTIFICATES, {
        labelSelector: labelSelector(IDENTITY_LABELS),
      })
    ).items;
  } catch (err) {
    if (!isNotFound(err)) throw err;
    return {
      status: {
        condition: {
          type: IDENTITY_CONDITION,
          status: 'False',
          reason: IDENTITY_REASON.CertManagerNotInstalled,
          message:
            'ca.certManager is set but the certificates.cert-manager.io/v1 API does not exist: install cert-manager',
        },
      },
      requeueAfterMs: 60_000,
    };
  }
  const wantedKeys = new Set(o.wanted.map((w) => saKey(w.namespace, w.serviceAccount)));
  const have = new Map(
    certs.map((c) => [
      saKey(c.metadata.namespace ?? '', c.metadata.annotations?.[SERVICE_ACCOUNT_ANNOTATION] ?? ''),
      c,
    ]),
  );
  for (const w of o.wanted) {
    const cert = workloadCertificate({
      trustDomain: s.trustDomain,
      namespace: w.namespace,
      serviceAccount: w.serviceAccount,
      issuerRef: { name: issuerRef.name, kind: issuerRef.kind, group: issuerRef.group },
      lifetimeMs: s.lifetimeMs,
      renewBeforeMs: s.renewBeforeMs,
    });
    const json = cert.toJSON() as unknown as KubeObject & { spec?: unknown };
    const cur = have.get(saKey(w.namespace, w.serviceAccount));
    if (cur && contains(cur.spec, json.spec) && contains(cur.metadata.labels, json.metadata.labels)) continue;
    await o.client.apply(CERTIFICATES, json);
    rlog.info(
      { namespace: w.namespace, serviceAccount: w.serviceAccount },
      'cert-manager Certificate applied',
    );
  }
  // Certificates and issued Secrets nobody uses any more.
  const unused = new Map<string, { namespace: string; serviceAccount: string }>();
  for (const [k, c] of have)
    if (!wantedKeys.has(k))
      unused.set(k, {
        namespace: c.metadata.namespace ?? '',
        serviceAccount: c.metadata.annotations?.[SERVICE_ACCOUNT_ANNOTATION] ?? '',
      });
  const secrets = o.secrets.current();
  for (const k of secrets.keys())
    if (!wantedKeys.has(k)) {
      const [namespace, serviceAccount] = k.split('/') as [string, string];
      unused.set(k, { namespace, serviceAccount });
    }
  await o.secrets.remove(rlog, [...unused.values()], true);

  // Trust bundle: every ca.crt of the issued Secrets still in use.
  const roots = new Set<string>();
  for (const [k, sec] of secrets)
    if (wantedKeys.has(k)) for (const p of splitPem(unb64(sec.data?.['ca.crt']))) roots.add(p);
  const bundle = [...roots].sort();
  const expiries = bundle.map((p) => inspect(p).notAfter.getTime());
  return trusted(
    bundle,
    IDENTITY_REASON.CertManager,
    `cert-manager ${issuerRef.kind ?? 'ClusterIssuer'} ${issuerRef.name} issues workload certificates; ${bundle.length} root(s) in the trust bundle`,
    expiries.length ? Math.min(...expiries) : undefined,
  );
}
