import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SimpleKubeConfig } from './kubeconfig.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-kc-'));
const write = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};

test('token kubeconfig: server, CA data and bearer token of the current context', async () => {
  const path = write(
    'token.yaml',
    `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://127.0.0.1:6443/", certificate-authority-data: ${Buffer.from('CA').toString('base64')}}
users:
- name: u
  user: {token: secret}
contexts:
- name: c
  context: {cluster: a, user: u}
current-context: c
`,
  );
  const kc = SimpleKubeConfig.fromFile(path);
  assert.deepEqual(kc.getCurrentCluster(), { server: 'https://127.0.0.1:6443' });
  const opts: https.RequestOptions = { headers: { accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  assert.equal(String(opts.ca), 'CA');
  assert.deepEqual(opts.headers, { accept: 'application/json', authorization: 'Bearer secret' });
});

test('client certificate files relative to the kubeconfig, and insecure-skip-tls-verify', async () => {
  write('crt.pem', 'CERT');
  write('key.pem', 'KEY');
  const path = write(
    'cert.yaml',
    `clusters: [{name: a, cluster: {server: "https://h:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {client-certificate: crt.pem, client-key: key.pem}}]
contexts: [{name: c, context: {cluster: a, user: u}}]
current-context: c
`,
  );
  const opts: https.RequestOptions = {};
  await SimpleKubeConfig.fromFile(path).applyToHTTPSOptions(opts);
  assert.equal(String(opts.cert), 'CERT');
  assert.equal(String(opts.key), 'KEY');
  assert.equal(opts.rejectUnauthorized, false);
});

test('exec plugins are refused with a message saying what to use instead', () => {
  const path = write(
    'exec.yaml',
    `clusters: [{name: a, cluster: {server: "https://h:1"}}]
users: [{name: u, user: {exec: {command: aws}}}]
contexts: [{name: c, context: {cluster: a, user: u}}]
current-context: c
`,
  );
  assert.throws(
    () => SimpleKubeConfig.fromFile(path),
    /exec plugin or auth provider.*give it a token or a client certificate/,
  );
});

test('in cluster: the ServiceAccount token is re-read on every request', async () => {
  const sa = mkdtempSync(join(tmpdir(), 'weft-sa-'));
  writeFileSync(join(sa, 'ca.crt'), 'CA');
  writeFileSync(join(sa, 'token'), 'one\n');
  const kc = SimpleKubeConfig.inCluster(
    { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' },
    sa,
  );
  assert.equal(kc.server, 'https://10.96.0.1:443');
  const a: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(a);
  writeFileSync(join(sa, 'token'), 'two\n');
  const b: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(b);
  assert.equal((a.headers as Record<string, string>).authorization, 'Bearer one');
  assert.equal((b.headers as Record<string, string>).authorization, 'Bearer two');
  assert.throws(() => SimpleKubeConfig.inCluster({}, sa), /pass --kubeconfig or set KUBECONFIG/);
});
