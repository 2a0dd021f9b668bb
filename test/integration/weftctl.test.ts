// weftctl against a real kube-apiserver: check reports each named check with a hint for
// what fails, and status lists the resources the operator has not reported on; the dashboard in
// headless Chromium (no kubelet, so no proxies and no metrics) shows its progress while it
// loads, then every resource with its status, each split's configured weights, an empty graph.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import {
  installCrds,
  repoRoot,
  sampleObjects,
  startTestCluster,
  type TestCluster,
} from '../support/cluster.ts';
import { type OpenDashboard, openDashboard } from '../support/dashboard.ts';

const run = promisify(execFile);
let cluster: TestCluster;
let dash: OpenDashboard | undefined;
/** "Kind/name" of every sample (config/samples), sorted: what status and the dashboard list. */
const samples = sampleObjects()
  .map((o) => `${o.kind}/${o.metadata.name}`)
  .sort();
before(async () => {
  cluster = await startTestCluster();
});
after(async () => {
  await dash?.close();
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
  assert.deepEqual(rows.map((x) => `${x.kind}/${x.name}`).sort(), samples);
  assert.ok(rows.every((x) => x.reason === 'NotReconciled'));
});

test('dashboard (after the samples): progress while it loads, then resources with their status and the splits configured weights', async () => {
  dash = await openDashboard(cluster.kubeconfigPath, ['--window', '2s']);
  const { page } = dash;
  // The two scrapes are a window apart: the page says what it waits for.
  await page.locator('#progress-text', { hasText: /waiting 2s for the second scrape/ }).waitFor();
  await page.locator('body[data-loaded="true"]').waitFor();
  const resources = await page
    .locator('#status tbody tr')
    .evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
  assert.deepEqual(
    resources.map((r) => `${r[0]}/${r[2]} ${r[3]} ${r[4]}`).sort(),
    samples.map((s) => `${s} Unknown (not reconciled yet) NotReconciled`),
  );
  const canary = page.locator('[data-split="default/reviews-canary"]');
  assert.equal(
    await canary.locator('[data-backend="reviews-v1"][data-kind="configured"]').textContent(),
    '90.0% (w 90)',
  );
  assert.equal(
    await canary.locator('[data-backend="reviews-v2"][data-kind="observed"]').textContent(),
    'no traffic',
  );
  assert.equal(await page.locator('#graph').textContent(), 'no meshed workloads');
  assert.equal(await page.locator('#authz tbody').textContent(), 'no decisions yet');
});
