// A deterministic OCI image writer: layers as sorted tar streams (uid/gid 0, mtime =
// SOURCE_DATE_EPOCH, no user or group names), gzip with a fixed header, then the image config,
// manifest, index.json and oci-layout packed into one archive that `ctr images import`,
// `skopeo copy oci-archive:` and `podman load` read. Same entries in, same digest out.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { CodedError } from '../../api/errors.ts';

/** One entry of a layer. `path` is relative to the root, without a leading slash. */
export type Entry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; mode: number; data: Buffer }
  | { type: 'file'; path: string; mode: number; source: string; size: number }
  | { type: 'symlink'; path: string; target: string };

export interface Blob {
  digest: string;
  size: number;
}
export interface LayerBlob extends Blob {
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids. */
  diffId: string;
}

export type ImageErrorCode =
  | 'WEFT_IMAGE_PATH'
  | 'WEFT_IMAGE_DUPLICATE'
  | 'WEFT_IMAGE_CHANGED'
  | 'WEFT_IMAGE_INPUT'
  | 'WEFT_IMAGE_COMMAND';
export class ImageError extends CodedError<ImageErrorCode> {}

const BLOCK = 512;

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar header; paths up to 255 bytes through the prefix field. */
export function tarHeader(
  path: string,
  type: '0' | '2' | '5',
  size: number,
  mode: number,
  mtime: number,
  link = '',
): Buffer {
  const h = Buffer.alloc(BLOCK);
  let name = path;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = path.lastIndexOf('/', 155);
    if (cut <= 0 || Buffer.byteLength(path.slice(cut + 1)) > 100) {
      throw new ImageError('WEFT_IMAGE_PATH', `image entry path too long for a tar header: ${path}`);
    }
    prefix = path.slice(0, cut);
    name = path.slice(cut + 1);
  }
  if (Buffer.byteLength(link) > 100)
    throw new ImageError('WEFT_IMAGE_PATH', `symlink target too long: ${link}`);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum placeholder
  h.write(type, 156, 'ascii');
  h.write(link, 157, 100, 'utf8');
  h.write('ustar\0' + '00', 257, 'ascii');
  h.write(octal(0, 8), 329, 'ascii'); // devmajor
  h.write(octal(0, 8), 337, 'ascii'); // devminor
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** Adds the missing parent directories and sorts by path (parents sort before children). */
export function normalizeEntries(entries: Entry[]): Entry[] {
  const byPath = new Map<string, Entry>();
  for (const e of entries) {
    const path = e.path.replace(/^\/+|\/+$/g, '');
    if (!path || path.split('/').some((p) => p === '..' || p === '.')) {
      throw new ImageError('WEFT_IMAGE_PATH', `image entry path must be relative and plain: ${e.path}`);
    }
    if (byPath.has(path) && byPath.get(path)?.type !== 'dir') {
      throw new ImageError('WEFT_IMAGE_DUPLICATE', `two image entries for the same path: ${path}`);
    }
    byPath.set(path, { ...e, path });
    for (let i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) {
      const parent = path.slice(0, i);
      if (!byPath.has(parent)) byPath.set(parent, { type: 'dir', path: parent });
    }
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The tar stream of a layer: sorted entries, every owner root, every mtime the epoch. */
export async function* tarStream(entries: Entry[], mtime: number): AsyncGenerator<Buffer> {
  for (const e of normalizeEntries(entries)) {
    if (e.type === 'dir') {
      yield tarHeader(`${e.path}/`, '5', 0, e.mode ?? 0o755, mtime);
    } else if (e.type === 'symlink') {
      yield tarHeader(e.path, '2', 0, 0o777, mtime, e.target);
    } else {
      const size = 'data' in e ? e.data.length : e.size;
      yield tarHeader(e.path, '0', size, e.mode, mtime);
      if ('data' in e) yield e.data;
      else {
        let n = 0;
        for await (const chunk of createReadStream(e.source)) {
          n += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (n !== size)
          throw new ImageError('WEFT_IMAGE_CHANGED', `${e.source} changed while the image was built`);
      }
      if (size % BLOCK) yield Buffer.alloc(BLOCK - (size % BLOCK));
    }
  }
  yield Buffer.alloc(2 * BLOCK);
}

function hashing(h: ReturnType<typeof createHash>, count: { n: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      count.n += chunk.length;
      cb(null, chunk);
    },
  });
}

/** A content-addressed store: blobs/sha256/<hex>, written through a temporary file. */
export class BlobStore {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  path(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
  }

  async put(data: Buffer): Promise<Blob> {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const p = this.path(digest);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, data);
    return { digest, size: data.length };
  }

  /** Writes a layer: tar → (diff_id) → gzip → (digest) → blob. */
  async putLayer(tar: AsyncIterable<Buffer>, level: number): Promise<LayerBlob> {
    const tmp = join(this.dir, `tmp-${process.pid}-${Date.now()}`);
    await mkdir(this.dir, { recursive: true });
    const raw = createHash('sha256');
    const gz = createHash('sha256');
    const rawN = { n: 0 };
    const gzN = { n: 0 };
    try {
      // Node's gzip header has mtime 0 and no file name: the same tar gives the same bytes.
      await pipeline(
        Readable.from(tar),
        hashing(raw, rawN),
        createGzip({ level }),
        hashing(gz, gzN),
        createWriteStream(tmp),
      );
      const digest = `sha256:${gz.digest('hex')}`;
      await mkdir(dirname(this.path(digest)), { recursive: true });
      await rename(tmp, this.path(digest));
      return { digest, size: gzN.n, diffId: `sha256:${raw.digest('hex')}` };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async has(b: Blob): Promise<boolean> {
    return (await stat(this.path(b.digest)).catch(() => undefined))?.size === b.size;
  }
}

export interface ImageConfig {
  user: string;
  entrypoint: string[];
  cmd?: string[];
  env: string[];
  workingDir?: string;
  labels?: Record<string, string>;
}

export interface BuiltImage {
  /** The manifest's digest: what `ctr images ls` and a pod's imageID show. */
  digest: string;
  reference: string;
  config: Blob;
  layers: LayerBlob[];
  /** Compressed bytes of all layers (what a pull transfers). */
  compressed: number;
}

const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

/** Writes config and manifest into the store; returns what the index points at. */
export async function putImage(
  store: BlobStore,
  reference: string,
  layers: LayerBlob[],
  cfg: ImageConfig,
  epoch: number,
): Promise<BuiltImage> {
  const created = new Date(epoch * 1000).toISOString();
  const config = await store.put(
    Buffer.from(
      JSON.stringify({
        created,
        architecture: 'amd64',
        os: 'linux',
        config: {
          User: cfg.user,
          Entrypoint: cfg.entrypoint,
          ...(cfg.cmd ? { Cmd: cfg.cmd } : {}),
          Env: cfg.env,
          ...(cfg.workingDir ? { WorkingDir: cfg.workingDir } : {}),
          Labels: cfg.labels ?? {},
        },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
        history: layers.map(() => ({ created, created_by: 'hack/image/build.ts' })),
      }),
    ),
  );
  const manifest = await store.put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.manifest,
        config: { mediaType: MEDIA.config, ...config },
        layers: layers.map((l) => ({ mediaType: MEDIA.layer, digest: l.digest, size: l.size })),
      }),
    ),
  );
  return {
    digest: manifest.digest,
    reference,
    config,
    layers,
    compressed: layers.reduce((a, l) => a + l.size, 0),
  };
}

