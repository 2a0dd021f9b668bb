import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SimpleKubeConfig } from './kubeconfig.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-kc-'));
after(() => rmSync(dir, { recursive: true, force: true }));
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

test('weftctl and the webhook run an exec credential plugin: its token, again only once it expires', async () => {
  const calls = join(dir, 'exec-calls');
  // A relative command is relative to the kubeconfig (client-go's rule); env and args reach it.
  write(
    'plugin.sh',
    `#!/bin/sh
echo "$1 $PLUGIN_ENV" >> "${calls}"
n=$(wc -l < "${calls}")
case "$KUBERNETES_EXEC_INFO" in *'"interactive":false'*) ;; *) exit 3 ;; esac
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t'$n'","expirationTimestamp":"'"$EXPIRES"'"}}'
`,
  );
  chmodSync(join(dir, 'plugin.sh'), 0o755);
  const path = write(
    'exec-ok.yaml',
    `clusters: [{name: a, cluster: {server: "https://h:1"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: ./plugin.sh, args: [get-token], env: [{name: PLUGIN_ENV, value: yes}]}}}]
contexts: [{name: c, context: {cluster: a, user: u}}]
current-context: c
`,
  );
  const auth = async (kc: SimpleKubeConfig) => {
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    return (opts.headers as Record<string, string>).authorization;
  };
  process.env.EXPIRES = new Date(Date.now() + 3_600_000).toISOString();
  const kc = SimpleKubeConfig.fromFile(path, { exec: true });
  assert.equal(await auth(kc), 'Bearer t1');
  assert.equal(await auth(kc), 'Bearer t1', 'valid for an hour: not run again');
  process.env.EXPIRES = new Date(Date.now() + 30_000).toISOString();
  const soon = SimpleKubeConfig.fromFile(path, { exec: true });
  assert.equal(await auth(soon), 'Bearer t2');
  assert.equal(await auth(soon), 'Bearer t3', 'expiring within a minute: run again');
  assert.equal(readFileSync(calls, 'utf8'), 'get-token yes\n'.repeat(3));
  delete process.env.EXPIRES;
  // The operator does not run plugins: the same file is refused.
  assert.throws(() => SimpleKubeConfig.fromFile(path), /exec plugin or auth provider/);
});

test('a failing exec plugin is an error naming the plugin and what it printed', async () => {
  const path = write(
    'exec-bad.yaml',
    `clusters: [{name: a, cluster: {server: "https://h:1"}}]
users: [{name: u, user: {exec: {command: sh, args: ["-c", "echo no credentials here >&2; exit 1"]}}}]
contexts: [{name: c, context: {cluster: a, user: u}}]
current-context: c
`,
  );
  await assert.rejects(
    SimpleKubeConfig.fromFile(path, { exec: true }).applyToHTTPSOptions({}),
    /kubeconfig exec plugin sh failed: no credentials here/,
  );
});

test('in cluster: the ServiceAccount token is re-read on every request', async () => {
  const sa = mkdtempSync(join(dir, 'sa-'));
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
