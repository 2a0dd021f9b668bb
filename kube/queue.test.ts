import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock, systemClock } from './clock.ts';
import { TerminalError } from './errors.ts';
import { WorkQueue } from './queue.ts';

/** A reconcile the test settles by hand. */
function controllable() {
  const calls: string[] = [];
  const pending = new Map<string, { resolve: () => void; reject: (e: unknown) => void }[]>();
  const reconcile = (key: string) =>
    new Promise<undefined>((resolve, reject) => {
      calls.push(key);
      const list = pending.get(key) ?? [];
      list.push({ resolve: () => resolve(undefined), reject });
      pending.set(key, list);
    });
  const settle = (key: string, err?: unknown) => {
    const p = pending.get(key)!.shift()!;
    if (err) p.reject(err);
    else p.resolve();
  };
  return { calls, reconcile, settle };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('WorkQueue', () => {
  test('de-duplicates a key queued twice and never runs one key twice at once', async () => {
    const c = controllable();
    const q = new WorkQueue({ name: 't', reconcile: c.reconcile, clock: new ManualClock() });
    q.add('a');
    q.add('a');
    q.start();
    await tick();
    assert.deepEqual(c.calls, ['a']);
    q.add('a'); // while running: must wait
    q.add('a');
    await tick();
    assert.deepEqual(c.calls, ['a']);
    c.settle('a');
    await tick();
    await tick();
    assert.deepEqual(c.calls, ['a', 'a'], 'runs once more after the running reconcile');
    c.settle('a');
    await q.idle();
    assert.equal(c.calls.length, 2);
  });

  test('limits concurrency', async () => {
    const c = controllable();
    const q = new WorkQueue({ name: 't', reconcile: c.reconcile, concurrency: 2, clock: new ManualClock() });
    for (const k of ['a', 'b', 'c', 'd']) q.add(k);
    q.start();
    await tick();
    assert.deepEqual(c.calls, ['a', 'b']);
    assert.equal(q.depth, 2);
    c.settle('a');
    await tick();
    await tick();
    assert.deepEqual(c.calls, ['a', 'b', 'c']);
  });

  test('backs off exponentially per key on failure and forgets after a success', async () => {
    const clock = new ManualClock();
    const c = controllable();
    const outcomes: string[] = [];
    const q = new WorkQueue({
      name: 't',
      reconcile: c.reconcile,
      clock,
      baseBackoffMs: 100,
      maxBackoffMs: 1000,
      random: () => 1, // no jitter: delays are exactly base·2^(n-1)
      onResult: (_k, o) => outcomes.push(o),
    });
    q.add('a');
    q.start();
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      await tick();
      c.settle('a', new Error('boom'));
      await tick();
      await tick();
      const before = c.calls.length;
      let waited = 0;
      while (c.calls.length === before) {
        clock.advance(10);
        waited += 10;
        await tick();
      }
      delays.push(waited);
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1000], 'doubles, capped at maxBackoffMs');
    assert.equal(q.failureCount('a'), 5);
    c.settle('a');
    await q.idle();
    assert.equal(q.failureCount('a'), 0);
    assert.deepEqual(outcomes, ['error', 'error', 'error', 'error', 'error', 'success']);
  });

  test('a terminal error is not retried', async () => {
    const clock = new ManualClock();
    let runs = 0;
    const q = new WorkQueue({
      name: 't',
      clock,
      reconcile: async () => {
        runs++;
        throw new TerminalError('bad spec');
      },
    });
    q.add('a');
    q.start();
    await q.idle();
    clock.advance(10 * 60_000);
    await tick();
    assert.equal(runs, 1);
    assert.equal(clock.pending, 0);
  });

  test('a reconcile that exceeds the timeout is aborted, counted as failed and retried', async () => {
    const clock = new ManualClock();
    const signals: AbortSignal[] = [];
    const outcomes: string[] = [];
    let release!: () => void;
    const q = new WorkQueue({
      name: 't',
      clock,
      timeoutMs: 1000,
      baseBackoffMs: 50,
      random: () => 1,
      onResult: (_k, o) => outcomes.push(o),
      reconcile: (_key, signal) => {
        signals.push(signal);
        if (signals.length > 1) return Promise.resolve(undefined);
        return new Promise<undefined>((r) => {
          release = () => r(undefined);
        });
      },
    });
    q.add('a');
    q.start();
    await tick();
    clock.advance(1000);
    assert.equal(signals[0]!.aborted, true);
    await tick();
    assert.equal(q.activeCount, 1, 'still running until the reconcile itself settles');
    release();
    await tick();
    await tick();
    assert.deepEqual(outcomes, ['timeout']);
    clock.advance(50);
    await q.idle();
    assert.deepEqual(outcomes, ['timeout', 'success']);
  });

  test('requeueAfterMs runs the key again later without counting a failure', async () => {
    const clock = new ManualClock();
    let runs = 0;
    const q = new WorkQueue({
      name: 't',
      clock,
      reconcile: async () => {
        runs++;
        return runs === 1 ? { requeueAfterMs: 5000 } : undefined;
      },
    });
    q.add('a');
    q.start();
    await q.idle();
    clock.advance(4999);
    await tick();
    assert.equal(runs, 1);
    clock.advance(1);
    await q.idle();
    assert.equal(runs, 2);
    assert.equal(q.failureCount('a'), 0);
  });

  test('stop waits for running reconciles and drops queued keys', async () => {
    const c = controllable();
    const q = new WorkQueue({ name: 't', reconcile: c.reconcile, concurrency: 1, clock: new ManualClock() });
    q.add('a');
    q.add('b');
    q.start();
    await tick();
    let stopped = false;
    const s = q.stop().then(() => {
      stopped = true;
    });
    await tick();
    assert.equal(stopped, false);
    c.settle('a');
    await s;
    assert.deepEqual(c.calls, ['a']);
  });

  test("a requeue past Node's timer limit (2^31-1 ms) waits instead of firing after 1 ms", async () => {
    // A workload certificate of a year renews after 243 days: the identity controller asks for that.
    const calls: string[] = [];
    const q = new WorkQueue({
      name: 't',
      clock: systemClock,
      reconcile: async (key) => {
        calls.push(key);
        return { requeueAfterMs: 243 * 24 * 3_600_000 };
      },
    });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      q.start();
      q.add('cert');
      await q.idle();
      // Timers fire in due order: an overflowed one (1 ms) would run before this 20 ms one.
      await new Promise((r) => setTimeout(r, 20));
      await tick();
      assert.deepEqual(calls, ['cert'], 'reconciled once, the requeue still pending');
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
      await q.stop();
    }
  });
});
