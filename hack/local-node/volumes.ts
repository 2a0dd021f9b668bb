// Volumes the way the kubelet projects them: each volume is a directory whose files are
// symlinks into `..data`, itself a symlink to a timestamped directory. An update writes a new
// timestamped directory and renames a fresh symlink over `..data`, so a reader sees either the
// whole old content or the whole new content, never a mix (kubelet pkg/volume/util/atomic_writer.go).
import { randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type {
  V1ConfigMap,
  V1DownwardAPIVolumeFile,
  V1Pod,
  V1Secret,
  V1Volume,
} from '@kubernetes/client-node';
import { LocalNodeError } from './errors.ts';

export interface PayloadFile {
  data: Buffer;
  mode: number;
}
/** Relative path → content. */
export type Payload = Map<string, PayloadFile>;

const DATA = '..data';

function checkPath(p: string): void {
  if (
    !p ||
    p.startsWith('/') ||
    p.split('/').some((s) => s === '..' || s === '' || (s.startsWith('..') && s.length > 2))
  ) {
    throw new LocalNodeError('WEFT_LN_VOLUME', `invalid path in volume: ${JSON.stringify(p)}`);
  }
}

async function readCurrent(dir: string): Promise<Payload | undefined> {
  let target: string;
  try {
    target = await readlink(join(dir, DATA));
  } catch {
    return undefined;
  }
  const out: Payload = new Map();
  const walk = async (rel: string) => {
    for (const e of await readdir(join(dir, target, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else {
        const p = join(dir, target, r);
        out.set(r, { data: await readFile(p), mode: (await lstat(p)).mode & 0o7777 });
      }
    }
  };
  await walk('');
  return out;
}

function samePayload(a: Payload, b: Payload): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.mode !== v.mode || !w.data.equals(v.data)) return false;
  }
  return true;
}

/**
 * Writes `payload` into `dir` atomically. Returns false when the content is already there.
 * Top-level names are symlinks `name -> ..data/name`; names that disappear are removed.
 */
export async function writeAtomic(
  dir: string,
  payload: Payload,
  now: () => Date = () => new Date(),
): Promise<boolean> {
  for (const p of payload.keys()) checkPath(p);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  const current = await readCurrent(dir);
  if (current && samePayload(current, payload)) return false;
  const oldTarget = current ? await readlink(join(dir, DATA)) : undefined;

  const stamp = now().toISOString().replace(/[-:]/g, '_').replace('T', '_').replace('Z', '');
  const tsName = `..${stamp}.${randomBytes(4).toString('hex')}`;
  const tsDir = join(dir, tsName);
  await mkdir(tsDir, { mode: 0o755 });
  await chmod(tsDir, 0o755);
  for (const [rel, f] of payload) {
    const p = join(tsDir, rel);
    await mkdir(dirname(p), { recursive: true, mode: 0o755 });
    await writeFile(p, f.data);
    await chmod(p, f.mode);
  }
  const tmpLink = join(dir, '..data_tmp');
  await rm(tmpLink, { force: true });
  await symlink(tsName, tmpLink);
  await rename(tmpLink, join(dir, DATA));

  const top = new Set([...payload.keys()].map((p) => p.split('/')[0]!));
  for (const name of top) {
    const link = join(dir, name);
    try {
      await lstat(link);
    } catch {
      await symlink(join(DATA, name), link);
    }
  }
  for (const e of await readdir(dir)) {
    if (!e.startsWith('..') && !top.has(e)) await rm(join(dir, e), { recursive: true, force: true });
  }
  if (oldTarget && oldTarget !== tsName) await rm(join(dir, oldTarget), { recursive: true, force: true });
  return true;
}

/** Where the data of volumes comes from (informer caches and the TokenRequest API). */
export interface VolumeSources {
  configMap(namespace: string, name: string): V1ConfigMap | undefined;
  secret(namespace: string, name: string): V1Secret | undefined;
  /** A ServiceAccount token for the pod (cached and refreshed by the caller). */
  token(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string>;
}

const quoteGo = (s: string) => JSON.stringify(s);

/** The value of a downward-API fieldRef (env or volume). */
export function fieldRefValue(pod: V1Pod, fieldPath: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (m) {
    const map = m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations;
    return map?.[m[2]!] ?? '';
  }
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'metadata.labels':
    case 'metadata.annotations': {
      const map = (fieldPath === 'metadata.labels' ? pod.metadata?.labels : pod.metadata?.annotations) ?? {};
      return Object.keys(map)
        .sort()
        .map((k) => `${k}=${quoteGo(map[k]!)}`)
        .join('\n');
    }
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.hostIP':
      return pod.status?.hostIP ?? '';
    case 'status.hostIPs':
      return (pod.status?.hostIPs ?? []).map((i) => i.ip).join(',');
    case 'status.podIP':
      return pod.status?.podIP ?? '';
    case 'status.podIPs':
      return (pod.status?.podIPs ?? []).map((i) => i.ip).join(',');
    default:
      throw new LocalNodeError('WEFT_LN_ENV', `unsupported fieldRef ${fieldPath}`);
  }
}

type KeyItems = { key: string; path: string; mode?: number }[] | undefined;

