// The identity reconciler: workload certificates for every ServiceAccount that runs meshed
// pods, and the trust bundle that goes into every ProxyConfig. It is one controller on the
// operator's manager (key "identities": each reconcile plans all identities at once, with the
// pure planIdentities), so it runs only on the leader.
//
//   built-in CA   (builtin.ts) The CA lives in a Secret of the operator's namespace: `weft-ca`
//                 (generated when absent) or the Mesh's ca.builtIn.rootSecretName (a user root
//                 or intermediate). One ECDSA P-256 certificate per ServiceAccount is signed into
//                 Secret `weft-identity-<sa>` (kubernetes.io/tls: tls.crt, tls.key, ca.crt) in
//                 the workload's namespace with server-side apply, renewed at renewBefore
//                 (requeueAfterMs from plan.nextCheck), deleted when unused.
//   cert-manager  (certmanager.ts) One cert-manager Certificate per ServiceAccount instead (same
//                 Secret name); the trust bundle is the union of the issued Secrets' ca.crt.
//
// Each branch returns what it decided (trust bundle, CA status, when to look again); this file
// keeps them as leader state and tells the operator when either changes.
import type { Mesh } from '../../api/index.ts';
import type { KubeClient } from '../../kube/client.ts';
import { type Clock, systemClock } from '../../kube/clock.ts';
import type { Logger } from '../../kube/log.ts';
import type { ControllerOptions, ReconcileContext } from '../../kube/manager.ts';
import type { ReconcileResult } from '../../kube/queue.ts';
import type { InformerFactory } from '../cache.ts';
import { BuiltInCa } from './builtin.ts';
import { reconcileCertManager } from './certmanager.ts';
import {
  DEFAULT_ROOT_DISTRIBUTION_MAX_WAIT_MS,
  type IdentityStatus,
  identitySettings,
  type SidecarTrust,
  type TrustOutcome,
} from './model.ts';
import { IdentitySecrets } from './secrets.ts';

export {
  CA_LABELS,
  CERTIFICATES,
  DEFAULT_CA_SECRET,
  IDENTITY_CONDITION,
  IDENTITY_REASON,
  type IdentityStatus,
  ROTATION_CONDITION,
  ROTATION_REASON,
  type SecretObj,
  splitPem,
  TRUST_BUNDLE_CONFIGMAP,
} from './model.ts';

export const IDENTITY_KEY = 'identities';

export interface IdentityOptions {
  client: KubeClient;
  /** The operator's namespace: holds the CA Secret and the rotation state. */
  namespace: string;
  log: Logger;
  /** Makes (and registers) the Secret informers. */
  informers: InformerFactory;
  clock?: Clock;
  /** The Mesh named "default". */
  mesh: () => Mesh | undefined;
  /** ServiceAccounts of meshed pods. */
  meshedServiceAccounts: () => { namespace: string; serviceAccount: string }[];
  /** A Secret it reads changed: queue the key. */
  enqueue: () => void;
  /** The trust bundle changed (or became known): recompile every ProxyConfig. */
  onTrustBundleChange: () => void;
  /** The CA status changed: rewrite the Mesh status. */
  onStatusChange: () => void;
  /** Meshed pods' sidecars and the roots they report trusting; undefined until all reported once. */
  sidecars?: () => SidecarTrust[] | undefined;
  /** How long a root rotation waits for every sidecar to trust the new root (default 10 min). */
  rootDistributionMaxWaitMs?: number;
  timeoutMs?: number;
}

export class IdentityReconciler {
  private readonly o: IdentityOptions;
  private readonly clock: Clock;
  private readonly secrets: IdentitySecrets;
  private readonly builtIn: BuiltInCa;
  private bundle: string[] = [];
  /** Whether this leader has computed the trust bundle (until then no ProxyConfig is written). */
  private decided = false;
  private status?: IdentityStatus;

  constructor(o: IdentityOptions) {
    this.o = o;
    this.clock = o.clock ?? systemClock;
    this.secrets = new IdentitySecrets(o.client, o.informers, o.enqueue);
    this.builtIn = new BuiltInCa(
      {
        client: o.client,
        namespace: o.namespace,
        clock: this.clock,
        secrets: this.secrets,
        sidecars: o.sidecars ?? (() => []),
        maxWaitMs: o.rootDistributionMaxWaitMs ?? DEFAULT_ROOT_DISTRIBUTION_MAX_WAIT_MS,
      },
      o.informers,
      o.enqueue,
    );
  }

  /** The controller to register on the manager. */
  controller(): ControllerOptions {
    return {
      name: 'identity',
      concurrency: 1,
      timeoutMs: this.o.timeoutMs ?? 60_000,
      clock: this.clock,
      keys: () => [IDENTITY_KEY],
      onStart: () => {
        this.builtIn.reset();
        this.secrets.reset();
        this.decided = false;
      },
      reconcile: (_key, ctx) => this.reconcile(ctx),
    };
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

  /** Whether a root rotation waits on the sidecars' reports (re-queue the identities when they change). */
  get rotating(): boolean {
    return this.builtIn.rotating;
  }

  /** For the Mesh status; undefined before the first reconcile. */
  meshStatus(): IdentityStatus | undefined {
    return this.status;
  }

  private async reconcile(ctx: ReconcileContext): Promise<ReconcileResult | undefined> {
    const s = identitySettings(this.o.mesh());
    if (s.ca.certManager) {
      const r = await reconcileCertManager(ctx.log, {
        client: this.o.client,
        secrets: this.secrets,
        settings: s,
        wanted: this.o.meshedServiceAccounts(),
      });
      this.apply(ctx.log, r);
      return r.requeueAfterMs === undefined ? undefined : { requeueAfterMs: r.requeueAfterMs };
    }
    const trust = await this.builtIn.trust(ctx.log, s);
    this.apply(ctx.log, trust);
    if (!trust.signing) return undefined;
    return this.builtIn.issue(ctx.log, s, trust.signing, this.o.meshedServiceAccounts());
  }

  /** Keeps what a branch decided; tells the operator what changed. */
  private apply(log: Logger, t: TrustOutcome): void {
    const first = !this.decided;
    this.decided = true;
    const bundle = t.bundle ?? this.bundle;
    if (first || JSON.stringify(bundle) !== JSON.stringify(this.bundle)) {
      this.bundle = bundle;
      log.info({ roots: bundle.length }, 'trust bundle changed');
      this.o.onTrustBundleChange();
    }
    if (JSON.stringify(t.status) !== JSON.stringify(this.status)) {
      this.status = t.status;
      this.o.onStatusChange();
    }
  }
}
