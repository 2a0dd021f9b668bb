// The workload identity Secrets (`weft-identity-<sa>` in each workload namespace) as this leader
// knows them: the informer's cache, overlaid with the writes and deletes the cache has not
// shown yet, so a reconcile right after a write does not act on a stale copy.
import { type KubeClient, RESOURCES, type ResourceType } from '../../kube/client.ts';
import { isNotFound } from '../../kube/errors.ts';
import type { Informer } from '../../kube/informer.ts';
import type { Logger } from '../../kube/log.ts';
import type { InformerFactory } from '../cache.ts';
import { labelSelector } from '../cache.ts';
import { CERTIFICATES, type SecretObj, saKey } from './model.ts';
import {
  IDENTITY_LABELS,
  identitySecretName,
  ROOT_FINGERPRINT_ANNOTATION,
  SERVICE_ACCOUNT_ANNOTATION,
} from './plan.ts';

export const SECRETS: ResourceType = RESOURCES.secrets;

export class IdentitySecrets {
  readonly informer: Informer<SecretObj>;
  private readonly client: KubeClient;
  /** Secrets this leader wrote, until the informer shows that resourceVersion (or a newer one). */
  private readonly written = new Map<string, { rv?: string; secret?: SecretObj; deletedRv?: string }>();

  constructor(client: KubeClient, make: InformerFactory, onChange: () => void) {
    this.client = client;
    this.informer = make<SecretObj>(SECRETS, { labelSelector: labelSelector(IDENTITY_LABELS) });
    this.informer.on((t, s) => {
      const k = `${s.metadata.namespace}/${s.metadata.name}`;
      const w = this.written.get(k);
      if (w && (t === 'delete' ? w.deletedRv !== undefined : w.rv === s.metadata.resourceVersion))
        this.written.delete(k);
      onChange();
    });
  }

  /** Forgets this leader's writes (a new term trusts the cache). */
  reset(): void {
    this.written.clear();
  }

  /** The identity Secrets by namespace/serviceAccount (this leader's own writes win over a lagging cache). */
  current(): Map<string, SecretObj> {
    const out = new Map<string, SecretObj>();
    for (const s of this.informer.list()) {
      const sa = s.metadata.annotations?.[SERVICE_ACCOUNT_ANNOTATION];
      if (sa && s.metadata.name === identitySecretName(sa)) out.set(saKey(s.metadata.namespace ?? '', sa), s);
    }
    for (const [k, w] of this.written) {
      const [ns, name] = k.split('/') as [string, string];
      const cached = this.informer.get(k);
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

  async write(
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
    const res = await this.client.apply<SecretObj>(SECRETS, obj);
    this.written.set(`${namespace}/${name}`, { rv: res.metadata.resourceVersion, secret: res });
  }

  /** Deletes the identities nobody uses (and, in cert-manager mode, their Certificates). */
  async remove(
    rlog: Logger,
    remove: { namespace: string; serviceAccount: string }[],
    certificates: boolean,
  ): Promise<void> {
    for (const r of remove) {
      const name = identitySecretName(r.serviceAccount);
      if (certificates) await this.deleteIgnoringMissing(CERTIFICATES, name, r.namespace);
      const cached = this.informer.get(`${r.namespace}/${name}`);
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
      await this.client.delete(t, name, namespace);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