/** The manifest blob of an image (written by putImage). */
async function manifestBlob(store: BlobStore, img: BuiltImage): Promise<Blob> {
  return { digest: img.digest, size: (await stat(store.path(img.digest))).size };
}

/**
 * Packs an image as an OCI archive (a tar of the OCI layout). The index names the image twice:
 * `io.containerd.image.name` (the full reference, which `ctr images import` uses) and
 * `org.opencontainers.image.ref.name` (the tag, as skopeo and podman expect).
 */
export async function writeArchive(
  store: BlobStore,
  img: BuiltImage,
  out: string,
  epoch: number,
): Promise<string> {
  const m = await manifestBlob(store, img);
  const tag = img.reference.slice(img.reference.lastIndexOf(':') + 1);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [
        {
          mediaType: MEDIA.manifest,
          ...m,
          annotations: {
            'io.containerd.image.name': img.reference,
            'org.opencontainers.image.ref.name': tag,
          },
        },
      ],
    }),
  );
  const blobs = [m, img.config, ...img.layers];
  const entries: Entry[] = [
    { type: 'file', path: 'oci-layout', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { type: 'file', path: 'index.json', mode: 0o644, data: index },
  ];
  for (const b of blobs) {
    const path = `blobs/sha256/${b.digest.slice(7)}`;
    if (!entries.some((e) => e.path === path)) {
      entries.push({ type: 'file', path, mode: 0o644, source: store.path(b.digest), size: b.size });
    }
  }
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    await pipeline(Readable.from(tarStream(entries, epoch)), createWriteStream(tmp));
    await rename(tmp, out);
  } finally {
    await rm(tmp, { force: true });
  }
  return `sha256:${createHash('sha256')
    .update(await readFile(out))
    .digest('hex')}`;
}
