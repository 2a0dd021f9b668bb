// The canary's and the stable version's figures over a step's window, as their proxies observed
// them: the operator reads `GET /stats/inbound` on the health port of the pods behind each backend
// Service (cumulative counters: proxy/metrics.ts InboundSummary) and takes the difference with
// what they said when the window opened. No Prometheus; only the backends' pods are asked, not
// every proxy of the mesh. Baselines live in the leader's memory: after an operator restart the
// window opens again at the first reading (the step keeps its place and waits for its minimum
// requests again).

import type { Window } from './machine.ts';
import type { InboundStats, ReadStats } from './stats.ts';

export type { InboundStats } from './stats.ts';

export interface SampledPod {
  /** ns/name */
  key: string;
  address: string | undefined;
}

export interface SamplerOptions {
  read: ReadStats;
  /** Parallel reads (the backends' pods). */
  concurrency?: number;
}

type Baseline = Map<string, InboundStats>;

export class WindowSampler {
  readonly #o: Required<SamplerOptions>;
  readonly #windows = new Map<string, { id: string; canary: Baseline; stable: Baseline }>();
  /** Reads done, for the cost measurement. */
  reads = 0;

  constructor(o: SamplerOptions) {
    this.#o = { concurrency: 32, ...o };
  }

  /**
   * The figures of the window `windowId` of the progression `key` (zero when it opens now);
   * the latency at `percentile`.
   */
  async sample(
    key: string,
    windowId: string,
    pods: { canary: SampledPod[]; stable: SampledPod[] },
    percentile: number,
  ): Promise<{ canary: Window; stable: Window }> {
    let w = this.#windows.get(key);
    if (w?.id !== windowId) {
      w = { id: windowId, canary: new Map(), stable: new Map() };
      this.#windows.set(key, w);
    }
    const [canary, stable] = await Promise.all([
      this.#delta(pods.canary, w.canary, percentile),
      this.#delta(pods.stable, w.stable, percentile),
    ]);
    return { canary, stable };
  }

  forget(key: string): void {
    this.#windows.delete(key);
  }

  async #delta(pods: SampledPod[], base: Baseline, percentile: number): Promise<Window> {
    const read = await this.#readAll(pods);
    let requests = 0;
    let errors = 0;
    let counts: number[] = [];
    let bucketsMs: number[] = [];
    for (const [pod, cur] of read) {
      const b = base.get(pod);
      if (!b) {
        // First seen in this window: it counts from now on.
        base.set(pod, cur);
        continue;
      }
      // Fewer than at the window's start: the proxy restarted, everything it has is new.
      const d = cur.requests < b.requests ? undefined : b;
      requests += cur.requests - (d?.requests ?? 0);
      errors += cur.errors - (d?.errors ?? 0);
      bucketsMs = cur.bucketsMs;
      counts = cur.counts.map((c, i) => (counts[i] ?? 0) + c - (d?.counts[i] ?? 0));
    }
    const w: Window = { requests, errors };
    const latency = percentileMs(bucketsMs, counts, percentile);
    if (latency !== undefined) w.latencyMs = latency;
    return w;
  }

  async #readAll(pods: SampledPod[]): Promise<Map<string, InboundStats>> {
    const out = new Map<string, InboundStats>();
    const queue = pods.filter((p) => p.address !== undefined);
    const worker = async () => {
      for (let p = queue.shift(); p; p = queue.shift()) {
        try {
          out.set(p.key, await this.#o.read(p.address!));
          this.reads++;
        } catch {
          // Unreadable (starting, gone): it does not count in this reading.
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.concurrency, queue.length) }, worker));
    return out;
  }
}

/**
 * The latency at `percentile`: the upper bound of the bucket where that share of the requests is
 * reached (an upper bound, so a gate never passes on a figure better than the truth); undefined
 * with no requests or past the last bucket.
 */
export function percentileMs(bucketsMs: number[], counts: number[], percentile: number): number | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const want = Math.ceil((percentile / 100) * total);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!;
    if (seen >= want) return bucketsMs[i];
  }
  return undefined;
}
