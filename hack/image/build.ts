// Builds Weft's container images as OCI archives, without a Docker daemon (docs/image.md):
//   weft   ghcr.io/weft-mesh/weft:<version>       every subcommand (operator, webhook, proxy, init)
//   demo   ghcr.io/weft-mesh/weft-demo:<version>  the demo apps (hack/demo-apps)
//   pause  ghcr.io/weft-mesh/pause:<tag>          the pod sandbox, from Kubernetes' own pause.c
// Inputs are pinned: Node.js from the npm `node` package (package-lock.json), Debian packages
// from hack/image/debian.lock (hash-checked), the bundle of `npm run build`, the addon of
// proxy/native/build.sh, pause.c from the k8s.io/kubernetes module of hack/controlplane. Layers
// are sorted tars with uid/gid 0 and mtime = SOURCE_DATE_EPOCH (default: the last commit's
// time), so two builds of one tree give one digest. Layers are cached by the hash of their inputs.
//   node hack/image/build.ts [weft|demo|pause|all ...] [--out dir] [--fresh]   (npm run image -- pause)
//     --fresh writes every layer anew instead of taking matching ones from the cache
//   node hack/image/build.ts --relock    pin the Debian packages apt offers now
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import {
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { WEFT_IMAGE } from '../../api/mesh.ts';
import { buildDist } from '../build-dist.ts';
import { takeFileLock } from '../lib/file-lock.ts';
import {
  BlobStore,
  type BuiltImage,
  type Entry,
  type ImageConfig,
  ImageError,
  type LayerBlob,
  putImage,
  tarStream,
  writeArchive,
} from './oci.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const HERE = import.meta.dirname;
const PKG = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  devDependencies: Record<string, string>;
};
export const VERSION = PKG.version;
/** The npm `node` package the image takes Node.js from. */
export const NODE_VERSION = PKG.devDependencies.node;
export const IMAGE_NAMES = ['weft', 'demo', 'pause'] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];
/** gzip level of the layers: 9 saves 0.6% over 6 on the node binary (44.3 vs 44.6 MB) for 4x the time. */
const GZIP_LEVEL = 6;
/** The layer writer's own source: a change to it invalidates every cached layer. */
const WRITER = createHash('sha256')
  .update(await readFile(join(HERE, 'oci.ts')))
  .digest('hex');
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface BuildOptions {
  /** Where the archives go (default dist/images). */
  outDir?: string;
  /** Cache of downloads, layers and blobs (default $WEFT_CACHE/image, ~/.cache/weft/image). */
  cacheDir?: string;
  /** mtime of every entry and the config's `created` (default SOURCE_DATE_EPOCH or the last commit). */
  epoch?: number;
  /** false: write every layer anew even when a cached one matches (the reproducibility test). */
  reuseLayers?: boolean;
  log?: (line: string) => void;
}

export interface ImageResult extends BuiltImage {
  name: ImageName;
  archive: string;
  /** sha256 of the archive file itself. */
  archiveDigest: string;
  /** Bytes of all layers uncompressed (diff_ids), as `ctr images ls` does not show. */
  uncompressed: number;
}

export function defaultCacheDir(): string {
  const base =
    process.env.WEFT_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'weft');
  return join(base, 'image');
}

export function sourceDateEpoch(): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined) {
    if (!/^\d+$/.test(env)) {
      throw new ImageError(
        'WEFT_IMAGE_INPUT',
        `SOURCE_DATE_EPOCH must be seconds since 1970 (an integer), not "${env}"`,
      );
    }
    return Number(env);
  }
  return Number(run('git', ['log', '-1', '--format=%ct'], ROOT).trim());
}

function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new ImageError(
      'WEFT_IMAGE_COMMAND',
      `${cmd} ${args.join(' ')} failed: ${err.stderr || err.message}`,
      {
        cause: e,
      },
    );
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

// ---- Debian packages --------------------------------------------------------------------------

interface Deb {
  name: string;
  version: string;
  sha256: string;
}
const LOCK = join(HERE, 'debian.lock');

