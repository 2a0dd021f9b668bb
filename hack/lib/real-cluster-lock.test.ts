// The real-cluster lock on a file of its own (WEFT_REAL_CLUSTER_LOCK), not the host's.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  handOverRealClusterLock,
  lockRealCluster,
  noteRealClusterDir,
  releaseRealClusterLock,
} from './real-cluster-lock.ts';

let dir: string;
let lock: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-lock-test-'));
  lock = join(dir, 'lock');
  process.env.WEFT_REAL_CLUSTER_LOCK = lock;
});
after(() => {
  delete process.env.WEFT_REAL_CLUSTER_LOCK;
  rmSync(dir, { recursive: true, force: true });
});

/** The pid of a process that has ended. */
const deadPid = () => spawnSync('true').pid!;
const noStop = async () => assert.fail('no cluster was left: nothing to stop');

test('the holder notes its cluster directory; hand-over keeps it; release removes the lock', async () => {
  const release = await lockRealCluster(() => {}, 1000, noStop);
  assert.equal(readFileSync(lock, 'utf8'), String(process.pid));
  noteRealClusterDir('/some/cluster');
  assert.equal(readFileSync(lock, 'utf8'), `${process.pid}\n/some/cluster`);
  noteRealClusterDir('/not/mine', process.pid + 1);
  assert.equal(
    readFileSync(lock, 'utf8'),
    `${process.pid}\n/some/cluster`,
    'only the holder notes a directory',
  );
  handOverRealClusterLock(process.pid, 4242);
  assert.equal(readFileSync(lock, 'utf8'), '4242\n/some/cluster');
  releaseRealClusterLock([process.pid]);
  assert.ok(existsSync(lock), 'a process that does not hold the lock cannot release it');
  handOverRealClusterLock(4242, process.pid);
  release();
  assert.ok(!existsSync(lock));
});

test('a holder that died leaving a cluster: the next taker stops that cluster first', async () => {
  const left = join(dir, 'left-cluster');
  mkdirSync(left);
  const pid = deadPid();
  writeFileSync(lock, `${pid}\n${left}`);
  const stopped: string[] = [];
  const lines: string[] = [];
  const release = await lockRealCluster(
    (l) => lines.push(l),
    5000,
    async (d) => {
      stopped.push(d);
    },
  );
  assert.deepEqual(stopped, [left]);
  assert.match(
    lines.join('\n'),
    new RegExp(`process ${pid} ended holding the lock: stopping the cluster it left in`),
  );
  assert.equal(readFileSync(lock, 'utf8'), String(process.pid));
  release();
});

test('a dead holder without a cluster directory (or whose directory is gone) is taken over without a stop', async () => {
  writeFileSync(lock, String(deadPid()));
  (await lockRealCluster(() => {}, 5000, noStop))();
  writeFileSync(lock, `${deadPid()}\n${join(dir, 'gone')}`);
  (await lockRealCluster(() => {}, 5000, noStop))();
  assert.ok(!existsSync(lock));
});
