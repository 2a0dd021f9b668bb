// weftctl against a real kube-apiserver: check reports each named check with a hint for
// what fails, and status lists the resources the operator has not reported on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { installCrds, repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';

const run = promisify(execFile);
let cluster: TestCluster;
before(async () => {
  cluster = await startTestCluster();
});
after(async () => {
  await cluster?.stop();
});

async function weftctl(...args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, [
      join(repoRoot, 'cli', 'main.ts'),
      '--kubeconfig',
      cluster.kubeconfigPath,
      ...args,
    ]);
    return { code: 0, stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, stdout: e.stdout };
  }
}

test('check: without the CRDs it fails and says how to install them', async () => {
  const r = await weftctl('check', '-o', 'json');
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout) as {
    success: boolean;
    results: { name: string; ok: boolean; hint?: string }[];
  };
  assert.equal(out.success, false);
  assert.equal(out.results.find((x) => x.name === 'can reach the Kubernetes API')?.ok, true);
  const crd = out.results.find((x) => x.name === 'trafficsplits.weft.dev is installed and Established')!;
  assert.equal(crd.ok, false);
  assert.match(crd.hint!, /kubectl apply --server-side -k crds/);
});

test('check and status after installing the CRDs and samples, before any operator has reported', async () => {
  await installCrds(cluster);
  cluster.kubectl(
    'apply',
    '--server-side',
    '--field-manager=weft-test',
    '-k',
    join(repoRoot, 'config', 'samples'),
  );
  const r = await weftctl('check');
  assert.match(r.stdout, /√ \[weft-api\] meshes\.weft\.dev is installed and Established/);
  assert.match(r.stdout, /√ \[weft-mesh\] the Mesh "default" exists/);
  assert.match(
    r.stdout,
    /× \[weft-mesh\] the Mesh is Ready: no Ready condition yet\n\s+hint: is the operator running\?/,
  );
  assert.equal(r.code, 1);

  const s = await weftctl('status', '-o', 'json');
  const rows = JSON.parse(s.stdout) as { kind: string; name: string; reason: string }[];
  assert.deepEqual(rows.map((x) => `${x.kind}/${x.name}`).sort(), [
    'AuthorizationPolicy/deny-admin',
    'AuthorizationPolicy/reviews-readers',
    'Mesh/default',
    'TrafficSplit/ratings-progressive',
    'TrafficSplit/reviews-beta',
    'TrafficSplit/reviews-canary',
  ]);
  assert.ok(rows.every((x) => x.reason === 'NotReconciled'));
});