export async function readLock(): Promise<Deb[]> {
  const debs: Deb[] = [];
  for (const [i, line] of (await readFile(LOCK, 'utf8')).split('\n').entries()) {
    if (!line.trim() || line.startsWith('#')) continue;
    const [name, version, sha256, extra] = line.trim().split(/\s+/);
    if (!name || !version || !/^[0-9a-f]{64}$/.test(sha256 ?? '') || extra) {
      throw new ImageError(
        'WEFT_IMAGE_INPUT',
        `hack/image/debian.lock line ${i + 1}: expected "name version sha256", got "${line}"`,
      );
    }
    debs.push({ name, version, sha256: sha256! });
  }
  return debs;
}

/** `--relock`: pins the version apt offers now of each package of the lock, with its hash. */
async function relock(cache: string, log: (l: string) => void): Promise<void> {
  const dir = join(cache, 'debs', 'relock');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const names = (await readLock()).map((d) => d.name);
  run('apt-get', ['download', ...names], dir);
  const header = (await readFile(LOCK, 'utf8')).split('\n').filter((l) => l.startsWith('#'));
  const lines: string[] = [];
  for (const f of (await readdir(dir)).filter((f) => f.endsWith('.deb')).sort()) {
    const [name, version] = run('dpkg-deb', ['-f', f, 'Package', 'Version'], dir)
      .split('\n')
      .map((l) => l.replace(/^\w+: /, ''));
    lines.push(`${name} ${version} ${await sha256File(join(dir, f))}`);
  }
  await writeFile(LOCK, `${[...header, ...lines].join('\n')}\n`);
  await rm(dir, { recursive: true, force: true });
  log(`pinned ${lines.length} packages in hack/image/debian.lock`);
}

/** Downloads (once, in one apt-get call) and unpacks pinned packages; returns their directories. */
async function unpackDebs(debs: Deb[], cache: string, log: (l: string) => void): Promise<string[]> {
  const dirOf = (d: Deb) => join(cache, 'debs', `${d.name}_${d.version}_${d.sha256.slice(0, 12)}`);
  const missing = debs.filter((d) => !existsSync(join(dirOf(d), '.done')));
  if (missing.length) {
    const dl = join(cache, 'debs', `download-${process.pid}`);
    await rm(dl, { recursive: true, force: true });
    await mkdir(dl, { recursive: true });
    try {
      log(`downloading ${missing.map((d) => `${d.name}=${d.version}`).join(' ')}`);
      run('apt-get', ['download', ...missing.map((d) => `${d.name}=${d.version}`)], dl);
      for (const d of missing) {
        const file = (await readdir(dl)).find((f) => f.startsWith(`${d.name}_`) && f.endsWith('.deb'));
        if (!file)
          throw new ImageError('WEFT_IMAGE_INPUT', `apt-get download ${d.name}=${d.version} wrote no .deb`);
        const got = await sha256File(join(dl, file));
        if (got !== d.sha256) {
          throw new ImageError(
            'WEFT_IMAGE_INPUT',
            `${file} has sha256 ${got}, but hack/image/debian.lock pins ${d.sha256}: refusing it. If Debian ` +
              'republished the package, check why, then run `node hack/image/build.ts --relock`',
          );
        }
        const dir = dirOf(d);
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        run('dpkg-deb', ['-x', join(dl, file), 'root'], dir);
        await writeFile(join(dir, '.done'), '');
      }
    } finally {
      await rm(dl, { recursive: true, force: true });
    }
  }
  return debs.map((d) => join(dirOf(d), 'root'));
}

/** The files of an unpacked package whose path matches `keep` (dirs follow from the paths). */
async function debEntries(root: string, keep: RegExp): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const rel of (await readdir(root, { recursive: true })).sort()) {
    if (!keep.test(rel)) continue;
    const p = join(root, rel);
    const st = await lstat(p);
    if (st.isSymbolicLink()) out.push({ type: 'symlink', path: rel, target: await readlink(p) });
    else if (st.isFile())
      out.push({ type: 'file', path: rel, mode: st.mode & 0o755, source: p, size: st.size });
  }
  if (!out.length) throw new ImageError('WEFT_IMAGE_INPUT', `no file of ${root} matches ${keep}`);
  return out;
}

