// Proof of application without a cluster: the operator's long polls against the proxy's own
// health handler (a real HTTP server, the real ConfigWatcher), and the counting of Propagation.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { watcherHealthHandler } from '../hack/lib/proxy.ts';
import { silentLogger } from '../kube/log.ts';
import { proxyConfig } from '../proxy/testdata.ts';
import { ConfigWatcher } from '../proxy/watcher.ts';
import { Propagation, type ProxyReport, ProxyReports } from './propagation.ts';
import type { PodObj } from './types.ts';

const pod = (ns: string, name: string): PodObj => ({
  metadata: { name, namespace: ns },
  spec: { containers: [{ name: 'weft-proxy' }] },
});

test('a resource counts the proxies whose generation carries its own, and names the others', () => {
  const p = new Propagation();
  p.written('a', { version: 'v5', generation: 5 }, [{ key: 'a/split', generation: 2 }]);
  // A later write that does not change the split: it stays "in since generation 5".
  p.written('a', { version: 'v6', generation: 6 }, [{ key: 'a/split', generation: 2 }]);
  const reports = new Map<string, ProxyReport>([
    ['a/p1', { version: 'v5', generation: 5, error: undefined }],
    ['a/p2', { version: 'v4', generation: 4, error: undefined }],
    ['a/p4', { version: 'v6', generation: 6, error: 'no answer' }],
  ]);
  const get = { get: (x: PodObj) => reports.get(`${x.metadata.namespace}/${x.metadata.name}`) };
  const pods = ['p4', 'p3', 'p2', 'p1'].map((n) => pod('a', n));
  const r = p.applied('a/split', 2, pods, get);
  assert.deepEqual([r.applied, r.total], [1, 4]);
  assert.deepEqual(
    r.waiting.map((l) => [l.pod, l.generation, l.wantGeneration, l.reason]),
    [
      ['p2', 4, 5, undefined],
      ['p3', undefined, 5, 'has not reported yet'],
      ['p4', 6, 5, 'no answer'],
    ],
  );
  // A new generation of the split is not applied by anyone until a config carrying it is written.
  assert.equal(p.applied('a/split', 3, pods, get).applied, 0);
  const s = p.summary(pods, get);
  assert.equal(s.inSync, 0, 'only p4 runs generation 6, and it does not answer');
  assert.deepEqual(
    s.lagging.map((l) => l.pod),
    ['p1', 'p2', 'p3', 'p4'],
  );
});

test("the operator's long poll learns each applied version from the proxy's health handler", async () => {
  const watcher = new ConfigWatcher('/nonexistent', { apply: () => {}, rejected: () => {} });
  const handler = watcherHealthHandler(watcher);
  const srv = createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const changes: string[][] = [];
  let notified: () => void = () => {};
  const reports = new ProxyReports({
    address: () => `http://127.0.0.1:${port}`,
    flushMs: 10,
    log: silentLogger,
    onChange: (nss) => {
      changes.push([...nss]);
      notified();
    },
  });
  const next = () => new Promise<void>((r) => (notified = r));
  const p0 = pod('shop', 'web-0');
  try {
    let n = next();
    reports.sync([p0]);
    await n;
    assert.deepEqual(reports.get(p0), { version: undefined, generation: undefined, error: undefined });
    const c1 = proxyConfig('shop', []);
    n = next();
    watcher.offer({ config: c1, generation: 3 }, 'apiserver');
    await n; // answered by the held poll, not after its 30 s wait
    assert.deepEqual(reports.get(p0), { version: c1.version, generation: 3, error: undefined });
    assert.equal(reports.maxGeneration('shop'), 3);
    assert.deepEqual(changes, [['shop'], ['shop']]);
    n = next();
    reports.sync([]);
    assert.equal(reports.get(p0), undefined, 'a pod that went away is forgotten');
    await n;
    assert.deepEqual(changes.at(-1), ['shop'], 'and the statuses that waited for it are recomputed');
  } finally {
    reports.stop();
    srv.closeAllConnections();
    srv.close();
  }
});
