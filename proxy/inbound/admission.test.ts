// Inbound admission as pure functions: the authorization request and the caller, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authzRequest, callerOf, namespaceOfSpiffe } from './admission.ts';

describe('inbound admission', () => {
  const mtls = { port: 8080, peer: 'spiffe://cluster.local/ns/shop/sa/frontend', sourceIp: '10.1.0.7' };
  const plain = { port: 8080, peer: undefined, sourceIp: undefined };

  it('builds one authorization request: the principal without its scheme, HTTP facts only for HTTP', () => {
    assert.deepEqual(authzRequest(mtls), {
      principal: 'cluster.local/ns/shop/sa/frontend',
      sourceIp: '10.1.0.7',
      port: 8080,
    });
    assert.deepEqual(
      authzRequest(plain, { method: 'GET', path: '/a', host: undefined, headers: { x: '1' } }),
      {
        principal: undefined,
        sourceIp: '',
        port: 8080,
        http: { method: 'GET', path: '/a', host: '', headers: { x: '1' } },
      },
    );
  });

  it('takes the caller namespace from the verified identity, the sidecar header only in plaintext', () => {
    const headers: Record<string, string> = { 'weft-src-workload': 'web', 'weft-src-namespace': 'spoofed' };
    assert.deepEqual(
      callerOf(mtls.peer, (n) => headers[n]),
      { workload: 'web', namespace: 'shop' },
    );
    assert.deepEqual(
      callerOf(undefined, (n) => headers[n]),
      { workload: 'web', namespace: 'spoofed' },
    );
    assert.deepEqual(
      callerOf(undefined, () => undefined),
      { workload: 'unknown', namespace: 'unknown' },
    );
    assert.equal(namespaceOfSpiffe('spiffe://td/ns/a/sa/b'), 'a');
    assert.equal(namespaceOfSpiffe('spiffe://td/x'), undefined);
  });
});
