// Mount points on the host, as every process on the machine sees them (all mount namespaces):
// stop unmounts what is left under the cluster's directory.
import { readdirSync, readFileSync } from 'node:fs';

const unescapeOctal = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** Every mount point of every process on the machine (all mount namespaces). */
export function allMountPoints(): Set<string> {
  const out = new Set<string>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      for (const line of readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')) {
        const f = line.split(' ');
        if (f[4]) out.add(unescapeOctal(f[4]));
      }
    } catch {}
  }
  return out;
}
