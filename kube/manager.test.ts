import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from './clock.ts';
import { silentLogger } from './log.ts';
import { type Cache, type LeaderCallbacks, Manager, type Server } from './manager.ts';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Servers, caches and controllers that write what happens to them into one log. */
function fixture(opts: { leader?: boolean; resyncMs?: number; clock?: ManualClock } = {}) {
  const events: string[] = [];
  const cacheSynced = deferred();
  let leader: LeaderCallbacks | undefined;
  const mgr = new Manager({
    log: silentLogger,
    clock: opts.clock,
    resyncMs: opts.resyncMs,
    leaderElection: opts.leader
      ? (callbacks) => {
          leader = callbacks;
          return {
            start: () => events.push('leader start'),
            stop: async () => {
              events.push('leader stop');
              await callbacks.onStoppedLeading();
            },
          };
        }
      : undefined,
  });
  const server = (name: string): Server => ({
    start: async () => {
      events.push(`${name} start`);
    },
    stop: async () => {
      events.push(`${name} stop`);
    },
  });
  const cache = (name: string, synced: Promise<void>): Cache => ({
    synced,
    start: () => events.push(`${name} start`),
    stop: async () => {
      events.push(`${name} stop`);
    },
  });
  mgr.addServer(server('health'));
  mgr.addServer(server('metrics'));
  mgr.addCache(cache('pods', Promise.resolve()));
  mgr.addCache(cache('meshes', cacheSynced.promise));
  const ctl = mgr.addController({
    name: 'c',
    keys: () => ['a', 'b'],
    onStart: () => events.push('c onStart'),
    reconcile: async (key) => {
      events.push(`reconcile ${key}`);
      return undefined;
    },
  });
  return { mgr, ctl, events, cacheSynced, leader: () => leader };
}

test('manager: servers, then caches, then controllers once the caches synced; stop in reverse', async () => {
  const f = fixture();
  await f.mgr.start();
  assert.deepEqual(f.events, ['health start', 'metrics start', 'pods start', 'meshes start']);
  await new Promise((r) => setImmediate(r));
  assert.equal(f.mgr.isLeader(), false, 'no controller before every cache synced');
  f.ctl.add('x');
  f.cacheSynced.resolve();
  await f.mgr.leading();
  await f.mgr.idle();
  assert.equal(f.mgr.isLeader(), true);
  assert.deepEqual(f.events.slice(4, 5), ['c onStart']);
  assert.deepEqual(
    f.events.slice(5).sort(),
    ['reconcile a', 'reconcile b'],
    'every key at start; the key added before leading is not kept',
  );
  f.events.length = 0;
  await f.mgr.stop();
  assert.equal(f.mgr.isLeader(), false);
  assert.deepEqual(f.events, ['pods stop', 'meshes stop', 'metrics stop', 'health stop']);
});

test('manager: controllers run only while this replica holds the Lease', async () => {
  const f = fixture({ leader: true });
  f.cacheSynced.resolve();
  await f.mgr.start();
  await f.mgr.synced;
  assert.deepEqual(f.events, ['health start', 'metrics start', 'pods start', 'meshes start', 'leader start']);
  f.ctl.add('x');
  await new Promise((r) => setImmediate(r));
  assert.equal(f.mgr.isLeader(), false);
  assert.ok(!f.events.some((e) => e.startsWith('reconcile')), 'a standby reconciles nothing');

  f.leader()!.onStartedLeading();
  await f.mgr.leading();
  f.ctl.add('x');
  await f.mgr.idle();
  assert.ok(f.events.includes('reconcile x'), 'the leader reconciles');

  await f.leader()!.onStoppedLeading();
  assert.equal(f.mgr.isLeader(), false);
  f.events.length = 0;
  f.ctl.add('y');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(f.events, [], 'after losing the Lease nothing runs');
  const next = f.mgr.leading();
  let led = false;
  void next.then(() => {
    led = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(led, false, 'leading() waits for the next term');

  f.leader()!.onStartedLeading();
  await next;
  await f.mgr.idle();
  assert.deepEqual(f.events.slice(0, 1), ['c onStart'], 'a new term resets leader state first');
  f.events.length = 0;
  await f.mgr.stop();
  assert.deepEqual(f.events, ['leader stop', 'pods stop', 'meshes stop', 'metrics stop', 'health stop']);
});

test('manager: a term lost while the caches sync starts no controller', async () => {
  const f = fixture({ leader: true });
  await f.mgr.start();
  f.leader()!.onStartedLeading();
  await f.leader()!.onStoppedLeading();
  f.cacheSynced.resolve();
  await f.mgr.synced;
  await new Promise((r) => setImmediate(r));
  assert.equal(f.mgr.isLeader(), false);
  assert.ok(!f.events.includes('c onStart'));
  await f.mgr.stop();
});

test('manager: resync enqueues every key on the clock passed in, and only while leading', async () => {
  const clock = new ManualClock(0);
  const f = fixture({ resyncMs: 1000, clock });
  f.cacheSynced.resolve();
  await f.mgr.start();
  await f.mgr.leading();
  await f.mgr.idle();
  f.events.length = 0;
  clock.advance(999);
  await f.mgr.idle();
  assert.deepEqual(f.events, []);
  clock.advance(1);
  await f.mgr.idle();
  assert.deepEqual(f.events.sort(), ['reconcile a', 'reconcile b']);
  await f.mgr.stop();
  assert.equal(clock.pending, 0, 'stop cancels the resync timer');
});

test('manager: a server that cannot listen fails start and closes the ones already listening', async () => {
  const events: string[] = [];
  const mgr = new Manager({ log: silentLogger });
  mgr.addServer({
    start: async () => {
      events.push('a start');
    },
    stop: async () => {
      events.push('a stop');
    },
  });
  mgr.addServer({
    start: async () => {
      throw new Error('EADDRINUSE');
    },
    stop: async () => {
      events.push('b stop');
    },
  });
  await assert.rejects(mgr.start(), /EADDRINUSE/);
  assert.deepEqual(events, ['a start', 'a stop']);
});
