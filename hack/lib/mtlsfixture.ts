// Shared setup of the mTLS and authorization netns tests: a mesh CA from the operator's CA
// library, identity directories written the way the kubelet projects a Secret (new files, then
// rename into place), and downward-API labels files.
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
