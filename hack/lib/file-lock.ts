// A lock between processes of one host: a file created exclusively ('wx') whose first line is
// the holder's pid. A holder that died is taken over (after `onDeadHolder`, which may clean up
// what it left); waiters poll and say once a minute whom they wait for. The real-cluster lock
// (real-cluster-lock.ts) and the image build (hack/image/build.ts) take one each.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { alive } from './processes.ts';

export interface FileLockOptions {
  /** What the holder does, for the waiting message ("to stop its real cluster"). */
  what: string;
  log?: (line: string) => void;
  /** The log line's prefix ("[real-cluster]"). */
  prefix?: string;
  timeoutMs?: number;
  pollMs?: number;
  /** Called with the lock file's lines when its holder died, before the lock is taken over. */
  onDeadHolder?: (pid: number, lines: string[]) => Promise<void>;
}

/** The lock file's lines, and the holder's pid (0 when the file is empty). Throws when it is gone. */
export function readLockHolder(file: string): { pid: number; lines: string[] } {
  const lines = readFileSync(file, 'utf8').split('\n');
  return { pid: Number(lines[0]) || 0, lines };
}

/**
 * Waits until no live process holds `file` (a dead holder's lock is taken over), takes it and
 * returns its release, which removes the file if this process still holds it.
 */
export async function takeFileLock(file: string, o: FileLockOptions): Promise<() => void> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const timeoutMs = o.timeoutMs ?? 30 * 60_000;
  const pollMs = o.pollMs ?? 1000;
  const prefix = o.prefix ? `${o.prefix} ` : '';
  const deadline = Date.now() + timeoutMs;
  let said = 0;
  for (;;) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          if (readLockHolder(file).pid === process.pid) unlinkSync(file);
        } catch {}
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = 0;
    try {
      holder = readLockHolder(file).pid;
    } catch {
      continue; // released meanwhile
    }
    if (!holder || !alive(holder)) {
      // A holder that died (or wrote nothing yet: give it a moment before taking over).
      await new Promise((r) => setTimeout(r, 500));
      try {
        const h = readLockHolder(file);
        if (h.pid !== holder) continue;
        if (o.onDeadHolder) await o.onDeadHolder(holder, h.lines);
        if (readLockHolder(file).pid === holder) unlinkSync(file);
      } catch {}
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(`${prefix}process ${holder} held ${file} for ${timeoutMs / 60_000} minutes`);
    if (Date.now() - said > 60_000) {
      log(`${prefix}waiting for process ${holder} ${o.what} (${file})`);
      said = Date.now();
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
