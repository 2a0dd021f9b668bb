// The health port's /config/version long poll: held for a caller that knows the version, but
// never more than MAX_HELD_VERSION_POLLS at once (the port is open to the pod network).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { watcherHealthHandler } from '../hack/lib/proxy.ts';
import { MAX_HELD_VERSION_POLLS } from './admin.ts';
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
