// The status reconcilers as functions of (key, cache, compiler verdict), with a fake status
// writer and Event recorder: what they write, and that an Event is recorded only when a
// resource starts failing. The ProxyConfig reconciler writes through the apiserver and is
// tested in test/integration/operator.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuthorizationPolicy, Condition, Mesh, TrafficSplit } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import { silentLogger } from '../../kube/log.ts';
import type { Obj } from '../cache.ts';
import type { ResourceResult } from '../compiler.ts';
import { CONDITION, EVENT_REASON, REASON } from '../conditions.ts';
import type { IdentityStatus } from '../identity/controller.ts';
import { compiledStatusReconciler, type EventRecorder, type StatusWriter } from '../status.ts';
import { authorizationPolicyReconciler } from './authorizationpolicy.ts';
import { meshReconciler } from './mesh.ts';
import { trafficSplitReconciler } from './trafficsplit.ts';

const ctx = { log: silentLogger, signal: new AbortController().signal };

function fakes() {
  const writes: {
    kind: string;
    name: string;
    conditions: ConditionInput[];
    extra?: Record<string, unknown>;
  }[] = [];
  const events: { name: string; reason: string; message: string }[] = [];
  const status: StatusWriter = {
    write: async (type, obj, wanted, extra) => {
      writes.push({ kind: type.kind, name: obj.metadata.name, conditions: wanted, extra });
      return true;
    },
  };
  const recorder: EventRecorder = {
    warn: async (obj, _type, reason, message) => {
      events.push({ name: obj.metadata.name, reason, message });
    },
    normal: async () => {},
  };
  return { writes, events, status, recorder };
}

const byType = (cs: ConditionInput[]) => Object.fromEntries(cs.map((c) => [c.type, c]));

test('authorizationpolicy reconciler: an invalid policy is not Accepted, keeps its last good version, and gets one Event', async () => {
  const f = fakes();
  const conditions: Condition[] = [];
  const pol = {
    metadata: { name: 'p', namespace: 'shop', generation: 2 },
    status: { conditions },
  } as unknown as Obj<AuthorizationPolicy>;
  const result: ResourceResult = {
    key: 'shop/p',
    accepted: { ok: false, reason: REASON.Invalid, message: 'spec.rules[0]: bad' },
    programmed: 'lastGood',
  };
  const reconcile = authorizationPolicyReconciler({
    objects: { get: (k) => (k === 'shop/p' ? pol : undefined) },
    resultOf: (k) => (k === 'shop/p' ? result : undefined),
    status: f.status,
    events: f.recorder,
  });
  assert.equal(await reconcile('shop/p', ctx), undefined);
  const c = byType(f.writes[0]!.conditions);
  assert.equal(c[CONDITION.Accepted]?.status, 'False');
  assert.equal(c[CONDITION.Accepted]?.reason, REASON.Invalid);
  assert.equal(c[CONDITION.Ready]?.reason, REASON.LastGoodProgrammed);
  assert.match(c[CONDITION.Ready]!.message, /spec\.rules\[0\]: bad/);
  assert.deepEqual(f.events, [
    { name: 'p', reason: EVENT_REASON.InvalidSpec, message: 'spec.rules[0]: bad' },
  ]);

  // Already reported as failing for the same reason: no second Event.
  conditions.push({
    type: CONDITION.Accepted,
    status: 'False',
    reason: REASON.Invalid,
    message: 'spec.rules[0]: bad',
    lastTransitionTime: new Date(0).toISOString(),
  });
  await reconcile('shop/p', ctx);
  assert.equal(f.events.length, 1);

  // Deleted: nothing written.
  await reconcile('shop/gone', ctx);
  assert.equal(f.writes.length, 2);
});

test('trafficsplit reconciler: a missing Service is ResolvedRefs False, not programmed, with a RefNotFound Event', async () => {
  const f = fakes();
  const split = { metadata: { name: 's', namespace: 'shop', generation: 1 } } as unknown as Obj<TrafficSplit>;
  const reconcile = trafficSplitReconciler({
    objects: { get: () => split },
    resultOf: () => ({
      key: 'shop/s',
      accepted: { ok: true },
      resolvedRefs: { ok: false, reason: REASON.ServiceNotFound, message: 'Service shop/v2 does not exist' },
      programmed: 'none',
    }),
    status: f.status,
    events: f.recorder,
  });
  await reconcile('shop/s', ctx);
  const c = byType(f.writes[0]!.conditions);
  assert.equal(c[CONDITION.Accepted]?.status, 'True');
  assert.equal(c[CONDITION.ResolvedRefs]?.reason, REASON.ServiceNotFound);
  assert.equal(c[CONDITION.Ready]?.reason, REASON.NotProgrammed);
  assert.equal(c[CONDITION.Ready]?.message, 'Service shop/v2 does not exist');
  assert.equal(
    c[CONDITION.Stalled]?.reason,
    REASON.ServiceNotFound,
    'a missing Service is Stalled (kstatus Failed)',
  );
  assert.equal(c[CONDITION.Reconciling], undefined);
  assert.deepEqual(
    f.events.map((e) => e.reason),
    [EVENT_REASON.RefNotFound],
  );
});