const SHARED_LIBS = /^(usr\/)?lib\/x86_64-linux-gnu\/lib[^/]+\.so\.[0-9.]+$/;
/** Which files of each package an image takes: libraries and the programs it runs, no docs. */
const DEB_FILES: Record<string, RegExp> = {
  // The dynamic loader and the parts of glibc that node, dash and iptables link.
  libc6:
    /^(lib64\/ld-linux-x86-64\.so\.2|lib\/x86_64-linux-gnu\/(ld-linux-x86-64\.so\.2|lib(c|m|dl|pthread|rt|resolv)\.so\.[0-9]+))$/,
  'libgcc-s1': SHARED_LIBS,
  'libstdc++6': /^usr\/lib\/x86_64-linux-gnu\/libstdc\+\+\.so\.6[0-9.]*$/,
  iptables:
    /^usr\/(sbin\/(xtables-(nft|legacy)-multi|ip6?tables-(nft|legacy)(-save|-restore)?)|lib\/x86_64-linux-gnu\/xtables\/[^/]+\.so)$/,
  libip4tc2: SHARED_LIBS,
  libip6tc2: SHARED_LIBS,
  libxtables12: SHARED_LIBS,
  libmnl0: SHARED_LIBS,
  libnftnl11: SHARED_LIBS,
  'libnetfilter-conntrack3': SHARED_LIBS,
  libnfnetlink0: SHARED_LIBS,
  // proxy/iptables.sh is a POSIX sh script that also calls `tr`.
  dash: /^bin\/(dash|sh)$/,
  coreutils: /^usr\/bin\/tr$/,
};

async function debLayerEntries(names: string[], cache: string, log: (l: string) => void): Promise<Entry[]> {
  const lock = await readLock();
  const debs = names.map((name) => {
    const deb = lock.find((d) => d.name === name);
    if (!deb)
      throw new ImageError('WEFT_IMAGE_INPUT', `hack/image/debian.lock pins no package "${name}": add it`);
    return deb;
  });
  const roots = await unpackDebs(debs, cache, log);
  const out: Entry[] = [];
  for (const [i, name] of names.entries()) out.push(...(await debEntries(roots[i]!, DEB_FILES[name]!)));
  return out;
}

// ---- layers -----------------------------------------------------------------------------------

interface Ctx {
  store: BlobStore;
  cache: string;
  epoch: number;
  reuse: boolean;
  log: (l: string) => void;
}

/** Writes one layer, or finds it in the cache by the hash of its entries and their contents. */
async function layer(name: string, entries: Entry[], ctx: Ctx): Promise<LayerBlob> {
  const h = createHash('sha256').update(JSON.stringify({ WRITER, GZIP_LEVEL, epoch: ctx.epoch }));
  for (const e of [...entries].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    const { source: _source, data: _data, ...meta } = e as Entry & { source?: string; data?: Buffer };
    h.update(JSON.stringify(meta));
    if ('data' in e) h.update(e.data);
    if ('source' in e) h.update(await sha256File(e.source));
  }
  const key = h.digest('hex');
  const record = join(ctx.cache, 'layers', `${key}.json`);
  if (ctx.reuse && existsSync(record)) {
    const blob = JSON.parse(await readFile(record, 'utf8')) as LayerBlob;
    if (await ctx.store.has(blob)) {
      ctx.log(`layer ${name}: cached ${blob.digest.slice(0, 19)}`);
      return blob;
    }
  }
  const t = Date.now();
  const blob = await ctx.store.putLayer(tarStream(entries, ctx.epoch), GZIP_LEVEL);
  await mkdir(join(ctx.cache, 'layers'), { recursive: true });
  await writeFile(record, JSON.stringify(blob));
  ctx.log(`layer ${name}: ${blob.digest.slice(0, 19)} ${mib(blob.size)} in ${Date.now() - t} ms`);
  return blob;
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
const text = (path: string, s: string, mode = 0o644): Entry => ({
  type: 'file',
  path,
  mode,
  data: Buffer.from(s),
});
const file = async (path: string, source: string, mode?: number): Promise<Entry> => {
  const st = await stat(source);
  return { type: 'file', path, mode: mode ?? (st.mode & 0o111 ? 0o755 : 0o644), source, size: st.size };
};

/** glibc, libstdc++ and the few files of /etc a non-root process needs; shared by weft and demo. */
async function baseLayer(ctx: Ctx): Promise<LayerBlob> {
  const entries = await debLayerEntries(['libc6', 'libgcc-s1', 'libstdc++6'], ctx.cache, ctx.log);
  entries.push(
    text(
      'etc/passwd',
      'root:x:0:0:root:/root:/sbin/nologin\n' +
        'weft-proxy:x:1337:1337:weft-proxy:/nonexistent:/sbin/nologin\n' +
        'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' +
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n',
    ),
    text('etc/group', 'root:x:0:\nweft-proxy:x:1337:\nnonroot:x:65532:\nnogroup:x:65534:\n'),
    text('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n'),
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'dir', path: 'root', mode: 0o700 },
    // Mount points the runtime fills; /run also holds iptables-legacy's lock.
    { type: 'dir', path: 'dev' },
    { type: 'dir', path: 'proc' },
    { type: 'dir', path: 'sys' },
    { type: 'dir', path: 'run' },
  );
  return layer('base', entries, ctx);
}

