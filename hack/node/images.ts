// Container images for the real node without Docker or a registry: a root filesystem directory
// becomes a one-layer OCI image layout, archived with tar, and containerd imports the archive
// (`ctr -n k8s.io images import`). The pause image is Kubernetes' own pause.c (from the Go module
// cache, compiled with gcc -static); the test image is Debian's static busybox; CoreDNS is the
// binary hack/build-control-plane.sh builds.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { NodeError } from './errors.ts';

export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';
export const BUSYBOX_IMAGE = 'weft.local/busybox:1.35';
export const COREDNS_IMAGE = 'weft.local/coredns:v1.15.0';

export interface ImageSpec {
  /** Full reference containerd records (`registry/name:tag`). */
  ref: string;
  /** Fills the root filesystem directory. */
  fill: (rootfs: string) => void;
  entrypoint?: string[];
  cmd?: string[];
}

function sha256File(path: string): { digest: string; size: number } {
  const data = readFileSync(path);
  return { digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, size: data.length };
}

function writeBlob(blobs: string, data: Buffer | string): { digest: string; size: number } {
  const buf = Buffer.from(data);
  const hex = createHash('sha256').update(buf).digest('hex');
  writeFileSync(join(blobs, hex), buf);
  return { digest: `sha256:${hex}`, size: buf.length };
}

/** Writes `archive` (an OCI image layout in a tar) from `spec`; the files belong to root. */
export function buildOciArchive(spec: ImageSpec, archive: string): void {
  const work = mkdtempSync(`${archive}.work-`);
  try {
    const rootfs = join(work, 'rootfs');
    const layout = join(work, 'layout');
    const blobs = join(layout, 'blobs', 'sha256');
    mkdirSync(rootfs);
    mkdirSync(blobs, { recursive: true });
    spec.fill(rootfs);
    const layerTar = join(work, 'layer.tar');
    execFileSync('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '-C',
      rootfs,
      '-cf',
      layerTar,
      '.',
    ]);
    const layer = sha256File(layerTar);
    renameSync(layerTar, join(blobs, layer.digest.slice(7)));
    const config = writeBlob(
      blobs,
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {
          ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
          ...(spec.cmd ? { Cmd: spec.cmd } : {}),
          Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    );
    const manifest = writeBlob(
      blobs,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    );
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            annotations: {
              'io.containerd.image.name': spec.ref,
              'org.opencontainers.image.ref.name': spec.ref.slice(spec.ref.lastIndexOf(':') + 1),
            },
          },
        ],
      }),
    );
    execFileSync('tar', [
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-C',
      layout,
      '-cf',
      `${archive}.tmp`,
      '.',
    ]);
    renameSync(`${archive}.tmp`, archive);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Where Go keeps k8s.io/kubernetes@version (downloaded by hack/build-control-plane.sh). */
function kubernetesModuleDir(version: string): string {
  const modcache = execFileSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).trim();
  return join(modcache, `k8s.io/kubernetes@${version}`);
}

export function pauseImage(k8sVersion: string): ImageSpec {
  return {
    ref: PAUSE_IMAGE,
    entrypoint: ['/pause'],
    fill: (rootfs) => {
      const src = join(kubernetesModuleDir(k8sVersion), 'build', 'pause', 'linux', 'pause.c');
      if (!existsSync(src)) {
        throw new NodeError(
          'WEFT_NODE_PAUSE_SOURCE',
          `${src} is missing: run hack/build-control-plane.sh (it downloads the k8s.io/kubernetes module)`,
        );
      }
      execFileSync('gcc', ['-Os', '-static', `-DVERSION=v3.10-weft`, '-o', join(rootfs, 'pause'), src]);
      execFileSync('strip', [join(rootfs, 'pause')]);
    },
  };
}

export function busyboxImage(): ImageSpec {
  return {
    ref: BUSYBOX_IMAGE,
    // Like Docker Hub's busybox: `kubectl run … -- sh -c '…'` replaces the command.
    cmd: ['/bin/sh'],
    fill: (rootfs) => {
      const busybox = '/bin/busybox';
      // A dynamic busybox names its loader (/lib64/ld-linux…) and cannot run in an empty image.
      if (!existsSync(busybox) || readFileSync(busybox).subarray(0, 4096).includes('ld-linux')) {
        throw new NodeError(
          'WEFT_NODE_BUSYBOX',
          `${busybox} is not a static binary: install the Debian package busybox-static`,
        );
      }
      for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'var/www'])
        mkdirSync(join(rootfs, d), { recursive: true });
      chmodSync(join(rootfs, 'tmp'), 0o1777);
      copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
      chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
      const applets = execFileSync(busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const a of applets) if (a !== 'busybox') symlinkSync('busybox', join(rootfs, 'bin', a));
      writeFileSync(
        join(rootfs, 'etc', 'passwd'),
        'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
      );
      writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
    },
  };
}

export function corednsImage(binary: string): ImageSpec {
  return {
    ref: COREDNS_IMAGE,
    entrypoint: ['/coredns'],
    fill: (rootfs) => {
      copyFileSync(binary, join(rootfs, 'coredns'));
      chmodSync(join(rootfs, 'coredns'), 0o755);
    },
  };
}

/** The archive of `spec` under `dir` (`<name>-<hash of ref and config>.oci.tar`), built when missing. */
export function ensureImage(spec: ImageSpec, dir: string, name: string): string {
  const key = createHash('sha256')
    .update(JSON.stringify([spec.ref, spec.entrypoint, spec.cmd]))
    .digest('hex')
    .slice(0, 12);
  const archive = join(dir, `${name}-${key}.oci.tar`);
  if (existsSync(archive)) return archive;
  mkdirSync(dir, { recursive: true });
  buildOciArchive(spec, archive);
  return archive;
}

const importArgs = (address: string, archivePath: string) => [
  '--address',
  address,
  '-n',
  'k8s.io',
  'images',
  'import',
  archivePath,
];

/** Imports an OCI or Docker archive into containerd's Kubernetes namespace at `address`. */
export function importImage(address: string, archivePath: string): void {
  execFileSync('ctr', importArgs(address, archivePath), { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** importImage without blocking: several run side by side, and beside the control plane's start. */
export function importImageAsync(address: string, archivePath: string): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('ctr', importArgs(address, archivePath), (err, _out, stderr) =>
      err
        ? reject(new Error(`ctr images import ${archivePath}: ${stderr.trim() || err.message}`))
        : resolve(),
    ),
  );
}
