import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertGolden } from '../webhook/testdata/golden.ts';
import { type Check, runChecks } from './checks.ts';
import { explain, parseLabels, renderEnds, renderExplanation } from './explain.ts';
import { program } from './main.ts';
import { renderStatus, routeRowOf, rowOf } from './status.ts';

test('authz explain names the policy and rule that decided, from the sample policies', async () => {
  let out = '';
  const cmd = program((s) => (out += s)).exitOverride();
  await cmd.parseAsync(
    [
      'authz',
      'explain',
      '-n',
      'default',
      '--labels',
      'app=reviews',
      '--principal',
      'cluster.local/ns/default/sa/frontend',
      '--port',
      '9080',
      '--method',
      'GET',
      '--path',
      '/admin/x',
      '-f',
      join(import.meta.dirname, '..', 'config', 'samples', 'authorizationpolicy.yaml'),
    ],
    { from: 'user' },
  );
  assert.match(out, /^DENY: denied by DENY policy default\/deny-admin rule 0/);
  assert.match(out, /default\/reviews-readers ALLOW selects this workload/);
  assert.equal(process.exitCode, 3);
  process.exitCode = 0;
});

test('explain: the frontend may GET /api/* on reviews; a POST is not allowed by any ALLOW rule', () => {
  const policies = [
    {
      apiVersion: 'weft.dev/v1alpha1' as const,
      kind: 'AuthorizationPolicy',
      metadata: { name: 'readers', namespace: 'shop' },
      spec: {
        selector: { matchLabels: { app: 'reviews' } },
        rules: [
          {
            from: [{ source: { serviceAccounts: ['frontend'] } }],
            to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }],
          },
        ],
      },
    },
  ];
  const base = { namespace: 'shop', labels: { app: 'reviews' }, policies, defaultAction: 'ALLOW' as const };
  const req = (method: string) => ({
    principal: 'cluster.local/ns/shop/sa/frontend',
    sourceIp: '10.0.0.1',
    port: 80,
    http: { method, path: '/api/1', host: 'reviews', headers: {} },
  });
  assert.equal(explain({ ...base, request: req('GET') }).decision.decidedBy?.policy, 'shop/readers');
  const post = explain({ ...base, request: req('POST') });
  assert.equal(post.decision.allowed, false);
  assert.match(renderExplanation(post), /no rule of the ALLOW policies shop\/readers matches/);
});

test('explain judges the path as the proxy normalizes it, and says when the proxy would answer 400', () => {
  const policies = [
    {
      apiVersion: 'weft.dev/v1alpha1' as const,
      kind: 'AuthorizationPolicy',
      metadata: { name: 'no-admin', namespace: 'shop' },
      spec: { action: 'DENY' as const, rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] },
    },
  ];
  const base = { namespace: 'shop', labels: {}, policies, defaultAction: 'ALLOW' as const };
  const req = (path: string) => ({
    sourceIp: '10.0.0.1',
    port: 80,
    http: { method: 'GET', path, host: 'reviews', headers: {} },
  });
  const e = explain({ ...base, request: req('/api/../%61dmin') });
  assert.equal(e.decision.allowed, false);
  assert.equal(e.path, '/admin');
  assert.match(renderExplanation(e), /path as the proxy normalizes it: \/admin/);
  const slashes = explain({ ...base, request: req('//admin') });
  assert.equal(slashes.path, '//admin', 'BASE keeps //');
  assert.equal(slashes.decision.allowed, false, 'a DENY also matches the slash-merged spelling');
  assert.equal(
    explain({ ...base, pathNormalization: 'MERGE_SLASHES', request: req('//admin') }).decision.allowed,
    false,
  );
  assert.throws(() => explain({ ...base, request: req('/;x/admin') }), /--path: the proxy answers 400/);
});

test('labels parse, and a malformed pair names the flag and an example', () => {
  assert.deepEqual(parseLabels('app=a,version=v1'), { app: 'a', version: 'v1' });
  assert.throws(() => parseLabels('app'), /--labels: "app" is not key=value/);
});

