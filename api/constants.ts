// Constants of the ProxyConfig contract that the proxy needs at run time, kept apart from the
// TypeBox schemas (api/proxyconfig.ts re-exports them) so the sidecar's bundle does not carry
// the schema builder: the proxy validates with the precompiled api/generated/validators.js.
export const PROXY_CONFIG_API_VERSION = 'weft.dev/proxyconfig/v1';

/** The longest delay a Node timer takes (2^31-1 ms, about 596 h): a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Namespace label that turns injection on for every pod of the namespace (value "enabled"). */
export const INJECT_LABEL = 'weft.dev/inject';

/**
 * Request headers the client sidecar adds to say who calls (its pod's workload and namespace);
 * the server sidecar reads and strips them, and drops any the app itself sent.
 */
export const SIDECAR_HEADERS = {
  srcWorkload: 'weft-src-workload',
  srcNamespace: 'weft-src-namespace',
} as const;

// How the proxy's Node process is started: the injector sets them as the sidecar's NODE_OPTIONS
// (so `weft proxy` gets them however it is launched), the tests and the benchmark pass the same.
// Small young-generation semispaces keep RSS low at a small cost in scavenges; the old-space cap
// makes a leak fail fast (and restart) rather than grow into the pod's memory limit.
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--max-old-space-size=128'];

/**
 * V8 flags the sidecar sets itself when `weft proxy` starts (v8.setFlagsFromString), before it
 * serves anything: NODE_OPTIONS accepts only a few V8 flags, and these are not among them.
 * `--no-allocation-site-pretenuring`: under bursts V8 decided to allocate the per-request objects
 * of the outbound decision and the request-head parser directly in the old generation
 * (pretenuring by allocation site), where they die as garbage: 2.6 KB per request survived
 * scavenges instead of 0.5 KB before the redesign, the old space stood at its live size plus
 * V8's 8 MB growing step (12.2-12.7 MB instead of 7.9-8.4) with a mark-compact every few seconds
 * at 1,000 rps. Without it the old space and the GC time per request are the baseline's
 * (docs/proxy.md, Memory).
 */
export const PROXY_V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

/**
 * The sidecar's environment beyond its flags: two malloc arenas instead of glibc's default of
 * eight per core, which keep memory freed after a burst (socket and TLS buffers) as RSS; in the
 * benchmark 90 MB instead of 99 MB after bursts, with the same throughput.
 */
export const PROXY_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/** Ports and identities the webhook injects and the proxy expects: one definition. */
export const PROXY = {
  uid: 1337,
  gid: 1337,
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15000,
  healthPort: 15020,
  containerName: 'weft-proxy',
  initContainerName: 'weft-init',
  /** Where the namespace's ProxyConfig ConfigMaps are projected. */
  configDir: '/etc/weft/config',
  /** Downward-API files: `labels` (pod labels), `annotations`. */
  podInfoDir: '/etc/weft/podinfo',
  /** The workload identity Secret: tls.crt, tls.key, ca.crt. */
  identityDir: '/etc/weft/identity',
  /**
   * A projected ServiceAccount token and the cluster CA (`token`, `ca.crt`): the proxy watches its
   * namespace's ProxyConfig ConfigMap with it (the config fast path).
   */
  tokenDir: '/etc/weft/token',
} as const;

/**
 * Distribution format (operator → ConfigMaps → proxy), documented in docs/proxy-config.md:
 * ConfigMaps named `weft-proxy-config` and `weft-proxy-config-<i>` (i = 1..MAX_SHARDS-1) in the
 * pod's namespace are projected into one directory. `manifest.json` (in the first) is a
 * ConfigManifest; each part is a binaryData key `part-<nnn>.gz`; the parts, concatenated in
 * order and gunzipped, are the ProxyConfig JSON. A part whose sha256 differs from the manifest
 * means the kubelet has not finished projecting: the proxy keeps its last good config.
 */
/** The key of a Weft gateway's routing table (GatewayConfig JSON) in its ConfigMap (docs/ingress.md). */
export const GATEWAY_CONFIG_KEY = 'gateway.json';

export const CONFIG_DISTRIBUTION = {
  configMapName: 'weft-proxy-config',
  maxShards: 4,
  manifestKey: 'manifest.json',
  partKey: (i: number) => `part-${String(i).padStart(3, '0')}.gz`,
  /** Most bytes of binaryData per ConfigMap (the apiserver limit is 1 MiB for the whole object). */
  maxBytesPerShard: 900 * 1024,
  labels: { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'proxy-config' },
} as const;
