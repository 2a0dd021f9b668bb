// Load balancing over one backend's endpoints. P2C over peak-EWMA latency is the default:
// pick two endpoints at random and take the cheaper, cost = EWMA latency × (in-flight + 1),
// so a slow or busy endpoint is avoided without a global view. Round robin and consistent
// hashing (on a request header, with a ring of virtual nodes) are the alternatives.
import type { Now, Random } from './clock.ts';
import { newOutlierState, type OutlierState } from './outlier.ts';

export type LbType = 'P2C_EWMA' | 'ROUND_ROBIN' | 'CONSISTENT_HASH';

/** Live state of one endpoint, kept across config swaps (keyed by address:port). */
export interface EndpointStats {
  readonly key: string;
  ewmaMs: number;
  updatedAt: number;
  inflight: number;
  outlier: OutlierState;
}

const DECAY_MS = 10_000;
const DEFAULT_RTT_MS = 10;
const VNODES = 100;

export function newEndpointStats(key: string, now: number): EndpointStats {
  return { key, ewmaMs: DEFAULT_RTT_MS, updatedAt: now, inflight: 0, outlier: newOutlierState() };
}

/** Records one observed latency into the peak-EWMA: peaks are taken at once, decay is slow. */
export function observeLatency(s: EndpointStats, rttMs: number, now: number): void {
  if (rttMs > s.ewmaMs) {
    s.ewmaMs = rttMs;
  } else {
    const w = Math.exp(-Math.max(0, now - s.updatedAt) / DECAY_MS);
    s.ewmaMs = s.ewmaMs * w + rttMs * (1 - w);
  }
  s.updatedAt = now;
}

/** FNV-1a, 32-bit, with murmur3's finalizer so short, similar keys still spread over the ring. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

interface Ring {
  hashes: Uint32Array;
  owners: number[];
}

function buildRing(keys: readonly string[]): Ring {
  const points: Array<[number, number]> = [];
  keys.forEach((k, i) => {
    for (let v = 0; v < VNODES; v++) points.push([fnv1a(`${k}#${v}`), i]);
  });
  points.sort((a, b) => a[0] - b[0]);
  return { hashes: Uint32Array.from(points.map((p) => p[0])), owners: points.map((p) => p[1]) };
}

export class Balancer {
  readonly #now: Now;
  readonly #random: Random;
  #rr = 0;
  #rings = new Map<string, Ring>();

  constructor(now: Now, random: Random) {
    this.#now = now;
    this.#random = random;
  }

  /** Picks one of `candidates` (already filtered to healthy, untried endpoints). */
  pick(type: LbType, candidates: readonly EndpointStats[], hashKey?: string): EndpointStats | undefined {
    const n = candidates.length;
    if (n === 0) return undefined;
    if (n === 1) return candidates[0];
    switch (type) {
      case 'ROUND_ROBIN':
        return candidates[this.#rr++ % n];
      case 'CONSISTENT_HASH':
        if (hashKey !== undefined) return candidates[this.#ringPick(candidates, hashKey)];
        return candidates[Math.floor(this.#random() * n)];
      default:
        return this.#p2c(candidates);
    }
  }

  #p2c(c: readonly EndpointStats[]): EndpointStats {
    const n = c.length;
    const i = Math.floor(this.#random() * n);
    let j = Math.floor(this.#random() * (n - 1));
    if (j >= i) j++;
    const a = c[i]!;
    const b = c[j]!;
    return this.#cost(a) <= this.#cost(b) ? a : b;
  }

  #cost(s: EndpointStats): number {
    // The EWMA decays toward zero while idle so an endpoint that was slow long ago gets tried again.
    const idle = Math.max(0, this.#now() - s.updatedAt);
    return s.ewmaMs * Math.exp(-idle / DECAY_MS) * (s.inflight + 1);
  }

  #ringPick(c: readonly EndpointStats[], hashKey: string): number {
    const id = c.map((s) => s.key).join(',');
    let ring = this.#rings.get(id);
    if (!ring) {
      if (this.#rings.size > 256) this.#rings.clear();
      ring = buildRing(c.map((s) => s.key));
      this.#rings.set(id, ring);
    }
    const h = fnv1a(hashKey);
    let lo = 0;
    let hi = ring.hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring.hashes[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return ring.owners[lo === ring.hashes.length ? 0 : lo]!;
  }
}
