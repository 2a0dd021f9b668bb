// weftctl inject: the webhook's injector on a YAML stream, offline. Golden files hold the
// YAML and the skip reasons (WEFT_UPDATE_GOLDEN=1 refreshes them).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as yaml from 'js-yaml';
import { type MeshSpec, PROXY } from '../api/index.ts';
import { applyPatch, injectPod } from '../webhook/index.ts';
import { assertGolden } from '../webhook/testdata/golden.ts';
import { injectYaml } from './inject.ts';
import { runWeftctl } from './main.ts';

const input = join(import.meta.dirname, 'testdata', 'inject-input.yaml');
const meshFile = join(import.meta.dirname, '..', 'config', 'samples', 'mesh.yaml');

const run = (...args: string[]) => runWeftctl(args);

test('inject: every workload kind of a stream gets the sidecar; the reasons for the others on stderr; exit 3 for the refused one', async () => {
  const r = await run('inject', '-f', input, '--mesh-file', meshFile);
  assertGolden('weftctl-inject.yaml', r.out);
  assertGolden('weftctl-inject.stderr', r.err);
  assert.equal(r.code, 3, 'a pod the webhook would refuse makes the exit code 3');
  const docs = yaml.loadAll(r.out) as { kind: string; metadata?: { name: string } }[];
  assert.deepEqual(
    docs.map((d) => d.kind),
    ['Service', 'Deployment', 'StatefulSet', 'DaemonSet', 'CronJob', 'List', 'Pod', 'Pod', 'Pod'],
  );
});

test('inject: the Deployment template is exactly what the webhook makes of its pod', async () => {
  const r = await run('inject', '-f', input, '--mesh-file', meshFile);
  const dep = (yaml.loadAll(r.out) as { kind: string; spec: { template: object } }[]).find(
    (d) => d.kind === 'Deployment',
  )!;
  const original = (
    yaml.loadAll(readFileSync(input, 'utf8')) as { kind: string; spec: { template: object } }[]
  ).find((d) => d.kind === 'Deployment')!;
  const mesh = (yaml.load(readFileSync(meshFile, 'utf8')) as { spec: MeshSpec }).spec;
  const pod = structuredClone(original.spec.template) as {
    metadata: { annotations?: Record<string, string> };
  };
  pod.metadata.annotations = { 'weft.dev/inject': 'enabled' };
  const webhook = injectPod(pod as never, { name: 'shop' }, mesh, { meshNamespace: 'weft-system' });
  assert.equal(webhook.action, 'inject');
  assert.deepEqual(dep.spec.template, applyPatch(pod, webhook.patch));
  const init = (dep.spec.template as unknown as { spec: { initContainers: { name: string }[] } }).spec
    .initContainers;
  assert.deepEqual(
    init.map((c) => c.name),
    [PROXY.initContainerName, PROXY.containerName],
  );
});

test('inject is idempotent: its own output comes back unchanged, every workload reported unchanged', async () => {
  const first = await run('inject', '-f', input, '--mesh-file', meshFile);
  const dir = mkdtempSync(join(tmpdir(), 'weftctl-inject-'));
  try {
    writeFileSync(join(dir, 'a.yaml'), first.out);
    writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
    const again = await run('inject', '-f', dir, '--mesh-file', meshFile);
    assert.equal(again.out, first.out);
    assert.doesNotMatch(again.err, /: injected/);
    assert.match(again.err, /Deployment shop\/web: unchanged: the pod already has the Weft proxy/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('inject: a document that is not YAML names its source', () => {
  assert.throws(
    () =>
      injectYaml(
        'a: [',
        { mesh: undefined, defaultNamespace: 'x', meshNamespace: 'weft-system' },
        'broken.yaml',
      ),
    /broken\.yaml: not valid YAML/,
  );
});

test('inject --mesh-file without a Mesh in it says so', async () => {
  await assert.rejects(
    run('inject', '-f', input, '--mesh-file', input),
    /--mesh-file .*: no document of kind Mesh/,
  );
});
