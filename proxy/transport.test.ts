// Transport's pools across config changes (proxy/transport.ts).
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Transport } from './transport.ts';

describe('Transport.retain', () => {
  let server: http2.Http2Server;
  let port = 0;
  before(async () => {
    server = http2.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  const get = (s: http2.ClientHttp2Session) =>
    new Promise<number>((resolve, reject) => {
      const st = s.request({ ':path': '/' });
      st.on('response', (h) => resolve(Number(h[':status'])));
      st.on('error', reject);
      st.resume();
      st.end();
    });

  it("keeps the local app's HTTP/2 session across a config change (closing it failed the gRPC calls in flight with ERR_HTTP2_GOAWAY_SESSION on every change)", async () => {
    const t = new Transport({ maxConnectionsPerEndpoint: 8, idleTimeoutMs: 10_000 });
    const app = { host: '127.0.0.1', port, meshed: false };
    const s1 = t.session(app);
    assert.equal(await get(s1), 200);
    // A new config that lists other endpoints only: the local app is never a Service endpoint.
    t.retain(new Set(['10.0.0.9:8080']), '127.0.0.1');
    const s2 = t.session(app);
    assert.equal(s2, s1, 'the same session serves the next call');
    assert.equal(s1.closed, false);
    assert.equal(await get(s2), 200);
    t.close();
  });

  it('drops the sessions of endpoints the config no longer lists', async () => {
    const t = new Transport({ maxConnectionsPerEndpoint: 8, idleTimeoutMs: 10_000 });
    const gone = { host: '127.0.0.1', port, meshed: false };
    const s1 = t.session(gone);
    assert.equal(await get(s1), 200);
    t.retain(new Set(['10.0.0.9:8080']), '10.0.0.1');
    assert.equal(s1.closed, true);
    assert.notEqual(t.session(gone), s1);
    t.close();
  });
});
