import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { seededRandom } from './clock.ts';
import { encodeConfig, readConfigDir, writeProjected } from './configdir.ts';
import { pickBackend, RoutingTable, usableEndpoints } from './table.ts';
import { endpoint, proxyConfig, service } from './testdata.ts';
import { ConfigWatcher } from './watcher.ts';

const web = service('web', 'shop', '10.96.0.10', 80, [
  endpoint('10.1.0.1', 8080),
  endpoint('10.1.0.2', 8080, { ready: false, terminating: true }),
]);
const v2 = service('web-v2', 'shop', '10.96.0.11', 80, [endpoint('10.1.0.3', 8080)]);
const cfg = proxyConfig(
  'shop',
  [web, v2],
  [
    {
      name: 'shop/canary-header',
      service: 'shop/web',
      matches: [
        { headers: [{ name: 'x-canary', value: 'yes' }] },
        { path: { type: 'PathPrefix', value: '/beta' }, method: 'GET' },
      ],
      backends: [{ service: 'shop/web-v2', weight: 1 }],
    },
    {
      name: 'shop/split',
      service: 'shop/web',
      matches: [],
      backends: [
        { service: 'shop/web', weight: 90 },
        { service: 'shop/web-v2', weight: 10 },
      ],
    },
  ],
);

