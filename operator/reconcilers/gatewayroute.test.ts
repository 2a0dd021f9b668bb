import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RouteResult } from '../compile/gateway.ts';
import type { RouteParentStatus } from '../compile/gatewaytypes.ts';
import { routeParents } from './gatewayroute.ts';

const svc = (name: string) => ({ group: '', kind: 'Service', name });
const result = (ok: boolean): RouteResult => ({
  key: 'HTTPRoute/shop/r',
  kind: 'HTTPRoute',
  generation: 2,
  programmed: 'current',
  parents: [
    {
      parentRef: svc('reviews'),
      accepted: { ok: true, message: 'Attached' },
      resolvedRefs: ok
        ? { ok: true, message: 'All references resolved' }
        : { ok: false, reason: 'BackendNotFound', message: 'gone' },
    },
  ],
});
const theirs: RouteParentStatus = {
  parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' },
  controllerName: 'example.com/gateway',
  conditions: [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: 'x',
      lastTransitionTime: '2020-01-01T00:00:00Z',
    },
  ],
};
const t1 = () => new Date('2026-01-01T00:00:00Z');
const t2 = () => new Date('2026-02-01T00:00:00Z');

test('route status: other controllers kept as they are, ours per Service parent, stale ours removed, no write when nothing changed', () => {
  const stale: RouteParentStatus = { parentRef: svc('old'), controllerName: 'weft.dev/mesh', conditions: [] };
  const first = routeParents([theirs, stale], result(true), 2, t1);
  assert.equal(first.changed, true);
  assert.deepEqual(first.parents[0], theirs);
  assert.equal(first.parents.length, 2);
  assert.deepEqual(first.parents[1]!.parentRef, svc('reviews'));
  assert.equal(first.parents[1]!.controllerName, 'weft.dev/mesh');
  assert.deepEqual(
    first.parents[1]!.conditions!.map((c) => [c.type, c.status, c.reason, c.observedGeneration]),
    [
      ['Accepted', 'True', 'Accepted', 2],
      ['ResolvedRefs', 'True', 'ResolvedRefs', 2],
    ],
  );
  assert.equal(routeParents(first.parents, result(true), 2, t2).changed, false);
  const flipped = routeParents(first.parents, result(false), 2, t2);
  assert.equal(flipped.changed, true);
  const c = (type: string) => flipped.parents[1]!.conditions!.find((x) => x.type === type)!;
  assert.equal(c('ResolvedRefs').reason, 'BackendNotFound');
  assert.equal(c('ResolvedRefs').lastTransitionTime, '2026-02-01T00:00:00Z');
  assert.equal(c('Accepted').lastTransitionTime, '2026-01-01T00:00:00Z', 'unchanged status keeps its time');
});
