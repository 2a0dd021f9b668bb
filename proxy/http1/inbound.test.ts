// The inbound fast path (inbound.ts over the connection loop) on loopback, against a node:http app.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { proxyConfig } from '../testdata.ts';
import { inboundFastPath } from './inbound.ts';

describe('inbound fast path on loopback', () => {
  let app: http.Server;
  let appPort: number;
  let front: net.Server;
  let frontPort: number;
  const finished: Array<{ status: number; src: [string, string] }> = [];
  const handedOff: string[] = [];
  let closeFast = () => {};

  before(async () => {
    app = http.createServer((req, res) => {
      if (req.url === '/crash') return void req.socket.destroy();
      if (req.url === '/chunked') {
        res.writeHead(200, { trailer: 'x-sum' });
        res.write('a');
        res.write('bc');
        res.addTrailers({ 'x-sum': '3' });
        return void res.end();
      }
      if (req.url === '/empty') return void res.writeHead(204).end();
      if (req.url === '/hang') return; // never answers
      if (req.url === '/fake-weft-error')
        return void res.writeHead(502, { 'weft-error': 'WEFT_UPSTREAM_CONNECT' }).end('from the app');
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
      });
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': 'text/plain',
          'x-src': String(req.headers['weft-src-workload']),
        });
        res.end(`${req.method} ${req.url} ${n}`);
      });
    });
    app.keepAliveTimeout = 200; // short, so the pool meets connections the app has closed
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    appPort = (app.address() as net.AddressInfo).port;
    const fast = inboundFastPath({
      connLimits: { maxHeaderBytes: 8192, idleTimeoutMs: 5000, headersTimeoutMs: 500 },
      identity: { workload: 'app', namespace: 'shop' },
      now: Date.now,
      tracingActive: () => false,
      admit: (target) => ({ ok: true, target }),
      draining: () => false,
      started: () => {},
      ended: () => {},
      report: (f) => finished.push({ status: f.status, src: [f.src.workload, f.src.namespace] }),
      error: () => {},
      appHost: '127.0.0.1',
      authorize: (req) => ({ allow: req.http?.path !== '/forbidden', policy: 'test' }),
      config: () => proxyConfig('shop', []),
      debugHeaders: () => false,
    });
    closeFast = fast.close;
    front = net.createServer((socket) =>
      fast.serve(
        socket,
        { port: appPort, peer: undefined, sourceIp: '127.0.0.1' },
        Buffer.alloc(0),
        () => {},
        (buffered) => {
          handedOff.push(buffered.toString('latin1').split('\r\n', 1)[0]!);
          socket.end('HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nhandoff');
        },
      ),
    );
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
    frontPort = (front.address() as net.AddressInfo).port;
  });
  after(() => {
    closeFast();
    front.close();
    app.closeAllConnections();
    app.close();
  });

  /** Sends raw bytes, returns everything received until the peer closes or `until` matches. */
  function raw(data: string, until: RegExp, timeoutMs = 3000): Promise<string> {
    return new Promise((resolve) => {
      const s = net.connect(frontPort, '127.0.0.1');
      let got = '';
      const t = setTimeout(() => {
        s.destroy();
        resolve(got);
      }, timeoutMs);
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (until.test(got)) {
          clearTimeout(t);
          s.destroy();
          resolve(got);
        }
      });
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(t);
        resolve(got);
      });
      s.write(data);
    });
  }

  it('forwards pipelined requests in order on one connection, strips and adds sidecar headers', async () => {
    const got = await raw(
      'GET /one HTTP/1.1\r\nHost: a\r\nweft-src-workload: web\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /three HTTP/1.1\r\nHost: a\r\n\r\n',
      /GET \/three 0\r\n0\r\n\r\n/,
    );
    const bodies = got.match(/(GET|POST) \/\w+ \d+/g);
    assert.deepEqual(bodies, ['GET /one 0', 'POST /two 5', 'GET /three 0']);
    assert.match(got, /x-src: undefined/i, 'weft-src-workload never reaches the app');
    assert.equal((got.match(/weft-dst-workload: app\r\n/g) ?? []).length, 3);
    assert.ok(
      finished.some((f) => f.src[0] === 'web'),
      'the source workload was read before stripping',
    );
  });

  it("an app's own weft-error header is dropped: callers trust it only from a sidecar (rerouting an unsent request)", async () => {
    const got = await raw('GET /fake-weft-error HTTP/1.1\r\nHost: a\r\n\r\n', /from the app/);
    assert.match(got, /^HTTP\/1\.1 502 /);
    assert.doesNotMatch(got, /weft-error/i);
  });

  it('streams a chunked request body and a chunked response with trailers', async () => {
    const got = await raw(
      'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
      /POST \/x 5\r\n0\r\n\r\n/,
    );
    assert.match(got, /POST \/x 5/);
    const chunked = await raw('GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n', /x-sum: 3\r\n\r\n$/);
    assert.match(chunked, /transfer-encoding: chunked/i);
    assert.match(chunked, /\r\n0\r\nx-sum: 3\r\n\r\n$/i);
  });

  it('HEAD and 204 have no body; the connection stays usable', async () => {
    const got = await raw(
      'HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /empty HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n',
      /GET \/after 0\r\n0\r\n\r\n/,
    );
    assert.equal((got.match(/^HTTP\/1\.1 /gm) ?? []).length, 3);
    assert.match(got, /HTTP\/1\.1 204 /);
  });

  it('answers 400 to malformed heads, 431 to huge ones, 403 when the hook denies, 502 when the app crashes', async () => {
    assert.match(await raw('GET / HTTP/1.1\r\nBad Header\r\n\r\n', /\r\n\r\n/), /^HTTP\/1\.1 400 /);
    assert.match(
      await raw(`GET / HTTP/1.1\r\nX: ${'a'.repeat(9000)}\r\n\r\n`, /\r\n\r\n/),
      /^HTTP\/1\.1 431 /,
    );
    const denied = await raw(
      'POST /forbidden HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /ok HTTP/1.1\r\nHost: a\r\n\r\n',
      /GET \/ok 0\r\n0\r\n\r\n/,
    );
    assert.match(denied, /^HTTP\/1\.1 403 /);
    assert.match(denied, /GET \/ok 0/, 'the next request on the connection is served');
    assert.match(
      await raw('GET /crash HTTP/1.1\r\nHost: a\r\n\r\n', /connection closed\n/),
      /^HTTP\/1\.1 502 /,
    );
  });

  it('a client slow to send a head gets 408 on every request of a connection, not only the first', async () => {
    // The first request is whole; the second stops in the middle of its head.
    const got = await raw('GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTT', /HTTP\/1\.1 408 /, 8000);
    assert.match(got, /GET \/a 0/, 'the first request is answered');
    assert.match(got, /HTTP\/1\.1 408 /, `the second one times out: ${JSON.stringify(got)}`);
  });

  it('hands upgrades and Expect: 100-continue to the node:http path', async () => {
    assert.match(
      await raw(
        'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
        /handoff/,
      ),
      /handoff$/,
    );
    assert.match(
      await raw(
        'PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n',
        /handoff/,
      ),
      /handoff$/,
    );
    assert.deepEqual(handedOff, ['GET /ws HTTP/1.1', 'PUT /big HTTP/1.1']);
  });

  it('a client that goes away mid-request is accounted for (499) and its app connection closed', async () => {
    const before = finished.length;
    const s = net.connect(frontPort, '127.0.0.1');
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    s.destroy();
    for (let i = 0; i < 50 && finished.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(finished.at(-1)?.status, 499);
  });

  it('a pooled connection the app closed is replaced transparently', async () => {
    assert.match(await raw('GET /first HTTP/1.1\r\nHost: a\r\n\r\n', /GET \/first 0\r\n0\r\n\r\n/), /200 OK/);
    await new Promise((r) => setTimeout(r, 400)); // the app's keep-alive timeout passes
    assert.match(
      await raw('GET /second HTTP/1.1\r\nHost: a\r\n\r\n', /GET \/second 0\r\n0\r\n\r\n/),
      /200 OK/,
    );
  });
});
