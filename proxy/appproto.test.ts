import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, it } from 'node:test';
import { AppProtocols, declaredForPod, declaredHttp, probeHttp2 } from './appproto.ts';
import { endpoint, proxyConfig, service } from './testdata.ts';

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

describe('the HTTP version of the local app', () => {
  it('is declared by appProtocol first, then by the port name as Istio reads it', () => {
    assert.equal(declaredHttp({ name: 'web', appProtocol: 'kubernetes.io/h2c' }), 'h2');
    assert.equal(declaredHttp({ name: 'grpc-api', appProtocol: 'http' }), 'http1');
    assert.equal(declaredHttp({ name: 'grpc-api' }), 'h2');
    assert.equal(declaredHttp({ name: 'http2' }), 'h2');
    assert.equal(declaredHttp({ name: 'http-web' }), 'http1');
    assert.equal(declaredHttp({ name: 'web' }), undefined);
    assert.equal(declaredHttp({ name: 'http', appProtocol: 'mysql' }), undefined, 'not HTTP at all');
  });

  it("is what the Services selecting the pod declare for the pod's port", () => {
    const grpc = {
      ...service('api', 'shop', '10.96.0.30', 9090, [
        endpoint('10.244.0.5', 50051, { ports: { grpc: 50051 } }),
      ]),
    };
    grpc.ports = [{ name: 'grpc', port: 9090, protocol: 'TCP' }];
    const config = proxyConfig('shop', [
      grpc,
      service('web', 'shop', '10.96.0.10', 80, [endpoint('10.244.0.5', 8080)]),
    ]);
    assert.equal(declaredForPod(config, '10.244.0.5', 50051), 'h2');
    assert.equal(declaredForPod(config, '10.244.0.5', 8080), 'http1', 'the port is named http');
    assert.equal(declaredForPod(config, '10.244.0.5', 9999), undefined, 'no Service names this port');
    assert.equal(declaredForPod(config, '10.244.0.6', 50051), undefined, 'another pod');
  });

  it('is learnt by sending the HTTP/2 preface: an HTTP/2 server answers SETTINGS, an HTTP/1.1 one does not', async () => {
    const h1 = http.createServer((_q, s) => s.end());
    const h2 = http2.createServer();
    const silent = net.createServer(() => {});
    try {
      assert.equal(await probeHttp2('127.0.0.1', await listen(h1), 2000), 'http1');
      assert.equal(await probeHttp2('127.0.0.1', await listen(h2), 2000), 'h2');
      assert.equal(
        await probeHttp2('127.0.0.1', await listen(silent), 200),
        'http1',
        'no answer: not HTTP/2',
      );
    } finally {
      h1.close();
      h2.close();
      silent.close();
    }
  });

  it('an unreachable app is probed again next time; a declared protocol is never probed', async () => {
    const srv = net.createServer();
    const port = await listen(srv);
    await new Promise<void>((r) => srv.close(() => r()));
    const known = new AppProtocols('127.0.0.1', 500);
    const declared = service('api', 'shop', '10.96.0.30', 9090, [
      endpoint('10.244.0.5', port, { ports: { api: port } }),
    ]);
    declared.ports = [{ name: 'api', port: 9090, protocol: 'TCP', appProtocol: 'grpc' }];
    const config = proxyConfig('shop', [declared]);
    assert.equal(await known.of(config, '10.244.0.5', port), 'h2', 'declared: no probe needed');
    assert.equal(
      await known.of(config, '10.244.0.6', port),
      undefined,
      'another pod: probed, nothing listens',
    );
    const h2 = http2.createServer();
    await new Promise<void>((r) => h2.listen(port, '127.0.0.1', () => r()));
    try {
      assert.equal(await known.of(undefined, '10.244.0.6', port), 'h2', 'probed again once the app listens');
    } finally {
      h2.close();
    }
  });
});
