// Mount points on the host. Containers share the host's filesystem, so a mountPath such as
// /etc/weft/config must exist before it can be bind-mounted in the container's own mount
// namespace. The node creates what is missing, remembers the top-most directory it created,
// and removes it again on stop when it is empty and no process on the machine (in any mount
// namespace) still has a mount under it.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

/** Creates `target` (a directory, or an empty file when `file`), adding the top-most created path to `created`. */
export function ensureMountPoint(target: string, file: boolean, created: Set<string>): void {
  if (existsSync(target)) return;
  let top = target;
  while (!existsSync(dirname(top))) top = dirname(top);
  if (file) {
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    writeFileSync(target, '');
  } else mkdirSync(target, { recursive: true, mode: 0o755 });
  created.add(top);
}

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

function removeEmptyTree(p: string): void {
  const st = lstatSync(p);
  if (st.isDirectory()) {
    for (const e of readdirSync(p)) removeEmptyTree(join(p, e));
    rmdirSync(p);
  } else if (st.isFile() && st.size === 0) unlinkSync(p);
}

/** Removes the created mount points that are empty and unused; returns the ones left in place. */
export function removeMountPoints(created: Set<string>): string[] {
  const mounts = [...allMountPoints()];
  const left: string[] = [];
  for (const top of [...created].sort((a, b) => b.length - a.length)) {
    if (mounts.some((m) => m === top || m.startsWith(`${top}/`))) {
      left.push(top);
      continue;
    }
    try {
      removeEmptyTree(top);
      created.delete(top);
    } catch {
      if (existsSync(top)) left.push(top);
      else created.delete(top);
    }
  }
  return left;
}
