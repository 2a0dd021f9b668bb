// The progression state machine with a clock passed in: steps, gates, minimum requests, pause,
// promote, abort, rollback; and the weights in effect that the compiler reads.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Progression, ProgressionStatus, TrafficSplitSpec } from '../../api/index.ts';
import { advance, commandVerb, type Input, progressionHash, stepWeights, type Window } from './machine.ts';
import { backendsInEffect } from './weights.ts';

const P: Progression = {
  canary: 'v2',
  stepWeights: [10, 50],
  interval: '10s',
  gates: { minSuccessRate: 99, maxLatency: { percentile: 99, threshold: '500ms' }, minRequests: 20 },
};
const SPEC: TrafficSplitSpec = {
  service: 'reviews',
  backends: [
    { service: 'v1', weight: 100 },
    { service: 'v2', weight: 0 },
  ],
  progression: P,
};
const HASH = progressionHash(SPEC);
const T0 = Date.parse('2026-11-30T12:00:00Z');
const good: Window = { requests: 100, errors: 0, latencyMs: 25 };
const obs = (canary: Window) => ({ canary, stable: good });

/** Runs the machine from `s` at T0 + atS seconds. */
const at = (s: ProgressionStatus | undefined, atS: number, extra: Partial<Input> = {}, p = P) =>
  advance(p, s, { now: T0 + atS * 1000, specHash: HASH, ...extra });

test('a healthy canary goes through every step, then is promoted to 100 %', () => {
  let o = at(undefined, 0);
  assert.equal(o.status.phase, 'Progressing');
  assert.equal(o.status.canaryWeight, 10);
  assert.deepEqual(
    o.decisions.map((d) => d.kind),
    ['Started'],
  );
  assert.equal(o.dueInMs, 10_000);
  // Mid-step: gates pass but the step's time is not up.
  o = at(o.status, 5, { observed: obs(good) });
  assert.equal(o.status.canaryWeight, 10);
  assert.equal(o.dueInMs, 5000);
  assert.equal(o.decisions.length, 0);
  assert.equal(o.status.observed?.canary.successRate, 100);
  o = at(o.status, 10, { observed: obs(good) });
  assert.equal(o.status.step, 1);
  assert.equal(o.status.canaryWeight, 50);
  assert.equal(o.status.stepStartedAt, new Date(T0 + 10_000).toISOString());
  assert.equal(o.status.observed, undefined, 'the figures shown are those of the current step');
  assert.deepEqual(
    o.decisions.map((d) => d.kind),
    ['Step'],
  );
  o = at(o.status, 20, { observed: obs(good) });
  assert.equal(o.status.phase, 'Promoted');
  assert.equal(o.status.canaryWeight, 100);
  assert.equal(o.dueInMs, undefined);
  assert.deepEqual(
    o.status.history?.map((h) => [h.decision, h.canaryWeight]),
    [
      ['Started', 10],
      ['Step', 50],
      ['Promoted', 100],
    ],
  );
  // Promoted stays promoted.
  assert.equal(at(o.status, 100, { observed: obs({ requests: 100, errors: 100 }) }).status.phase, 'Promoted');
  // …until aborted on demand: a promoted canary can still be pulled back to 0 %.
  const pulled = at(o.status, 100, { command: 'abort@1' });
  assert.equal(pulled.status.phase, 'RolledBack');
  assert.equal(pulled.status.canaryWeight, 0);
  // A command for the phase it is in does nothing.
  assert.equal(at(pulled.status, 101, { command: 'abort@2' }).decisions[0]?.kind, 'Ignored');
});

test('a failing canary is rolled back to 0 % as soon as the minimum requests are in, before the step ends', () => {
  const s = at(undefined, 0).status;
  // 5 errors in 15 requests: below minRequests, no verdict yet.
  let o = at(s, 2, { observed: obs({ requests: 15, errors: 5, latencyMs: 10 }) });
  assert.equal(o.status.phase, 'Progressing');
  assert.match(o.status.message ?? '', /waiting for requests: 15\/20/);
  o = at(o.status, 3, { observed: obs({ requests: 20, errors: 5, latencyMs: 10 }) });
  assert.equal(o.status.phase, 'RolledBack');
  assert.equal(o.status.canaryWeight, 0);
  assert.equal(o.decisions[0]?.kind, 'RolledBack');
  assert.equal(o.decisions[0]?.warning, true);
  assert.match(
    o.decisions[0]!.message,
    /success rate 75\.0 % \(5 errors in 20 requests\) is below the gate 99 %/,
  );
  // Stopped: later figures change nothing.
  assert.equal(at(o.status, 60, { observed: obs(good) }).status.canaryWeight, 0);
});

test('a slow canary is rolled back on the latency gate', () => {
  const s = at(undefined, 0).status;
  const o = at(s, 4, { observed: obs({ requests: 50, errors: 0, latencyMs: 1000 }) });
  assert.equal(o.status.phase, 'RolledBack');
  assert.match(o.decisions[0]!.message, /latency p99 up to 1000 ms exceeds the gate 500ms/);
});

