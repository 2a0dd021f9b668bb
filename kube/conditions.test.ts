import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mergeConditions, sameConditions } from './conditions.ts';

test('lastTransitionTime changes only when the status flips', () => {
  const t1 = () => new Date('2025-01-01T00:00:00Z');
  const t2 = () => new Date('2025-01-02T00:00:00Z');
  const first = mergeConditions(
    undefined,
    [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
    1,
    t1,
  );
  assert.equal(first[0]!.lastTransitionTime, '2025-01-01T00:00:00Z');
  const sameStatus = mergeConditions(
    first,
    [{ type: 'Ready', status: 'False', reason: 'B', message: 'b' }],
    2,
    t2,
  );
  assert.equal(sameStatus[0]!.lastTransitionTime, '2025-01-01T00:00:00Z');
  assert.equal(sameStatus[0]!.reason, 'B');
  assert.equal(sameStatus[0]!.observedGeneration, 2);
  const flipped = mergeConditions(
    sameStatus,
    [{ type: 'Ready', status: 'True', reason: 'C', message: '' }],
    2,
    t2,
  );
  assert.equal(flipped[0]!.lastTransitionTime, '2025-01-02T00:00:00Z');
  assert.equal(sameConditions(first, sameStatus), false);
  assert.equal(sameConditions(sameStatus, mergeConditions(sameStatus, sameStatus, 2, t2)), true);
});
