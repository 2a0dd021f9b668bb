// cert-manager mode: instead of signing, the operator asks cert-manager for each workload
// identity with a Certificate resource (same URI SAN, Secret name and renewal as the built-in
// CA), and takes the trust bundle from the issued Secret's ca.crt.
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { IDENTITY_LABELS, identitySecretName, SERVICE_ACCOUNT_ANNOTATION } from './plan.ts';

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
