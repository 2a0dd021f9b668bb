// Reading the projected ConfigMap directory (format in api/proxyconfig.ts CONFIG_DISTRIBUTION):
// manifest.json names the gzip parts and their sha256; the parts concatenated and gunzipped are
// the ProxyConfig JSON. A plain `proxyconfig.json` is accepted too (local runs, tests).
// Also the writer, which lays files out as the kubelet does (a timestamped directory, `..data`
// symlink swapped atomically, one top-level symlink per key) for tests, benchmarks and demos.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { CONFIG_DISTRIBUTION, PROXY_CONFIG_API_VERSION } from '../api/constants.ts';
import { checkCompiled } from '../api/fielderrors.ts';
import { validateConfigManifest, validateProxyConfig } from '../api/generated/validators.js';
import type { ConfigManifest, ProxyConfig } from '../api/proxyconfig.ts';
import { matchRegexErrors } from '../api/regex.ts';
import { ProxyError } from './errors.ts';

export const PLAIN_CONFIG_FILE = 'proxyconfig.json';
const MAX_CONFIG_BYTES = 64 * 1024 * 1024;

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** A fingerprint of what the directory holds now: the `..data` target, else the file list. */
export async function dirFingerprint(dir: string): Promise<string> {
  try {
    return `data:${await readlink(join(dir, '..data'))}`;
  } catch {
    try {
      return `files:${(await readdir(dir)).sort().join(',')}`;
    } catch {
      return 'missing';
    }
  }
}

/** A validated config and the generation its manifest gives it (absent: no order known). */
export interface ConfigCandidate {
  config: ProxyConfig;
  generation: number | undefined;
}

/** Reads, reassembles and validates the config; throws ProxyError with WEFT_CONFIG_* codes. */
export async function readConfigDir(dir: string): Promise<ProxyConfig> {
  return (await readConfigSource(dir)).config;
}

/** readConfigDir with the manifest's generation. */
export async function readConfigSource(dir: string): Promise<ConfigCandidate> {
  const manifestRaw = await readIfExists(join(dir, CONFIG_DISTRIBUTION.manifestKey));
  if (manifestRaw) return assembleConfig(manifestRaw, (p) => readIfExists(join(dir, p.key)));
  const plain = await readIfExists(join(dir, PLAIN_CONFIG_FILE));
  if (!plain)
    throw new ProxyError(
      'WEFT_CONFIG_MISSING',
      `no ${CONFIG_DISTRIBUTION.manifestKey} or ${PLAIN_CONFIG_FILE} in ${dir}`,
    );
  return { config: parseConfig(plain.toString('utf8')), generation: undefined };
}

/** A ConfigMap as the apiserver returns it (only what the config reader needs). */
export interface ConfigMapLike {
  metadata?: { name?: string; resourceVersion?: string };
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

/**
 * assembleConfig over ConfigMaps read from the apiserver: `first` holds manifest.json (and the
 * first parts); the other shards are read with `get` when the manifest names them.
 */
export function configFromConfigMaps(
  first: ConfigMapLike,
  get: (name: string) => Promise<ConfigMapLike | undefined>,
): Promise<ConfigCandidate> {
  const manifest = first.data?.[CONFIG_DISTRIBUTION.manifestKey];
  if (manifest === undefined)
    throw new ProxyError(
      'WEFT_CONFIG_MISSING',
      `ConfigMap ${first.metadata?.name} has no ${CONFIG_DISTRIBUTION.manifestKey}`,
    );
  const others = new Map<string, ConfigMapLike | undefined>();
  return assembleConfig(Buffer.from(manifest), async (p) => {
    let holder: ConfigMapLike | undefined = first;
    if (p.configMap !== first.metadata?.name) {
      // Shards beyond the first (configs over 900 KiB gzipped) are read when named.
      if (!others.has(p.configMap)) others.set(p.configMap, await get(p.configMap).catch(() => undefined));
      holder = others.get(p.configMap);
    }
    const b64 = holder?.binaryData?.[p.key];
    return b64 === undefined ? undefined : Buffer.from(b64, 'base64');
  });
}

/**
 * Reassembles a config from its manifest and parts, wherever they come from (the projected
 * directory, or the ConfigMaps read from the apiserver): each part's sha256 checked, gunzipped,
 * validated, and its version checked against the manifest's.
 */
export async function assembleConfig(
  manifestRaw: Buffer,
  partOf: (p: ConfigManifest['parts'][number]) => Promise<Buffer | undefined>,
): Promise<ConfigCandidate> {
  let manifest: ConfigManifest;
  try {
    manifest = JSON.parse(manifestRaw.toString('utf8')) as ConfigManifest;
  } catch (cause) {
    throw new ProxyError('WEFT_CONFIG_INVALID', `manifest.json is not JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
  const errors = checkCompiled(validateConfigManifest, manifest, 'manifest');
  if (errors.length > 0) {
    throw new ProxyError(
      'WEFT_CONFIG_INVALID',
      `manifest.json is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`,
    );
  }
  const parts: Buffer[] = [];
  for (const p of manifest.parts) {
    const data = await partOf(p);
    if (!data)
      throw new ProxyError(
        'WEFT_CONFIG_INCOMPLETE',
        `part ${p.key} (ConfigMap ${p.configMap}) is not projected yet`,
      );
    if (createHash('sha256').update(data).digest('hex') !== p.sha256) {
      throw new ProxyError(
        'WEFT_CONFIG_INCOMPLETE',
        `part ${p.key} (ConfigMap ${p.configMap}) does not match the manifest's sha256 yet`,
      );
    }
    parts.push(data);
  }
  let text: string;
  try {
    text = gunzipSync(Buffer.concat(parts), { maxOutputLength: MAX_CONFIG_BYTES }).toString('utf8');
  } catch (cause) {
    throw new ProxyError('WEFT_CONFIG_INVALID', `config parts do not gunzip: ${(cause as Error).message}`, {
      cause,
    });
  }
  const config = parseConfig(text);
  if (config.version !== manifest.version)
    throw new ProxyError(
      'WEFT_CONFIG_INVALID',
      `ProxyConfig version ${config.version} is not the manifest's version ${manifest.version}`,
    );
  return { config, generation: manifest.generation };
}