function fromKeyed(
  out: Payload,
  what: string,
  data: Map<string, Buffer>,
  items: KeyItems,
  mode: number,
  optional: boolean,
): void {
  if (!items || items.length === 0) {
    for (const [k, v] of data) out.set(k, { data: v, mode });
    return;
  }
  for (const it of items) {
    const v = data.get(it.key);
    if (v === undefined) {
      if (optional) continue;
      throw new LocalNodeError('WEFT_LN_VOLUME', `${what} has no key ${it.key}`);
    }
    out.set(it.path, { data: v, mode: it.mode ?? mode });
  }
}

function configMapData(cm: V1ConfigMap): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(cm.data ?? {})) m.set(k, Buffer.from(v, 'utf8'));
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) m.set(k, Buffer.from(v, 'base64'));
  return m;
}

function secretData(s: V1Secret): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(s.data ?? {})) m.set(k, Buffer.from(v, 'base64'));
  for (const [k, v] of Object.entries(s.stringData ?? {})) m.set(k, Buffer.from(v, 'utf8'));
  return m;
}

function downwardItems(
  out: Payload,
  pod: V1Pod,
  items: V1DownwardAPIVolumeFile[] | undefined,
  mode: number,
): void {
  for (const it of items ?? []) {
    let value: string;
    if (it.fieldRef) value = fieldRefValue(pod, it.fieldRef.fieldPath);
    else if (it.resourceFieldRef) value = '0';
    else continue;
    out.set(it.path, { data: Buffer.from(value, 'utf8'), mode: it.mode ?? mode });
  }
}

/**
 * The content of one projected volume (configMap, secret, downwardAPI, projected), or undefined
 * for kinds that are plain directories (emptyDir) or not supported. Throws WEFT_LN_VOLUME when a
 * non-optional source is missing: the pod waits, as under the kubelet.
 */
export async function volumePayload(
  pod: V1Pod,
  vol: V1Volume,
  src: VolumeSources,
): Promise<Payload | undefined> {
  const ns = pod.metadata?.namespace ?? 'default';
  const out: Payload = new Map();
  if (vol.configMap) {
    const c = vol.configMap;
    const cm = src.configMap(ns, c.name!);
    if (!cm) {
      if (c.optional) return out;
      throw new LocalNodeError('WEFT_LN_VOLUME', `configmap ${ns}/${c.name} not found (volume ${vol.name})`);
    }
    fromKeyed(
      out,
      `configmap ${ns}/${c.name}`,
      configMapData(cm),
      c.items,
      c.defaultMode ?? 0o644,
      !!c.optional,
    );
    return out;
  }
  if (vol.secret) {
    const c = vol.secret;
    const s = src.secret(ns, c.secretName!);
    if (!s) {
      if (c.optional) return out;
      throw new LocalNodeError(
        'WEFT_LN_VOLUME',
        `secret ${ns}/${c.secretName} not found (volume ${vol.name})`,
      );
    }
    fromKeyed(
      out,
      `secret ${ns}/${c.secretName}`,
      secretData(s),
      c.items,
      c.defaultMode ?? 0o644,
      !!c.optional,
    );
    return out;
  }
  if (vol.downwardAPI) {
    downwardItems(out, pod, vol.downwardAPI.items, vol.downwardAPI.defaultMode ?? 0o644);
    return out;
  }
  if (vol.projected) {
    const mode = vol.projected.defaultMode ?? 0o644;
    for (const s of vol.projected.sources ?? []) {
      if (s.configMap) {
        const cm = src.configMap(ns, s.configMap.name!);
        if (!cm) {
          if (s.configMap.optional) continue;
          throw new LocalNodeError(
            'WEFT_LN_VOLUME',
            `configmap ${ns}/${s.configMap.name} not found (volume ${vol.name})`,
          );
        }
        fromKeyed(
          out,
          `configmap ${ns}/${s.configMap.name}`,
          configMapData(cm),
          s.configMap.items,
          mode,
          !!s.configMap.optional,
        );
      } else if (s.secret) {
        const sec = src.secret(ns, s.secret.name!);
        if (!sec) {
          if (s.secret.optional) continue;
          throw new LocalNodeError(
            'WEFT_LN_VOLUME',
            `secret ${ns}/${s.secret.name} not found (volume ${vol.name})`,
          );
        }
        fromKeyed(
          out,
          `secret ${ns}/${s.secret.name}`,
          secretData(sec),
          s.secret.items,
          mode,
          !!s.secret.optional,
        );
      } else if (s.downwardAPI) {
        downwardItems(out, pod, s.downwardAPI.items, mode);
      } else if (s.serviceAccountToken) {
        const t = s.serviceAccountToken;
        const token = await src.token(pod, t.audience, t.expirationSeconds ?? 3600);
        out.set(t.path, { data: Buffer.from(token, 'utf8'), mode: 0o644 });
      }
    }
    return out;
  }
  return undefined;
}

/** Whether the volume is projected from API objects (and so refreshed on change). */
export function isProjected(vol: V1Volume): boolean {
  return !!(vol.configMap || vol.secret || vol.downwardAPI || vol.projected);
}
