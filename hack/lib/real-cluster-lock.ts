// One real cluster (hack/node) per host at a time: two kube-proxies in iptables mode share the
// KUBE-* chains. Test files that start one take this lock first, so hack/test.sh may run them
// with --test-concurrency=2: the second waits for the first to stop its cluster. cluster:up
// (the demo's cluster) takes it too and hands it to its etcd, so tests wait for cluster:down.
// The holder notes its cluster's directory in the lock (noteRealClusterDir): a process that dies
// holding the lock (killed, or ended by an unhandled error) leaves a running cluster behind, and
// the next taker stops that cluster (hack/node stopRealNode) before starting its own.
import { closeSync, existsSync, openSync, readFileSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive } from './processes.ts';

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
  const [pid, dir] = readFileSync(lockFile(), 'utf8').split('\n');
  return { pid: Number(pid) || 0, ...(dir ? { dir } : {}) };
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
 * Waits until no live process holds the lock (a dead holder's lock is taken over), takes it and
 * returns its release. Progress goes to `log` once a minute while waiting.
 */
export async function lockRealCluster(
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  timeoutMs = 30 * 60_000,
  stopLeft: (dir: string, log: (line: string) => void) => Promise<void> = stopLeftCluster,
): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  let said = 0;
  for (;;) {
    try {
      const fd = openSync(lockFile(), 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => releaseRealClusterLock([process.pid]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = 0;
    try {
      holder = readHolder().pid;
    } catch {
      continue; // released meanwhile
    }
    if (!holder || !alive(holder)) {
      // A holder that died (or wrote nothing yet: give it a moment before taking over).
      await new Promise((r) => setTimeout(r, 500));
      try {
        const h = readHolder();
        if (h.pid !== holder) continue;
        if (h.dir && existsSync(h.dir)) {
          log(
            `[real-cluster] process ${holder} ended holding the lock: stopping the cluster it left in ${h.dir}`,
          );
          await stopLeft(h.dir, log);
        }
        if (readHolder().pid === holder) unlinkSync(lockFile());
      } catch {}
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(
        `another real cluster (process ${holder}) held ${lockFile()} for ${timeoutMs / 60_000} minutes`,
      );
    if (Date.now() - said > 60_000) {
      log(`[real-cluster] waiting for process ${holder} to stop its real cluster (${lockFile()})`);
      said = Date.now();
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
