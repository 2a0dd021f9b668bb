import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  answerOf,
  IN_FLIGHT_CUT,
  inFlightCut,
  isInFlightCut,
  memorySlope,
  type Protocol,
  tally,
} from './faults.ts';

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

describe('inFlightCut (the failures a crash of the process calls go through must cause)', () => {
  it('counts as expected the first cut call per protocol only, and nothing else', () => {
    const lines: [Protocol, string][] = [
      ['grpc', '13 502 WEFT_UPSTREAM_RESET echo.weft-demo: 10.113.0.11:9090: RST_STREAM 8 30ms'],
      ['grpc', '14 502 WEFT_UPSTREAM_RESET echo.weft-demo: 10.113.0.11:9090: RST_STREAM 8 31ms'],
      ['tcp', '149 error closed before an answer'],
      ['http', '7 502 WEFT_UPSTREAM_RESET echo.weft-demo: socket hang up'],
      ['http', '8 503 WEFT_NO_ENDPOINTS echo.weft-demo has no ready endpoints'],
      ['tcp', '150 error ECONNREFUSED'],
      ['http', '9 200 echo v1 echo-a 3ms'],
    ];
    const answers = lines.map(([p, l], i) => answerOf(p, i + 1, l));
    const t = tally(answers, 0, 100, inFlightCut());
    assert.equal(t.failed, 6);
    // grpc 13, tcp 149, http 7: the second gRPC reset, the 503 and the refusal are not.
    assert.equal(t.expectedFailed, 3);
    assert.ok(!IN_FLIGHT_CUT.test('tcp 150 error ECONNREFUSED'));
    // The same rule on the failures as tally names them.
    assert.deepEqual(t.failures.map(isInFlightCut), [true, true, true, true, false, false]);
  });
});
