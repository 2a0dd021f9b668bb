// How a ProxyConfig travels to the proxies (the format is api/proxyconfig.ts
// CONFIG_DISTRIBUTION, documented in docs/operator.md): the canonical JSON is gzipped, the
// gzip stream is cut into parts of at most maxBytesPerShard bytes, part i goes into ConfigMap
// i ("weft-proxy-config", "weft-proxy-config-1", ...) as binaryData "part-00i.gz", and the
// first ConfigMap carries manifest.json (version, size, each part's sha256).
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  CONFIG_DISTRIBUTION,
  type ConfigManifest,
  PROXY_CONFIG_API_VERSION,
  type ProxyConfig,
} from '../api/proxyconfig.ts';
import type { OwnerReference } from '../kube/client.ts';
import { ERROR_CODES, WeftError } from '../kube/errors.ts';

export const VERSION_ANNOTATION = 'weft.dev/config-version';

export interface ConfigMapObj {
  apiVersion: 'v1';
  kind: 'ConfigMap';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    ownerReferences?: OwnerReference[];
  };
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

export const shardName = (i: number) =>
  i === 0 ? CONFIG_DISTRIBUTION.configMapName : `${CONFIG_DISTRIBUTION.configMapName}-${i}`;
export const ALL_SHARD_NAMES = Array.from({ length: CONFIG_DISTRIBUTION.maxShards }, (_, i) => shardName(i));

export interface Encoded {
  version: string;
  /** Uncompressed JSON bytes. */
  size: number;
  /** Compressed bytes across all parts. */
  compressedSize: number;
  configMaps: ConfigMapObj[];
}

/** The ConfigMaps that carry `config` in its namespace (first one last: write it last). */
export function encode(
  config: Pick<ProxyConfig, 'namespace' | 'version'> & { json?: string },
  opts: { ownerReferences?: OwnerReference[]; maxBytesPerShard?: number; generation?: number } = {},
): Encoded {
  const json = Buffer.from(config.json ?? JSON.stringify(config));
  const gz = gzipSync(json, { level: 6 });
  const max = opts.maxBytesPerShard ?? CONFIG_DISTRIBUTION.maxBytesPerShard;
  const nParts = Math.max(1, Math.ceil(gz.length / max));
  if (nParts > CONFIG_DISTRIBUTION.maxShards)
    throw new WeftError(
      ERROR_CODES.CONFIG_TOO_LARGE,
      `ProxyConfig of namespace ${config.namespace} is ${gz.length} bytes compressed: more than ${CONFIG_DISTRIBUTION.maxShards} ConfigMaps of ${max} bytes`,
    );
  const parts: ConfigManifest['parts'] = [];
  const configMaps: ConfigMapObj[] = [];
  for (let i = 0; i < nParts; i++) {
    const chunk = gz.subarray(i * max, (i + 1) * max);
    const key = CONFIG_DISTRIBUTION.partKey(i);
    parts.push({ configMap: shardName(i), key, sha256: createHash('sha256').update(chunk).digest('hex') });
    const cm: ConfigMapObj = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: shardName(i),
        namespace: config.namespace,
        labels: { ...CONFIG_DISTRIBUTION.labels },
        annotations: { [VERSION_ANNOTATION]: config.version },
      },
      binaryData: { [key]: chunk.toString('base64') },
    };
    if (opts.ownerReferences?.length) cm.metadata.ownerReferences = opts.ownerReferences;
    configMaps.push(cm);
  }
  const manifest: ConfigManifest = {
    apiVersion: PROXY_CONFIG_API_VERSION,
    encoding: 'gzip',
    parts,
    size: json.length,
    version: config.version,
  };
  if (opts.generation !== undefined) manifest.generation = opts.generation;
  configMaps[0]!.data = { [CONFIG_DISTRIBUTION.manifestKey]: JSON.stringify(manifest) };
  return { version: config.version, size: json.length, compressedSize: gz.length, configMaps };
}

/** The manifest a namespace's first ConfigMap carries, or undefined. */
export function manifestOf(first: { data?: Record<string, string> } | undefined): ConfigManifest | undefined {
  const text = first?.data?.[CONFIG_DISTRIBUTION.manifestKey];
  if (!text) return undefined;
  try {
    return JSON.parse(text) as ConfigManifest;
  } catch {
    return undefined;
  }
}

/** The version a namespace's first ConfigMap says it carries, or undefined. */
export const versionOf = (first: { data?: Record<string, string> } | undefined): string | undefined =>
  manifestOf(first)?.version;

type Stored = Map<string, { data?: Record<string, string>; binaryData?: Record<string, string> }>;

function storedManifest(byName: Stored): ConfigManifest {
  const manifest = manifestOf(byName.get(shardName(0)));
  if (!manifest) throw new Error('no manifest');
  return manifest;
}

/** The parts the manifest names, each checked against its sha256 (as a proxy checks them). */
function verifiedParts(byName: Stored, manifest: ConfigManifest): Buffer[] {
  return manifest.parts.map((p) => {
    const b64 = byName.get(p.configMap)?.binaryData?.[p.key];
    if (b64 === undefined) throw new Error(`part ${p.key} missing from ${p.configMap}`);
    const buf = Buffer.from(b64, 'base64');
    if (createHash('sha256').update(buf).digest('hex') !== p.sha256)
      throw new Error(`part ${p.key} does not match`);
    return buf;
  });
}

/**
 * Why the stored ConfigMaps would not give a proxy their manifest's config (a part missing or
 * not matching its sha256), or undefined when every part is intact.
 */
export function damage(byName: Stored): string | undefined {
  try {
    verifiedParts(byName, storedManifest(byName));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Reassembles a ProxyConfig from ConfigMaps (by name), verifying every part; what a proxy does
 * with the projected files. Throws when a part is missing or does not match the manifest.
 */
export function decode(byName: Stored): ProxyConfig {
  const manifest = storedManifest(byName);
  const chunks = verifiedParts(byName, manifest);
  const config = JSON.parse(gunzipSync(Buffer.concat(chunks)).toString('utf8')) as ProxyConfig;
  if (config.version !== manifest.version) throw new Error('version mismatch');
  return config;
}
