// The try driver as a state machine over a stand-in source: tries allowed, exclusion of a tried
// endpoint, the one resend after a stale pooled connection, retryOn and the budget.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RetryPolicy } from '../../api/index.ts';
import { manualClock } from '../clock.ts';
import { Attempts, failureReply, type TryOutcome, unsentByPeer } from './attempts.ts';

const retries = (attempts: number, ...retryOn: RetryPolicy['retryOn']): RetryPolicy => ({
  attempts,
  retryOn,
  budgetPercent: 20,
  minRetriesPerSecond: 10,
});

function driver(targets: string[], policy: Partial<ConstructorParameters<typeof Attempts>[0]> = {}) {
  const clock = manualClock();
  const ended: Array<[string, TryOutcome | undefined]> = [];
  const excluded: string[][] = [];
  const tries = new Attempts<string>(
    { method: 'GET', retries: undefined, timeoutMs: 0, now: clock.now, ...policy },
    {
      pick(tried) {
        excluded.push([...tried]);
        const t = targets.find((x) => !tried.has(x));
        return t === undefined ? undefined : { target: t, key: t };
      },
      size: () => targets.length,
      end: (t, o) => ended.push([t, o]),
    },
  );
  return { tries, ended, excluded };
}

const ok = { status: 200, grpcStatus: undefined };
const unavailable = { status: 503, grpcStatus: undefined };
const stale = { failure: 'reset', stale: true } as const;

