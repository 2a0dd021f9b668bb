// One real cluster (hack/node) per host at a time: two kube-proxies in iptables mode share the
// KUBE-* chains. Test files that start one take this lock first, so hack/test.sh may run them
// with --test-concurrency=2: the second waits for the first to stop its cluster. cluster:up
// (the demo's cluster) takes it too and hands it to its etcd, so tests wait for cluster:down.
import { closeSync, openSync, readFileSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive } from './processes.ts';

export const REAL_CLUSTER_LOCK = join(tmpdir(), 'weft-real-cluster.lock');

/**
 * Hands the lock to `pid` (a detached cluster's process, so the lock lives as long as the
 * cluster does: npm run cluster:up); only its holder may.
 */
export function handOverRealClusterLock(from: number, to: number): void {
  if (readFileSync(REAL_CLUSTER_LOCK, 'utf8') === String(from)) writeFileSync(REAL_CLUSTER_LOCK, String(to));
}

/** Releases the lock when one of `pids` holds it (npm run cluster:down). */
export function releaseRealClusterLock(pids: number[]): void {
  try {
    if (pids.map(String).includes(readFileSync(REAL_CLUSTER_LOCK, 'utf8'))) unlinkSync(REAL_CLUSTER_LOCK);
  } catch {}
}

/**
 * Waits until no live process holds the lock (a dead holder's lock is taken over), takes it and
 * returns its release. Progress goes to `log` once a minute while waiting.
 */
export async function lockRealCluster(
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  timeoutMs = 30 * 60_000,
): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  let said = 0;
  for (;;) {
    try {
      const fd = openSync(REAL_CLUSTER_LOCK, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => releaseRealClusterLock([process.pid]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = 0;
    try {
      holder = Number(readFileSync(REAL_CLUSTER_LOCK, 'utf8'));
    } catch {
      continue; // released meanwhile
    }
    if (!holder || !alive(holder)) {
      // A holder that died (or wrote nothing yet: give it a moment before taking over).
      await new Promise((r) => setTimeout(r, 500));
      try {
        if (Number(readFileSync(REAL_CLUSTER_LOCK, 'utf8')) === holder) unlinkSync(REAL_CLUSTER_LOCK);
      } catch {}
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(
        `another real cluster (process ${holder}) held ${REAL_CLUSTER_LOCK} for ${timeoutMs / 60_000} minutes`,
      );
    if (Date.now() - said > 60_000) {
      log(`[real-cluster] waiting for process ${holder} to stop its real cluster (${REAL_CLUSTER_LOCK})`);
      said = Date.now();
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
