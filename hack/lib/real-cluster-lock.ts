// One real cluster (hack/node) per host at a time: two kube-proxies in iptables mode share the
// KUBE-* chains. Test files that start one take this lock first, so hack/test.sh may run them
// with --test-concurrency=2: the second waits for the first to stop its cluster. cluster:up
// (the demo's cluster) takes it too and hands it to its etcd, so tests wait for cluster:down.
// The holder notes its cluster's directory in the lock (noteRealClusterDir): a process that dies
// holding the lock (killed, or ended by an unhandled error) leaves a running cluster behind, and
// the next taker stops that cluster (hack/node stopRealNode) before starting its own.
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLockHolder, takeFileLock } from './file-lock.ts';

export const REAL_CLUSTER_LOCK = join(tmpdir(), 'weft-real-cluster.lock');
/** The lock file: WEFT_REAL_CLUSTER_LOCK for the lock's own tests, REAL_CLUSTER_LOCK otherwise. */
const lockFile = () => process.env.WEFT_REAL_CLUSTER_LOCK || REAL_CLUSTER_LOCK;

/**
 * Hands the lock to `pid` (a detached cluster's process, so the lock lives as long as the
 * cluster does: npm run cluster:up); only its holder may.
 */
export function handOverRealClusterLock(from: number, to: number): void {
  const h = readHolder();
  if (h.pid === from) writeHolder(to, h.dir);
}

/** Notes the directory of the cluster `pid` (the holder) runs, for a successor if it dies. */
export function noteRealClusterDir(dir: string, pid = process.pid): void {
  if (readHolder().pid === pid) writeHolder(pid, dir);
}

/** Releases the lock when one of `pids` holds it (npm run cluster:down). */
export function releaseRealClusterLock(pids: number[]): void {
  try {
    if (pids.includes(readHolder().pid)) unlinkSync(lockFile());
  } catch {}
}

/** The lock's holder: its pid (0 when the file is empty or unreadable) and its cluster's directory. */
function readHolder(): { pid: number; dir?: string } {
  const { pid, lines } = readLockHolder(lockFile());
  return { pid, ...(lines[1] ? { dir: lines[1] } : {}) };
}

function writeHolder(pid: number, dir: string | undefined): void {
  writeFileSync(lockFile(), dir ? `${pid}\n${dir}` : String(pid));
}

/** Stops the cluster a dead holder left in `dir` (hack/node's stopRealNode; loaded only then). */
async function stopLeftCluster(dir: string, log: (line: string) => void): Promise<void> {
  const { stopRealNode } = await import('../node/index.ts');
  await stopRealNode(dir, log);
}

/**
 * Waits until no live process holds the lock (a dead holder's lock is taken over, after the
 * cluster it left is stopped), takes it and returns its release. Progress goes to `log` once a
 * minute while waiting.
 */
export async function lockRealCluster(
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  timeoutMs = 30 * 60_000,
  stopLeft: (dir: string, log: (line: string) => void) => Promise<void> = stopLeftCluster,
): Promise<() => void> {
  const release = await takeFileLock(lockFile(), {
    what: 'to stop its real cluster',
    prefix: '[real-cluster]',
    log,
    timeoutMs,
    onDeadHolder: async (pid, lines) => {
      const dir = lines[1];
      if (dir && existsSync(dir)) {
        log(`[real-cluster] process ${pid} ended holding the lock: stopping the cluster it left in ${dir}`);
        await stopLeft(dir, log);
      }
    },
  });
  const taken = Date.now();
  return () => {
    release();
    log(`[real-cluster] released after ${((Date.now() - taken) / 1000).toFixed(1)} s`);
  };
}
