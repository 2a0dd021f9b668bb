// Names the injector writes and other components read: annotations, labels, the commands of
// the injected containers, volume names and the identity Secret name. One definition.
import { PROXY, WEFT_IMAGE } from '../api/index.ts';

/** Pod annotations (and the namespace label) that drive or record injection. */
export const ANNOTATIONS = {
  /** Pod opt-in / opt-out: "enabled" or "disabled". */
  inject: 'weft.dev/inject',
  /** Set on injected pods: the injector template version. A pod carrying it is left alone. */
  injected: 'weft.dev/injected',
  /** Set on pods whose injection was asked for but skipped: the human-readable reasons. */
  skipped: 'weft.dev/injection-skipped',
  /** Comma-separated inbound ports that bypass the proxy (e.g. "9090,9091"). */
  excludeInboundPorts: 'weft.dev/exclude-inbound-ports',
  /** Comma-separated outbound destination ports that bypass the proxy (e.g. "5432"). */
  excludeOutboundPorts: 'weft.dev/exclude-outbound-ports',
  /** Comma-separated outbound destination CIDRs that bypass the proxy (e.g. "10.0.0.0/8"). */
  excludeOutboundCidrs: 'weft.dev/exclude-outbound-cidrs',
  /** Set on injected pods whose HTTP probes were rewritten: the original targets, JSON. */
  appProbes: 'weft.dev/app-probes',
} as const;

export { INJECT_LABEL } from '../api/constants.ts';
/** Label the injector puts on injected pods, so controllers can select meshed pods. */
export const MESHED_LABEL = 'weft.dev/meshed';
/** Label on Weft's own pods; the webhook configurations' objectSelector excludes them. */
export const CONTROL_PLANE_LABEL = 'weft.dev/control-plane';

/**
 * How long an app container of a meshed pod keeps running after its pod is deleted (a preStop
 * `sleep` the injector adds when the container has no preStop of its own), at most the pod's
 * grace period less a second: meanwhile the operator removes the pod from every caller's
 * endpoints (the config fast path delivers that within about a second) and the sidecar, which
 * Kubernetes stops only after the app, keeps serving what still arrives. Without it an app that
 * exits on SIGTERM refuses the requests callers send before they learn it is gone.
 */
export const APP_STOP_DELAY_SECONDS = 5;

/** Version of the injected template, recorded in ANNOTATIONS.injected. */
export const INJECTOR_VERSION = 'v1';

/** Namespaces that are never injected, whatever their labels say (plus the mesh's own). */
export const PROTECTED_NAMESPACES = ['kube-system', 'kube-public', 'kube-node-lease'] as const;

/**
 * The identity Secret of a ServiceAccount, which the operator writes and the injector mounts.
 * Must equal operator/identity/plan.ts identitySecretName (a unit test holds them together).
 */
export const IDENTITY_SECRET_PREFIX = 'weft-identity-';
export function identitySecretName(serviceAccount: string): string {
  return `${IDENTITY_SECRET_PREFIX}${serviceAccount}`.slice(0, 253);
}

/**
 * Commands of the injected containers. Weft ships one image with one binary `weft`: the
 * sidecar runs `weft proxy` (proxy/main.ts), the init container runs `weft init`, which
 * executes proxy/iptables.sh with the WEFT_* environment the injector sets.
 */
export const COMMANDS = {
  proxy: ['weft', 'proxy'],
  init: ['weft', 'init'],
} as const;

/** The image used when the Mesh does not name one (the Mesh schema's default). */
export const DEFAULT_PROXY_IMAGE = WEFT_IMAGE;

export const VOLUMES = {
  config: 'weft-config',
  identity: 'weft-identity',
  podInfo: 'weft-podinfo',
  token: 'weft-token',
} as const;

/** Ports of the proxy that the iptables redirect must never capture inbound. */
export const PROXY_INBOUND_EXCLUDED = [PROXY.healthPort, PROXY.adminPort] as const;
/** Ports an app container must not use: the proxy listens on them. */
export const RESERVED_PORTS = [
  PROXY.outboundPort,
  PROXY.inboundPort,
  PROXY.adminPort,
  PROXY.healthPort,
] as const;

/** Path prefix on the health port under which the proxy forwards the kubelet's app probes. */
export const APP_HEALTH_PREFIX = '/app-health';
/** The proxy's readiness endpoint on the health port. */
export const PROXY_READY_PATH = '/healthz/ready';
