// The steady traffic of the fault suite (hack/lib/faults.ts) on loopback: the demo server's gRPC
// and TCP answers, the demo client's line in each protocol as the harness reads it (`answerOf`),
// a call that gets no answer within the timeout named as one, and `tally`'s per-protocol counts.
// Through real sidecars: test/netns/traffic.test.ts.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { answeredBy, answerOf, type Protocol, protocolsFromEnv, tally } from './faults.ts';

const APPS = join(import.meta.dirname, '..', 'demo-apps');

/** A port free on loopback a moment ago. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Runs a demo app to its end: exit code, stdout lines, stderr. */
async function run(app: string, args: string[], env: Record<string, string>) {
  const p = spawn(process.execPath, [join(APPS, app), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  createInterface({ input: p.stdout }).on('line', (l) => lines.push(l));
  p.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((r) => p.once('exit', r));
  return { code, lines, stderr };
}

describe('the demo server and client of the fault suite, each protocol, on loopback', {
  timeout: 60_000,
}, () => {
  let server: ChildProcess;
  const ports = { http: 0, grpc: 0, tcp: 0 };
  const urls = () => ({
    http: `http://127.0.0.1:${ports.http}/`,
    grpc: `http://127.0.0.1:${ports.grpc}`,
    tcp: `tcp://127.0.0.1:${ports.tcp}`,
  });
  const closers: (() => void)[] = [];

  before(async () => {
    for (const k of ['http', 'grpc', 'tcp'] as const) ports[k] = await freePort();
    server = spawn(process.execPath, [join(APPS, 'server.ts')], {
      env: {
        ...process.env,
        PORT: String(ports.http),
        GRPC_PORT: String(ports.grpc),
        TCP_PORT: String(ports.tcp),
        SERVICE_NAME: 'echo',
        POD_NAME: 'echo-abc',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let listening = 0;
    await new Promise<void>((resolve, reject) => {
      server.once('exit', (c) => reject(new Error(`the demo server exited (${c})`)));
      createInterface({ input: server.stdout! }).on('line', (l) => {
        if (l.includes('listening on') && ++listening === 3) resolve();
      });
    });
  });
  after(() => {
    server?.kill('SIGKILL');
    for (const c of closers) c();
  });

  it('gRPC: /weft.demo.Echo/Echo answers the message {service, version, pod}, grpc-status 0 in the trailers; another method 12', async () => {
    const session = http2.connect(urls().grpc);
    try {
      const call = (path: string) =>
        new Promise<{ head: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }>(
          (resolve, reject) => {
            const req = session.request({
              ':method': 'POST',
              ':path': path,
              'content-type': 'application/grpc',
            });
            let head: http2.IncomingHttpHeaders = {};
            let trailers: http2.IncomingHttpHeaders = {};
            const body: Buffer[] = [];
            req.on('response', (h) => {
              head = h;
            });
            req.on('trailers', (t) => {
              trailers = t;
            });
            req.on('data', (d: Buffer) => body.push(d));
            req.on('error', reject);
            req.on('close', () => resolve({ head, trailers, body: Buffer.concat(body) }));
            req.end(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0]));
          },
        );
      const ok = await call('/weft.demo.Echo/Echo');
      assert.equal(ok.head[':status'], 200);
      assert.equal(ok.head['content-type'], 'application/grpc');
      assert.equal(ok.head['x-served-by'], 'echo-abc');
      assert.equal(ok.trailers['grpc-status'], '0');
      // 5-byte prefix, then fields 1, 2, 3 as protobuf strings.
      const msg = Buffer.concat([
        Buffer.from([0x0a, 4]),
        Buffer.from('echo'),
        Buffer.from([0x12, 2]),
        Buffer.from('v1'),
        Buffer.from([0x1a, 8]),
        Buffer.from('echo-abc'),
      ]);
      assert.deepEqual(ok.body, Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]));
      const other = await call('/weft.demo.Echo/Other');
      assert.equal(other.head['grpc-status'], '12');
    } finally {
      session.close();
    }
  });

  it('TCP: a line back for each line sent, naming the pod', async () => {
    const s = net.connect(ports.tcp, '127.0.0.1');
    let got = '';
    s.on('data', (d) => {
      got += d;
    });
    s.end('one\ntwo\n');
    await new Promise((r) => s.on('close', r));
    assert.equal(got, 'echo v1 echo-abc\necho v1 echo-abc\n');
  });

  for (const protocol of ['http', 'grpc', 'tcp'] as const)
    it(`the client over ${protocol}: one line per call, read by the harness as answered by the pod`, async () => {
      const r = await run('client.ts', [urls()[protocol]], {
        PROTOCOL: protocol,
        COUNT: '3',
        INTERVAL_MS: '10',
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.lines.length, 3, r.lines.join('\n'));
      for (const [i, line] of r.lines.entries()) {
        const a = answerOf(protocol, 0, line);
        assert.ok(a.ok, line);
        assert.equal(answeredBy(a), 'echo-abc');
        assert.match(line, new RegExp(`^${i + 1} (200|grpc-0|ok) echo v1 echo-abc \\d+ms$`));
      }
    });

  // Servers that accept and never answer: the call is a failure named as a timeout.
  it('no answer within TIMEOUT_MS over gRPC and TCP: a failure line naming the timeout', async () => {
    const h2 = http2.createServer();
    h2.on('stream', () => {});
    const tcp = net.createServer(() => {});
    const listen = (s: net.Server) =>
      new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as net.AddressInfo).port)));
    const [h2Port, tcpPort] = [await listen(h2), await listen(tcp)];
    closers.push(
      () => h2.close(),
      () => tcp.close(),
    );
    for (const [protocol, url] of [
      ['grpc', `http://127.0.0.1:${h2Port}`],
      ['tcp', `tcp://127.0.0.1:${tcpPort}`],
    ] as const) {
      const r = await run('client.ts', [url], {
        PROTOCOL: protocol,
        COUNT: '2',
        INTERVAL_MS: '10',
        TIMEOUT_MS: '300',
      });
      assert.deepEqual(r.lines, [
        '1 error timeout: no answer within 300 ms',
        '2 error timeout: no answer within 300 ms',
      ]);
      assert.ok(!answerOf(protocol, 0, r.lines[0]!).ok);
    }
  });

  it('nothing listening: a failure line naming ECONNREFUSED', async () => {
    const port = await freePort();
    for (const [protocol, url] of [
      ['grpc', `http://127.0.0.1:${port}`],
      ['tcp', `tcp://127.0.0.1:${port}`],
    ] as const) {
      const r = await run('client.ts', [url], { PROTOCOL: protocol, COUNT: '1' });
      assert.deepEqual(r.lines, ['1 error ECONNREFUSED']);
    }
  });

  it('a bad PROTOCOL, a gRPC URL without a port, a bad GRPC_PORT: refused, naming the setting and the fix', async () => {
    const bad = await run('client.ts', ['http://echo:8080/'], { PROTOCOL: 'udp' });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /PROTOCOL=udp: must be http, grpc or tcp/);
    const noPort = await run('client.ts', ['http://echo/'], { PROTOCOL: 'grpc' });
    assert.equal(noPort.code, 2);
    assert.match(noPort.stderr, /needs a URL with a host and a port, e\.g\. http:\/\/echo:9090/);
    const port = await run('server.ts', [], { PORT: String(await freePort()), GRPC_PORT: 'abc' });
    assert.equal(port.code, 2);
    assert.match(port.stderr, /GRPC_PORT=abc: must be a port number/);
  });
});

