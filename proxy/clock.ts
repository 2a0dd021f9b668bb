// Time and randomness, passed into the pure logic (load balancing, budgets, buckets, outlier
// detection) so tests drive them without sleeps.
export type Now = () => number;
export type Random = () => number;

export const systemNow: Now = () => performance.now();
export const systemRandom: Random = Math.random;

/** A clock tests move by hand. */
export function manualClock(start = 0): { now: Now; advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

/** A deterministic pseudo-random source (mulberry32) for tests and reproducible benchmarks. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
