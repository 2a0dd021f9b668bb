// The retry decision as pure functions: retryOn conditions, then the budget.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RetryPolicy } from '../../api/index.ts';
import { RetryBudget } from '../budget.ts';
import { manualClock } from '../clock.ts';
import { retriable, spendRetry } from './retry.ts';

const policy = (...retryOn: RetryPolicy['retryOn']): RetryPolicy => ({
  attempts: 2,
  retryOn,
  budgetPercent: 20,
  minRetriesPerSecond: 10,
});

describe('retry decision', () => {
  it('retryOn: 5xx covers every failure and status >= 500; gateway-error only 502/503/504 and failures but refused streams', () => {
    assert.equal(retriable(policy('5xx'), undefined, 500, undefined), true);
    assert.equal(retriable(policy('5xx'), { kind: 'refused-stream' }, 0, undefined), true);
    assert.equal(retriable(policy('gateway-error'), undefined, 500, undefined), false);
    assert.equal(retriable(policy('gateway-error'), undefined, 503, undefined), true);
    assert.equal(retriable(policy('gateway-error'), { kind: 'refused-stream' }, 0, undefined), false);
    assert.equal(retriable(policy('gateway-error'), { kind: 'timeout' }, 0, undefined), true);
  });
  it('connect-failure, reset, retriable-4xx (409 only) and gRPC statuses', () => {
    assert.equal(retriable(policy('connect-failure'), { kind: 'connect-failure' }, 0, undefined), true);
    assert.equal(retriable(policy('connect-failure'), { kind: 'reset' }, 0, undefined), false);
    assert.equal(retriable(policy('reset'), { kind: 'reset' }, 0, undefined), true);
    assert.equal(retriable(policy('retriable-4xx'), undefined, 409, undefined), true);
    assert.equal(retriable(policy('retriable-4xx'), undefined, 404, undefined), false);
    assert.equal(retriable(policy('unavailable'), undefined, 200, '14'), true);
    assert.equal(retriable(policy('unavailable'), undefined, 200, '0'), false);
    assert.equal(retriable(policy('cancelled', 'deadline-exceeded'), undefined, 200, '4'), true);
  });
  it('a wanted retry is sent while the budget allows, then counted as budget_exhausted', () => {
    const clock = manualClock();
    const cluster = { active: 0, budget: new RetryBudget(0, 1, clock.now), budgetKey: '0/1' };
    const seen: string[] = [];
    const count = (o: string) => seen.push(o);
    assert.equal(spendRetry(cluster, count), true);
    let n = 0;
    while (spendRetry(cluster, count) && n < 100) n++;
    assert.equal(seen.at(-1), 'budget_exhausted');
    assert.equal(
      spendRetry({ active: 0, budget: undefined, budgetKey: '' }, count),
      true,
      'no budget: no limit',
    );
  });
});