test('trafficsplit reconciler: valid and resolved is Accepted, ResolvedRefs and Ready True, in that order, without an Event; a gone object writes nothing', async () => {
  const f = fakes();
  const split = { metadata: { name: 's', namespace: 'shop', generation: 3 } } as unknown as Obj<TrafficSplit>;
  const reconcile = trafficSplitReconciler({
    objects: { get: (k) => (k === 'shop/s' ? split : undefined) },
    resultOf: () => ({
      key: 'shop/s',
      generation: 3,
      accepted: { ok: true },
      resolvedRefs: { ok: true },
      programmed: 'current',
    }),
    status: f.status,
    events: f.recorder,
  });
  await reconcile('shop/s', ctx);
  assert.deepEqual(
    f.writes[0]!.conditions.map((c) => [c.type, c.status, c.reason, c.message]),
    [
      [CONDITION.Accepted, 'True', REASON.Accepted, 'Valid'],
      [CONDITION.ResolvedRefs, 'True', REASON.ResolvedRefs, 'All Services exist'],
      [CONDITION.Ready, 'True', REASON.Programmed, 'Programmed into the proxy configuration'],
    ],
  );
  assert.deepEqual(f.events, []);
  await reconcile('shop/gone', ctx);
  assert.equal(f.writes.length, 1);
});

test("the status skeleton: a kind's extra condition goes before Ready, and its why is Ready's message", async () => {
  const f = fakes();
  const split = { metadata: { name: 's', namespace: 'shop', generation: 1 } } as unknown as Obj<TrafficSplit>;
  const reconcile = compiledStatusReconciler(
    {
      objects: { get: () => split },
      resultOf: () => ({ key: 'shop/s', accepted: { ok: true }, programmed: 'none' }),
      status: f.status,
      events: f.recorder,
    },
    RESOURCES.trafficSplits,
    () => ({
      conditions: [
        { type: 'Overridden', status: 'True', reason: 'RouteTakesPrecedence', message: 'a route wins' },
      ],
      why: 'a route wins',
    }),
  );
  await reconcile('shop/s', ctx);
  assert.deepEqual(
    f.writes[0]!.conditions.map((c) => [c.type, c.status, c.message]),
    [
      [CONDITION.Accepted, 'True', 'Valid'],
      ['Overridden', 'True', 'a route wins'],
      [CONDITION.Ready, 'False', 'a route wins'],
      [CONDITION.Stalled, 'True', 'a route wins'],
    ],
  );
  assert.deepEqual(f.events, [], 'a condition that is no verdict records no Event');
});

test('mesh reconciler: another name is NotDefault; the default waits for the CA verdict, then reports it', async () => {
  const f = fakes();
  const meshes = new Map(
    ['default', 'other'].map((name) => [name, { metadata: { name, generation: 1 } } as unknown as Obj<Mesh>]),
  );
  let ca: IdentityStatus | undefined;
  const reconcile = meshReconciler({
    meshes,
    pods: { list: () => [] },
    meshed: () => ['shop'],
    configErrors: new Map(),
    identity: () => ca,
    status: f.status,
  });
  await reconcile('other', ctx);
  assert.equal(byType(f.writes[0]!.conditions)[CONDITION.Accepted]?.reason, REASON.NotDefault);

  await reconcile('default', ctx);
  assert.equal(f.writes.length, 1, 'no Mesh status before the identity reconciler has decided');

  ca = {
    condition: { type: 'x', status: 'False', reason: 'SecretNotFound', message: 'create the Secret' },
  };
  await reconcile('default', ctx);
  const w = f.writes[1]!;
  const c = byType(w.conditions);
  assert.equal(c[CONDITION.Ready]?.reason, 'SecretNotFound');
  assert.equal(c.CertificateAuthorityReady?.status, 'False');
  assert.deepEqual(w.extra, { meshedNamespaces: 1, meshedPods: 0 });
});
