// Proof of application without a cluster: the operator's long polls against the proxy's own
// health handler (a real HTTP server, the real ConfigWatcher), and the counting of Propagation.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { TestIdentity, watcherHealthHandler } from '../hack/lib/proxy.ts';
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
    assert.deepEqual(reports.get(p0), {
      version: undefined,
      generation: undefined,
      trust: null,
      error: undefined,
    });
    const c1 = proxyConfig('shop', []);
    n = next();
    watcher.offer({ config: c1, generation: 3 }, 'apiserver');
    await n; // answered by the held poll, not after its 30 s wait
    assert.deepEqual(reports.get(p0), { version: c1.version, generation: 3, trust: null, error: undefined });
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

test("the long poll learns a reloaded identity's roots without a config change (a root rotation waits on them)", async () => {
  const watcher = new ConfigWatcher('/nonexistent', { apply: () => {}, rejected: () => {} });
  watcher.offer({ config: proxyConfig('shop', []), generation: 1 }, 'apiserver');
  const identity = new TestIdentity({ roots: ['OLD'], signedBy: 'OLD' });
  const srv = createServer(watcherHealthHandler(watcher, identity));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  let notified: () => void = () => {};
  const reports = new ProxyReports({
    address: () => `http://127.0.0.1:${port}`,
    flushMs: 10,
    log: silentLogger,
    onChange: () => notified(),
  });
  const next = () => new Promise<void>((r) => (notified = r));
  const p0 = pod('shop', 'web-0');
  try {
    let n = next();
    reports.sync([p0]);
    await n;
    assert.deepEqual(reports.get(p0)?.trust, { roots: ['OLD'], signedBy: 'OLD' });
    // The kubelet swapped the identity files: the new root is trusted; the config is the same.
    n = next();
    identity.reload({ roots: ['NEW', 'OLD'], signedBy: 'OLD' });
    await n; // answered by the held poll, not after its 30 s wait
    assert.deepEqual(reports.get(p0)?.trust, { roots: ['NEW', 'OLD'], signedBy: 'OLD' });
    assert.equal(reports.get(p0)?.generation, 1);
  } finally {
    reports.stop();
    srv.closeAllConnections();
    srv.close();
  }
});

test('a deleted resource is forgotten once no namespace carries it any more', () => {
  const p = new Propagation();
  for (let i = 0; i < 50; i++) {
    // Each round: a new AuthorizationPolicy in each of two namespaces, the previous one deleted.
    for (const ns of ['a', 'b'])
      p.written(ns, { version: `v${i}`, generation: i + 1 }, [
        { key: 'x/split', generation: 1 },
        { key: `${ns}/policy-${i}`, generation: 1 },
      ]);
  }
  assert.equal(p.tracked, 3, 'the split and the latest policy of each namespace');
  const pods = [pod('a', 'p1')];
  const get = { get: () => ({ version: 'v49', generation: 50, error: undefined }) };
  assert.deepEqual(p.applied('a/policy-49', 1, pods, get).applied, 1);
  assert.deepEqual(p.applied('a/policy-48', 1, pods, get).applied, 0, 'a deleted policy counts nothing');
  // The split leaves every namespace's config: it is gone too.
  p.written('a', { version: 'v50', generation: 51 }, []);
  assert.equal(p.tracked, 2);
  p.written('b', { version: 'v50', generation: 51 }, []);
  assert.equal(p.tracked, 0);
  // A namespace that leaves the mesh takes its resources with it.
  p.written('c', { version: 'v1', generation: 1 }, [{ key: 'c/policy', generation: 1 }]);
  p.forget('c');
  assert.equal(p.tracked, 0);
});

test('a terminating pod whose proxy stopped answering is neither counted nor named as lagging', () => {
  const p = new Propagation();
  p.written('a', { version: 'v2', generation: 2 }, [{ key: 'a/split', generation: 1 }]);
  const finishing: PodObj = { ...pod('a', 'old'), status: { podIP: '10.0.0.9', terminating: true } };
  const draining: PodObj = { ...pod('a', 'draining'), status: { podIP: '10.0.0.8', terminating: true } };
  const reports = new Map<string, ProxyReport>([
    ['a/new', { version: 'v2', generation: 2, error: undefined }],
    ['a/old', { version: 'v1', generation: 1, error: 'http://10.0.0.9:15020: other side closed' }],
    ['a/draining', { version: 'v1', generation: 1, error: undefined }],
    ['a/stuck', { version: 'v1', generation: 1, error: 'no answer' }],
  ]);
  const get = { get: (x: PodObj) => reports.get(`${x.metadata.namespace}/${x.metadata.name}`) };
  const pods = [pod('a', 'new'), finishing, draining, pod('a', 'stuck')];
  const r = p.applied('a/split', 1, pods, get);
  assert.deepEqual([r.applied, r.total], [1, 3]);
  assert.deepEqual(
    r.waiting.map((l) => l.pod),
    ['draining', 'stuck'],
    'a terminating proxy that still answers still counts; a running one that does not is named',
  );
  const s = p.summary(pods, get);
  assert.equal(s.inSync, 1);
  assert.deepEqual(
    s.lagging.map((l) => l.pod),
    ['draining', 'stuck'],
  );
});

test('a pod that starts terminating after its proxy stopped answering has its statuses recomputed', async () => {
  // A port nothing listens on: the proxy "does not answer".
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  let notified: (nss: string[]) => void = () => {};
  const reports = new ProxyReports({
    address: () => `http://127.0.0.1:${port}`,
    flushMs: 10,
    log: silentLogger,
    onChange: (nss) => notified([...nss]),
  });
  const next = () => new Promise<string[]>((r) => (notified = r));
  try {
    let n = next();
    reports.sync([pod('shop', 'web-0')]);
    assert.deepEqual(await n, ['shop']);
    assert.match(reports.get(pod('shop', 'web-0'))?.error ?? '', /ECONNREFUSED/);
    n = next();
    reports.sync([{ ...pod('shop', 'web-0'), status: { podIP: '127.0.0.1', terminating: true } }]);
    assert.deepEqual(await n, ['shop'], 'the change is notified at once, not at the next report');
  } finally {
    reports.stop();
  }
});