/** Node.js from the npm `node` package that package-lock.json pins. */
async function nodeLayer(ctx: Ctx): Promise<LayerBlob> {
  const bin = join(ROOT, 'node_modules', 'node', 'bin', 'node');
  const want = `v${NODE_VERSION}`;
  const have = existsSync(bin) ? run(bin, ['--version'], ROOT).trim() : 'missing';
  if (have !== want) {
    throw new ImageError(
      'WEFT_IMAGE_INPUT',
      `node_modules/node/bin/node is ${have}, package.json pins the npm package node ${want}: run npm ci`,
    );
  }
  return layer('node', [await file('usr/bin/node', bin, 0o755)], ctx);
}

/** iptables (nft and legacy), dash as /bin/sh, tr, and the bundle of `npm run build`. */
async function weftLayers(ctx: Ctx): Promise<LayerBlob[]> {
  const tools = await debLayerEntries(
    [
      'iptables',
      'libip4tc2',
      'libip6tc2',
      'libxtables12',
      'libmnl0',
      'libnftnl11',
      'libnetfilter-conntrack3',
      'libnfnetlink0',
      'dash',
      'coreutils',
    ],
    ctx.cache,
    ctx.log,
  );
  // What Debian's update-alternatives would link: nft by default (what current nodes run);
  // WEFT_IPTABLES=iptables-legacy in the init container's environment picks the other.
  for (const t of [
    'iptables',
    'iptables-save',
    'iptables-restore',
    'ip6tables',
    'ip6tables-save',
    'ip6tables-restore',
  ]) {
    tools.push({ type: 'symlink', path: `usr/sbin/${t}`, target: 'xtables-nft-multi' });
  }
  if (!existsSync(join(ROOT, 'proxy/native/build/Release/original_dst.node'))) {
    ctx.log('building the SO_ORIGINAL_DST addon (proxy/native/build.sh)');
    run('bash', ['proxy/native/build.sh'], ROOT);
  }
  const t = Date.now();
  // Always the same directory of the checkout, whatever --out says: esbuild's chunk names hash the
  // source maps, whose paths are relative to the output directory. Not dist/ itself, which
  // `npm run build` and test/netns/dist.test.ts rebuild (and clean) meanwhile.
  const dist = await buildDist(BUNDLE_DIR);
  ctx.log(`npm run build: ${Object.keys(dist.files).length} files in ${Date.now() - t} ms`);
  const app: Entry[] = [await file('usr/bin/weft', join(HERE, 'weft'), 0o755)];
  for (const f of (await readdir(dist.outdir)).sort()) {
    // Source maps stay out of the image (3x the code); stack traces keep their names.
    if (f.endsWith('.map')) continue;
    app.push(await file(`usr/lib/weft/${f}`, join(dist.outdir, f)));
  }
  return [await layer('iptables', tools, ctx), await layer('weft', app, ctx)];
}

const DEMO_APPS = join(ROOT, 'hack', 'demo-apps');
/** Where the image's bundle is built (hack/build-dist.ts leaves dist/images alone). */
const BUNDLE_DIR = join(ROOT, 'dist', 'images', '.bundle');

