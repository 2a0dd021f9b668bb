// The health port's /config/version long poll: held for a caller that knows the version, but
// never more than MAX_HELD_VERSION_POLLS at once (the port is open to the pod network).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { trustKey } from '../api/pem.ts';
import { TestIdentity, watcherHealthHandler } from '../hack/lib/proxy.ts';
import { healthHandler, MAX_HELD_VERSION_POLLS } from './admin.ts';
import { ProxyMetrics } from './metrics.ts';
import type { ProxyHandle } from './proxy.ts';
import { finishReporter } from './telemetry/finish.ts';
import { proxyConfig } from './testdata.ts';
import { ConfigWatcher } from './watcher.ts';

test('/config/version holds at most a few polls; past them it answers at once', async () => {
  const watcher = new ConfigWatcher('/nonexistent', { apply: () => {}, rejected: () => {} });
  const cfg = proxyConfig('shop', []);
  watcher.offer({ config: cfg, generation: 1 }, 'volume');
  const srv = createServer(watcherHealthHandler(watcher));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/config/version?known=${cfg.version}&waitMs=60000`;
  const answered: boolean[] = [];
  const polls = Array.from({ length: MAX_HELD_VERSION_POLLS + 3 }, (_, i) =>
    fetch(url).then(async (r) => {
      answered[i] = true;
      return (await r.json()) as { version: string; generation: number };
    }),
  );
  try {
    // The polls past the limit are answered while the first ones are still held.
    const extra = await Promise.all(polls.slice(MAX_HELD_VERSION_POLLS));
    for (const e of extra) assert.equal(e.version, cfg.version);
    assert.equal(answered.filter(Boolean).length, 3, 'only the polls past the limit were answered');
    // A new config answers every held poll with it.
    const next = proxyConfig('shop', [], [], { mtls: { mode: 'STRICT', ports: [] } });
    watcher.offer({ config: next, generation: 2 }, 'apiserver');
    const held = await Promise.all(polls.slice(0, MAX_HELD_VERSION_POLLS));
    for (const h of held) assert.deepEqual([h.version, h.generation], [next.version, 2]);
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});

test('/config/version answers at once a caller that knows the version under an older generation', async () => {
  // The operator rewrote the same content under a newer generation between two polls: a poll
  // that named only the version was held until the next change or its wait ended, and the
  // operator meanwhile listed the proxy as lagging on the older generation.
  const watcher = new ConfigWatcher('/nonexistent', { apply: () => {}, rejected: () => {} });
  const cfg = proxyConfig('shop', []);
  watcher.offer({ config: cfg, generation: 4 }, 'apiserver');
  watcher.offer({ config: cfg, generation: 5 }, 'apiserver');
  const srv = createServer(watcherHealthHandler(watcher));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(srv.address() as { port: number }).port}/config/version?known=${cfg.version}&waitMs=60000`;
  try {
    const r = await fetch(`${base}&generation=4`, { signal: AbortSignal.timeout(10_000) });
    assert.deepEqual(await r.json(), {
      version: cfg.version,
      generation: 5,
      source: 'apiserver',
      trust: null,
    });
    // Knowing both, the poll is held (answered here when the server closes it).
    const held = fetch(`${base}&generation=5`).then(
      () => 'answered',
      () => 'held',
    );
    const first = await Promise.race([held, new Promise((r) => setTimeout(() => r('held'), 300))]);
    assert.equal(first, 'held');
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});

test('/stats/inbound reports the inbound requests, their 5xx and latency histogram, not the outbound ones', async () => {
  const metrics = new ProxyMetrics();
  let t = 0;
  const report = finishReporter(metrics, undefined, () => t);
  const who = { workload: 'w', namespace: 'n' };
  const finish = (direction: 'inbound' | 'outbound', status: number, ms: number) => {
    t = 1000;
    report({
      direction,
      started: 1000 - ms,
      status,
      method: 'GET',
      authority: 'x',
      path: '/',
      src: who,
      dst: { ...who, service: '8080' },
    });
  };
  finish('inbound', 200, 3);
  finish('inbound', 503, 30);
  finish('inbound', 404, 20_000);
  finish('outbound', 500, 1);
  const srv = createServer(
    healthHandler({
      proxy: {} as ProxyHandle,
      status: {} as never,
      metrics,
      draining: () => false,
    }),
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const r = await fetch(`http://127.0.0.1:${(srv.address() as { port: number }).port}/stats/inbound`);
    const j = (await r.json()) as { requests: number; errors: number; bucketsMs: number[]; counts: number[] };
    assert.equal(j.requests, 3);
    assert.equal(j.errors, 1);
    assert.equal(j.bucketsMs[2], 5);
    // 3 ms in the 5 ms bucket, 30 ms in the 50 ms one, 20 s past the last.
    assert.equal(j.counts[2], 1);
    assert.equal(j.counts[5], 1);
    assert.equal(j.counts.at(-1), 1);
    assert.equal(
      j.counts.reduce((a, b) => a + b, 0),
      3,
    );
  } finally {
    srv.close();
  }
});

test('/config/version reports the trusted roots and answers at once a caller that knows an older trust', async () => {
  // The operator's root rotation waits until every sidecar trusts the new root: a held poll must
  // answer when the identity is reloaded with other roots, not only on a new config version.
  const watcher = new ConfigWatcher('/nonexistent', { apply: () => {}, rejected: () => {} });
  const cfg = proxyConfig('shop', []);
  watcher.offer({ config: cfg, generation: 1 }, 'apiserver');
  const identity = new TestIdentity({ roots: ['AA'], signedBy: 'AA' });
  const srv = createServer(watcherHealthHandler(watcher, identity));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(srv.address() as { port: number }).port}/config/version?known=${cfg.version}&generation=1&waitMs=60000`;
  try {
    const stale = await fetch(`${base}&trust=`, { signal: AbortSignal.timeout(10_000) });
    assert.deepEqual(((await stale.json()) as { trust: unknown }).trust, { roots: ['AA'], signedBy: 'AA' });
    const held = fetch(`${base}&trust=${encodeURIComponent(trustKey(identity.trust))}`, {
      signal: AbortSignal.timeout(10_000),
    }).then(async (r) => (await r.json()) as { trust: unknown });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(identity.waiting, 1, 'the poll is held');
    identity.reload({ roots: ['AA', 'BB'], signedBy: 'AA' });
    assert.deepEqual((await held).trust, { roots: ['AA', 'BB'], signedBy: 'AA' });
    identity.reload(undefined);
    const none = await fetch(`${base}&trust=x`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(((await none.json()) as { trust: unknown }).trust, null, 'no identity loaded');
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});
