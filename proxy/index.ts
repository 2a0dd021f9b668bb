// weft-proxy's public surface.
export { adminHandler, healthHandler } from './admin.ts';
export { RetryBudget } from './budget.ts';
export { manualClock, type Now, type Random, seededRandom } from './clock.ts';
export { encodeConfig, PLAIN_CONFIG_FILE, readConfigDir, writeProjected } from './configdir.ts';
export { detectProtocol, type Protocol, protocolForAppProtocol } from './detect.ts';
export { PROXY_ERROR_CODES, ProxyError, type ProxyErrorCode } from './errors.ts';
export { Balancer, type EndpointStats, type LbType } from './lb.ts';
export { ProxyMetrics } from './metrics.ts';
export { loadOriginalDst, type OriginalDst, originalDst } from './native/index.ts';
export { OutlierDetector, type OutlierPolicy } from './outlier.ts';
export {
  type Authorize,
  type AuthzRequest,
  allowAll,
  DEFAULT_LIMITS,
  type Limits,
  type ProxyHandle,
  startProxy,
} from './proxy.ts';
export { TokenBucket } from './ratelimit.ts';
export { type Sidecar, type SidecarOptions, startSidecar } from './sidecar.ts';
export { RoutingTable } from './table.ts';

/** The init container's script: `sh <path>` as root with NET_ADMIN (env documented inside). */
export const IPTABLES_SCRIPT = new URL('./iptables.sh', import.meta.url).pathname;
export { PROXY_NODE_FLAGS } from '../api/constants.ts';
export { initCommand, proxyCommand } from './command.ts';
