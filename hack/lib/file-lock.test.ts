// The host lock of file-lock.ts on files of its own.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { takeFileLock } from './file-lock.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-file-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a live holder is waited for (and named), then the lock is taken; release removes it', async () => {
  const file = join(dir, 'live');
  const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    writeFileSync(file, String(holder.pid));
    const lines: string[] = [];
    let taken = false;
    const taking = takeFileLock(file, {
      what: 'to finish',
      prefix: '[t]',
      log: (l) => lines.push(l),
      pollMs: 50,
    }).then((release) => {
      taken = true;
      return release;
    });
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(taken, false, 'the lock is not taken while its holder lives');
    assert.deepEqual(lines, [`[t] waiting for process ${holder.pid} to finish (${file})`]);
    holder.kill();
    const release = await taking;
    assert.equal(readFileSync(file, 'utf8'), String(process.pid));
    release();
    assert.ok(!existsSync(file));
  } finally {
    holder.kill();
  }
});

test("a dead holder's lock is taken over after onDeadHolder saw its lines", async () => {
  const file = join(dir, 'dead');
  const pid = spawnSync('true').pid!;
  writeFileSync(file, `${pid}\nleft-behind`);
  const seen: [number, string[]][] = [];
  const release = await takeFileLock(file, {
    what: 'x',
    log: () => {},
    onDeadHolder: async (p, lines) => {
      seen.push([p, lines]);
    },
  });
  assert.deepEqual(seen, [[pid, [String(pid), 'left-behind']]]);
  release();
});

test('a waiter gives up after its timeout, naming the holder', async () => {
  const file = join(dir, 'timeout');
  writeFileSync(file, String(process.pid));
  await assert.rejects(
    takeFileLock(file, { what: 'x', log: () => {}, timeoutMs: 200, pollMs: 50 }),
    new RegExp(`process ${process.pid} held ${file}`),
  );
  rmSync(file);
});
