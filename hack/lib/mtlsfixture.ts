// Shared setup of the mTLS and authorization netns tests: a mesh CA from the operator's CA
// library, identity directories written the way the kubelet projects a Secret (new files, then
// rename into place), and downward-API labels files; and the mesh root replaced in a cluster
// (the root rotation's integration tests and real-node scenario).
import { chmod, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type CertificateAuthority,
  createRoot,
  issueWorkloadCertificate,
} from '../../operator/identity/ca.ts';

export const HOUR = 3_600_000;
export const spiffe = (sa: string, ns = 'shop') => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

export function newCa(now = new Date()): Promise<CertificateAuthority> {
  return createRoot({ trustDomain: 'cluster.local', lifetimeMs: 24 * HOUR, now });
}

/**
 * Replaces the operator's CA Secret `weft-ca` in place by a new root (as an admin rotating it
 * would), through `kubectl`; returns the new root.
 */
export async function replaceWeftCa(
  kubectl: (...args: string[]) => unknown,
  o: { trustDomain: string; lifetimeMs: number; now?: Date; namespace?: string },
): Promise<CertificateAuthority> {
  const root = await createRoot({
    trustDomain: o.trustDomain,
    lifetimeMs: o.lifetimeMs,
    now: o.now ?? new Date(),
  });
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  kubectl(
    'patch',
    'secret',
    'weft-ca',
    '-n',
    o.namespace ?? 'weft-system',
    '--type=merge',
    '-p',
    JSON.stringify({
      data: { 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem), 'ca.crt': b64(root.certPem) },
    }),
  );
  return root;
}

/** Writes tls.crt, tls.key, ca.crt for `sa` into `dir`, each by rename (as the kubelet swaps). */
export async function writeIdentity(
  dir: string,
  ca: CertificateAuthority,
  sa: string,
  opts: { now?: Date; lifetimeMs?: number; roots?: string[] } = {},
): Promise<void> {
  const w = await issueWorkloadCertificate(ca, {
    trustDomain: 'cluster.local',
    namespace: 'shop',
    serviceAccount: sa,
    lifetimeMs: opts.lifetimeMs ?? HOUR,
    now: opts.now ?? new Date(),
  });
  for (const [name, text] of [
    ['tls.crt', w.chainPem],
    ['tls.key', w.keyPem],
    ['ca.crt', (opts.roots ?? ca.rootsPem).join('')],
  ] as const) {
    const tmp = join(dir, `.${name}.tmp`);
    await writeFile(tmp, text);
    await chmod(tmp, 0o644);
    await rename(tmp, join(dir, name));
  }
}

export async function writeLabels(dir: string, labels: Record<string, string>): Promise<void> {
  const tmp = join(dir, '.labels.tmp');
  await writeFile(
    tmp,
    Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .join('\n'),
  );
  await chmod(tmp, 0o644);
  await rename(tmp, join(dir, 'labels'));
}
