// The ClientHello reader against real ClientHellos sent by Node's TLS client (captured by a
// plain TCP server on loopback), plus truncated and malformed input.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { MAX_HELLO_BYTES, offersWeftAlpn, parseClientHello } from './clienthello.ts';

async function captureHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  let resolveBytes: (b: Buffer) => void;
  const got = new Promise<Buffer>((r) => {
    resolveBytes = r;
  });
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        resolveBytes(buf);
        s.destroy();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const c = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
  c.on('error', () => {});
  const bytes = await got;
  c.destroy();
  server.close();
  return bytes;
}

describe('ClientHello reader', () => {
  it('reads the ALPN list and SNI of a real ClientHello', async () => {
    const hello = await captureHello({ ALPNProtocols: ['weft-h2', 'weft-tcp'], servername: 'web.shop' });
    const r = parseClientHello(hello);
    assert.equal(r.kind, 'hello');
    if (r.kind !== 'hello') return;
    assert.deepEqual(r.alpn, ['weft-h2', 'weft-tcp']);
    assert.equal(r.sni, 'web.shop');
    assert.equal(offersWeftAlpn(r.alpn), true);
  });

  it('an app-level TLS hello (h2, http/1.1 or no ALPN) is not a sidecar', async () => {
    const app = parseClientHello(await captureHello({ ALPNProtocols: ['h2', 'http/1.1'] }));
    assert.equal(app.kind, 'hello');
    if (app.kind === 'hello') assert.equal(offersWeftAlpn(app.alpn), false);
    const none = parseClientHello(await captureHello({}));
    assert.equal(none.kind, 'hello');
    if (none.kind === 'hello') assert.deepEqual(none.alpn, []);
  });

  it('asks for more bytes until the first record is complete, at every cut', async () => {
    const hello = await captureHello({ ALPNProtocols: ['weft-http/1.1'] });
    for (let cut = 0; cut < hello.length; cut++) {
      const r = parseClientHello(hello.subarray(0, cut));
      assert.equal(r.kind, 'more', `cut at ${cut}`);
      if (r.kind === 'more') assert.ok(r.need > cut && r.need <= MAX_HELLO_BYTES);
    }
  });

  it('refuses non-TLS and malformed records without throwing', async () => {
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')).kind, 'invalid');
    assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff])).kind, 'invalid');
    const hello = await captureHello({ ALPNProtocols: ['weft-tcp'] });
    // Corrupt every length byte in turn: the reader answers, never throws or reads out of bounds.
    for (let i = 5; i < Math.min(hello.length, 200); i++) {
      const bad = Buffer.from(hello);
      bad[i] = 0xff;
      const r = parseClientHello(bad);
      assert.ok(['hello', 'invalid', 'more'].includes(r.kind));
    }
    const notHello = Buffer.from(hello);
    notHello[5] = 0x02; // ServerHello
    assert.equal(parseClientHello(notHello).kind, 'invalid');
  });
});
