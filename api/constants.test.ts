// How the sidecar's Node process is started: the injector puts PROXY_NODE_FLAGS in NODE_OPTIONS,
// which refuses most V8 flags (the container would not start); `weft proxy` sets PROXY_V8_FLAGS
// itself, and V8 must know them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { PROXY_NODE_FLAGS, PROXY_V8_FLAGS } from './constants.ts';

const node = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, args, { env: { ...process.env, ...env }, encoding: 'utf8' });

describe('the sidecar node flags', () => {
  it('PROXY_NODE_FLAGS are accepted in NODE_OPTIONS, as the injector sets them', () => {
    const r = node(['-e', 'process.stdout.write("ok")'], { NODE_OPTIONS: PROXY_NODE_FLAGS.join(' ') });
    assert.equal(r.stderr, '');
    assert.equal(r.status, 0);
    assert.equal(r.stdout, 'ok');
  });

  it('PROXY_V8_FLAGS are V8 flags that NODE_OPTIONS refuses (hence set by the proxy itself)', () => {
    assert.ok(PROXY_V8_FLAGS.length > 0);
    for (const f of PROXY_V8_FLAGS) {
      // On the command line V8 takes it (an unknown flag fails node at start).
      const ok = node([f, '-e', 'process.stdout.write("ok")']);
      assert.equal(ok.status, 0, `${f}: ${ok.stderr}`);
      assert.equal(ok.stdout, 'ok');
      const refused = node(['-e', ''], { NODE_OPTIONS: f });
      assert.notEqual(refused.status, 0, `${f} is accepted in NODE_OPTIONS: put it in PROXY_NODE_FLAGS`);
      assert.match(refused.stderr, /not allowed in NODE_OPTIONS/);
    }
  });
});