describe('attempts', () => {
  it('without a retry policy there is one try, whatever its outcome', () => {
    const { tries } = driver(['a', 'b']);
    assert.equal(tries.maxTries, 1);
    assert.equal(tries.settle(tries.pick()!, unavailable, true), 'stop');
  });

  it('retries what retryOn covers on another endpoint, up to the attempts allowed', () => {
    const { tries, excluded } = driver(['a', 'b', 'c'], { retries: retries(1, '5xx') });
    const first = tries.pick()!;
    assert.equal(tries.settle(first, unavailable, true), 'retry');
    const second = tries.pick()!;
    assert.notEqual(second.target, first.target);
    assert.deepEqual(excluded[1], ['a']);
    assert.equal(tries.settle(second, unavailable, true), 'stop', 'two tries in all');
  });

  it('never retries a request that cannot be sent again (its body began), nor an outcome retryOn does not name', () => {
    const a = driver(['a', 'b'], { retries: retries(2, '5xx') }).tries;
    assert.equal(a.settle(a.pick()!, unavailable, false), 'stop');
    const b = driver(['a', 'b'], { retries: retries(2, 'connect-failure') }).tries;
    assert.equal(b.settle(b.pick()!, unavailable, true), 'stop');
    assert.equal(b.settle(b.pick()!, ok, true), 'stop');
  });

  it('a stale pooled connection is resent once, to the same endpoint, for an idempotent method only', () => {
    const { tries, excluded } = driver(['a', 'b']);
    const t = tries.pick()!;
    assert.equal(tries.settle(t, stale, true), 'resend');
    tries.pick();
    assert.deepEqual(excluded[1], [], 'the endpoint is not excluded: it was not its fault');
    assert.equal(tries.settle(tries.pick()!, stale, true), 'stop', 'once only');
    const post = driver(['a'], { method: 'POST' }).tries;
    assert.equal(post.settle(post.pick()!, stale, true), 'stop');
  });

  it('a connection that never opened is tried once on another endpoint, whatever the policy and the method', () => {
    const refused = { failure: 'connect-failure', stale: false } as const;
    const { tries, excluded } = driver(['a', 'b', 'c'], { method: 'POST' });
    assert.equal(tries.settle(tries.pick()!, refused, true), 'resend');
    const second = tries.pick()!;
    assert.deepEqual(excluded[1], ['a'], 'the endpoint that failed to connect is avoided');
    assert.equal(tries.settle(second, refused, true), 'stop', 'once per request');
    const single = driver(['a']).tries;
    assert.equal(single.settle(single.pick()!, refused, true), 'stop', 'no other endpoint to try');
    const begun = driver(['a', 'b']).tries;
    assert.equal(begun.settle(begun.pick()!, refused, false), 'stop', 'a body already begun');
  });

  it("a peer sidecar's 502 saying its app refused the connection goes to another endpoint once, whatever the method", () => {
    const appDown = { status: 502, grpcStatus: undefined, unsent: true };
    const { tries, excluded } = driver(['a', 'b', 'c'], { method: 'POST' });
    assert.equal(tries.settle(tries.pick()!, appDown, true), 'resend');
    const second = tries.pick()!;
    assert.deepEqual(excluded[1], ['a'], 'the endpoint whose app is down is avoided');
    assert.equal(tries.settle(second, appDown, true), 'stop', 'once per request');
    const single = driver(['a']).tries;
    assert.equal(single.settle(single.pick()!, appDown, true), 'stop', 'no other endpoint to try');
    const plain502 = driver(['a', 'b']).tries;
    assert.equal(plain502.settle(plain502.pick()!, { status: 502, grpcStatus: undefined }, true), 'stop');
    // Only a sidecar's own answer over mTLS says so, and only that code.
    assert.equal(unsentByPeer(502, 'WEFT_UPSTREAM_CONNECT', true), true);
    assert.equal(unsentByPeer(502, 'WEFT_UPSTREAM_CONNECT', false), false, 'not from a plaintext upstream');
    assert.equal(
      unsentByPeer(502, 'WEFT_UPSTREAM_RESET', true),
      false,
      'the app may have seen a reset request',
    );
    assert.equal(unsentByPeer(503, 'WEFT_UPSTREAM_CONNECT', true), false);
  });

  it('a try whose endpoint went away while it waited is sent once more elsewhere when idempotent and not begun; else answered 503 WEFT_ENDPOINT_GONE', () => {
    const goneReset = { failure: 'reset', stale: false, gone: true } as const;
    const { tries, excluded } = driver(['a', 'b', 'c']);
    assert.equal(tries.settle(tries.pick()!, goneReset, true), 'resend');
    const second = tries.pick()!;
    assert.deepEqual(excluded[1], ['a'], 'the gone endpoint is avoided');
    assert.equal(tries.settle(second, goneReset, true), 'stop', 'once per request');
    const post = driver(['a', 'b'], { method: 'POST' }).tries;
    assert.equal(post.settle(post.pick()!, goneReset, true), 'stop', 'a POST may have reached the app');
    const begun = driver(['a', 'b']).tries;
    assert.equal(begun.settle(begun.pick()!, goneReset, false), 'stop', 'a body already begun');
    // Its connection had not opened yet: nothing was sent, any method goes elsewhere.
    const connecting = driver(['a', 'b'], { method: 'POST' }).tries;
    assert.equal(
      connecting.settle(connecting.pick()!, { failure: 'connect-failure', stale: false, gone: true }, true),
      'resend',
    );
    assert.deepEqual(failureReply('reset', true), { status: 503, code: 'WEFT_ENDPOINT_GONE' });
  });

  it('the budget has the last word on a retry the policy wants', () => {
    let spent = 0;
    const { tries } = driver(['a', 'b'], {
      retries: retries(1, '5xx'),
      spend: () => {
        spent++;
        return false;
      },
    });
    assert.equal(tries.settle(tries.pick()!, unavailable, true), 'stop');
    assert.equal(spent, 1);
  });

  it('a cancelled try ends without an outcome, once', () => {
    const { tries, ended } = driver(['a']);
    const t = tries.pick()!;
    tries.cancel(t);
    tries.cancel(t);
    assert.equal(tries.settle(t, ok, true), 'stop');
    assert.deepEqual(ended, [['a', undefined]]);
  });

  it('the answer after a failed last try: 504 timeout, 503 connect failure, 502 reset', () => {
    assert.deepEqual(failureReply('timeout'), { status: 504, code: 'WEFT_UPSTREAM_TIMEOUT' });
    assert.deepEqual(failureReply('connect-failure'), { status: 503, code: 'WEFT_UPSTREAM_CONNECT' });
    assert.deepEqual(failureReply('reset'), { status: 502, code: 'WEFT_UPSTREAM_RESET' });
  });
});