/** pause.c of the k8s.io/kubernetes module that hack/controlplane pins, built static. */
async function pauseBinary(ctx: Ctx): Promise<{ path: string; tag: string }> {
  const mod = join(ROOT, 'hack', 'controlplane', 'kubernetes');
  let dir: string;
  try {
    dir = run('go', ['list', '-m', '-f', '{{.Dir}}', 'k8s.io/kubernetes'], mod).trim();
  } catch (e) {
    throw new ImageError(
      'WEFT_IMAGE_INPUT',
      'cannot find the k8s.io/kubernetes module (pause.c): run `bash hack/build-control-plane.sh` first',
      { cause: e },
    );
  }
  const src = join(dir, 'build', 'pause', 'linux', 'pause.c');
  if (!dir || !existsSync(src)) {
    throw new ImageError(
      'WEFT_IMAGE_INPUT',
      `no ${src}: run \`bash hack/build-control-plane.sh\` to download it`,
    );
  }
  const makefile = await readFile(join(dir, 'build', 'pause', 'Makefile'), 'utf8');
  const tag = /^TAG \?= (\S+)$/m.exec(makefile)?.[1];
  if (!tag)
    throw new ImageError('WEFT_IMAGE_INPUT', `no "TAG ?=" line in ${join(dir, 'build/pause/Makefile')}`);
  const out = join(ctx.cache, 'pause', `${tag}-${(await sha256File(src)).slice(0, 12)}`);
  const bin = join(out, 'pause');
  if (!existsSync(bin)) {
    await mkdir(out, { recursive: true });
    // The flags of build/pause/Makefile; the version names this build, not upstream's release.
    run(
      'gcc',
      ['-Os', '-Wall', '-Werror', '-static', `-DVERSION=v${tag}-weft`, '-o', `${bin}.tmp`, src],
      out,
    );
    run('strip', [`${bin}.tmp`], out);
    await rename(`${bin}.tmp`, bin);
    ctx.log(`compiled ${relative(dir, src)} (${tag}) with gcc -static`);
  }
  return { path: bin, tag };
}

/** api/mesh.ts WEFT_IMAGE, which the manifests and the injector use, must carry this version. */
function weftReference(): string {
  if (!WEFT_IMAGE.endsWith(`:${VERSION}`)) {
    throw new ImageError(
      'WEFT_IMAGE_INPUT',
      `api/mesh.ts WEFT_IMAGE is ${WEFT_IMAGE} but package.json's version is ${VERSION}: set its tag to ${VERSION} ` +
        '(then npm run crds, npm run chart, and the image of config/manager and config/webhook)',
    );
  }
  return WEFT_IMAGE;
}

interface Recipe {
  reference: string;
  layers: () => Promise<LayerBlob[]>;
  config: ImageConfig;
}

function recipes(ctx: Ctx): Record<ImageName, () => Promise<Recipe>> {
  const labels = (title: string, description: string) => ({
    'org.opencontainers.image.title': title,
    'org.opencontainers.image.description': description,
    'org.opencontainers.image.version': VERSION,
    'org.opencontainers.image.licenses': 'Apache-2.0',
  });
  return {
    weft: async () => ({
      reference: weftReference(),
      layers: async () => [await baseLayer(ctx), await nodeLayer(ctx), ...(await weftLayers(ctx))],
      // UID 1337: the proxy's, which the init container's rules exempt. The operator and webhook
      // Deployments and the init container set their own user in their securityContext.
      config: {
        user: '1337:1337',
        entrypoint: ['/usr/bin/weft'],
        env: [PATH_ENV],
        labels: labels('weft', 'Weft service mesh: weft operator | webhook | proxy | init'),
      },
    }),
    demo: async () => ({
      reference: `ghcr.io/weft-mesh/weft-demo:${VERSION}`,
      layers: async () => {
        const apps: Entry[] = [];
        for (const f of (await readdir(DEMO_APPS)).filter((f) => f.endsWith('.ts')).sort()) {
          apps.push(await file(`app/hack/demo-apps/${f}`, join(DEMO_APPS, f), 0o644));
        }
        return [await baseLayer(ctx), await nodeLayer(ctx), await layer('demo-apps', apps, ctx)];
      },
      // The demo manifests run `node hack/demo-apps/server.ts` (or client.ts) from /app.
      config: {
        user: '65532:65532',
        entrypoint: ['/usr/bin/node'],
        cmd: ['hack/demo-apps/server.ts'],
        env: [PATH_ENV],
        workingDir: '/app',
        labels: labels('weft-demo', "Weft's demo apps (hack/demo-apps)"),
      },
    }),
    pause: async () => {
      const p = await pauseBinary(ctx);
      return {
        reference: `ghcr.io/weft-mesh/pause:${p.tag}`,
        layers: async () => [await layer('pause', [await file('pause', p.path, 0o755)], ctx)],
        config: {
          user: '65535:65535',
          entrypoint: ['/pause'],
          env: [PATH_ENV],
          labels: labels('pause', `Kubernetes' pause.c ${p.tag}, compiled with gcc -static`),
        },
      };
    },
  };
}

