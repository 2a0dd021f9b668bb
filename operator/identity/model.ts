// What the identity reconciler reports and the names it owns, in one place for its branches
// (builtin.ts, certmanager.ts) and for the Mesh reconciler.
import type { Mesh } from '../../api/index.ts';
import { durationMs } from '../../api/index.ts';
import type { TrustSummary } from '../../api/pem.ts';
import type { KubeObject, ResourceType } from '../../kube/client.ts';
import type { ConditionInput } from '../../kube/conditions.ts';

export { splitPem } from '../../api/pem.ts';

export const DEFAULT_CA_SECRET = 'weft-ca';
export const TRUST_BUNDLE_CONFIGMAP = 'weft-trust-bundle';
export const CA_LABELS = { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'ca' } as const;

/** The Mesh condition the identity reconciler reports (the Mesh reconciler merges it in). */
export const IDENTITY_CONDITION = 'CertificateAuthorityReady';
export const IDENTITY_REASON = {
  /** The built-in CA was loaded from its Secret. */
  Loaded: 'Loaded',
  /** cert-manager issues the workload certificates. */
  CertManager: 'CertManager',
  SecretNotFound: 'SecretNotFound',
  InvalidSecret: 'InvalidSecret',
  CertManagerNotInstalled: 'CertManagerNotInstalled',
} as const;

/**
 * The Mesh condition of a root rotation (built-in CA): True while it runs, with the phase as
 * reason; False/Done once every sidecar presents a certificate from the new root.
 */
export const ROTATION_CONDITION = 'CARotation';
export const ROTATION_REASON = {
  /** The new root is in every trust bundle; certificates still come from the previous CA. */
  DistributingRoot: 'DistributingRoot',
  /** Every sidecar trusts the new root (or the wait ended): certificates reissued from it. */
  ReissuingCertificates: 'ReissuingCertificates',
  Done: 'Done',
} as const;
/** How long a root rotation waits for every sidecar to confirm the new root before reissuing anyway. */
export const DEFAULT_ROOT_DISTRIBUTION_MAX_WAIT_MS = 10 * 60_000;

/** A meshed pod's sidecar as the operator's long polls know it, for a root rotation. */
export interface SidecarTrust {
  /** namespace/name */
  pod: string;
  /** What it reported; null: no identity loaded; undefined: nothing reported yet (or an older proxy). */
  trust: TrustSummary | null | undefined;
}

export const CERTIFICATES: ResourceType = {
  group: 'cert-manager.io',
  version: 'v1',
  plural: 'certificates',
  kind: 'Certificate',
  namespaced: true,
};

export interface SecretObj extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

export interface IdentityStatus {
  condition: ConditionInput;
  /** CARotation, once a root rotation happened (built-in CA). */
  rotation?: ConditionInput;
  /** When the signing CA (or the earliest root of the bundle) expires, RFC 3339. */
  caExpiry?: string;
}

/** What a branch (built-in CA or cert-manager) decided in one reconcile. */
export interface TrustOutcome {
  /** The roots every proxy trusts; undefined: keep the current bundle (it is now known). */
  bundle?: string[];
  status: IdentityStatus;
}

const DEFAULT_LIFETIME = '24h';

/** The Mesh's identity settings with their defaults. */
export function identitySettings(mesh: Mesh | undefined) {
  const ca = mesh?.spec.ca ?? {};
  return {
    trustDomain: mesh?.spec.trustDomain ?? 'cluster.local',
    ca,
    lifetimeMs: durationMs(ca.workloadCertLifetime ?? DEFAULT_LIFETIME),
    renewBeforeMs: ca.renewBefore ? durationMs(ca.renewBefore) : undefined,
  };
}
export type IdentitySettings = ReturnType<typeof identitySettings>;

/** A branch's outcome when the CA is ready: the bundle, CertificateAuthorityReady True, the expiry. */
export function trusted(bundle: string[], reason: string, message: string, expiryMs?: number): TrustOutcome {
  return {
    bundle,
    status: {
      condition: { type: IDENTITY_CONDITION, status: 'True', reason, message },
      ...(expiryMs === undefined ? {} : { caExpiry: new Date(expiryMs).toISOString() }),
    },
  };
}

export const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
export const unb64 = (s: string | undefined) =>
  s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8');
export const saKey = (ns: string, sa: string) => `${ns}/${sa}`;
