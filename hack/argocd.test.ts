// The Argo CD health scripts (config/argocd/*.lua) under Lua 5.1 on golden objects, and the
// argocd-cm patch up to date with them. test/integration/kstatus.test.ts runs them on live ones.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { argoHealth, luaLiteral, PATCH, renderPatch, scriptOf } from './argocd.ts';

const cond = (type: string, status: string, reason: string, message = '', observedGeneration = 2) => ({
  type,
  status,
  reason,
  message,
  observedGeneration,
  lastTransitionTime: '2026-11-30T12:00:00Z',
});
const weft = (status?: unknown, generation = 2) => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'TrafficSplit',
  metadata: { name: 's', namespace: 'shop', generation },
  ...(status ? { status } : {}),
});

test('argocd-cm-patch.yaml is generated from the scripts (node hack/argocd.ts)', () => {
  assert.equal(readFileSync(PATCH, 'utf8'), renderPatch());
});

test('luaLiteral: quotes, backslashes, newlines and UTF-8 reach Lua unchanged', () => {
  const s = 'a "b" \\ c\nd → é';
  const h = argoHealth(
    scriptOf('weft.dev_TrafficSplit'),
    weft({ observedGeneration: 2, conditions: [cond('Stalled', 'True', 'Invalid', s)] }),
  );
  assert.equal(h.message, `Invalid: ${s}`);
  assert.equal(luaLiteral([1, true, null]), '{1, true, nil}');
});

test('weft.lua: no status, an old observedGeneration, Reconciling → Progressing; Stalled → Degraded; Ready → Healthy', () => {
  const run = (o: unknown) => argoHealth(scriptOf('weft.dev_TrafficSplit'), o);
  assert.deepEqual(run(weft()), {
    status: 'Progressing',
    message: 'Waiting for the Weft operator to report a status',
  });
  assert.deepEqual(run(weft({ observedGeneration: 0 })), {
    status: 'Progressing',
    message: 'Waiting for the Weft operator to observe generation 2',
  });
  const ready = cond('Ready', 'True', 'Programmed', 'Programmed into the proxy configuration');
  assert.deepEqual(run(weft({ observedGeneration: 1, conditions: [ready] })).status, 'Progressing');
  assert.deepEqual(run(weft({ observedGeneration: 2, conditions: [ready] })), {
    status: 'Healthy',
    message: 'Programmed into the proxy configuration',
  });
  assert.deepEqual(
    run(
      weft({
        observedGeneration: 2,
        conditions: [ready, cond('Reconciling', 'True', 'ApplyPending', '1/3 proxies applied generation 4')],
      }),
    ),
    { status: 'Progressing', message: 'ApplyPending: 1/3 proxies applied generation 4' },
  );
  assert.deepEqual(
    run(
      weft({
        observedGeneration: 2,
        conditions: [
          cond('Ready', 'False', 'NotProgrammed', 'Service(s) not found in namespace shop: v3'),
          cond('Stalled', 'True', 'ServiceNotFound', 'Service(s) not found in namespace shop: v3'),
        ],
      }),
    ),
    { status: 'Degraded', message: 'ServiceNotFound: Service(s) not found in namespace shop: v3' },
  );
});

const route = (parents: unknown[], generation = 2) => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'r', namespace: 'shop', generation },
  status: { parents },
});
const parent = (...conditions: unknown[]) => ({
  parentRef: { group: '', kind: 'Service', name: 'reviews' },
  controllerName: 'weft.dev/mesh',
  conditions,
});

test('route.lua: accepted and resolved by every parent → Healthy; refused or a backend missing → Degraded; stale → Progressing', () => {
  const run = (o: unknown) => argoHealth(scriptOf('gateway.networking.k8s.io_HTTPRoute'), o);
  const ok = [cond('Accepted', 'True', 'Accepted'), cond('ResolvedRefs', 'True', 'ResolvedRefs')];
  assert.deepEqual(run(route([])).status, 'Progressing');
  assert.deepEqual(run(route([parent(...ok)])), { status: 'Healthy', message: 'Accepted by 1 parent(s)' });
  assert.deepEqual(run(route([parent(...ok)], 3)), {
    status: 'Progressing',
    message: 'Waiting for every parent to observe generation 3',
  });
  assert.deepEqual(
    run(
      route([parent(ok[0], cond('ResolvedRefs', 'False', 'BackendNotFound', 'Service shop/v3 not found'))]),
    ),
    {
      status: 'Degraded',
      message: 'Service reviews (weft.dev/mesh): ResolvedRefs BackendNotFound: Service shop/v3 not found',
    },
  );
});

test('gateway.lua: Programmed → Healthy; not accepted → Degraded; conditions of an older generation → Progressing', () => {
  const run = (o: unknown) => argoHealth(scriptOf('gateway.networking.k8s.io_Gateway'), o);
  const gw = (conditions: unknown[], generation = 2) => ({
    kind: 'Gateway',
    metadata: { name: 'g', generation },
    status: { conditions },
  });
  const programmed = cond('Programmed', 'True', 'Programmed', 'Served on port 8080');
  assert.deepEqual(run(gw([cond('Accepted', 'True', 'Accepted'), programmed])), {
    status: 'Healthy',
    message: 'Served on port 8080',
  });
  assert.deepEqual(run(gw([cond('Accepted', 'True', 'Accepted'), programmed], 3)).status, 'Progressing');
  assert.deepEqual(run(gw([cond('Accepted', 'False', 'InvalidParameters', 'bad'), programmed])), {
    status: 'Degraded',
    message: 'Accepted InvalidParameters: bad',
  });
});