describe('RoutingTable', () => {
  const t = new RoutingTable(cfg);
  const req = (path: string, headers: Record<string, string> = {}, method = 'GET') => ({
    method,
    path,
    header: (n: string) => headers[n],
  });
  it('finds services by VIP:port and by Host', () => {
    assert.equal(t.byVip('10.96.0.10', 80)?.service.id, 'shop/web');
    assert.equal(t.byVip('10.96.0.10', 81), undefined);
    assert.equal(t.byAuthority('web.shop.svc.cluster.local', 80)?.service.id, 'shop/web');
    assert.equal(t.byAuthority('web:80', 1234)?.service.id, 'shop/web', 'short name within the namespace');
    assert.equal(t.byAuthority('WEB-V2.shop', 80)?.service.id, 'shop/web-v2');
    assert.equal(t.byAuthority('example.com', 80), undefined);
  });
  it('matches routes on headers, path prefix and method; catch-all last', () => {
    const target = t.byVip('10.96.0.10', 80)!;
    assert.equal(t.route(target, req('/', { 'x-canary': 'yes' })).name, 'shop/canary-header');
    assert.equal(t.route(target, req('/beta/x')).name, 'shop/canary-header');
    assert.equal(t.route(target, req('/betamax')).name, 'shop/split', 'prefix matches whole segments');
    assert.equal(t.route(target, req('/beta', {}, 'POST')).name, 'shop/split', 'method must match');
    assert.equal(
      t.route(t.byVip('10.96.0.11', 80)!, req('/')).name,
      'shop/web-v2:80',
      'implicit default route',
    );
  });
  // The timeout ends the test only if matching backtracks (the bug); nothing asserts on time.
  it('RegularExpression matches run on RE2: a catastrophic-backtracking pattern stays linear', {
    timeout: 60_000,
  }, () => {
    const redos = new RoutingTable(
      proxyConfig(
        'shop',
        [web, v2],
        [
          {
            name: 'shop/redos',
            service: 'shop/web',
            matches: [{ path: { type: 'RegularExpression', value: '^/(a+)+$' } }],
            backends: [{ service: 'shop/web-v2', weight: 1 }],
          },
        ],
      ),
    );
    const target = redos.byVip('10.96.0.10', 80)!;
    // 31 characters froze a backtracking engine for 11.8 s; this many would never end.
    for (const n of [30, 5000])
      assert.equal(redos.route(target, req(`/${'a'.repeat(n)}!`)).name, 'shop/web:80', 'no match');
    assert.equal(redos.route(target, req('/aaa')).name, 'shop/redos');
  });
  it('splits by weight', () => {
    const route = t.route(t.byVip('10.96.0.10', 80)!, req('/'));
    const rnd = seededRandom(7);
    let v2n = 0;
    for (let i = 0; i < 10_000; i++) if (pickBackend(route, rnd)!.service.name === 'web-v2') v2n++;
    assert.ok(v2n > 900 && v2n < 1100, `${v2n} of 10000 near 10%`);
  });
  it('uses only ready endpoints; terminating ones only when nothing else serves', () => {
    assert.deepEqual(
      usableEndpoints(web).map((e) => e.address),
      ['10.1.0.1'],
    );
    const draining = { ...web, endpoints: [endpoint('10.1.0.2', 8080, { ready: false, terminating: true })] };
    assert.deepEqual(
      usableEndpoints(draining).map((e) => e.address),
      ['10.1.0.2'],
    );
    const gone = {
      ...web,
      endpoints: [endpoint('10.1.0.2', 8080, { ready: false, serving: false, terminating: true })],
    };
    assert.deepEqual(usableEndpoints(gone), []);
  });
  it('when none is ready nor serving, the kept endpoints still listed and not terminating', () => {
    const notReady = { ready: false, serving: false, terminating: false };
    const restarted = {
      ...web,
      endpoints: [
        endpoint('10.1.0.1', 8080, { ...notReady, pod: 'web-1' }),
        endpoint('10.1.0.2', 8080, { ...notReady, pod: 'web-2' }),
        endpoint('10.1.0.3', 8080, { ready: false, serving: false, terminating: true, pod: 'web-3' }),
      ],
    };
    const kept = new Set(['web-1@10.1.0.1', 'web-3@10.1.0.3', 'web-old@10.1.0.2']);
    assert.deepEqual(
      usableEndpoints(restarted, kept).map((e) => e.address),
      ['10.1.0.1'],
    );
    assert.deepEqual(usableEndpoints(restarted), []);
    assert.deepEqual(
      usableEndpoints(web, kept).map((e) => e.address),
      ['10.1.0.1'],
      'a ready endpoint wins',
    );
  });
  it('a split or mirror without a port sends to the port the client called on a multi-port backend', () => {
    const twoPorts = (name: string, vip: string) => ({
      ...service(name, 'shop', vip, 80, [endpoint('10.1.1.1', 8080)]),
      ports: [
        { name: 'http', port: 80, protocol: 'TCP' as const },
        { name: 'admin', port: 9090, protocol: 'TCP' as const },
      ],
    });
    const multi = new RoutingTable(
      proxyConfig(
        'shop',
        [
          twoPorts('api', '10.96.1.10'),
          twoPorts('api-v2', '10.96.1.11'),
          twoPorts('api-shadow', '10.96.1.12'),
        ],
        [
          {
            name: 'shop/api-split',
            service: 'shop/api',
            matches: [],
            backends: [{ service: 'shop/api-v2', weight: 1 }],
            mirror: { service: 'shop/api-shadow', percentage: 100 },
          },
        ],
      ),
    );
    for (const port of [80, 9090]) {
      const route = multi.route(multi.byVip('10.96.1.10', port)!, req('/'));
      assert.equal(route.name, 'shop/api-split');
      const b = pickBackend(route, () => 0)!;
      assert.equal(`${b.service.id}:${b.port.port}`, `shop/api-v2:${port}`, 'backend port = the port called');
      const m = route.mirrors[0]!.target;
      assert.equal(
        `${m.service.id}:${m.port.port}`,
        `shop/api-shadow:${port}`,
        'mirror port = the port called',
      );
    }
  });
});