export async function buildImages(names: ImageName[], opts: BuildOptions = {}): Promise<ImageResult[]> {
  const cache = opts.cacheDir ?? defaultCacheDir();
  const ctx: Ctx = {
    store: new BlobStore(cache),
    cache,
    epoch: opts.epoch ?? sourceDateEpoch(),
    reuse: opts.reuseLayers ?? true,
    log: opts.log ?? ((l) => process.stderr.write(`[image] ${l}\n`)),
  };
  const outDir = opts.outDir ?? join(ROOT, 'dist', 'images');
  const all = recipes(ctx);
  const results: ImageResult[] = [];
  // One build at a time per cache: builds share its downloads and layers, and a checkout's
  // bundle directory, which each build empties and writes (an e2e file and image.test.ts run
  // side by side in hack/test.sh).
  await mkdir(cache, { recursive: true });
  const release = await takeFileLock(join(cache, 'build.lock'), {
    what: 'to finish its image build',
    prefix: '[image]',
    log: ctx.log,
    pollMs: 200,
  });
  try {
    for (const name of names) {
      const t = Date.now();
      const r = await all[name]();
      const layers = await r.layers();
      const img = await putImage(ctx.store, r.reference, layers, r.config, ctx.epoch);
      const archive = join(outDir, `${name}.oci.tar`);
      const archiveDigest = await writeArchive(ctx.store, img, archive, ctx.epoch);
      let uncompressed = 0;
      for (const l of layers) uncompressed += await tarSize(ctx.store, l);
      results.push({ ...img, name, archive, archiveDigest, uncompressed });
      ctx.log(
        `${r.reference} ${img.digest} -> ${relative(process.cwd(), archive)} ` +
          `(${mib(img.compressed)} compressed, ${mib(uncompressed)} uncompressed, ${Date.now() - t} ms)`,
      );
    }
  } finally {
    release();
  }
  return results;
}

/** Uncompressed size of a layer (the gzip trailer's ISIZE, modulo 4 GiB: our layers are smaller). */
async function tarSize(store: BlobStore, l: LayerBlob): Promise<number> {
  const fh = await open(store.path(l.digest));
  try {
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, l.size - 4);
    return buf.readUInt32LE(0);
  } finally {
    await fh.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const log = (l: string) => process.stderr.write(`[image] ${l}\n`);
  if (args.includes('--relock')) {
    await relock(defaultCacheDir(), log);
    process.exit(0);
  }
  const o = args.indexOf('--out');
  const outDir = o >= 0 ? args[o + 1] : undefined;
  const wanted = args.filter((a, i) => !a.startsWith('--') && (o < 0 || i !== o + 1));
  const bad = wanted.filter((a) => a !== 'all' && !(IMAGE_NAMES as readonly string[]).includes(a));
  if (bad.length) {
    console.error(`unknown image ${bad.join(', ')}: choose from ${IMAGE_NAMES.join(', ')}, all`);
    process.exit(2);
  }
  const names: ImageName[] = wanted.includes('all')
    ? [...IMAGE_NAMES]
    : wanted.length
      ? (wanted as ImageName[])
      : ['weft', 'demo'];
  try {
    const reuseLayers = !args.includes('--fresh');
    for (const r of await buildImages(names, { outDir, reuseLayers })) {
      console.log(`${r.reference} ${r.digest} ${r.archive}`);
    }
  } catch (e) {
    console.error(`image build failed: ${(e as Error).message}`);
    process.exit(1);
  }
}
