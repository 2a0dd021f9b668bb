// The built-in CA branch of the identity reconciler, in two steps that return what they decided:
//
//   trust()  loads the signing CA from its Secret (generating `weft-ca` when absent), carries
//            the rotation state and returns the trust bundle and the CA status;
//   issue()  signs, renews, refreshes (ca.crt) and removes the workload certificates, and
//            returns when to look again (the earliest renewal or end of a rotation overlap).
//
// CA rotation: when the signing CA changes, the roots it replaces stay in the trust bundle for
// an overlap (the workload certificate lifetime), every workload certificate is reissued, and
// the old roots are dropped when the overlap ends. That state is kept in the ConfigMap
// `weft-trust-bundle` of the operator's namespace, so a new leader continues the overlap.
import { X509Certificate } from 'node:crypto';
import { durationMs } from '../../api/index.ts';
import { pemFile } from '../../api/pki.ts';
import { type KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../../kube/client.ts';
import type { Clock } from '../../kube/clock.ts';
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
  type SecretObj,
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
  fingerprint?: string;
  roots: string[];
  previous: { pem: string; trustedUntil: string }[];
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

/** What trust() found: the CA to sign with, when there is one. */
export interface Signing {
  ca: CertificateAuthority;
  fingerprint: string;
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
}

export class BuiltInCa {
  readonly caSecrets: Informer<SecretObj>;
  private readonly o: BuiltInOptions;
  /** The rotation state as this leader last read or wrote it. */
  private rotation?: RotationState;

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
      const keep = trustBundle(
        rotation.roots,
        rotation.previous.map((p) => ({ pem: p.pem, trustedUntil: new Date(p.trustedUntil) })),
        now,
      );
      return { bundle: keep.length > 0 ? keep : undefined, status: loaded };
    }
    const { ca } = loaded;
    const fp = fingerprint(ca.certPem);

    // Rotation: the roots the new CA replaces stay trusted for one workload lifetime.
    let st: RotationState = {
      fingerprint: fp,
      roots: ca.rootsPem,
      previous: rotation.previous.filter((p) => new Date(p.trustedUntil).getTime() > now.getTime()),
    };
    if (rotation.fingerprint && rotation.fingerprint !== fp) {
      const until = new Date(now.getTime() + s.lifetimeMs).toISOString();
      for (const r of rotation.roots)
        if (!ca.rootsPem.includes(r) && !st.previous.some((p) => p.pem === r))
          st.previous.push({ pem: r, trustedUntil: until });
      rlog.info(
        { previousRoots: st.previous.length, trustedUntil: until },
        'CA rotated: previous roots stay trusted during the overlap',
      );
    }
    const bundle = trustBundle(
      ca.rootsPem,
      st.previous.map((p) => ({ pem: p.pem, trustedUntil: new Date(p.trustedUntil) })),
      now,
    );
    if (JSON.stringify(st) !== JSON.stringify(rotation)) await this.writeRotation(st, bundle);
    else st = rotation;

    const certExpiry = Math.min(
      ca.notAfter.getTime(),
      ...ca.rootsPem.map((r) => inspect(r).notAfter.getTime()),
    );
    return {
      ...trusted(
        bundle,
        // Stable across restarts (a generated root is logged, not reported), so a new leader
        // rewrites no status.
        IDENTITY_REASON.Loaded,
        `Workload certificates are signed by ${inspect(ca.certPem).subject} from Secret ${this.o.namespace}/${s.ca.builtIn?.rootSecretName || DEFAULT_CA_SECRET}`,
        certExpiry,
      ),
      signing: { ca, fingerprint: fp, rotation: st, bundle, now },
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
      rootFingerprint: fp,
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
      this.rotation = { fingerprint: st.fingerprint, roots: st.roots ?? [], previous: st.previous ?? [] };
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
