import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  distribution,
  memInfoUsedMB,
  parseSmapsRollup,
  percentile,
  perPodMemory,
  summaryMemory,
} from './nodememory.ts';

const SMAPS = `556eea692000-7ffe5fdcf000 ---p 00000000 00:00 0                          [rollup]
Rss:               81920 kB
Pss:               45056 kB
Pss_Anon:          30720 kB
Shared_Clean:      51200 kB
Shared_Dirty:          0 kB
Private_Clean:      1024 kB
Private_Dirty:     29696 kB
Anonymous:         30720 kB
Swap:                  0 kB
`;

describe('node memory figures', () => {
  it('reads a process from smaps_rollup: private = Private_Clean + Private_Dirty', () => {
    assert.deepEqual(parseSmapsRollup(SMAPS), { rssMB: 80, pssMB: 44, anonymousMB: 30, privateMB: 30 });
  });

  it("reads this process's own smaps_rollup", () => {
    const m = parseSmapsRollup(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    assert.ok(m.privateMB > 0 && m.privateMB <= m.rssMB, JSON.stringify(m));
    assert.ok(m.anonymousMB > 0 && m.anonymousMB <= m.rssMB, JSON.stringify(m));
  });

  it('names the missing field of a truncated smaps_rollup', () => {
    assert.throws(() => parseSmapsRollup('Rss: 1 kB\nPss: 1 kB\n'), /no Anonymous line/);
  });

  it('host used memory is MemTotal − MemAvailable', () => {
    assert.equal(
      memInfoUsedMB('MemTotal:       24684084 kB\nMemFree:  1 kB\nMemAvailable:   22662616 kB\n'),
      1974.1,
    );
    assert.throws(() => memInfoUsedMB('MemTotal: 1 kB\n'), /no MemAvailable line/);
  });

  it('reads the node, the pods cgroup, pods and containers from stats/summary', () => {
    const m = summaryMemory({
      node: {
        memory: { workingSetBytes: 2 * 2 ** 30 },
        systemContainers: [
          { name: 'kubelet', memory: { workingSetBytes: 1 } },
          { name: 'pods', memory: { workingSetBytes: 300 * 2 ** 20 } },
        ],
      },
      pods: [
        {
          podRef: { name: 'a', namespace: 'm' },
          memory: { workingSetBytes: 60 * 2 ** 20 },
          containers: [
            { name: 'app', memory: { workingSetBytes: 25 * 2 ** 20 } },
            { name: 'weft-proxy', memory: { workingSetBytes: 35.56 * 2 ** 20 } },
            { name: 'starting' },
          ],
        },
        { podRef: { name: 'b', namespace: 'm' } },
      ],
    });
    assert.equal(m.nodeWorkingSetMB, 2048);
    assert.equal(m.podsWorkingSetMB, 300);
    assert.deepEqual(m.pods, [{ namespace: 'm', pod: 'a', workingSetMB: 60 }]);
    assert.deepEqual(
      m.containers.map((c) => [c.container, c.workingSetMB]),
      [
        ['app', 25],
        ['weft-proxy', 35.6],
      ],
    );
    assert.equal(summaryMemory({ node: { memory: { workingSetBytes: 0 } } }).podsWorkingSetMB, null);
    assert.throws(() => summaryMemory({ node: {} }), /node\.memory\.workingSetBytes/);
  });

  it('percentiles are nearest-rank; distributions give n, min, p50, max', () => {
    assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.equal(percentile([1, 2, 3, 4], 99), 4);
    assert.equal(percentile([7], 0), 7);
    assert.throws(() => percentile([], 50), /no values/);
    assert.deepEqual(distribution([30, 28, 35, 31]), { n: 4, min: 28, p50: 30, max: 35 });
  });

  it("a sidecar's share is a meshed pod's cost less an unmeshed pod's", () => {
    // 100 unmeshed pods add 2,500 MiB (25 each); 100 meshed pods beside them add 5,300 (53 each).
    assert.deepEqual(perPodMemory({ none: 1000, unmeshed: 3500, both: 8800 }, 100), {
      unmeshedPodMB: 25,
      meshedPodMB: 53,
      perSidecarMB: 28,
    });
    assert.deepEqual(perPodMemory({ none: 100, unmeshed: 160, both: 245 }, 3), {
      unmeshedPodMB: 20,
      meshedPodMB: 28.3,
      perSidecarMB: 8.3,
    });
    assert.throws(() => perPodMemory({ none: 0, unmeshed: 0, both: 0 }, 0), /pods: 0/);
  });
});
