// Proxy parts for tests and benchmarks without a proxy: the health port's handler over a real
// ConfigWatcher alone (no listeners, no metrics), as the operator's long poll sees it, and
// optionally a stand-in workload identity whose trusted roots the test changes.
import type * as HttpTypes from 'node:http';
import type { TrustSummary } from '../../api/pem.ts';
import { healthHandler } from '../../proxy/admin.ts';
import type { ProxyHandle } from '../../proxy/proxy.ts';
import type { ConfigWatcher } from '../../proxy/watcher.ts';

/** A workload identity as the health handler sees it: the roots it trusts, and its reloads. */
export class TestIdentity {
  trust: TrustSummary | undefined;
  readonly #listeners = new Set<() => void>();
  constructor(trust?: TrustSummary) {
    this.trust = trust;
  }
  /** The kubelet swapped the files: the proxy reloaded them. */
  reload(trust: TrustSummary | undefined): void {
    this.trust = trust;
    for (const fn of this.#listeners) fn();
  }
  onReload(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
  /** How many held /config/version polls wait on it. */
  get waiting(): number {
    return this.#listeners.size;
  }
}

/** The proxy's health handler (/config/version, /healthz/ready) answering from `watcher` (and `identity`) only. */
export function watcherHealthHandler(
  watcher: ConfigWatcher,
  identity?: TestIdentity,
): HttpTypes.RequestListener {
  return healthHandler({
    proxy: {} as ProxyHandle,
    status: watcher.status,
    metrics: {} as never,
    draining: () => false,
    onApplied: (fn) => {
      const off = watcher.onApplied(fn);
      const offIdentity = identity?.onReload(fn);
      return () => {
        off();
        offIdentity?.();
      };
    },
    ...(identity ? { trust: () => identity.trust } : {}),
  });
}
