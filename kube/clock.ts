// Time passed in, so time-dependent logic (queue backoff, timeouts, leader election) is tested
// without sleeping.
import { MAX_TIMER_MS } from '../api/constants.ts';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  // Node fires a timer longer than MAX_TIMER_MS (about 24.8 days) after 1 ms: a requeue that far
  // out (a long-lived certificate's renewal) would loop. Firing early is harmless: the reconcile
  // computes its next look again.
  setTimeout: (fn, ms) => setTimeout(fn, Math.min(ms, MAX_TIMER_MS)),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** A clock that only moves when told to: advance(ms) fires the timers that fall due, in order. */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  constructor(start = 0) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Pending timers. */
  get pending(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

/** Exponential backoff with full jitter in [base·2^n / 2, base·2^n], capped. */
export function backoffMs(
  failures: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
) {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp / 2 + (exp / 2) * random());
}