test('checks retry until the deadline, then report the hint; a later check still runs', async () => {
  let t = 0;
  let tries = 0;
  const checks: Check[] = [
    {
      category: 'c',
      name: 'flaky',
      hint: 'h1',
      run: async () => (++tries < 3 ? Promise.reject(new Error('not yet')) : 'fine'),
    },
    { category: 'c', name: 'broken', hint: 'do X', run: async () => Promise.reject(new Error('bad')) },
  ];
  const seen: string[] = [];
  const results = await runChecks(checks, {
    deadlineMs: 10_000,
    retryMs: 1000,
    now: () => t,
    sleep: async (ms) => {
      t += ms;
    },
    onResult: (r) => seen.push(r.name),
  });
  assert.deepEqual(seen, ['flaky', 'broken']);
  assert.deepEqual(results[0], { category: 'c', name: 'flaky', ok: true, message: 'fine' });
  assert.equal(tries, 3);
  assert.equal(results[1]!.ok, false);
  assert.equal(results[1]!.hint, 'do X');
});

test('an unreachable API skips the checks that need it', async () => {
  const checks: Check[] = [
    {
      category: 'kubernetes-api',
      name: 'api',
      hint: 'kubeconfig',
      run: async () => Promise.reject(new Error('ECONNREFUSED')),
    },
    { category: 'weft-api', name: 'crd', hint: 'x', run: async () => 'never' },
  ];
  const r = await runChecks(checks, { deadlineMs: 0 });
  assert.match(r[1]!.message!, /skipped/);
});

test('status shows the reason and marks resources the operator has not caught up with', () => {
  const rows = [
    rowOf('TrafficSplit', {
      metadata: { name: 'canary', namespace: 'shop', generation: 2 },
      status: {
        observedGeneration: 1,
        conditions: [
          { type: 'Ready', status: 'False', reason: 'BackendNotFound', message: 'Service shop/v3 not found' },
        ],
      },
    }),
  ];
  const text = renderStatus(rows);
  assert.match(text, /TrafficSplit\s+shop\s+canary\s+False\*\s+BackendNotFound\s+Service shop\/v3 not found/);
  assert.match(text, /has not yet reconciled the latest generation/);
});

test('status shows an HTTPRoute by Weft’s parents only: the first failing condition, naming the Service', () => {
  const route = (conds: { type: string; status: string; reason: string; message: string }[]) => ({
    metadata: { name: 'r', namespace: 'shop', generation: 2 },
    status: {
      parents: [
        { parentRef: { name: 'gw' }, controllerName: 'example.com/gw', conditions: [] },
        {
          parentRef: { name: 'reviews' },
          controllerName: 'weft.dev/mesh',
          conditions: conds.map((c) => ({ ...c, observedGeneration: 2 })),
        },
      ],
    },
  });
  const ok = { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Attached' };
  const bad = {
    type: 'ResolvedRefs',
    status: 'False',
    reason: 'BackendNotFound',
    message: 'Service shop/x not found',
  };
  const text = renderStatus([routeRowOf('HTTPRoute', route([ok, bad]), 'weft.dev/mesh')!]);
  assert.match(
    text,
    /HTTPRoute\s+shop\s+r\s+False\s+BackendNotFound\s+Service shop\/reviews: Service shop\/x not found/,
  );
  assert.equal(routeRowOf('HTTPRoute', route([ok]), 'weft.dev/mesh')!.ready, 'True');
  assert.equal(
    routeRowOf('HTTPRoute', route([ok]), 'other/controller'),
    undefined,
    'another controller’s route is not listed',
  );
});

test('explain --from/--to: the live ends are printed before the decision (golden)', () => {
  const text = renderEnds({
    from: {
      pod: 'shop/frontend-1',
      meshed: true,
      principal: 'cluster.local/ns/shop/sa/frontend',
      ip: '10.244.0.5',
    },
    to: { pod: 'web-1', namespace: 'shop', labels: { app: 'web' }, port: 8080, service: 'web' },
  });
  const plaintext = renderEnds({
    from: { pod: 'shop/legacy-1', meshed: false },
    to: { pod: 'web-1', namespace: 'shop', labels: {} },
  });
  assertGolden('weftctl-explain-ends.txt', text + plaintext);
});

test('exit codes: 2 for bad usage, 0 for help, 1 for an error naming the flag', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [join(import.meta.dirname, 'main.ts'), ...args], { encoding: 'utf8' });
  const bad = run('stat', '--bogus');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown option '--bogus'/);
  assert.equal(run('proxy-config', '--help').status, 0);
  const noPort = run('authz', 'explain', '-n', 'shop');
  assert.equal(noPort.status, 1);
  assert.match(noPort.stderr, /--port: required without --to/);
});
