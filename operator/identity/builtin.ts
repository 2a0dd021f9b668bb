// The built-in CA branch of the identity reconciler, in two steps that return what they decided:
//
//   trust()  loads the signing CA from its Secret (generating `weft-ca` when absent), carries
//            the rotation state and returns the trust bundle and the CA status;
//   issue()  signs, renews, refreshes (ca.crt) and removes the workload certificates, and
//            returns when to look again (the earliest renewal or end of a rotation overlap).
//
// CA rotation, in three phases (docs/identity.md "Rotation"; Mesh condition CARotation):
//   DistributingRoot       the new CA's roots join every trust bundle; certificates still come
//                          from the previous CA, until every sidecar reports (its long poll,
//                          operator/propagation.ts) that it trusts them, or the wait is over;
//   ReissuingCertificates  every workload certificate is reissued from the new CA, the roots it
//                          replaces stay trusted for an overlap (the workload certificate lifetime);
//   Done                   every sidecar presents a new certificate; the old roots are dropped
//                          when the overlap ends.
// That state is kept in the ConfigMap `weft-trust-bundle` of the operator's namespace, so a new
// leader continues it.
import { X509Certificate } from 'node:crypto';
import { durationMs } from '../../api/index.ts';
import type { TrustSummary } from '../../api/pem.ts';
import { pemFile } from '../../api/pki.ts';
import { type KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../../kube/client.ts';
import type { Clock } from '../../kube/clock.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import { isConflict, isNotFound } from '../../kube/errors.ts';
import type { Informer } from '../../kube/informer.ts';
import type { Logger } from '../../kube/log.ts';
import type { ReconcileResult } from '../../kube/queue.ts';
import type { InformerFactory } from '../cache.ts';
import {
  type CertificateAuthority,
  createRoot,
  inspect,
  issueWorkloadCertificate,
  loadCa,
  trustBundle,
} from './ca.ts';
import {
  b64,
  CA_LABELS,
  DEFAULT_CA_SECRET,
  IDENTITY_CONDITION,
  IDENTITY_REASON,
  type IdentitySettings,
  type IdentityStatus,
  ROTATION_CONDITION,
  ROTATION_REASON,
  type SecretObj,
  type SidecarTrust,
  saKey,
  TRUST_BUNDLE_CONFIGMAP,
  type TrustOutcome,
  trusted,
  unb64,
} from './model.ts';
import { type ExistingIdentity, planIdentities, ROOT_FINGERPRINT_ANNOTATION } from './plan.ts';
import { type IdentitySecrets, SECRETS } from './secrets.ts';

const DEFAULT_ROOT_LIFETIME = '87600h';
/** ca.ts backdates notBefore by a minute (clock skew); lifetimes compare with this slack. */
const BACKDATE_TOLERANCE_MS = 120_000;

/** Secrets of one namespace only: the Role grants the CA Secret only in the operator's namespace. */
const secretsIn = (namespace: string): ResourceType => ({
  group: '',
  version: 'v1',
  plural: `namespaces/${encodeURIComponent(namespace)}/secrets`,
  kind: 'Secret',
  namespaced: false,
});

interface RotationState {
  /** The CA certificates are issued from, and its roots. */
  fingerprint?: string;
  roots: string[];
  /** Roots a rotation replaced, trusted until the overlap ends. */
  previous: { pem: string; trustedUntil: string }[];
  /** A new CA whose roots are being distributed; certificates still come from `fingerprint`. */
  next?: { fingerprint: string; roots: string[]; since: string };
  /** The last switch to a new CA: when, its subject, its roots' fingerprints, who had not confirmed. */
  rotated?: { at: string; subject: string; roots: string[]; unconfirmed: string[] };
}

/** The state with its keys in one order (it is compared as JSON). */
const normalized = (st: RotationState): RotationState => ({
  fingerprint: st.fingerprint,
  roots: st.roots,
  previous: st.previous,
  ...(st.next ? { next: st.next } : {}),
  ...(st.rotated ? { rotated: st.rotated } : {}),
});

/** The roots every proxy trusts: the signing CA's, a new CA's being distributed, the previous ones in their overlap. */
const bundleOf = (st: RotationState, now: Date) =>
  trustBundle(
    [...new Set([...st.roots, ...(st.next?.roots ?? [])])],
    st.previous.map((p) => ({ pem: p.pem, trustedUntil: new Date(p.trustedUntil) })),
    now,
  );

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

/** What trust() found: the CA to sign with, when there is one. */
export interface Signing {
  ca: CertificateAuthority;
  /** The signing CA's fingerprint (annotated on what it issues). */
  fingerprint: string;
  /** The fingerprint the plan treats as current (the previous CA's while a new root is distributed). */
  current: string;
  /** Renewals of valid certificates wait (a new root is distributed, the previous CA's key is not here). */
  deferRenewals: boolean;
  /** When to look again at the latest (the end of the wait for the sidecars). */
  wakeAt?: number;
  rotation: RotationState;
  bundle: string[];
  /** The reconcile's time. */
  now: Date;
}

export interface BuiltInOptions {
  client: KubeClient;
  /** The operator's namespace: holds the CA Secret and the rotation state. */
  namespace: string;
  clock: Clock;
  secrets: IdentitySecrets;
  /** The meshed pods' sidecars and what they trust; undefined until they have all reported once. */
  sidecars: () => SidecarTrust[] | undefined;
  /** How long a root rotation waits for every sidecar to trust the new root. */
  maxWaitMs: number;
}

export class BuiltInCa {
  readonly caSecrets: Informer<SecretObj>;
  private readonly o: BuiltInOptions;
  /** The rotation state as this leader last read or wrote it. */
  private rotation?: RotationState;
  /** The CAs this process loaded, by fingerprint: the previous one signs while a new root is distributed. */
  private readonly signers = new Map<string, CertificateAuthority>();
  /** The rotation (its `at`) every sidecar was seen presenting certificates of. */
  private doneFor?: string;

  constructor(o: BuiltInOptions, make: InformerFactory, onChange: () => void) {
    this.o = o;
    this.caSecrets = make<SecretObj>(secretsIn(o.namespace));
    this.caSecrets.on(onChange);
  }

  /** A new term reads the rotation state again. */
  reset(): void {
    this.rotation = undefined;
  }

  async trust(rlog: Logger, s: IdentitySettings): Promise<TrustOutcome & { signing?: Signing }> {
    const now = new Date(this.o.clock.now());
    const rotation = await this.readRotation();
    const loaded = await this.loadCa(
      rlog,
      s.trustDomain,
      s.ca.builtIn?.rootSecretName,
      s.ca.builtIn?.rootLifetime ?? DEFAULT_ROOT_LIFETIME,
    );
    if (!('ca' in loaded)) {
      // Keep trusting what was trusted; issue nothing until the CA is fixed.
      rlog.warn({ reason: loaded.condition.reason }, loaded.condition.message);
      const keep = bundleOf(rotation, now);
      return { bundle: keep.length > 0 ? keep : undefined, status: loaded };
    }
    const { ca } = loaded;
    const fp = fingerprint(ca.certPem);
    this.signers.set(fp, ca);
    if (this.signers.size > 4) this.signers.delete(this.signers.keys().next().value!);

    const live = rotation.previous.filter((p) => new Date(p.trustedUntil).getTime() > now.getTime());
    let st: RotationState;
    /** Who signs now, and which fingerprint the plan treats as current. */
    let signer = { ca, fingerprint: fp, current: fp, deferRenewals: false };
    let wakeAt: number | undefined;
    if (!rotation.fingerprint || rotation.fingerprint === fp) {
      // No rotation, or one abandoned (the CA Secret is back to the signing CA): the new root leaves.
      st = { fingerprint: fp, roots: ca.rootsPem, previous: live, rotated: rotation.rotated };
    } else {
      // The signing CA changed. First its new roots go into every trust bundle; certificates
      // are reissued from it only once every sidecar trusts them (or the wait is over).
      const next =
        rotation.next?.fingerprint === fp
          ? rotation.next
          : { fingerprint: fp, roots: ca.rootsPem, since: now.toISOString() };
      const newRoots = ca.rootsPem.filter((r) => !rotation.roots.includes(r)).map(fingerprint);
      const check = this.confirmations(newRoots, (t) => newRoots.every((r) => t.roots.includes(r)));
      const deadline = new Date(next.since).getTime() + this.o.maxWaitMs;
      if (check.waiting.length === 0 || now.getTime() >= deadline) {
        const until = new Date(now.getTime() + s.lifetimeMs).toISOString();
        const previous = [...live];
        for (const r of rotation.roots)
          if (!ca.rootsPem.includes(r) && !previous.some((p) => p.pem === r))
            previous.push({ pem: r, trustedUntil: until });
        st = {
          fingerprint: fp,
          roots: ca.rootsPem,
          previous,
          rotated: {
            at: now.toISOString(),
            subject: inspect(ca.certPem).subject,
            roots: ca.rootsPem.map(fingerprint),
            unconfirmed: check.waiting,
          },
        };
        rlog.info(
          { previousRoots: previous.length, trustedUntil: until, unconfirmed: check.waiting },
          check.waiting.length === 0
            ? 'CA rotated: every sidecar trusts the new root; certificates are reissued from it'
            : 'CA rotated: the wait for the sidecars is over; certificates are reissued from the new root',
        );
      } else {
        st = { ...rotation, previous: live, next };
        const previousCa = this.signers.get(rotation.fingerprint);
        // A new leader does not have the previous CA's key: it issues only what cannot wait
        // (new identities, expired ones) and from the new CA.
        signer = previousCa
          ? {
              ca: previousCa,
              fingerprint: rotation.fingerprint,
              current: rotation.fingerprint,
              deferRenewals: false,
            }
          : { ca, fingerprint: fp, current: rotation.fingerprint, deferRenewals: true };
        wakeAt = deadline;
        if (!rotation.next || rotation.next.fingerprint !== fp)
          rlog.info(
            { newRoots: newRoots.length, sidecars: check.total, maxWaitMs: this.o.maxWaitMs },
            'CA replaced: distributing the new root to every trust bundle before issuing from it',
          );
      }
    }
    st = normalized(st);
    const bundle = bundleOf(st, now);
    if (JSON.stringify(st) !== JSON.stringify(rotation)) await this.writeRotation(st, bundle);
    else st = rotation;

    const certExpiry = Math.min(
      ca.notAfter.getTime(),
      ...ca.rootsPem.map((r) => inspect(r).notAfter.getTime()),
    );
    const out = trusted(
      bundle,
      // Stable across restarts (a generated root is logged, not reported), so a new leader
      // rewrites no status.
      IDENTITY_REASON.Loaded,
      `Workload certificates are signed by ${inspect(signer.ca.certPem).subject} from Secret ${this.o.namespace}/${s.ca.builtIn?.rootSecretName || DEFAULT_CA_SECRET}`,
      certExpiry,
    );
    const rotationCondition = this.rotationCondition(st);
    if (rotationCondition) out.status.rotation = rotationCondition;
    return { ...out, signing: { ...signer, rotation: st, bundle, now, wakeAt } };
  }

  /** Whether a root rotation waits for the sidecars' reports (the operator re-queues on them). */
  get rotating(): boolean {
    const st = this.rotation;
    return !!st && (!!st.next || (!!st.rotated && st.rotated.at !== this.doneFor));
  }

  /** The sidecars that do not report `ok` yet (sorted), of how many. */
  private confirmations(
    newRoots: string[],
    ok: (t: TrustSummary) => boolean,
  ): { waiting: string[]; total: number } {
    if (newRoots.length === 0) return { waiting: [], total: 0 };
    const sidecars = this.o.sidecars();
    if (!sidecars) return { waiting: ['(the sidecars have not all reported yet)'], total: 0 };
    const waiting = sidecars.filter((p) => !p.trust || !ok(p.trust)).map((p) => p.pod);
    return { waiting: waiting.sort(), total: sidecars.length };
  }

  /** CARotation: where a rotation stands, from the state and the sidecars' reports. */
  private rotationCondition(st: RotationState): ConditionInput | undefined {
    const names = (pods: string[]) =>
      pods.length <= 10 ? pods.join(', ') : `${pods.slice(0, 10).join(', ')} and ${pods.length - 10} more`;
    if (st.next) {
      const next = st.next;
      const newRoots = next.roots.filter((r) => !st.roots.includes(r)).map(fingerprint);
      const c = this.confirmations(newRoots, (t) => newRoots.every((r) => t.roots.includes(r)));
      const deadline = new Date(new Date(next.since).getTime() + this.o.maxWaitMs).toISOString();
      return {
        type: ROTATION_CONDITION,
        status: 'True',
        reason: ROTATION_REASON.DistributingRoot,
        message: `New root ${inspect(next.roots[0]!).subject} added to every trust bundle; ${c.total - c.waiting.length}/${c.total} sidecars trust it${c.waiting.length ? ` (waiting for ${names(c.waiting)})` : ''}; certificates are reissued from it once all do, at the latest at ${deadline}`,
      };
    }
    const r = st.rotated;
    if (!r) return undefined;
    const until = st.previous.map((p) => p.trustedUntil).sort()[0];
    const old = until
      ? `the previous root(s) stay trusted until ${until}`
      : 'the previous root(s) left the trust bundle';
    const unconfirmed = r.unconfirmed.length
      ? `; reissued after the ${Math.round(this.o.maxWaitMs / 1000)} s wait without confirmation from ${names(r.unconfirmed)}`
      : '';
    // While the previous roots are trusted, the sidecars' certificates say whether it is done.
    const c =
      until && r.at !== this.doneFor
        ? this.confirmations(r.roots, (t) => t.signedBy !== undefined && r.roots.includes(t.signedBy))
        : { waiting: [], total: 0 };
    if (c.waiting.length > 0)
      return {
        type: ROTATION_CONDITION,
        status: 'True',
        reason: ROTATION_REASON.ReissuingCertificates,
        message: `Certificates reissued from ${r.subject} at ${r.at}; ${c.total - c.waiting.length}/${c.total} sidecars present one (waiting for ${names(c.waiting)}); ${old}${unconfirmed}`,
      };
    this.doneFor = r.at;
    return {
      type: ROTATION_CONDITION,
      status: 'False',
      reason: ROTATION_REASON.Done,
      message: `Every sidecar presents a certificate from ${r.subject} (rotated at ${r.at}); ${old}${unconfirmed}`,
    };
  }

  async issue(
    rlog: Logger,
    s: IdentitySettings,
    signing: Signing,
    wantedList: { namespace: string; serviceAccount: string }[],
  ): Promise<ReconcileResult | undefined> {
    const { ca, fingerprint: fp, bundle, rotation: st, now } = signing;
    const secrets = this.o.secrets.current();
    const existing: ExistingIdentity[] = [];
    for (const [k, sec] of secrets) {
      const [namespace, serviceAccount] = k.split('/') as [string, string];
      const crt = unb64(sec.data?.['tls.crt']);
      if (!crt) continue;
      try {
        const info = inspect(crt);
        existing.push({
          namespace,
          serviceAccount,
          spiffeId: info.spiffeId,
          notBefore: info.notBefore,
          notAfter: info.notAfter,
          rootFingerprint: sec.metadata.annotations?.[ROOT_FINGERPRINT_ANNOTATION],
        });
      } catch {
        existing.push({ namespace, serviceAccount, notBefore: now, notAfter: now });
      }
    }
    const wantedKeys = new Set(wantedList.map((w) => saKey(w.namespace, w.serviceAccount)));
    const plan = planIdentities({
      trustDomain: s.trustDomain,
      wanted: wantedList,
      existing,
      rootFingerprint: signing.current,
      renewBeforeMs: s.renewBeforeMs,
      now,
    });
    // A shortened lifetime takes effect at once (a longer one at the next renewal).
    const due = new Set(plan.issue.map((w) => saKey(w.namespace, w.serviceAccount)));
    for (const e of existing) {
      const k = saKey(e.namespace, e.serviceAccount);
      if (due.has(k) || !wantedKeys.has(k)) continue;
      if (e.notAfter.getTime() - e.notBefore.getTime() > s.lifetimeMs + BACKDATE_TOLERANCE_MS) {
        plan.issue.push({ namespace: e.namespace, serviceAccount: e.serviceAccount, reason: 'renewal-due' });
        due.add(k);
      }
    }
    if (signing.deferRenewals) {
      // Distributing a new root without the previous CA's key: only what cannot wait is issued
      // (from the new CA); renewals of valid certificates wait for the switch.
      plan.issue = plan.issue.filter(
        (w) => w.reason === 'missing' || w.reason === 'identity-changed' || w.reason === 'expired',
      );
    }
    const caCrt = b64(pemFile(bundle));
    const issued = new Set<string>();
    for (const w of plan.issue) {
      const cert = await issueWorkloadCertificate(ca, {
        trustDomain: s.trustDomain,
        namespace: w.namespace,
        serviceAccount: w.serviceAccount,
        lifetimeMs: s.lifetimeMs,
        now,
      });
      await this.o.secrets.write(w.namespace, w.serviceAccount, fp, {
        'tls.crt': b64(cert.chainPem),
        'tls.key': b64(cert.keyPem),
        'ca.crt': caCrt,
      });
      issued.add(saKey(w.namespace, w.serviceAccount));
      rlog.info(
        {
          namespace: w.namespace,
          serviceAccount: w.serviceAccount,
          reason: w.reason,
          spiffeId: cert.spiffeId,
          notAfter: cert.notAfter.toISOString(),
        },
        'workload certificate issued',
      );
    }
    // Certificates that stay: keep their ca.crt equal to the trust bundle (roots added or dropped).
    for (const [k, sec] of secrets) {
      if (issued.has(k) || !wantedKeys.has(k) || sec.data?.['ca.crt'] === caCrt) continue;
      const [namespace, serviceAccount] = k.split('/') as [string, string];
      await this.o.secrets.write(
        namespace,
        serviceAccount,
        sec.metadata.annotations?.[ROOT_FINGERPRINT_ANNOTATION] ?? '',
        {
          'tls.crt': sec.data?.['tls.crt'] ?? '',
          'tls.key': sec.data?.['tls.key'] ?? '',
          'ca.crt': caCrt,
        },
      );
    }
    await this.o.secrets.remove(rlog, plan.remove, false);

    // Next look: the earliest renewal, or the end of a rotation overlap.
    const dueAt = [
      plan.nextCheck?.getTime(),
      signing.wakeAt,
      ...st.previous.map((p) => new Date(p.trustedUntil).getTime()),
    ].filter((t): t is number => t !== undefined);
    if (dueAt.length === 0) return undefined;
    return { requeueAfterMs: Math.max(0, Math.min(...dueAt) - this.o.clock.now()) + 1 };
  }

  private async readRotation(): Promise<RotationState> {
    if (this.rotation) return this.rotation;
    try {
      const cm = await this.o.client.get<KubeObject & { data?: Record<string, string> }>(
        RESOURCES.configMaps,
        TRUST_BUNDLE_CONFIGMAP,
        this.o.namespace,
      );
      const st = JSON.parse(cm.data?.['state.json'] ?? '{}') as Partial<RotationState>;
      this.rotation = normalized({ ...st, roots: st.roots ?? [], previous: st.previous ?? [] });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      this.rotation = { roots: [], previous: [] };
    }
    return this.rotation;
  }

  private async writeRotation(st: RotationState, bundle: string[]): Promise<void> {
    await this.o.client.apply(RESOURCES.configMaps, {
      metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace: this.o.namespace, labels: { ...CA_LABELS } },
      data: { 'ca.crt': pemFile(bundle), 'state.json': JSON.stringify(st, null, 1) },
    } as KubeObject);
    this.rotation = st;
  }

  /** Loads (or generates) the signing CA; undefined with a status when it cannot. */
  private async loadCa(
    rlog: Logger,
    trustDomain: string,
    rootSecretName: string | undefined,
    rootLifetime: string,
  ): Promise<{ ca: CertificateAuthority; generated: boolean } | IdentityStatus> {
    const name = rootSecretName || DEFAULT_CA_SECRET;
    const where = `Secret ${this.o.namespace}/${name}`;
    let secret = this.caSecrets.get(`${this.o.namespace}/${name}`);
    let generated = false;
    if (!secret && !rootSecretName) {
      const root = await createRoot({
        trustDomain,
        lifetimeMs: durationMs(rootLifetime),
        now: new Date(this.o.clock.now()),
      });
      const obj: SecretObj = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace: this.o.namespace, labels: { ...CA_LABELS } },
        type: 'kubernetes.io/tls',
        data: { 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem), 'ca.crt': b64(root.certPem) },
      };
      try {
        secret = await this.o.client.create(SECRETS, obj);
        generated = true;
        rlog.info({ secret: where, notAfter: root.notAfter.toISOString() }, 'generated a new mesh root CA');
      } catch (err) {
        if (!isConflict(err)) throw err;
        secret = await this.o.client.get<SecretObj>(SECRETS, name, this.o.namespace);
      }
    }
    if (!secret)
      return {
        condition: {
          type: IDENTITY_CONDITION,
          status: 'False',
          reason: IDENTITY_REASON.SecretNotFound,
          message: `${where} (ca.builtIn.rootSecretName) does not exist: create it with tls.crt, tls.key and, for an intermediate, ca.crt`,
        },
      };
    const d = secret.data ?? {};
    for (const k of ['tls.crt', 'tls.key'])
      if (!d[k])
        return {
          condition: {
            type: IDENTITY_CONDITION,
            status: 'False',
            reason: IDENTITY_REASON.InvalidSecret,
            message: `${where} has no key ${k}`,
          },
        };
    try {
      const ca = await loadCa({
        certPem: unb64(d['tls.crt'])!,
        keyPem: unb64(d['tls.key'])!,
        caPem: unb64(d['ca.crt']),
      });
      return { ca, generated };
    } catch (err) {
      const code = (err as { code?: string }).code;
      const key =
        code === 'WEFT_CA_KEY' || code === 'WEFT_CA_MISMATCH'
          ? 'tls.key'
          : code === 'WEFT_CA_CHAIN'
            ? 'ca.crt'
            : 'tls.crt';
      return {
        condition: {
          type: IDENTITY_CONDITION,
          status: 'False',
          reason: IDENTITY_REASON.InvalidSecret,
          message: `${where} key ${key}: ${(err as Error).message}`,
        },
      };
    }
  }
}
