// The images of hack/image/build.ts, built for real: the same tree builds to the same digest
// (even with every layer written anew), the archive is a valid OCI layout whose config starts
// `weft` as UID 1337, and the root filesystem runs: node, `weft --help` as the proxy's user, the
// SO_ORIGINAL_DST addon, and `weft init` installing its iptables rules in a network namespace.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { buildImages, type ImageResult, NODE_VERSION, VERSION } from './build.ts';

const root = process.getuid?.() === 0;
const repo = join(import.meta.dirname, '..', '..');
const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const hasContainerd = has('containerd') && has('ctr');
const EPOCH = 1_700_000_000;
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sh = (cmd: string, args: string[]) =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

interface Layout {
  dir: string;
  index: { manifests: { digest: string; size: number; annotations: Record<string, string> }[] };
  manifest: {
    mediaType: string;
    config: { digest: string; size: number };
    layers: { mediaType: string; digest: string; size: number }[];
  };
  config: {
    architecture: string;
    os: string;
    created: string;
    config: { User: string; Entrypoint: string[]; Cmd?: string[]; WorkingDir?: string; Env: string[] };
    rootfs: { type: string; diff_ids: string[] };
  };
  blob: (digest: string) => Buffer;
}

/** Unpacks an archive with the system's tar (not ours) and follows index → manifest → config. */
function openLayout(archive: string, into: string): Layout {
  mkdirSync(into, { recursive: true });
  sh('tar', ['-xf', archive, '-C', into]);
  const blob = (digest: string) =>
    readFileSync(join(into, 'blobs', 'sha256', digest.replace(/^sha256:/, '')));
  assert.deepEqual(JSON.parse(readFileSync(join(into, 'oci-layout'), 'utf8')), {
    imageLayoutVersion: '1.0.0',
  });
  const index = JSON.parse(readFileSync(join(into, 'index.json'), 'utf8')) as Layout['index'];
  assert.equal(index.manifests.length, 1);
  const m = index.manifests[0]!;
  const manifestBytes = blob(m.digest);
  assert.equal(sha256(manifestBytes), m.digest, 'manifest blob matches its digest');
  assert.equal(manifestBytes.length, m.size);
  const manifest = JSON.parse(manifestBytes.toString()) as Layout['manifest'];
  assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  const configBytes = blob(manifest.config.digest);
  assert.equal(sha256(configBytes), manifest.config.digest, 'config blob matches its digest');
  assert.equal(configBytes.length, manifest.config.size);
  const config = JSON.parse(configBytes.toString()) as Layout['config'];
  assert.equal(config.rootfs.type, 'layers');
  assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
  return { dir: into, index, manifest, config, blob };
}

/** Every header of a tar: path, owner, mtime (the format's fixed offsets). */
function tarHeaders(tar: Buffer): { path: string; uid: number; gid: number; mtime: number }[] {
  const out = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, n: number) => h.toString('utf8', a, a + n).replace(/\0.*$/s, '');
    const num = (a: number, n: number) => Number.parseInt(str(a, n).trim() || '0', 8);
    const prefix = str(345, 155);
    out.push({
      path: prefix ? `${prefix}/${str(0, 100)}` : str(0, 100),
      uid: num(108, 8),
      gid: num(116, 8),
      mtime: num(136, 12),
    });
    off += 512 + Math.ceil(num(124, 12) / 512) * 512;
  }
  return out;
}

/** Layers already checked (the demo image shares the base and node layers with weft). */
const checked = new Set<string>();

/** Checks each layer against the manifest and the config, and unpacks them in order. */
function checkLayersAndUnpack(l: Layout, rootfs: string): void {
  mkdirSync(rootfs, { recursive: true });
  for (const [i, layer] of l.manifest.layers.entries()) {
    assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    const unpack = () =>
      sh('tar', ['-xzf', join(l.dir, 'blobs', 'sha256', layer.digest.slice(7)), '-C', rootfs]);
    if (checked.has(`${layer.digest} ${l.config.rootfs.diff_ids[i]}`)) {
      unpack();
      continue;
    }
    const gz = l.blob(layer.digest);
    assert.equal(sha256(gz), layer.digest, `layer ${i} matches its digest`);
    assert.equal(gz.length, layer.size);
    const tar = gunzipSync(gz);
    assert.equal(sha256(tar), l.config.rootfs.diff_ids[i], `layer ${i} matches its diff_id`);
    const headers = tarHeaders(tar);
    assert.ok(headers.length > 0);
    const paths = headers.map((h) => h.path);
    assert.deepEqual(paths, [...paths].sort(), `layer ${i}: entries sorted`);
    for (const h of headers) {
      assert.deepEqual(
        [h.uid, h.gid, h.mtime],
        [0, 0, EPOCH],
        `${h.path}: owner root, mtime SOURCE_DATE_EPOCH`,
      );
    }
    checked.add(`${layer.digest} ${l.config.rootfs.diff_ids[i]}`);
    unpack();
  }
}

