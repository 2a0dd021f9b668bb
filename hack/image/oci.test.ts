// The layer writer of hack/image/oci.ts without building an image: the tar depends only on the
// entries (not their order, not the files' mtimes), the system's tar reads it back with root
// owners and the epoch as mtime, and bad paths are refused by name.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BlobStore, type Entry, normalizeEntries, tarStream } from './oci.ts';

const tmp = mkdtempSync(join(tmpdir(), 'weft-oci-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function tarOf(entries: Entry[], epoch: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of tarStream(entries, epoch)) chunks.push(c);
  return Buffer.concat(chunks);
}

const src = join(tmp, 'big');
writeFileSync(src, 'x'.repeat(1000));

function entries(): Entry[] {
  return [
    { type: 'symlink', path: 'usr/sbin/iptables', target: 'xtables-nft-multi' },
    { type: 'file', path: 'usr/bin/tool', mode: 0o755, source: src, size: 1000 },
    {
      type: 'file',
      path: `usr/lib/${'d'.repeat(90)}/${'f'.repeat(60)}`,
      mode: 0o644,
      data: Buffer.from('long'),
    },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
  ];
}

test('the same entries give the same tar, whatever their order and the files mtimes', async () => {
  const a = await tarOf(entries(), 1_700_000_000);
  utimesSync(src, new Date(), new Date(2001, 1, 1));
  const b = await tarOf(entries().reverse(), 1_700_000_000);
  assert.ok(a.equals(b));
  assert.ok(!a.equals(await tarOf(entries(), 1_700_000_001)), 'the epoch is the mtime');
});

test("the system's tar reads the layer: parents added, sorted, root-owned, mtime = epoch, long paths", async () => {
  const file = join(tmp, 'layer.tar');
  writeFileSync(file, await tarOf(entries(), 1_700_000_000));
  const list = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', file], {
    encoding: 'utf8',
    env: { ...process.env, TZ: 'UTC' },
  })
    .trim()
    .split('\n');
  const paths = list.map((l) => l.split(/\s+/).slice(5).join(' '));
  assert.deepEqual(paths, [
    'tmp/',
    'usr/',
    'usr/bin/',
    'usr/bin/tool',
    'usr/lib/',
    `usr/lib/${'d'.repeat(90)}/`,
    `usr/lib/${'d'.repeat(90)}/${'f'.repeat(60)}`,
    'usr/sbin/',
    'usr/sbin/iptables -> xtables-nft-multi',
  ]);
  for (const l of list) assert.match(l, /^\S+ 0\/0 +\d+ 2023-11-14 22:13:20 /, l);
  assert.match(list[0]!, /^drwxrwxrwt /);
  assert.match(list[3]!, /^-rwxr-xr-x 0\/0 +1000 /);
});

test('paths that climb out of the root or repeat are refused with the path', () => {
  assert.throws(
    () => normalizeEntries([{ type: 'dir', path: 'usr/../etc' }]),
    (e: Error & { code?: string }) => e.code === 'WEFT_IMAGE_PATH' && e.message.includes('usr/../etc'),
  );
  const f = { type: 'file', path: 'etc/passwd', mode: 0o644, data: Buffer.from('') } as const;
  assert.throws(
    () => normalizeEntries([f, f]),
    (e: Error & { code?: string }) => e.code === 'WEFT_IMAGE_DUPLICATE' && e.message.includes('etc/passwd'),
  );
});

test('a layer blob is named by the digest of its gzip, and its diff_id by the tar', async () => {
  const store = new BlobStore(join(tmp, 'store'));
  const a = await store.putLayer(tarStream(entries(), 1), 6);
  const b = await store.putLayer(tarStream(entries(), 1), 6);
  assert.deepEqual(a, b);
  const tar = await tarOf(entries(), 1);
  assert.equal(a.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
  assert.ok(await store.has(a));
});
