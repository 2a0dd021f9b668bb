import assert from 'node:assert/strict';
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