describe('container images (hack/image/build.ts)', {
  skip: !root && 'needs root (chroot, network namespaces)',
}, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'weft-image-'));
  let first: ImageResult[];
  let weft: Layout;
  let weftRoot: string;

  before(async () => {
    // The usual cache (downloads, and layers from earlier builds); the bundle goes to dist/images/.bundle.
    first = await buildImages(['weft', 'demo', 'pause'], {
      outDir: join(tmp, 'a'),
      epoch: EPOCH,
      log: () => {},
    });
    weft = openLayout(first[0]!.archive, join(tmp, 'weft-layout'));
    weftRoot = join(tmp, 'weft-rootfs');
    checkLayersAndUnpack(weft, weftRoot);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test('a copy of the tree elsewhere builds the weft image to the same digest, every layer anew', () => {
    // Another directory, its own bundle and addon build, no cached layer: only the inputs count.
    const copy = join(tmp, 'elsewhere', 'weft');
    const files = sh('git', ['-C', repo, 'ls-files', '--cached', '--others', '--exclude-standard', '-z']);
    for (const f of files.split('\0').filter((f) => f && f !== 'node_modules')) {
      if (existsSync(join(repo, f))) cpSync(join(repo, f), join(copy, f), { recursive: true });
    }
    symlinkSync(realpathSync(join(repo, 'node_modules')), join(copy, 'node_modules'));
    const out = execFileSync(
      join(repo, 'node_modules', '.bin', 'node'),
      [join(copy, 'hack/image/build.ts'), 'weft', '--fresh', '--out', join(tmp, 'b')],
      {
        cwd: copy,
        encoding: 'utf8',
        env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH) },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    assert.equal(out.trim(), `${first[0]!.reference} ${first[0]!.digest} ${join(tmp, 'b', 'weft.oci.tar')}`);
    const archive = readFileSync(join(tmp, 'b', 'weft.oci.tar'));
    assert.equal(sha256(archive), first[0]!.archiveDigest);
    assert.ok(archive.length > 30 * 1024 * 1024, 'the archive holds node and the libraries');
  });

  test('the archive is an OCI layout that names the image and starts weft as UID 1337', () => {
    const m = weft.index.manifests[0]!;
    assert.equal(m.digest, first[0]!.digest);
    assert.equal(m.annotations['io.containerd.image.name'], `ghcr.io/weft-mesh/weft:${VERSION}`);
    assert.equal(m.annotations['org.opencontainers.image.ref.name'], VERSION);
    assert.equal(weft.config.architecture, 'amd64');
    assert.equal(weft.config.os, 'linux');
    assert.equal(weft.config.created, new Date(EPOCH * 1000).toISOString());
    assert.equal(weft.config.config.User, '1337:1337');
    assert.deepEqual(weft.config.config.Entrypoint, ['/usr/bin/weft']);
  });

  test('node, weft and the addon run from the root filesystem as the proxy user', () => {
    assert.equal(sh('chroot', [weftRoot, '/usr/bin/node', '--version']).trim(), `v${NODE_VERSION}`);
    const help = sh('chroot', ['--userspec=1337:1337', weftRoot, 'weft', '--help']);
    for (const c of ['operator', 'webhook', 'proxy', 'init'])
      assert.match(help, new RegExp(`^ {2}${c} `, 'm'));
    // Each subcommand's chunk loads with the image's libraries (the proxy's also loads the addon).
    for (const c of ['operator', 'webhook', 'proxy']) {
      assert.match(
        sh('chroot', ['--userspec=1337:1337', weftRoot, 'weft', c, '--help']),
        new RegExp(`Usage: weft ${c}`),
      );
    }
    const addon = sh('chroot', [
      '--userspec=1337:1337',
      weftRoot,
      'node',
      '-e',
      'console.log(typeof require("/usr/lib/weft/original_dst.node").originalDst, typeof require("/usr/lib/weft/re2.node"))',
    ]);
    // SO_ORIGINAL_DST, and RE2 (RegularExpression matches), with the image's libstdc++.
    assert.equal(addon.trim(), 'function function');
  });

  test("weft init installs the redirect with the image's own sh and iptables, in a network namespace", () => {
    assert.match(sh('chroot', [weftRoot, 'iptables', '--version']), /^iptables v1\.8\.\d+ \(nf_tables\)/);
    // A pod's runtime provides /dev; here a private mount namespace does.
    const script =
      `mount -t tmpfs none ${weftRoot}/dev && mknod -m 666 ${weftRoot}/dev/null c 1 3 && ` +
      `chroot ${weftRoot} sh -c 'weft init 2>&1 && iptables -t nat -S WEFT_OUTPUT && iptables -t nat -S WEFT_IN_REDIRECT'`;
    const out = sh('unshare', ['--net', '--mount', 'sh', '-c', script]);
    assert.match(out, /\[weft-init\] installed/);
    assert.match(out, /-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN/);
    assert.match(out, /-A WEFT_OUTPUT -j WEFT_REDIRECT/);
    assert.match(out, /-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006/);
  });

  test('the demo image runs its apps from /app with node', () => {
    const demo = openLayout(first[1]!.archive, join(tmp, 'demo-layout'));
    assert.equal(
      demo.index.manifests[0]!.annotations['io.containerd.image.name'],
      `ghcr.io/weft-mesh/weft-demo:${VERSION}`,
    );
    assert.equal(demo.config.config.WorkingDir, '/app');
    assert.deepEqual(demo.config.config.Entrypoint, ['/usr/bin/node']);
    // It shares the base and node layers with the weft image: one copy on a node.
    assert.deepEqual(demo.manifest.layers.slice(0, 2), weft.manifest.layers.slice(0, 2));
    const rootfs = join(tmp, 'demo-rootfs');
    checkLayersAndUnpack(demo, rootfs);
    const out = sh('chroot', [
      '--userspec=65532:65532',
      rootfs,
      'node',
      '-e',
      'process.chdir("/app"); console.log(require("node:fs").readdirSync("hack/demo-apps").join(","))',
    ]);
    assert.equal(out.trim(), 'client.ts,server.ts');
  });

  test('containerd imports the archives under their names and runs them with runc', {
    skip: !hasContainerd && 'containerd and ctr are not installed',
  }, async () => {
    // A private containerd (its own root, state and socket), as `ctr -n k8s.io images import`
    // on the node does it; the node's containerd, if one runs, is not touched.
    const dir = join(tmp, 'containerd');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'config.toml'),
      `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\n` +
        `disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${dir}/c.sock"\n` +
        `[ttrpc]\n  address = "${dir}/c.sock.ttrpc"\n[debug]\n  address = "${dir}/debug.sock"\n`,
    );
    const daemon = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
    const ctr = (...args: string[]) => sh('ctr', ['-a', join(dir, 'c.sock'), '-n', 'k8s.io', ...args]);
    try {
      for (let i = 0; ; i++) {
        try {
          ctr('version');
          break;
        } catch (e) {
          if (i === 100) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      for (const img of first) ctr('images', 'import', img.archive);
      const ls = ctr('images', 'ls');
      for (const img of first)
        assert.match(ls, new RegExp(`^${img.reference}\\s+\\S+\\s+${img.digest}`, 'm'));
      // The image's user and entrypoint, as a pod without securityContext would get them.
      const id = ctr(
        'run',
        '--rm',
        first[0]!.reference,
        `weft-id-${process.pid}`,
        'node',
        '-e',
        'console.log(process.getuid())',
      );
      assert.equal(id.trim(), '1337');
      assert.match(
        ctr('run', '--rm', first[0]!.reference, `weft-help-${process.pid}`, 'weft', '--help'),
        /Usage: weft/,
      );
      assert.match(
        ctr('run', '--rm', first[2]!.reference, `weft-pause-${process.pid}`, '/pause', '-v'),
        /^pause\.c v3/,
      );
    } finally {
      daemon.kill();
      await new Promise((r) => daemon.once('exit', r));
    }
  });

  test('a build waits for the build holding its cache (an e2e file and this file build side by side)', async () => {
    // Builds share the cache and the checkout's bundle directory, which each one empties: one
    // writing while another read failed an e2e file's build in CI.
    const cache = join(tmp, 'lock-cache');
    mkdirSync(cache, { recursive: true });
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      writeFileSync(join(cache, 'build.lock'), String(holder.pid));
      const lines: string[] = [];
      let done = false;
      const building = buildImages(['pause'], {
        outDir: join(tmp, 'lock-out'),
        cacheDir: cache,
        log: (l) => lines.push(l),
      }).finally(() => {
        done = true;
      });
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(done, false, 'no build while another holds the lock');
      assert.match(
        lines.join('\n'),
        new RegExp(`waiting for process ${holder.pid} to finish its image build`),
      );
      holder.kill();
      const [pause] = await building;
      assert.ok(existsSync(pause!.archive));
      assert.ok(!existsSync(join(cache, 'build.lock')), 'the build released its lock');
    } finally {
      holder.kill();
    }
  });

  test("the pause image is Kubernetes' pause.c, static, and runs alone", () => {
    const pause = openLayout(first[2]!.archive, join(tmp, 'pause-layout'));
    assert.match(
      pause.index.manifests[0]!.annotations['io.containerd.image.name']!,
      /^ghcr\.io\/weft-mesh\/pause:3\.\d+/,
    );
    assert.deepEqual(pause.config.config.Entrypoint, ['/pause']);
    const rootfs = join(tmp, 'pause-rootfs');
    checkLayersAndUnpack(pause, rootfs);
    assert.match(sh('chroot', [rootfs, '/pause', '-v']), /^pause\.c v3\.\d+\.\d+-weft/);
  });
});
