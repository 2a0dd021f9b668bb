// What the pod informer keeps: a finished pod is no meshed pod (no proxy runs in it any more).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshedPod } from './compiler.ts';
import { podMatters, slimPod } from './transforms.ts';

const pod = (phase: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'intruder', namespace: 'weft-demo', labels: { app: 'intruder' } },
  spec: {
    serviceAccountName: 'intruder',
    containers: [{ name: 'app' }],
    initContainers: [{ name: 'weft-init' }, { name: 'weft-proxy' }],
  },
  status: { phase, podIP: '10.123.0.10' },
});

test('a running pod with the proxy is meshed and keeps its IP; once finished it is not, and that change matters', () => {
  const running = slimPod(pod('Running'));
  assert.equal(isMeshedPod(running), true);
  assert.equal(running.status?.podIP, '10.123.0.10');
  for (const phase of ['Succeeded', 'Failed']) {
    const done = slimPod(pod(phase));
    assert.equal(isMeshedPod(done), false, phase);
    assert.equal(done.status, undefined, `${phase}: no address to poll`);
    assert.equal(podMatters(running, done), true, `${phase}: the compiler and the counts see it`);
  }
});

test('a meshed pod being deleted is marked terminating', () => {
  const p = pod('Running');
  const deleting = slimPod({ ...p, metadata: { ...p.metadata, deletionTimestamp: '2026-11-30T10:00:00Z' } });
  assert.deepEqual(deleting.status, { podIP: '10.123.0.10', terminating: true });
  assert.equal(slimPod(p).status?.terminating, undefined);
});

test('a pod whose app containers all ended is finished before its phase says so (its sidecar is being stopped)', () => {
  const p = pod('Running');
  const status = (states: object[], restartPolicy = 'Never') =>
    slimPod({
      ...p,
      spec: { ...p.spec, restartPolicy },
      status: { ...p.status, containerStatuses: states.map((state) => ({ name: 'app', state })) },
    });
  const ended = status([{ terminated: { exitCode: 0 } }]);
  assert.equal(
    isMeshedPod(ended),
    false,
    'the intruder pod was listed as lagging ("other side closed") here',
  );
  assert.equal(isMeshedPod(status([{ running: {} }])), true);
  assert.equal(
    isMeshedPod(status([{ terminated: { exitCode: 0 } }, { running: {} }])),
    true,
    'one still runs',
  );
  assert.equal(isMeshedPod(status([])), true, 'no statuses yet: starting');
  assert.equal(
    isMeshedPod(status([{ terminated: { exitCode: 1 } }], 'Always')),
    true,
    'the kubelet restarts it',
  );
  assert.equal(
    isMeshedPod(status([{ terminated: { exitCode: 1 } }], 'OnFailure')),
    true,
    'restarted on failure',
  );
  assert.equal(isMeshedPod(status([{ terminated: { exitCode: 0 } }], 'OnFailure')), false);
});