test('a quiet canary is not promoted on no data: the step holds until the minimum requests are in', () => {
  let o = at(undefined, 0);
  o = at(o.status, 30, { observed: obs({ requests: 3, errors: 0, latencyMs: 5 }) });
  assert.equal(o.status.step, 0);
  assert.equal(o.status.phase, 'Progressing');
  assert.match(o.status.message ?? '', /waiting for requests: 3\/20 in this step/);
  // Unreadable figures: no verdict either.
  o = at(o.status, 40);
  assert.equal(o.status.step, 0);
  o = at(o.status, 41, { observed: obs(good) });
  assert.equal(o.status.step, 1);
});

test('onFailure Pause holds the weight instead of rolling back', () => {
  const p = { ...P, onFailure: 'Pause' as const };
  const s = at(undefined, 0, {}, p).status;
  const o = at(s, 3, { observed: obs({ requests: 40, errors: 20 }) }, p);
  assert.equal(o.status.phase, 'Paused');
  assert.equal(o.status.canaryWeight, 10);
  assert.equal(o.decisions[0]?.warning, true);
});

test('pause holds the step across any time; resume starts its window again', () => {
  let o = at(undefined, 0);
  o = at(o.status, 5, { command: 'pause@1', observed: obs(good) });
  assert.equal(o.status.phase, 'Paused');
  assert.deepEqual(
    o.decisions.map((d) => d.kind),
    ['Paused'],
  );
  // The same annotation again (an operator restart re-reads it): nothing new.
  o = at(o.status, 500, { command: 'pause@1', observed: obs(good) });
  assert.equal(o.status.phase, 'Paused');
  assert.equal(o.status.canaryWeight, 10);
  assert.equal(o.decisions.length, 0);
  o = at(o.status, 600, { command: 'resume@2', observed: obs(good) });
  assert.equal(o.status.phase, 'Progressing');
  assert.equal(o.status.step, 0);
  assert.equal(o.status.stepStartedAt, new Date(T0 + 600_000).toISOString());
  // The full interval again before the next step.
  assert.equal(at(o.status, 605, { command: 'resume@2', observed: obs(good) }).status.step, 0);
  assert.equal(at(o.status, 610, { command: 'resume@2', observed: obs(good) }).status.step, 1);
});

test('promote and abort on demand; a command given before a run is not replayed on it', () => {
  const s = at(undefined, 0).status;
  const p = at(s, 1, { command: 'promote' });
  assert.equal(p.status.phase, 'Promoted');
  assert.equal(p.status.canaryWeight, 100);
  const a = at(s, 1, { command: 'abort@x' });
  assert.equal(a.status.phase, 'RolledBack');
  assert.equal(a.status.canaryWeight, 0);
  // A new run (spec changed) with the old annotation still there: it progresses.
  const again = advance(P, a.status, { now: T0 + 2000, specHash: 'other', command: 'abort@x' });
  assert.equal(again.status.phase, 'Progressing');
  assert.equal(again.status.canaryWeight, 10);
  assert.equal(again.decisions[0]?.kind, 'Started');
  // Unknown commands are reported, never acted on.
  const bad = at(s, 1, { command: 'rollforward' });
  assert.equal(bad.status.phase, 'Progressing');
  assert.equal(bad.decisions[0]?.warning, true);
  assert.match(bad.decisions[0]!.message, /"rollforward" is not one of promote, abort, pause, resume/);
  assert.equal(commandVerb('resume@2026-11-30T12:00:00Z'), 'resume');
});

test('an operator restart mid-step resumes from status: the step and its start time are kept', () => {
  const s = at(at(undefined, 0).status, 10, { observed: obs(good) }).status;
  assert.equal(s.step, 1);
  // A new process: only the stored status (through JSON) and the clock.
  const o = at(JSON.parse(JSON.stringify(s)), 14);
  assert.equal(o.status.step, 1);
  assert.equal(o.status.stepStartedAt, s.stepStartedAt);
  assert.equal(o.dueInMs, 6000);
  assert.equal(o.decisions.length, 0);
});

test('steps from a range; the weights in effect come from spec plus status', () => {
  assert.deepEqual(
    stepWeights({ canary: 'x', stepWeightRange: { start: 10, increment: 20, max: 60 } }),
    [10, 30, 50],
  );
  assert.deepEqual(backendsInEffect(SPEC, undefined), [
    { service: 'v1', weight: 10000 },
    { service: 'v2', weight: 0 },
  ]);
  const at25 = backendsInEffect(SPEC, { progression: { ...at(undefined, 0).status, canaryWeight: 25 } });
  assert.deepEqual(
    at25.map((b) => b.weight),
    [7500, 2500],
  );
  // Two stable backends keep their ratio.
  const two: TrafficSplitSpec = {
    ...SPEC,
    backends: [
      { service: 'v1', weight: 3 },
      { service: 'v1b', weight: 1 },
      { service: 'v2', weight: 0 },
    ],
  };
  const w = backendsInEffect(two, { progression: { ...at(undefined, 0).status, canaryWeight: 50 } });
  assert.deepEqual(
    w.map((b) => b.weight),
    [150, 50, 200],
  );
  // Without a progression: the spec's weights.
  assert.equal(backendsInEffect({ ...SPEC, progression: undefined }, undefined), SPEC.backends);
});
