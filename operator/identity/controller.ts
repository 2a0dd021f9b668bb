// The identity controller: workload certificates for every ServiceAccount that runs meshed
// pods, and the trust bundle that goes into every ProxyConfig.
//
//   built-in CA   The CA lives in a Secret of the operator's namespace: `weft-ca` (generated
//                 when absent) or the Mesh's ca.builtIn.rootSecretName (a user root or
//                 intermediate). One ECDSA P-256 certificate per ServiceAccount is signed into
//                 Secret `weft-identity-<sa>` (kubernetes.io/tls: tls.crt, tls.key, ca.crt) in
//                 the workload's namespace with server-side apply, renewed at renewBefore
//                 (a timer: requeueAfterMs from plan.nextCheck), deleted when unused.
//   cert-manager  One cert-manager Certificate per ServiceAccount instead (same Secret name);
//                 the trust bundle is the union of the issued Secrets' ca.crt.
//
// CA rotation: when the signing CA changes, the roots it replaces stay in the trust bundle for
// an overlap (the workload certificate lifetime), every workload certificate is reissued, and
// the old roots are dropped when the overlap ends. That state is kept in the ConfigMap
// `weft-trust-bundle` of the operator's namespace, so a new leader continues the overlap.
//
// One queue key ("identities"): each reconcile plans all identities at once (planIdentities
// is pure); only the leader runs it.
import { X509Certificate } from 'node:crypto';
import type { Mesh } from '../../api/index.ts';
import type { KubeClient, KubeObject, ResourceType } from '../../kube/client.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { Clock } from '../../kube/clock.ts';
import { systemClock } from '../../kube/clock.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import { isConflict, isNotFound } from '../../kube/errors.ts';
import { Informer } from '../../kube/informer.ts';
import type { Logger } from '../../kube/log.ts';
import { type ReconcileResult, WorkQueue } from '../../kube/queue.ts';
import { durationMs } from '../compiler.ts';
import {
  type CertificateAuthority,
  createRoot,
  inspect,
  issueWorkloadCertificate,
  loadCa,
  trustBundle,
} from './ca.ts';
import { workloadCertificate } from './certmanager.ts';
import {
  type ExistingIdentity,
  IDENTITY_LABELS,
  identitySecretName,
  planIdentities,
  ROOT_FINGERPRINT_ANNOTATION,
  SERVICE_ACCOUNT_ANNOTATION,
} from './plan.ts';

export const DEFAULT_CA_SECRET = 'weft-ca';
export const TRUST_BUNDLE_CONFIGMAP = 'weft-trust-bundle';
export const CA_LABELS = { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'ca' } as const;
const DEFAULT_LIFETIME = '24h';
const DEFAULT_ROOT_LIFETIME = '87600h';
const KEY = 'identities';
/** ca.ts backdates notBefore by a minute (clock skew); lifetimes compare with this slack. */
const BACKDATE_TOLERANCE_MS = 120_000;

/** The Mesh condition this controller reports (operator.ts merges it into the Mesh status). */
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

export const CERTIFICATES: ResourceType = {
  group: 'cert-manager.io',
  version: 'v1',
  plural: 'certificates',
  kind: 'Certificate',
  namespaced: true,
};

/** Secrets of one namespace only: the Role grants the CA Secret only in the operator's namespace. */
const secretsIn = (namespace: string): ResourceType => ({
  group: '',
  version: 'v1',
  plural: `namespaces/${encodeURIComponent(namespace)}/secrets`,
  kind: 'Secret',
  namespaced: false,
});
const SECRETS: ResourceType = {
  group: '',
  version: 'v1',
  plural: 'secrets',
  kind: 'Secret',
  namespaced: true,
};

export interface SecretObj extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

export interface IdentityStatus {
  condition: ConditionInput;
  /** When the signing CA (or the earliest root of the bundle) expires, RFC 3339. */
  caExpiry?: string;
}

