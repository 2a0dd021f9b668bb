// What loading the sidecar's code pulls in from Node itself. node:http2 and node:tls are loaded on
// first use, and node:https, node:cluster, node:perf_hooks (prom-client's index) never: together
// about 20 MB of RSS a plaintext HTTP/1.1 sidecar does not need (docs/proxy.md, Memory).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

const loaded = (code: string): string[] =>
  JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', code], {
      cwd: new URL('..', import.meta.url).pathname,
      encoding: 'utf8',
    }),
  ) as string[];

const LIST =
  "process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13))))";

test('loading the sidecar does not load tls, http2, https, cluster or perf_hooks', () => {
  const mods = loaded(`await import('./proxy/command.ts'); await import('./proxy/sidecar.ts'); ${LIST}`);
  assert.ok(mods.includes('http') && mods.includes('net'), `http and net are loaded: ${mods.join(' ')}`);
  for (const m of ['tls', 'http2', 'https', 'cluster', 'perf_hooks'])
    assert.ok(!mods.includes(m), `${m} is not loaded at start`);
});

test('http2 and tls load when first asked for', () => {
  const mods = loaded(`const b = await import('./proxy/builtins.ts'); b.http2(); b.tls(); ${LIST}`);
  assert.ok(mods.includes('http2') && mods.includes('tls'));
});

test('isTlsSocket tells TLS sockets from plain ones without loading tls', async () => {
  const { isTlsSocket } = await import('./builtins.ts');
  const net = await import('node:net');
  const tls = await import('node:tls');
  assert.equal(isTlsSocket(new net.Socket()), false);
  assert.equal(isTlsSocket(new tls.TLSSocket(new net.Socket())), true);
});
