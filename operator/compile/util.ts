// Small pure helpers the compiler's parts share: ordering, canonical key order, durations.
import type { Mesh } from '../../api/index.ts';
import { durationMs, MAX_TIMER_MS } from '../../api/index.ts';
import type { RetryPolicy } from '../../api/proxyconfig.ts';

export const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
export const byKey =
  <T>(f: (t: T) => string) =>
  (a: T, b: T) =>
    cmp(f(a), f(b));
export const keyOf = (m: { name: string; namespace?: string }) =>
  m.namespace ? `${m.namespace}/${m.name}` : m.name;

/** A copy with object keys sorted at every level (user-supplied fragments of CRs). */
export function sortKeys<T>(v: T): T {
  if (Array.isArray(v)) return v.map(sortKeys) as T;
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out as T;
  }
  return v;
}

/**
 * A duration the proxy arms as a timer. The CRDs bound every one far below MAX_TIMER_MS; a Mesh
 * stored before those bounds existed is clamped here, since the proxy would refuse the whole
 * config (for every namespace) rather than arm a timer that fires at once.
 */
export const timerMs = (d: string) => Math.min(durationMs(d), MAX_TIMER_MS);

export function retryPolicy(r: NonNullable<NonNullable<Mesh['spec']['defaults']>['retries']>): RetryPolicy {
  const out: RetryPolicy = {
    attempts: r.attempts,
    budgetPercent: r.budget?.percent ?? 20,
    minRetriesPerSecond: r.budget?.minRetriesPerSecond ?? 10,
    retryOn: [...(r.retryOn ?? ['connect-failure', 'refused-stream', 'unavailable'])].sort(cmp),
  } as RetryPolicy;
  if (r.perTryTimeout) out.perTryTimeoutMs = timerMs(r.perTryTimeout);
  return sortKeys(out);
}
