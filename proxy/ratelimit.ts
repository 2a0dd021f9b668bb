// Local rate limiting: a token bucket refilled continuously at `ratePerSecond`, holding at
// most `burst` tokens. A request that finds no token is answered 429 by the proxy.
import type { Now } from './clock.ts';

export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #now: Now;
  #tokens: number;
  #last: number;

  constructor(ratePerSecond: number, burst: number, now: Now) {
    this.ratePerSecond = ratePerSecond;
    this.burst = Math.max(1, burst);
    this.#now = now;
    this.#tokens = this.burst;
    this.#last = now();
  }

  /** Takes one token; false when the bucket is empty. */
  take(): boolean {
    const t = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) / 1000) * this.ratePerSecond);
    this.#last = t;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
