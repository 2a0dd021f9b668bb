import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RetryBudget } from './budget.ts';
import { manualClock, seededRandom } from './clock.ts';
import { detectProtocol, protocolForAppProtocol } from './detect.ts';
import { Balancer, newEndpointStats, observeLatency } from './lb.ts';
import { newOutlierState, OutlierDetector } from './outlier.ts';
import { TokenBucket } from './ratelimit.ts';
import { parseTraceparent } from './tracing.ts';

describe('TokenBucket', () => {
  it('allows the burst, then refills at the rate', () => {
    const c = manualClock();
    const b = new TokenBucket(10, 3, c.now);
    assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
    c.advance(100); // 10/s → one token per 100 ms
    assert.equal(b.take(), true);
    assert.equal(b.take(), false);
    c.advance(10_000);
    assert.equal([1, 2, 3, 4].filter(() => b.take()).length, 3, 'never more than burst');
  });
});

describe('RetryBudget', () => {
  it('allows percent of requests, with a per-second floor', () => {
    const c = manualClock(1_000_000);
    const b = new RetryBudget(20, 0, c.now);
    for (let i = 0; i < 100; i++) b.recordRequest();
    let allowed = 0;
    for (let i = 0; i < 50; i++) if (b.tryRetry()) allowed++;
    assert.equal(allowed, 20);
    const floor = new RetryBudget(20, 1, c.now);
    let f = 0;
    for (let i = 0; i < 50; i++) if (floor.tryRetry()) f++;
    assert.equal(f, 10, 'floor: 1/s over the 10 s window with no requests');
  });
  it('forgets requests and retries after the window', () => {
    const c = manualClock(0);
    const b = new RetryBudget(50, 0, c.now);
    for (let i = 0; i < 10; i++) b.recordRequest();
    for (let i = 0; i < 5; i++) assert.ok(b.tryRetry());
    assert.equal(b.tryRetry(), false);
    c.advance(11_000);
    assert.equal(b.tryRetry(), false, 'no requests in the window now');
    b.recordRequest();
    b.recordRequest();
    assert.equal(b.tryRetry(), true);
  });
});

describe('OutlierDetector', () => {
  const policy = {
    consecutive5xxErrors: 3,
    consecutiveConnectFailures: 2,
    baseEjectionTimeMs: 1000,
    maxEjectionPercent: 50,
  };
  it('ejects after consecutive 5xx, with doubling backoff', () => {
    const c = manualClock();
    const d = new OutlierDetector(c.now);
    const a = newOutlierState();
    const peers = [a, newOutlierState(), newOutlierState(), newOutlierState()];
    assert.equal(d.record(a, '5xx', policy, peers), false);
    d.record(a, 'success', policy, peers);
    d.record(a, '5xx', policy, peers);
    d.record(a, '5xx', policy, peers);
    assert.equal(d.record(a, '5xx', policy, peers), true);
    assert.ok(d.isEjected(a));
    c.advance(1001);
    assert.ok(!d.isEjected(a));
    for (let i = 0; i < 3; i++) d.record(a, '5xx', policy, peers);
    c.advance(1500);
    assert.ok(d.isEjected(a), 'second ejection lasts 2000 ms');
    c.advance(600);
    assert.ok(!d.isEjected(a));
  });
  it('ejects on connect failures and respects maxEjectionPercent', () => {
    const d = new OutlierDetector(manualClock().now);
    const eps = [newOutlierState(), newOutlierState(), newOutlierState(), newOutlierState()];
    for (const e of eps) for (let i = 0; i < 2; i++) d.record(e, 'connect-failure', policy, eps);
    assert.equal(eps.filter((e) => d.isEjected(e)).length, 2, '50% of 4');
    const single = [newOutlierState()];
    d.record(single[0]!, 'connect-failure', policy, single);
    assert.equal(d.record(single[0]!, 'connect-failure', policy, single), true, 'always at least one');
  });
});

