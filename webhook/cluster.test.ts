// The namespace/Mesh cache: fresh for the TTL, then stale-while-revalidate with one
// background read, and a blocking read when nothing usable is cached. Clock passed in.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TtlCache } from './cluster.ts';

test('fresh within the TTL, stale-while-revalidate after, one refresh at a time', async () => {
  let now = 0;
  let version = 0;
  let loads = 0;
  let release = () => {};
  let gate: Promise<void> = Promise.resolve();
  const load = async () => {
    loads++;
    await gate;
    return ++version;
  };
  const cache = new TtlCache<number>(1000, () => now);
  assert.equal(await cache.get('ns', load), 1, 'first read blocks on the apiserver');
  now = 999;
  assert.equal(await cache.get('ns', load), 1);
  assert.equal(loads, 1, 'no read while fresh');
  now = 1500;
  gate = new Promise((r) => {
    release = r;
  });
  assert.equal(await cache.get('ns', load), 1, 'expired: answered from the cache');
  assert.equal(await cache.get('ns', load), 1);
  assert.equal(loads, 2, 'one background refresh for both');
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(await cache.get('ns', load), 2, 'the refreshed value');
  now = 100_000;
  assert.equal(await cache.get('ns', load), 3, 'too old to serve: blocks');
});

test('a failed background refresh keeps the stale value and is retried', async () => {
  let now = 0;
  let fail = false;
  const cache = new TtlCache<string>(1000, () => now);
  const load = async () => {
    if (fail) throw new Error('apiserver down');
    return 'v';
  };
  await cache.get('k', load);
  fail = true;
  now = 2000;
  assert.equal(await cache.get('k', load), 'v');
  await new Promise((r) => setImmediate(r));
  fail = false;
  assert.equal(await cache.get('k', load), 'v');
  await new Promise((r) => setImmediate(r));
  now = 2500;
  assert.equal(await cache.get('k', load), 'v');
});

test('ttl 0 always reads', async () => {
  let n = 0;
  const cache = new TtlCache<number>(0, () => 0);
  await cache.get('k', async () => ++n);
  assert.equal(await cache.get('k', async () => ++n), 2);
});