function parseConfig(text: string): ProxyConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new ProxyError('WEFT_CONFIG_INVALID', `ProxyConfig is not JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
  const errors = checkCompiled(validateProxyConfig, doc);
  // Regular expressions must be RE2 (linear-time matching); the operator never writes others.
  if (errors.length === 0)
    errors.push(
      ...(doc as ProxyConfig).routes.flatMap((r, i) => matchRegexErrors(r.matches, `routes[${i}].matches`)),
    );
  if (errors.length > 0) {
    throw new ProxyError(
      'WEFT_CONFIG_INVALID',
      `ProxyConfig ${JSON.stringify((doc as { version?: unknown } | null)?.version ?? null)} is invalid: ${errors
        .slice(0, 10)
        .map((e) => `${e.field}: ${e.message}`)
        .join('; ')}`,
    );
  }
  return doc as ProxyConfig;
}

/** The files of a config in the distribution format (one shard): key → bytes. */
export function encodeConfig(config: ProxyConfig, generation?: number): Map<string, Buffer> {
  const gz = gzipSync(Buffer.from(JSON.stringify(config)));
  const key = CONFIG_DISTRIBUTION.partKey(0);
  const manifest: ConfigManifest = {
    apiVersion: PROXY_CONFIG_API_VERSION,
    version: config.version,
    ...(generation === undefined ? {} : { generation }),
    encoding: 'gzip',
    size: Buffer.byteLength(JSON.stringify(config)),
    parts: [
      {
        key,
        configMap: CONFIG_DISTRIBUTION.configMapName,
        sha256: createHash('sha256').update(gz).digest('hex'),
      },
    ],
  };
  return new Map([
    [CONFIG_DISTRIBUTION.manifestKey, Buffer.from(JSON.stringify(manifest))],
    [key, gz],
  ]);
}

let swapCounter = 0;

/**
 * Writes `files` into `dir` the way the kubelet projects a ConfigMap volume: a new hidden
 * directory, then an atomic rename of the `..data` symlink onto it, then per-key symlinks.
 */
export async function writeProjected(dir: string, files: Map<string, Buffer | string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const stamp = `..${Date.now()}_${process.pid}_${swapCounter++}`;
  await mkdir(join(dir, stamp));
  for (const [k, v] of files) await writeFile(join(dir, stamp, k), v);
  let old: string | undefined;
  try {
    old = await readlink(join(dir, '..data'));
  } catch {}
  await symlink(stamp, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const k of files.keys()) {
    try {
      await symlink(join('..data', k), join(dir, k));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  // Keys that went away lose their top-level link, as with the kubelet.
  for (const name of await readdir(dir)) {
    if (!name.startsWith('..') && !files.has(name)) await rm(join(dir, name), { force: true });
  }
  if (old && old !== stamp) await rm(join(dir, old), { recursive: true, force: true });
}
