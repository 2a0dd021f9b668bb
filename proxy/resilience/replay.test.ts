import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REPLAY_LIMIT, ReplayBuffer } from './replay.ts';

/** A sink that records what it was written and says "full" after `room` writes. */
function sink(room = Number.POSITIVE_INFINITY) {
  const got: Buffer[] = [];
  return {
    got,
    write(c: Buffer) {
      got.push(c);
      return got.length < room;
    },
  };
}

describe('ReplayBuffer (a request body kept for a second try)', () => {
  it('keeps the chunks sent, in order, and writes them again to the next try', () => {
    const b = new ReplayBuffer();
    assert.equal(b.append(Buffer.from('ab')), true);
    assert.equal(b.append(Buffer.alloc(0)), true);
    assert.equal(b.append(Buffer.from('cd')), true);
    assert.equal(b.replayable, true);
    assert.equal(b.bytes, 4);
    const s = sink();
    assert.equal(b.replayInto(s), true);
    assert.equal(Buffer.concat(s.got).toString(), 'abcd');
    // Kept for a third try too.
    const again = sink();
    b.replayInto(again);
    assert.equal(Buffer.concat(again.got).toString(), 'abcd');
  });

  it('an empty body is replayable (nothing to write)', () => {
    const b = new ReplayBuffer();
    const s = sink();
    assert.equal(b.replayInto(s), true);
    assert.deepEqual(s.got, []);
  });

  it('keeps exactly up to the limit; one byte more drops everything for good', () => {
    const b = new ReplayBuffer(10);
    assert.equal(b.append(Buffer.alloc(6)), true);
    assert.equal(b.append(Buffer.alloc(4)), true);
    assert.equal(b.replayable, true);
    assert.equal(b.append(Buffer.alloc(1)), false);
    assert.equal(b.replayable, false);
    assert.equal(b.bytes, 0);
    // Nothing is kept after the overflow, even chunks that would fit alone.
    assert.equal(b.append(Buffer.alloc(1)), false);
    assert.equal(b.bytes, 0);
    assert.throws(() => b.replayInto(sink()), /replay limit/);
  });

  it('a single chunk larger than the limit is not kept', () => {
    const b = new ReplayBuffer();
    assert.equal(b.append(Buffer.alloc(REPLAY_LIMIT + 1)), false);
    assert.equal(b.replayable, false);
  });

  it('the default limit is 64 KiB', () => {
    assert.equal(REPLAY_LIMIT, 65_536);
    const b = new ReplayBuffer();
    assert.equal(b.append(Buffer.alloc(REPLAY_LIMIT)), true);
    assert.equal(b.append(Buffer.alloc(1)), false);
  });

  it('tells the writer to wait when the sink is full (backpressure)', () => {
    const b = new ReplayBuffer();
    for (const c of ['a', 'b', 'c']) b.append(Buffer.from(c));
    const s = sink(2);
    assert.equal(b.replayInto(s), false);
    // Every chunk is written all the same (bounded by the limit): the caller waits for 'drain'.
    assert.equal(Buffer.concat(s.got).toString(), 'abc');
  });
});
