// Passive outlier detection: an endpoint that returns `consecutive5xx` 5xx responses, or fails
// `consecutiveConnectFailures` connects, in a row is ejected from load balancing for
// baseEjectionTimeMs × 2^(times ejected before), capped at MAX_EJECTION_MS. At most
// maxEjectionPercent of a backend's endpoints are ejected at once (but always at least one may be).
import type { Now } from './clock.ts';

const MAX_EJECTION_MS = 300_000;

export interface OutlierPolicy {
  consecutive5xxErrors: number;
  consecutiveConnectFailures: number;
  baseEjectionTimeMs: number;
  maxEjectionPercent: number;
}

export const DEFAULT_OUTLIER_POLICY: OutlierPolicy = {
  consecutive5xxErrors: 5,
  consecutiveConnectFailures: 3,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 50,
};

export interface OutlierState {
  consecutive5xx: number;
  consecutiveConnectFailures: number;
  ejectedUntil: number;
  timesEjected: number;
}

export function newOutlierState(): OutlierState {
  return { consecutive5xx: 0, consecutiveConnectFailures: 0, ejectedUntil: 0, timesEjected: 0 };
}

export type Outcome = 'success' | '5xx' | 'connect-failure';

export class OutlierDetector {
  readonly #now: Now;
  constructor(now: Now) {
    this.#now = now;
  }

  isEjected(s: OutlierState): boolean {
    return s.ejectedUntil > this.#now();
  }

  /**
   * Records one outcome for endpoint `s` among `peers` (all endpoints of the backend, `s`
   * included). Returns true when this outcome ejected the endpoint.
   */
  record(s: OutlierState, outcome: Outcome, policy: OutlierPolicy, peers: readonly OutlierState[]): boolean {
    if (outcome === 'success') {
      s.consecutive5xx = 0;
      s.consecutiveConnectFailures = 0;
      return false;
    }
    if (outcome === '5xx') s.consecutive5xx++;
    else s.consecutiveConnectFailures++;
    const trip =
      (outcome === '5xx' &&
        policy.consecutive5xxErrors > 0 &&
        s.consecutive5xx >= policy.consecutive5xxErrors) ||
      (outcome === 'connect-failure' &&
        policy.consecutiveConnectFailures > 0 &&
        s.consecutiveConnectFailures >= policy.consecutiveConnectFailures);
    if (!trip || this.isEjected(s)) return false;
    const ejected = peers.filter((p) => p !== s && this.isEjected(p)).length;
    const cap = Math.max(1, Math.floor((peers.length * policy.maxEjectionPercent) / 100));
    if (ejected + 1 > cap) return false;
    const duration = Math.min(MAX_EJECTION_MS, policy.baseEjectionTimeMs * 2 ** s.timesEjected);
    s.ejectedUntil = this.#now() + duration;
    s.timesEjected++;
    s.consecutive5xx = 0;
    s.consecutiveConnectFailures = 0;
    return true;
  }
}