describe('config directory', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  it('reads the manifest format written as the kubelet does, and refuses bad input with a code', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-cfg-'));
    dirs.push(dir);
    await writeProjected(dir, encodeConfig(cfg));
    assert.equal((await readConfigDir(dir)).version, cfg.version);
    assert.ok((await readdir(dir)).includes('..data'));
    const files = encodeConfig(cfg);
    files.set('part-000.gz', Buffer.from('truncated'));
    await writeProjected(dir, files);
    await assert.rejects(readConfigDir(dir), { code: 'WEFT_CONFIG_INCOMPLETE' });
    await writeProjected(dir, new Map([['proxyconfig.json', JSON.stringify({ ...cfg, services: 'nope' })]]));
    await assert.rejects(
      readConfigDir(dir),
      (e: Error & { code: string }) => e.code === 'WEFT_CONFIG_INVALID' && /services/.test(e.message),
    );
  });
  it('refuses a regular expression RE2 cannot run (backreference), naming the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-cfg-'));
    dirs.push(dir);
    const bad = structuredClone(cfg);
    bad.routes[0]!.matches = [{ path: { type: 'RegularExpression', value: '/(a)\\1' } }];
    await writeProjected(dir, new Map([['proxyconfig.json', JSON.stringify(bad)]]));
    await assert.rejects(
      readConfigDir(dir),
      (e: Error & { code: string }) =>
        e.code === 'WEFT_CONFIG_INVALID' && /routes\[0\]\.matches\[0\]\.path\.value.*RE2/.test(e.message),
    );
  });
  it('the watcher applies new versions and keeps the last good one on bad input', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-cfg-'));
    dirs.push(dir);
    await writeProjected(dir, encodeConfig(cfg));
    const applied: string[] = [];
    const rejected: string[] = [];
    const w = new ConfigWatcher(
      dir,
      { apply: (c) => applied.push(c.version), rejected: (e) => rejected.push(e.code) },
      60_000,
    );
    await w.start();
    try {
      assert.deepEqual(applied, [cfg.version]);
      await writeFile(join(dir, '..data', 'manifest.json'), '{not json');
      await w.reload();
      assert.deepEqual(rejected, ['WEFT_CONFIG_INVALID']);
      assert.equal(w.status.version, cfg.version, 'last good kept');
      assert.equal(w.status.lastError?.code, 'WEFT_CONFIG_INVALID');
      const next = proxyConfig('shop', [web]);
      await writeProjected(dir, encodeConfig(next));
      await w.reload();
      assert.deepEqual(applied, [cfg.version, next.version]);
      assert.equal(w.status.lastError, undefined);
    } finally {
      w.stop();
    }
  });
  it('neither source moves the proxy back: a lower generation from the volume or the apiserver is ignored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-cfg-'));
    dirs.push(dir);
    const g5 = proxyConfig('shop', [web]);
    const g6 = proxyConfig('shop', [web, v2]);
    const g7 = cfg;
    await writeProjected(dir, encodeConfig(g5, 5));
    const applied: string[] = [];
    const w = new ConfigWatcher(dir, { apply: (c) => applied.push(c.version), rejected: () => {} }, 60_000);
    await w.start();
    try {
      assert.equal(w.status.generation, 5);
      // The fast path delivers 7 while the volume still holds 5.
      assert.equal(w.offer({ config: g7, generation: 7 }, 'apiserver'), true);
      assert.deepEqual(
        [w.status.version, w.status.generation, w.status.source],
        [g7.version, 7, 'apiserver'],
      );
      // The kubelet catches up with 6, then a stale watch event replays 6: both ignored.
      await writeProjected(dir, encodeConfig(g6, 6));
      await w.reload();
      assert.equal(w.offer({ config: g6, generation: 6 }, 'apiserver'), false);
      // A config without a generation cannot be ordered once one is known: ignored too.
      assert.equal(w.offer({ config: g6, generation: undefined }, 'apiserver'), false);
      assert.equal(w.status.version, g7.version);
      assert.equal(w.status.stale, 3);
      assert.deepEqual(applied, [g5.version, g7.version]);
      // The volume reaching 7 is no change; 8 from the volume applies.
      await writeProjected(dir, encodeConfig(g7, 7));
      await w.reload();
      const g8 = proxyConfig('shop', [v2]);
      await writeProjected(dir, encodeConfig(g8, 8));
      await w.reload();
      assert.deepEqual([w.status.version, w.status.generation, w.status.source], [g8.version, 8, 'volume']);
      assert.deepEqual(applied, [g5.version, g7.version, g8.version]);
    } finally {
      w.stop();
    }
  });
});
