import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { it } from 'node:test';
import { loadOriginalDst, originalDst } from './index.ts';

it('the SO_ORIGINAL_DST addon loads and answers for a socket that was not redirected', async () => {
  assert.equal(typeof loadOriginalDst().originalDst, 'function');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect(port, '127.0.0.1');
  const s = await accepted;
  try {
    // Without a REDIRECT the kernel reports no original destination, or the socket's own address.
    const dst = originalDst(s);
    assert.ok(dst === undefined || (dst.address === '127.0.0.1' && dst.port === port), JSON.stringify(dst));
    assert.throws(() => loadOriginalDst().originalDst(-1), { code: 'EINVAL' });
  } finally {
    client.destroy();
    s.destroy();
    server.close();
  }
});

it('mallocTrim gives the free pages inside malloc arenas back to the kernel', () => {
  // A child with a fragmented malloc heap: 40 MB of 1 KB buffers, every 50th kept, the rest
  // collected. glibc cannot shrink its heap past the kept ones; malloc_trim(0) releases the free
  // pages between them.
  const index = new URL('./index.ts', import.meta.url).pathname;
  const script = `
    import { readFileSync } from 'node:fs';
    import { mallocTrim } from ${JSON.stringify(index)};
    const anon = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    let bufs = [];
    for (let i = 0; i < 40000; i++) bufs.push(Buffer.allocUnsafeSlow(1000).fill(1));
    bufs = bufs.filter((_, i) => i % 50 === 0);
    globalThis.gc();
    globalThis.gc();
    const before = anon();
    const released = mallocTrim();
    process.stdout.write(JSON.stringify({ before, after: anon(), released, kept: bufs.length }));
  `;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    env: { ...process.env, MALLOC_ARENA_MAX: '2' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(r.stdout) as { before: number; after: number; released: boolean };
  assert.equal(m.released, true);
  assert.ok(m.before - m.after > 10, `RssAnon ${m.before} MB before, ${m.after} MB after`);
});
