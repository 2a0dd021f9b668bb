// Settings of the real node: every bad one fails before anything starts, naming the setting and
// the fix; `--node` / WEFT_NODE choose the node of `cluster:up`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeKind } from '../cluster.ts';
import { resolveOptions } from './index.ts';

describe('real node settings', () => {
  it('derives the gateway, the cluster DNS address and the defaults', () => {
    const o = resolveOptions({ dir: '/x' });
    assert.equal(o.bridge, 'weft0');
    assert.equal(o.podCIDR, '10.123.0.0/16');
    assert.equal(o.gateway, '10.123.0.1');
    assert.equal(o.dnsIP, '10.124.0.10');
    assert.equal(o.syncFrequency, '1m');
    assert.equal(o.maxPods, 110);
    assert.equal(resolveOptions({ dir: '/x', serviceCIDR: '10.50.8.0/24' }).dnsIP, '10.50.8.10');
  });

  for (const [opts, field, fix] of [
    [{ podCIDR: '10.123.0.0' }, 'podCIDR', /10\.123\.0\.0\/16/],
    [{ podCIDR: '10.123.0.1/16' }, 'podCIDR', /use 10\.123\.0\.0\/16/],
    [{ podCIDR: '10.123.0.0/28' }, 'podCIDR', /\/8 to \/24/],
    [{ serviceCIDR: '300.1.0.0/16' }, 'serviceCIDR', /like/],
    [{ serviceCIDR: '10.123.0.0/20' }, 'podCIDR', /disjoint/],
    [{ bridge: 'a-bridge-name-too-long' }, 'bridge', /1 to 15/],
    [{ syncFrequency: '5' }, 'syncFrequency', /5s/],
    [{ name: 'Weft_Node' }, 'name', /lowercase/],
    [{ maxPods: 0 }, 'maxPods', /1 to 1000/],
    [{ maxPods: 2.5 }, 'maxPods', /whole number/],
  ] as const) {
    it(`rejects ${JSON.stringify(opts)} naming ${field}`, () => {
      assert.throws(
        () => resolveOptions({ dir: '/x', ...opts }),
        (e: Error & { code?: string }) =>
          e.code === 'WEFT_NODE_SETTING' && e.message.startsWith(field) && fix.test(e.message),
      );
    });
  }

  it('cluster:up takes --node real|none, else WEFT_NODE, else real', () => {
    assert.equal(nodeKind([], {}), 'real');
    assert.equal(nodeKind([], { WEFT_NODE: 'none' }), 'none');
    assert.equal(nodeKind(['--node', 'real'], {}), 'real');
    assert.equal(nodeKind([], { WEFT_NODE: 'real' }), 'real');
    assert.equal(nodeKind(['--node', 'none'], { WEFT_NODE: 'real' }), 'none');
    assert.throws(() => nodeKind(['--node', 'kind'], {}), /--node \(or WEFT_NODE\): "kind".*real or none/);
  });
});
