// What the identity controller must do, as a pure function of the cluster's state and the
// clock: which ServiceAccounts of meshed pods need a certificate issued or renewed, which
// identity Secrets are orphaned, and when to look again.
export const IDENTITY_SECRET_PREFIX = 'weft-identity-';
export const IDENTITY_LABELS = {
  'app.kubernetes.io/managed-by': 'weft',
  'weft.dev/component': 'identity',
} as const;
export const SERVICE_ACCOUNT_ANNOTATION = 'weft.dev/service-account';
export const ROOT_FINGERPRINT_ANNOTATION = 'weft.dev/root-fingerprint';

/** The Secret name that holds a ServiceAccount's identity (the webhook mounts it). */
export function identitySecretName(serviceAccount: string): string {
  return `${IDENTITY_SECRET_PREFIX}${serviceAccount}`.slice(0, 253);
}

export interface ExistingIdentity {
  namespace: string;
  serviceAccount: string;
  spiffeId?: string;
  notBefore: Date;
  notAfter: Date;
  /** Fingerprint of the root that signed it (annotation on the Secret). */
  rootFingerprint?: string;
}

export interface IdentityPlanInput {
  trustDomain: string;
  /** ServiceAccounts that run meshed pods, as namespace/name. */
  wanted: { namespace: string; serviceAccount: string }[];
  existing: ExistingIdentity[];
  /** Fingerprint of the root currently signing. */
  rootFingerprint: string;
  renewBeforeMs?: number;
  now: Date;
}

export type IssueReason = 'missing' | 'renewal-due' | 'expired' | 'ca-rotated' | 'identity-changed';

export interface IdentityPlan {
  issue: { namespace: string; serviceAccount: string; reason: IssueReason }[];
  remove: { namespace: string; serviceAccount: string }[];
  /** When the next renewal falls due (undefined when nothing is issued). */
  nextCheck?: Date;
}

const key = (ns: string, sa: string) => `${ns}/${sa}`;

export function planIdentities(input: IdentityPlanInput): IdentityPlan {
  const existing = new Map(input.existing.map((e) => [key(e.namespace, e.serviceAccount), e]));
  const wanted = new Set(input.wanted.map((w) => key(w.namespace, w.serviceAccount)));
  const plan: IdentityPlan = { issue: [], remove: [] };
  let next: number | undefined;
  const now = input.now.getTime();

  for (const w of [...input.wanted].sort((a, b) =>
    key(a.namespace, a.serviceAccount).localeCompare(key(b.namespace, b.serviceAccount)),
  )) {
    const e = existing.get(key(w.namespace, w.serviceAccount));
    const id = `spiffe://${input.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`;
    let reason: IssueReason | undefined;
    if (!e) reason = 'missing';
    else if (e.spiffeId !== id) reason = 'identity-changed';
    else if (e.rootFingerprint !== input.rootFingerprint) reason = 'ca-rotated';
    else if (e.notAfter.getTime() <= now) reason = 'expired';
    else {
      const lifetime = e.notAfter.getTime() - e.notBefore.getTime();
      const renewAt = e.notAfter.getTime() - Math.min(input.renewBeforeMs ?? lifetime / 3, lifetime);
      if (renewAt <= now) reason = 'renewal-due';
      else next = Math.min(next ?? renewAt, renewAt);
    }
    if (reason) plan.issue.push({ ...w, reason });
  }
  for (const e of input.existing) {
    if (!wanted.has(key(e.namespace, e.serviceAccount)))
      plan.remove.push({ namespace: e.namespace, serviceAccount: e.serviceAccount });
  }
  if (next !== undefined) plan.nextCheck = new Date(next);
  return plan;
}