describe('Balancer', () => {
  it('P2C prefers the endpoint with lower EWMA latency', () => {
    const c = manualClock(0);
    const lb = new Balancer(c.now, seededRandom(1));
    const fast = newEndpointStats('fast', 0);
    const slow = newEndpointStats('slow', 0);
    const mid = newEndpointStats('mid', 0);
    observeLatency(fast, 1, 0);
    observeLatency(slow, 200, 0);
    observeLatency(mid, 20, 0);
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const p = lb.pick('P2C_EWMA', [fast, slow, mid])!;
      counts.set(p.key, (counts.get(p.key) ?? 0) + 1);
    }
    assert.equal(counts.get('slow') ?? 0, 0, 'the slowest never wins a pair');
    assert.ok((counts.get('fast') ?? 0) > (counts.get('mid') ?? 0));
  });
  it('P2C accounts for in-flight requests', () => {
    const lb = new Balancer(() => 0, seededRandom(2));
    const a = newEndpointStats('a', 0);
    const b = newEndpointStats('b', 0);
    a.inflight = 10;
    for (let i = 0; i < 100; i++) assert.equal(lb.pick('P2C_EWMA', [a, b])!.key, 'b');
  });
  it('round robin cycles', () => {
    const lb = new Balancer(() => 0, seededRandom(3));
    const eps = ['a', 'b', 'c'].map((k) => newEndpointStats(k, 0));
    assert.deepEqual(
      Array.from({ length: 6 }, () => lb.pick('ROUND_ROBIN', eps)!.key),
      ['a', 'b', 'c', 'a', 'b', 'c'],
    );
  });
  it('consistent hash is sticky and moves few keys when an endpoint goes', () => {
    const lb = new Balancer(() => 0, seededRandom(4));
    const eps = ['a', 'b', 'c', 'd'].map((k) => newEndpointStats(k, 0));
    const before = new Map<string, string>();
    for (let i = 0; i < 400; i++) before.set(`user-${i}`, lb.pick('CONSISTENT_HASH', eps, `user-${i}`)!.key);
    for (let i = 0; i < 400; i++)
      assert.equal(lb.pick('CONSISTENT_HASH', eps, `user-${i}`)!.key, before.get(`user-${i}`));
    const three = eps.filter((e) => e.key !== 'd');
    let moved = 0;
    for (const [k, v] of before) if (v !== 'd' && lb.pick('CONSISTENT_HASH', three, k)!.key !== v) moved++;
    assert.equal(moved, 0, 'keys not on the removed endpoint stay put');
    assert.equal(new Set(before.values()).size, 4, 'all endpoints get keys');
  });
});

describe('detectProtocol', () => {
  it('classifies first bytes', () => {
    assert.equal(detectProtocol(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
    assert.equal(detectProtocol(Buffer.from('POST /x HTTP/1.1\r\n')), 'http1');
    assert.equal(detectProtocol(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'h2');
    assert.equal(detectProtocol(Buffer.from('PRI * HT')), 'more');
    assert.equal(detectProtocol(Buffer.from('GE')), 'more');
    assert.equal(detectProtocol(Buffer.from([0x16, 0x03, 0x01, 0x00])), 'tls');
    assert.equal(detectProtocol(Buffer.from('hello world')), 'tcp');
    assert.equal(detectProtocol(Buffer.from('\x00\x00\x00\x08')), 'tcp');
  });
  it('honours appProtocol', () => {
    assert.equal(protocolForAppProtocol('grpc'), 'h2');
    assert.equal(protocolForAppProtocol('kubernetes.io/h2c'), 'h2');
    assert.equal(protocolForAppProtocol('http'), 'http1');
    assert.equal(protocolForAppProtocol('mysql'), 'tcp');
    assert.equal(protocolForAppProtocol(undefined), undefined);
  });
});

describe('parseTraceparent', () => {
  it('accepts version 00 and refuses malformed or all-zero ids', () => {
    assert.deepEqual(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), {
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
    assert.equal(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00')?.sampled, false);
    assert.equal(parseTraceparent('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), undefined);
    assert.equal(parseTraceparent('garbage'), undefined);
    assert.equal(parseTraceparent(undefined), undefined);
  });
});
