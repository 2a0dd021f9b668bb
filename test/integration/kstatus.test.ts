// Weft's status as GitOps tools read it, on a real control plane with the operator in-process:
// the real kstatus library (hack/kstatus, what Flux's health checks run) and Argo CD's health
// scripts (config/argocd, under Lua 5.1) on the live objects, and `kubectl wait` on Ready for
// every kind. Healthy → Current; not yet observed or proxies still applying → InProgress;
// a Service missing or an invalid spec the webhook did not stop → Failed (Stalled), at once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { argoHealth, type Health, scriptOf } from '../../hack/argocd.ts';
import { type KStatus, kstatus, kstatusBinary } from '../../hack/lib/kstatus.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { createNamespaces, installCrds, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

const NS = 'gitops';
let cluster: TestCluster;
let client: KubeClient;
let op: OperatorHandle | undefined;

/** kstatus and Argo CD health of one live object (kind as kubectl names it). */
function health(kind: string, name: string, ns: string | undefined = NS): { k: KStatus; argo: Health } {
  const json = cluster.kubectl('get', kind, name, ...(ns ? ['-n', ns] : []), '-o', 'json');
  const obj = JSON.parse(json) as KubeObject & { apiVersion: string; kind: string };
  const group = obj.apiVersion.split('/')[0];
  return { k: kstatus(json)[0]!, argo: argoHealth(scriptOf(`${group}_${obj.kind}`), obj) };
}
const waitHealth = (what: string, kind: string, name: string, status: string, ns?: string) =>
  eventually(
    `${kind}/${name} ${what}`,
    async () => {
      const h = health(kind, name, ns);
      return h.k.status === status ? h : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );

const service = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: NS },
  spec: {
    selector: { app: name },
    ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }],
  },
});
const split = (name: string, backends: string[]) => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'TrafficSplit',
  metadata: { name, namespace: NS },
  spec: { service: 'web', backends: backends.map((service) => ({ service, weight: 50 })) },
});
const policy = (name: string, principals: string[]) => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: NS },
  spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals } }] }] },
});

before(async () => {
  kstatusBinary(); // built once, before the clocks below start
  cluster = await startTestCluster();
  await installCrds(cluster);
  client = new KubeClient(cluster.kc, 'weft-test');
  await createNamespaces(client, { 'weft-system': {}, [NS]: { 'weft.dev/inject': 'enabled' } });
  for (const name of ['web', 'web-v1', 'web-v2'])
    await client.create(RESOURCES.services, service(name) as unknown as KubeObject);
  await client.create(RESOURCES.meshes, {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'Mesh',
    metadata: { name: 'default' },
    spec: {},
  });
  await client.create(RESOURCES.trafficSplits, split('early', ['web-v1', 'web-v2']) as unknown as KubeObject);
});

after(async () => {
  await op?.stop();
  client?.close();
  await cluster?.stop();
});

describe('kstatus and Argo CD health of live Weft objects', () => {
  test('an object the operator has not looked at yet is InProgress, not Current', () => {
    // No operator runs yet: the CRD's status default says generation 1 is not observed.
    const h = health('trafficsplit', 'early');
    assert.equal(h.k.status, 'InProgress', h.k.message);
    assert.match(h.k.message, /latest observed generation is 0/);
    assert.equal(h.argo.status, 'Progressing');
  });

  test('healthy: Current, Argo CD Healthy, and kubectl wait --for=condition=Ready returns for every kind', async () => {
    op = await startOperator({
      kubeConfig: cluster.kc,
      namespace: 'weft-system',
      healthAddress: '127.0.0.1:0',
      metricsAddress: '127.0.0.1:0',
      // Nothing listens there: the fake pod's proxy below never reports a generation.
      proxyAddress: () => 'http://127.0.0.1:1',
    });
    await client.create(
      RESOURCES.authorizationPolicies,
      policy('readers', ['cluster.local/ns/gitops/sa/web']) as unknown as KubeObject,
    );
    for (const [kind, name, ns] of [
      ['trafficsplit', 'early', NS],
      ['authorizationpolicy', 'readers', NS],
      ['mesh', 'default', undefined],
    ] as const) {
      const h = await waitHealth('Current', kind, name, 'Current', ns);
      cluster.kubectl(
        'wait',
        '--for=condition=Ready',
        '--timeout=30s',
        `${kind}/${name}`,
        ...(ns ? ['-n', ns] : []),
      );
      assert.equal(h.argo.status, 'Healthy', `${kind}/${name}: ${h.argo.message}`);
    }
  });

  test('a TrafficSplit naming a Service that does not exist is Failed (Stalled) at once, Current once it is created', async () => {
    await client.create(
      RESOURCES.trafficSplits,
      split('broken', ['web-v1', 'web-v3']) as unknown as KubeObject,
    );
    const h = await waitHealth('Failed', 'trafficsplit', 'broken', 'Failed');
    assert.match(h.k.message, /Service\(s\) not found in namespace gitops: web-v3/);
    assert.deepEqual(h.argo, { status: 'Degraded', message: `ServiceNotFound: ${h.k.message}` });
    await client.create(RESOURCES.services, service('web-v3') as unknown as KubeObject);
    assert.equal((await waitHealth('Current', 'trafficsplit', 'broken', 'Current')).argo.status, 'Healthy');
  });

  test('an AuthorizationPolicy the webhook did not check (a spiffe:// principal) is Failed', async () => {
    await client.create(
      RESOURCES.authorizationPolicies,
      policy('bad', ['spiffe://cluster.local/ns/x/sa/y']) as unknown as KubeObject,
    );
    const h = await waitHealth('Failed', 'authorizationpolicy', 'bad', 'Failed');
    assert.match(h.k.message, /write principals without the spiffe:\/\/ scheme/);
    assert.equal(h.argo.status, 'Degraded');
  });

  test('proxies still applying a TrafficSplit: InProgress (Reconciling) while Ready is True', async () => {
    await client.create(RESOURCES.pods, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web-a', namespace: NS, labels: { app: 'web-v1' } },
      spec: {
        containers: [
          { name: 'app', image: 'app' },
          { name: 'weft-proxy', image: 'weft' },
        ],
      },
    });
    const h = await waitHealth('InProgress', 'trafficsplit', 'early', 'InProgress');
    assert.match(h.k.message, /0\/1 proxies applied generation/);
    assert.equal(h.argo.status, 'Progressing');
    // Ready stays True: the split is in the configuration; kstatus waits for the proxies too.
    cluster.kubectl('wait', '--for=condition=Ready', '--timeout=5s', 'trafficsplit/early', '-n', NS);
  });
});
