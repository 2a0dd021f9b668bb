// The fast paths' connection loop (conn.ts, exchange.ts) on loopback sockets, with a stand-in for the proxy's policy:
// header rewriting, streamed bodies, retries (and the rule that a started body is never resent),
// per-try timeouts, pipelining, answers of our own with the body dropped, and hand-over.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Attempts } from '../resilience/attempts.ts';
import { REPLAY_LIMIT } from '../resilience/replay.ts';
import { type Decision, serveConnection } from './conn.ts';
import type { Exchange } from './exchange.ts';
import { KeyedPool } from './pool.ts';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  port: number;
}

describe('outbound fast path on loopback', () => {
  const apps: http.Server[] = [];
  const ports: number[] = [];
  const seen: Seen[] = [];
  let front: net.Server;
  let frontPort: number;
  const pool = new KeyedPool<number>(4000);
  /** Per test: what decide() returns, and what happened. */
  let decide: () => Decision<number>;
  const finished: Array<{ status: number; upstreamWorkload: string | undefined }> = [];
  const reports: string[] = [];
  const handedOff: string[] = [];

  /** An exchange over the app servers in `order` (one per try), retrying 5xx when `retry5xx`. */
  function exchange(
    order: number[],
    over: { perTryTimeoutMs?: number } = {},
    retry5xx = false,
  ): Exchange<number> {
    let i = 0;
    const tries = new Attempts<number>(
      {
        method: 'GET',
        retries:
          retry5xx || over.perTryTimeoutMs
            ? {
                attempts: order.length - 1,
                retryOn: retry5xx ? ['5xx'] : [],
                ...(over.perTryTimeoutMs ? { perTryTimeoutMs: over.perTryTimeoutMs } : {}),
                minRetriesPerSecond: 10,
                budgetPercent: 20,
              }
            : undefined,
        timeoutMs: 0,
        now: Date.now,
      },
      {
        pick() {
          const port = ports[order[i++]!];
          return port === undefined ? undefined : { target: port, key: `${port}` };
        },
        size: () => order.length,
        end: (_p, o) => reports.push(o ? JSON.stringify(o) : 'cancelled'),
      },
    );
    return {
      extraHeaders: 'weft-src-workload: frontend\r\n',
      strip: new Set(['weft-src-workload']),
      responseHeaders: '',
      delayMs: 0,
      service: 'web.shop',
      tries,
      upstream: {
        acquire: (port) =>
          pool.acquireWith(port, () => net.connect({ host: '127.0.0.1', port, noDelay: true })),
        established: (s) => !s.connecting,
        whenEstablished: (s, cb) => (s.connecting ? s.once('connect', cb) : cb()),
        release: (port, s) => pool.park(port, s),
        workload: (port) => `app-${port}`,
      },
      finish: (f) => finished.push({ status: f.status, upstreamWorkload: f.upstreamWorkload }),
    };
  }

  before(async () => {
    for (let n = 0; n < 3; n++) {
      const app = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const port = (app.address() as net.AddressInfo).port;
          seen.push({
            method: req.method!,
            url: req.url!,
            headers: req.headers,
            body: Buffer.concat(chunks).toString(),
            port,
          });
          if (req.url === '/slow') return void setTimeout(() => res.end('late'), 300);
          const status = req.url === '/fail' && n === 0 ? 503 : 200;
          res.writeHead(status, { 'weft-dst-workload': `app${n}`, connection: 'keep-alive' });
          res.end(`app${n} ${req.method} ${req.url} ${Buffer.concat(chunks).length}`);
        });
      });
      await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
      apps.push(app);
      ports.push((app.address() as net.AddressInfo).port);
    }
    front = net.createServer((s) =>
      serveConnection(s, Buffer.alloc(0), {
        maxHeaderBytes: 16 * 1024,
        idleTimeoutMs: 5000,
        headersTimeoutMs: 500,
        handoffWanted: () => false,
        handoff: (sock, buffered) => {
          handedOff.push(buffered.toString('latin1').split('\r\n', 1)[0]!);
          sock.end('HTTP/1.1 299 Handed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        },
        decide: () => decide(),
        onHead: () => {},
        draining: () => false,
        error: () => {},
      }),
    );
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    frontPort = (front.address() as net.AddressInfo).port;
  });
  after(() => {
    pool.close();
    front.close();
    for (const a of apps) {
      a.closeAllConnections();
      a.close();
    }
  });
  beforeEach(() => {
    seen.length = 0;
    finished.length = 0;
    reports.length = 0;
    handedOff.length = 0;
  });

  /** Sends raw bytes, returns what came back once `done(text)` or the connection closes. */
  function raw(bytes: string | string[], done: (t: string) => boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = net.connect(frontPort, '127.0.0.1');
      let got = '';
      const parts = Array.isArray(bytes) ? bytes : [bytes];
      s.on('connect', async () => {
        for (const p of parts) {
          s.write(p);
          await new Promise((r) => setTimeout(r, 20));
        }
      });
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (done(got)) {
          s.destroy();
          resolve(got);
        }
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
    });
  }
  const responses = (t: string) => t.split('HTTP/1.1 ').length - 1;

  it('forwards with sidecar metadata swapped and hop-by-hop headers dropped; a chunked body streams', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([1]) });
    const got = await raw(
      [
        'POST /up HTTP/1.1\r\nHost: web\r\nweft-src-workload: spoofed\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\ntransfer-encoding: chunked\r\n\r\n',
        '5\r\nhello\r\n',
        '6\r\n world\r\n0\r\n\r\n',
      ],
      (t) => t.includes('app1 POST /up 11'),
    );
    assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(got, /weft-dst-workload/i, 'the upstream workload header is read, not passed on');
    assert.equal(seen[0]!.body, 'hello world');
    assert.equal(seen[0]!.headers['weft-src-workload'], 'frontend');
    assert.equal(seen[0]!.headers['x-hop'], undefined);
    assert.equal(seen[0]!.headers.host, 'web');
    assert.deepEqual(finished, [{ status: 200, upstreamWorkload: 'app1' }]);
  });

  it('retries a 503 on the next endpoint for a request without a body', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([0, 1], {}, true) });
    const got = await raw('GET /fail HTTP/1.1\r\nHost: web\r\n\r\n', (t) => t.includes('app1 GET /fail'));
    assert.match(got, /^HTTP\/1\.1 200/);
    assert.deepEqual(
      seen.map((s) => s.port),
      [ports[0], ports[1]],
    );
    assert.deepEqual(reports, ['{"status":503}', '{"status":200}']);
  });

  it('resends a request whose body was sent, with the body kept (chunked, as received)', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([0, 1], {}, true) });
    const got = await raw(
      [
        'POST /fail HTTP/1.1\r\nHost: web\r\ntransfer-encoding: chunked\r\n\r\n',
        '3\r\nabc\r\n',
        '2\r\nde\r\n0\r\n\r\n',
      ],
      (t) => t.includes('app1 POST /fail 5'),
    );
    assert.match(got, /^HTTP\/1\.1 200/);
    assert.deepEqual(
      seen.map((s) => [s.port, s.body]),
      [
        [ports[0], 'abcde'],
        [ports[1], 'abcde'],
      ],
    );
  });

  it(`does not resend a request whose body sent was over ${REPLAY_LIMIT} bytes: the 503 goes to the client`, async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([0, 1], {}, true) });
    const size = REPLAY_LIMIT + 1;
    const got = await raw(
      `POST /fail HTTP/1.1\r\nHost: web\r\ncontent-length: ${size}\r\n\r\n${'x'.repeat(size)}`,
      (t) => t.includes(`app0 POST /fail ${size}`),
    );
    assert.match(got, /^HTTP\/1\.1 503/);
    assert.equal(seen.length, 1, 'sent once');
  });

  it('a per-try timeout without retries answers 504 naming it', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([2], { perTryTimeoutMs: 50 }) });
    const got = await raw(
      'GET /slow HTTP/1.1\r\nHost: web\r\n\r\n',
      (t) => t.includes('\r\n\r\n') && t.includes('\n'),
    );
    assert.match(got, /^HTTP\/1\.1 504 Gateway Timeout/);
    assert.match(got, /weft-error: WEFT_UPSTREAM_TIMEOUT/);
    assert.match(got, /per-try timeout of 50 ms/);
    assert.deepEqual(reports, ['{"failure":"timeout","stale":false}']);
  });

  it('answers pipelined requests in order on one connection', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([1]) });
    const got = await raw(
      'GET /a HTTP/1.1\r\nHost: web\r\n\r\nGET /b HTTP/1.1\r\nHost: web\r\n\r\n',
      (t) => responses(t) === 2 && t.includes('/b 0'),
    );
    assert.ok(got.indexOf('GET /a') < got.indexOf('GET /b'), got);
    assert.equal(finished.length, 2);
  });

  it('an answer of its own (429) drops the request body and the connection goes on', async () => {
    let n = 0;
    decide = () =>
      n++ === 0
        ? {
            kind: 'reply',
            status: 429,
            code: 'WEFT_RATE_LIMITED',
            message: 'rate limit of route web exceeded',
          }
        : { kind: 'forward', exchange: exchange([1]) };
    const got = await raw(
      'POST /x HTTP/1.1\r\nHost: web\r\ncontent-length: 4\r\n\r\nbodyGET /after HTTP/1.1\r\nHost: web\r\n\r\n',
      (t) => t.includes('app1 GET /after'),
    );
    assert.match(got, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
    assert.match(got, /weft-error: WEFT_RATE_LIMITED/);
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/after'],
      'the refused request never reached an app, its body was not taken for a request',
    );
  });

  it('no endpoint left: 503 WEFT_NO_ENDPOINTS', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([]) });
    const got = await raw('GET / HTTP/1.1\r\nHost: web\r\n\r\n', (t) => t.includes('ready endpoints'));
    assert.match(got, /^HTTP\/1\.1 503/);
    assert.match(got, /weft-error: WEFT_NO_ENDPOINTS/);
  });

  it('hands upgrades and HTTP/1.0 over with the bytes already read', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([1]) });
    await raw('GET /ws HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', (t) =>
      t.includes('299'),
    );
    await raw('GET /old HTTP/1.0\r\n\r\n', (t) => t.includes('299'));
    assert.deepEqual(handedOff, ['GET /ws HTTP/1.1', 'GET /old HTTP/1.0']);
    assert.equal(seen.length, 0);
  });

  it('a client slow to send a head gets 408 on every request of a connection, not only the first', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([1]) });
    // The first request is whole; the second stops in the middle of its head.
    const s = net.connect(frontPort, '127.0.0.1');
    let got = '';
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    s.on('data', (d) => {
      got += d.toString('latin1');
    });
    s.on('error', () => {});
    s.write('GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTT');
    // Without a timeout the connection would stay open: the test gives up after 8 s.
    const giveUp = setTimeout(() => s.destroy(), 8000);
    await closed;
    clearTimeout(giveUp);
    assert.match(got, /app\d GET \/a 0/, 'the first request is answered');
    assert.match(got, /HTTP\/1\.1 408 /, `the second one times out: ${JSON.stringify(got)}`);
  });

  it('refuses malformed heads (400) and oversized ones (431)', async () => {
    decide = () => ({ kind: 'forward', exchange: exchange([1]) });
    assert.match(await raw('BAD\r\n\r\n', () => false), /^HTTP\/1\.1 400/);
    assert.match(
      await raw(`GET / HTTP/1.1\r\nx: ${'a'.repeat(17 * 1024)}\r\n\r\n`, () => false),
      /^HTTP\/1\.1 431/,
    );
  });
});
