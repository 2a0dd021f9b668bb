// Proxy parts for tests and benchmarks without a proxy: the health port's handler over a real
// ConfigWatcher alone (no listeners, no metrics), as the operator's long poll sees it.
import type * as HttpTypes from 'node:http';
import { healthHandler } from '../../proxy/admin.ts';
import type { ProxyHandle } from '../../proxy/proxy.ts';
import type { ConfigWatcher } from '../../proxy/watcher.ts';

/** The proxy's health handler (/config/version, /healthz/ready) answering from `watcher` only. */
export function watcherHealthHandler(watcher: ConfigWatcher): HttpTypes.RequestListener {
  return healthHandler({
    proxy: {} as ProxyHandle,
    status: watcher.status,
    metrics: {} as never,
    draining: () => false,
    onApplied: (fn) => watcher.onApplied(fn),
  });
}