export interface IdentityControllerOptions {
  client: KubeClient;
  /** The operator's namespace: holds the CA Secret and the rotation state. */
  namespace: string;
  log: Logger;
  clock?: Clock;
  /** The Mesh named "default". */
  mesh: () => Mesh | undefined;
  /** ServiceAccounts of meshed pods, as namespace/name. */
  meshedServiceAccounts: () => { namespace: string; serviceAccount: string }[];
  /** The trust bundle changed: recompile every ProxyConfig. */
  onTrustBundleChange: () => void;
  /** The CA status changed: rewrite the Mesh status. */
  onStatusChange: () => void;
  watchTimeoutSeconds?: number;
  onInformerRestart?: (kind: string, reason: string) => void;
  concurrency?: number;
  timeoutMs?: number;
}

interface RotationState {
  fingerprint?: string;
  roots: string[];
  previous: { pem: string; trustedUntil: string }[];
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) =>
  s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8');
const saKey = (ns: string, sa: string) => `${ns}/${sa}`;
const selector = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

/** Every certificate in a PEM text, normalised (one block each, trailing newline). */
export function splitPem(text: string | undefined): string[] {
  return (
    (text ?? '')
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
      ?.map((p) => `${p.replace(/\r/g, '')}\n`) ?? []
  );
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

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

export class IdentityController {
  /** Informers to start with the operator's (every replica, so a standby is warm). */
  readonly informers: Informer<KubeObject>[];
  private readonly opts: IdentityControllerOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly identitySecrets: Informer<SecretObj>;
  private readonly caSecrets: Informer<SecretObj>;
  private queue?: WorkQueue;
  private bundle: string[] = [];
  /** Whether this leader has computed the trust bundle (until then no ProxyConfig is written). */
  private decided = false;
  private status?: IdentityStatus;
  private rotation?: RotationState;
  /** Secrets this leader wrote, until the informer shows that resourceVersion (or a newer one). */
  private readonly written = new Map<string, { rv?: string; secret?: SecretObj; deletedRv?: string }>();
  private seq = 0;

  constructor(opts: IdentityControllerOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log.child({ controller: 'identity' });
    const informerLog = opts.log.child({ component: 'informer' });
    this.identitySecrets = new Informer<SecretObj>(opts.client, SECRETS, {
      labelSelector: selector(IDENTITY_LABELS),
      log: informerLog,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onRestart: (r) => opts.onInformerRestart?.('Secret', r),
    });
    this.caSecrets = new Informer<SecretObj>(opts.client, secretsIn(opts.namespace), {
      log: informerLog,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onRestart: (r) => opts.onInformerRestart?.('Secret', r),
    });
    this.identitySecrets.on((t, s) => {
      const k = `${s.metadata.namespace}/${s.metadata.name}`;
      const w = this.written.get(k);
      if (w && (t === 'delete' ? w.deletedRv !== undefined : w.rv === s.metadata.resourceVersion))
        this.written.delete(k);
      this.enqueue();
    });
    this.caSecrets.on(() => this.enqueue());
    this.informers = [this.identitySecrets, this.caSecrets] as unknown as Informer<KubeObject>[];
  }

  /** The PEM roots every proxy trusts (the compiler's trustBundle seam). */
  trustBundle(): string[] {
    return this.bundle;
  }

  /**
   * Whether the trust bundle is known on this leader. Until it is, ProxyConfigs must not be
   * written: a new leader would otherwise push an empty bundle for a moment.
   */
  get ready(): boolean {
    return this.decided;
  }

  /** For the Mesh status; undefined before the first reconcile. */
  meshStatus(): IdentityStatus | undefined {
    return this.status;
  }

  enqueue(): void {
    this.queue?.add(KEY);
  }

  /** Starts reconciling (on the leader, after the caches synced). */
  start(): void {
    this.rotation = undefined;
    this.decided = false;
    this.written.clear();
    this.queue = new WorkQueue({
      name: 'identity',
      concurrency: 1,
      timeoutMs: this.opts.timeoutMs ?? 60_000,
      clock: this.clock,
      reconcile: () => this.reconcile(),
      onResult: (key, outcome, _ms, err) => {
        if (outcome !== 'success')
          this.log.warn({ err, key, outcome }, 'identity reconcile failed; retrying with backoff');
      },
    });
    this.queue.start();
    this.enqueue();
  }

  async stop(): Promise<void> {
    const q = this.queue;
    this.queue = undefined;
    await q?.stop();
  }

  async idle(): Promise<void> {
    await this.queue?.idle();
  }

  get depth(): number {
    return (this.queue?.depth ?? 0) + (this.queue?.activeCount ?? 0);
  }

  // ----------------------------------------------------------------------------- reconcile

  private setStatus(s: IdentityStatus): void {
    if (JSON.stringify(s) === JSON.stringify(this.status)) return;
    this.status = s;
    this.opts.onStatusChange();
  }

  private setBundle(b: string[]): void {
    const first = !this.decided;
    this.decided = true;
    if (!first && JSON.stringify(b) === JSON.stringify(this.bundle)) return;
    this.bundle = b;
    this.log.info({ roots: b.length }, 'trust bundle changed');
    this.opts.onTrustBundleChange();
  }

  /** The identity Secrets as the controller last knew them (its own writes win over a lagging cache). */
  private currentSecrets(): Map<string, SecretObj> {
    const out = new Map<string, SecretObj>();
    for (const s of this.identitySecrets.list()) {
      const sa = s.metadata.annotations?.[SERVICE_ACCOUNT_ANNOTATION];
      if (sa && s.metadata.name === identitySecretName(sa)) out.set(saKey(s.metadata.namespace ?? '', sa), s);
    }
    for (const [k, w] of this.written) {
      const [ns, name] = k.split('/') as [string, string];
      const cached = this.identitySecrets.get(k);
      const rv = cached?.metadata.resourceVersion;
      // The cache caught up: it shows our write, or (after our delete) a different object.
      const caughtUp =
        w.deletedRv !== undefined ? !cached || rv !== w.deletedRv : !!cached && Number(rv) >= Number(w.rv);
      if (caughtUp) {
        this.written.delete(k);
        continue;
      }
      for (const [key, s] of out)
        if (s.metadata.namespace === ns && s.metadata.name === name) out.delete(key);
      if (w.secret) {
        const sa = w.secret.metadata.annotations?.[SERVICE_ACCOUNT_ANNOTATION] ?? '';
        out.set(saKey(ns, sa), w.secret);
      }
    }
    return out;
  }

  private settings() {
    const mesh = this.opts.mesh();
    const ca = mesh?.spec.ca ?? {};
    const lifetimeMs = durationMs(ca.workloadCertLifetime ?? DEFAULT_LIFETIME);
    return {
      trustDomain: mesh?.spec.trustDomain ?? 'cluster.local',
      ca,
      lifetimeMs,
      renewBeforeMs: ca.renewBefore ? durationMs(ca.renewBefore) : undefined,
    };
  }

  private async reconcile(): Promise<ReconcileResult | undefined> {
    const rlog = this.log.child({ reconcileID: `identity-${++this.seq}` });
    rlog.debug('reconcile');
    const s = this.settings();
    if (s.ca.certManager) return this.reconcileCertManager(rlog);
    return this.reconcileBuiltIn(rlog);
  }

  private async readRotation(): Promise<RotationState> {
    if (this.rotation) return this.rotation;
    try {
      const cm = await this.opts.client.get<KubeObject & { data?: Record<string, string> }>(
        RESOURCES.configMaps,
        TRUST_BUNDLE_CONFIGMAP,
        this.opts.namespace,
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
    await this.opts.client.apply(RESOURCES.configMaps, {
      metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace: this.opts.namespace, labels: { ...CA_LABELS } },
      data: { 'ca.crt': bundle.join(''), 'state.json': JSON.stringify(st, null, 1) },
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
    const where = `Secret ${this.opts.namespace}/${name}`;
    let secret = this.caSecrets.get(`${this.opts.namespace}/${name}`);
    let generated = false;
    if (!secret && !rootSecretName) {
      const root = await createRoot({
        trustDomain,
        lifetimeMs: durationMs(rootLifetime),
        now: new Date(this.clock.now()),
      });
      const obj: SecretObj = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace: this.opts.namespace, labels: { ...CA_LABELS } },
        type: 'kubernetes.io/tls',
        data: { 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem), 'ca.crt': b64(root.certPem) },
      };
      try {
        secret = await this.opts.client.create(SECRETS, obj);
        generated = true;
        rlog.info({ secret: where, notAfter: root.notAfter.toISOString() }, 'generated a new mesh root CA');
      } catch (err) {
        if (!isConflict(err)) throw err;
        secret = await this.opts.client.get<SecretObj>(SECRETS, name, this.opts.namespace);
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

  private async reconcileBuiltIn(rlog: Logger): Promise<ReconcileResult | undefined> {
    const s = this.settings();
    const now = new Date(this.clock.now());
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
      this.setBundle(keep.length > 0 ? keep : this.bundle);
      this.setStatus(loaded);
      return undefined;
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
    this.setBundle(bundle);

    const certExpiry = Math.min(
      ca.notAfter.getTime(),
      ...ca.rootsPem.map((r) => inspect(r).notAfter.getTime()),
    );
    this.setStatus({
      condition: {
        type: IDENTITY_CONDITION,
        status: 'True',
        // Stable across restarts (a generated root is logged, not reported), so a new leader
        // rewrites no status.
        reason: IDENTITY_REASON.Loaded,
        message: `Workload certificates are signed by ${inspect(ca.certPem).subject} from Secret ${this.opts.namespace}/${s.ca.builtIn?.rootSecretName || DEFAULT_CA_SECRET}`,
      },
      caExpiry: new Date(certExpiry).toISOString(),
    });

    // Workload certificates.
    const secrets = this.currentSecrets();
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
    const wantedList = this.opts.meshedServiceAccounts();
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
    const caCrt = b64(bundle.join(''));
    const issued = new Set<string>();
    for (const w of plan.issue) {
      const cert = await issueWorkloadCertificate(ca, {
        trustDomain: s.trustDomain,
        namespace: w.namespace,
        serviceAccount: w.serviceAccount,
        lifetimeMs: s.lifetimeMs,
        now,
      });
      await this.writeSecret(w.namespace, w.serviceAccount, fp, {
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
    const wanted = new Set(
      this.opts.meshedServiceAccounts().map((w) => saKey(w.namespace, w.serviceAccount)),
    );
    for (const [k, sec] of secrets) {
      if (issued.has(k) || !wanted.has(k) || sec.data?.['ca.crt'] === caCrt) continue;
      const [namespace, serviceAccount] = k.split('/') as [string, string];
      await this.writeSecret(
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
    await this.removeUnused(rlog, plan.remove, false);

    // Next look: the earliest renewal, or the end of a rotation overlap.
    const dueAt = [
      plan.nextCheck?.getTime(),
      ...st.previous.map((p) => new Date(p.trustedUntil).getTime()),
    ].filter((t): t is number => t !== undefined);
    if (dueAt.length === 0) return undefined;
    return { requeueAfterMs: Math.max(0, Math.min(...dueAt) - this.clock.now()) + 1 };
  }

  private async writeSecret(
    namespace: string,
    serviceAccount: string,
    rootFingerprint: string,
    data: Record<string, string>,
  ): Promise<void> {
    const name = identitySecretName(serviceAccount);
    const obj: SecretObj = {
      metadata: {
        name,
        namespace,
        labels: { ...IDENTITY_LABELS },
        annotations: {
          [SERVICE_ACCOUNT_ANNOTATION]: serviceAccount,
          [ROOT_FINGERPRINT_ANNOTATION]: rootFingerprint,
        },
      },
      type: 'kubernetes.io/tls',
      data,
    };
    const res = await this.opts.client.apply<SecretObj>(SECRETS, obj);
    this.written.set(`${namespace}/${name}`, { rv: res.metadata.resourceVersion, secret: res });
  }

  private async removeUnused(
    rlog: Logger,
    remove: { namespace: string; serviceAccount: string }[],
    certificates: boolean,
  ): Promise<void> {
    for (const r of remove) {
      const name = identitySecretName(r.serviceAccount);
      if (certificates) await this.deleteIgnoringMissing(CERTIFICATES, name, r.namespace);
      const cached = this.identitySecrets.get(`${r.namespace}/${name}`);
      await this.deleteIgnoringMissing(SECRETS, name, r.namespace);
      if (cached)
        this.written.set(`${r.namespace}/${name}`, { deletedRv: cached.metadata.resourceVersion ?? '' });
      else this.written.delete(`${r.namespace}/${name}`);
      rlog.info(
        { namespace: r.namespace, serviceAccount: r.serviceAccount },
        'workload identity removed: no meshed pod uses the ServiceAccount',
      );
    }
  }

  private async deleteIgnoringMissing(t: ResourceType, name: string, namespace: string): Promise<void> {
    try {
      await this.opts.client.delete(t, name, namespace);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  private async reconcileCertManager(rlog: Logger): Promise<ReconcileResult | undefined> {
    const s = this.settings();
    const issuerRef = s.ca.certManager!.issuerRef;
    let certs: (KubeObject & { spec?: unknown })[];
    try {
      certs = (
        await this.opts.client.list<KubeObject & { spec?: unknown }>(CERTIFICATES, {
          labelSelector: selector(IDENTITY_LABELS),
        })
      ).items;
    } catch (err) {
      if (!isNotFound(err)) throw err;
      this.setStatus({
        condition: {
          type: IDENTITY_CONDITION,
          status: 'False',
          reason: IDENTITY_REASON.CertManagerNotInstalled,
          message:
            'ca.certManager is set but the certificates.cert-manager.io/v1 API does not exist: install cert-manager',
        },
      });
      this.setBundle(this.bundle);
      return { requeueAfterMs: 60_000 };
    }
    const wanted = this.opts.meshedServiceAccounts();
    const wantedKeys = new Set(wanted.map((w) => saKey(w.namespace, w.serviceAccount)));
    const have = new Map(
      certs.map((c) => [
        saKey(c.metadata.namespace ?? '', c.metadata.annotations?.[SERVICE_ACCOUNT_ANNOTATION] ?? ''),
        c,
      ]),
    );
    for (const w of wanted) {
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
      if (cur && contains(cur.spec, json.spec) && contains(cur.metadata.labels, json.metadata.labels))
        continue;
      await this.opts.client.apply(CERTIFICATES, json);
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
    const secrets = this.currentSecrets();
    for (const k of secrets.keys())
      if (!wantedKeys.has(k)) {
        const [namespace, serviceAccount] = k.split('/') as [string, string];
        unused.set(k, { namespace, serviceAccount });
      }
    await this.removeUnused(rlog, [...unused.values()], true);

    // Trust bundle: every ca.crt of the issued Secrets still in use.
    const roots = new Set<string>();
    for (const [k, sec] of secrets)
      if (wantedKeys.has(k)) for (const p of splitPem(unb64(sec.data?.['ca.crt']))) roots.add(p);
    const bundle = [...roots].sort();
    this.setBundle(bundle);
    const expiries = bundle.map((p) => inspect(p).notAfter.getTime());
    this.setStatus({
      condition: {
        type: IDENTITY_CONDITION,
        status: 'True',
        reason: IDENTITY_REASON.CertManager,
        message: `cert-manager ${issuerRef.kind ?? 'ClusterIssuer'} ${issuerRef.name} issues workload certificates; ${bundle.length} root(s) in the trust bundle`,
      },
      ...(expiries.length ? { caExpiry: new Date(Math.min(...expiries)).toISOString() } : {}),
    });
    return undefined;
  }
}
