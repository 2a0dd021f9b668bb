// Constants of the ProxyConfig contract that the proxy needs at run time, kept apart from the
// TypeBox schemas (api/proxyconfig.ts re-exports them) so the sidecar's bundle does not carry
// the schema builder: the proxy validates with the precompiled api/generated/validators.js.
export const PROXY_CONFIG_API_VERSION = 'weft.dev/proxyconfig/v1';

/** The longest delay a Node timer takes (2^31-1 ms, about 596 h): a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

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
export const CONFIG_DISTRIBUTION = {
  configMapName: 'weft-proxy-config',
  maxShards: 4,
  manifestKey: 'manifest.json',
  partKey: (i: number) => `part-${String(i).padStart(3, '0')}.gz`,
  /** Most bytes of binaryData per ConfigMap (the apiserver limit is 1 MiB for the whole object). */
  maxBytesPerShard: 900 * 1024,
  labels: { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'proxy-config' },
} as const;
