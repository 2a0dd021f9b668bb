// Retry budget: retries may add at most `percent` of the requests seen over a sliding window,
// with a floor of `minPerSecond` retries per second so that a quiet service can still retry.
// This keeps retries from multiplying load on an upstream that is already failing.
import type { Now } from './clock.ts';

const WINDOW_MS = 10_000;
const BUCKETS = 10;

export class RetryBudget {
  readonly percent: number;
  readonly minPerSecond: number;
  readonly #now: Now;
  readonly #requests = new Array<number>(BUCKETS).fill(0);
  readonly #retries = new Array<number>(BUCKETS).fill(0);
  #epoch: number;

  constructor(percent: number, minPerSecond: number, now: Now) {
    this.percent = percent;
    this.minPerSecond = minPerSecond;
    this.#now = now;
    this.#epoch = this.#slot();
  }

  #slot(): number {
    return Math.floor(this.#now() / (WINDOW_MS / BUCKETS));
  }

  #advance(): number {
    const slot = this.#slot();
    const gap = Math.min(BUCKETS, slot - this.#epoch);
    for (let i = 1; i <= gap; i++) {
      const idx = (this.#epoch + i) % BUCKETS;
      this.#requests[idx] = 0;
      this.#retries[idx] = 0;
    }
    if (slot > this.#epoch) this.#epoch = slot;
    return this.#epoch % BUCKETS;
  }

  /** Counts a first try. */
  recordRequest(): void {
    this.#requests[this.#advance()]++;
  }

  /** Takes a retry from the budget; false when the budget is spent. */
  tryRetry(): boolean {
    const idx = this.#advance();
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      requests += this.#requests[i]!;
      retries += this.#retries[i]!;
    }
    const allowed = Math.max((requests * this.percent) / 100, (this.minPerSecond * WINDOW_MS) / 1000);
    if (retries + 1 > allowed) return false;
    this.#retries[idx]++;
    return true;
  }
}
