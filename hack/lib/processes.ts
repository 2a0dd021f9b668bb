// Process helpers shared by the cluster scripts (hack/cluster.ts, hack/node/) and the tests.
import { readFileSync } from 'node:fs';

/** True while the process exists and has not exited (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