describe('tally: the answers of a fault window, per protocol and in all', () => {
  const a = (protocol: Protocol, at: number, line: string) => answerOf(protocol, at, line);
  it('expected failures by time (scale to zero: until a new pod is Ready and 5 s more), whatever the protocol', () => {
    const answers = [
      a('http', 1000, '1 503 WEFT_NO_ENDPOINTS echo.weft-demo has no ready endpoints 2ms'),
      a('tcp', 2000, '1 error ECONNRESET'),
      a('grpc', 6500, '1 502 WEFT_UPSTREAM_CONNECT local app: ECONNREFUSED 3ms'),
      a('http', 9000, '2 503 WEFT_NO_ENDPOINTS echo.weft-demo has no ready endpoints 2ms'),
    ];
    const readyAt = 1500;
    const t = tally(answers, 0, 10_000, (x) => x.at <= readyAt + 5000);
    assert.equal(t.failed, 4);
    // The one at 9 s (7.5 s after Ready) is past the data plane's 5 s: not expected.
    assert.equal(t.expectedFailed, 3);
  });
  it('counts each protocol, names each failure with its protocol, and the longest recovery per protocol', () => {
    const t = tally(
      [
        a('http', 500, '1 200 echo v1 echo-a 3ms'),
        a('http', 1000, '2 200 echo v1 echo-b 3ms'),
        a('grpc', 1000, '1 grpc-0 echo v1 echo-a 2ms'),
        a('grpc', 1500, '2 grpc-14 upstream connect error 4ms'),
        a('grpc', 2500, '3 grpc-0 echo v1 echo-b 2ms'),
        a('tcp', 1200, '1 error timeout: no answer within 2000 ms'),
        a('tcp', 3000, '2 error ECONNRESET'),
        a('tcp', 9000, '3 ok echo v1 echo-b 1ms'), // after t1: not counted
      ],
      1000,
      4000,
      /^grpc /,
    );
    assert.deepEqual(t.byProtocol, {
      http: { requests: 1, failed: 0, maxRecoverySeconds: 0 },
      grpc: { requests: 3, failed: 1, maxRecoverySeconds: 1 },
      tcp: { requests: 2, failed: 2, maxRecoverySeconds: 2.8 },
    });
    assert.equal(t.requests, 6);
    assert.equal(t.failed, 3);
    assert.equal(t.expectedFailed, 1);
    assert.equal(t.maxRecoverySeconds, 2.8);
    assert.deepEqual(t.failures, [
      '+0.2s tcp 1 error timeout: no answer within 2000 ms',
      '+0.5s grpc 2 grpc-14 upstream connect error 4ms',
      '+2.0s tcp 2 error ECONNRESET',
    ]);
    assert.deepEqual(t.failuresByReason, {
      'tcp error timeout: no answer within 2000 ms': 1,
      'grpc grpc-14 upstream connect error': 1,
      'tcp error ECONNRESET': 1,
    });
    assert.deepEqual(t.servedBy, ['echo-a', 'echo-b']);
  });
});

describe('protocolsFromEnv (WEFT_FAULTS_PROTOCOLS)', () => {
  it('all three by default, a chosen few, and a wrong name refused naming it and the choices', () => {
    assert.deepEqual(protocolsFromEnv(''), ['http', 'grpc', 'tcp']);
    assert.deepEqual(protocolsFromEnv('http, tcp'), ['http', 'tcp']);
    assert.throws(
      () => protocolsFromEnv('http,h2'),
      /WEFT_FAULTS_PROTOCOLS=http,h2: "h2" is none of http, grpc, tcp/,
    );
  });
});
