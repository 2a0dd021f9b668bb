// `weftctl dashboard` in headless Chromium against a real kube-apiserver (no kubelet, so no
// proxies and no metrics): the page shows its progress while it loads, then every resource with
// its status, each TrafficSplit's configured weights (no traffic observed) and an empty graph.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { installCrds, repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { type OpenDashboard, openDashboard } from '../support/dashboard.ts';

let cluster: TestCluster;
let dash: OpenDashboard | undefined;
before(async () => {
  cluster = await startTestCluster();
  await installCrds(cluster);
  cluster.kubectl(
    'apply',
    '--server-side',
    '--field-manager=weft-test',
    '-k',
    join(repoRoot, 'config', 'samples'),
  );
});
after(async () => {
  await dash?.close();
  await cluster?.stop();
});

test('dashboard: progress while it loads, then resources with their status and the splits configured weights', async () => {
  dash = await openDashboard(cluster.kubeconfigPath, ['--window', '2s']);
  const { page } = dash;
  // The two scrapes are a window apart: the page says what it waits for.
  await page.locator('#progress-text', { hasText: /waiting 2s for the second scrape/ }).waitFor();
  await page.locator('body[data-loaded="true"]').waitFor();
  const resources = await page
    .locator('#status tbody tr')
    .evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
  assert.deepEqual(resources.map((r) => `${r[0]}/${r[2]} ${r[3]} ${r[4]}`).sort(), [
    'AuthorizationPolicy/deny-admin Unknown (not reconciled yet) NotReconciled',
    'AuthorizationPolicy/reviews-readers Unknown (not reconciled yet) NotReconciled',
    'Mesh/default Unknown (not reconciled yet) NotReconciled',
    'TrafficSplit/reviews-beta Unknown (not reconciled yet) NotReconciled',
    'TrafficSplit/reviews-canary Unknown (not reconciled yet) NotReconciled',
  ]);
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
