import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memorySlope } from './faults.ts';

describe('memorySlope (the soak of bench/faults.ts)', () => {
  it('gives first, last, peak and the least-squares slope in MiB per hour', () => {
    // 40 MiB growing 2 MiB every quarter hour, with noise around the line.
    const xy: [number, number][] = [0, 0.25, 0.5, 0.75, 1].map((h, i) => [
      h,
      40 + 8 * h + (i % 2 ? 0.5 : -0.5),
    ]);
    const m = memorySlope('weft-demo/steady/weft-proxy', xy);
    assert.deepEqual(
      { ...m, slopeMiBPerHour: Math.round(m.slopeMiBPerHour) },
      {
        container: 'weft-demo/steady/weft-proxy',
        samples: 5,
        firstMiB: 39.5,
        lastMiB: 47.5,
        peakMiB: 47.5,
        slopeMiBPerHour: 8,
      },
    );
  });
  it('a flat or single sample has slope 0', () => {
    assert.equal(memorySlope('x', [[0, 50]]).slopeMiBPerHour, 0);
    assert.equal(
      memorySlope('x', [
        [0, 50],
        [1, 50],
      ]).slopeMiBPerHour,
      0,
    );
  });
});
