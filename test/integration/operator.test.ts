// The operator against a real control plane (etcd + kube-apiserver + kube-controller-manager):
// EndpointSlices come from Kubernetes' own controller, pod readiness is written by the test
// through the status subresource, and the operator runs in-process.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { AuthorizationPolicy, TrafficSplit } from '../../api/index.ts';
import type { ProxyConfig } from '../../api/proxyconfig.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { isConflict } from '../../kube/errors.ts';
import { decode } from '../../operator/distribution.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { installCrds, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

const NS = 'shop';
let cluster: TestCluster;
let client: KubeClient;
let op: OperatorHandle | undefined;

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000) =>
  eventually(what, probe, { timeoutMs, intervalMs: 100 });

async function configMaps(ns: string) {
  const list = await client.list<
    KubeObject & { data?: Record<string, string>; binaryData?: Record<string, string> }
  >(RESOURCES.configMaps, { namespace: ns, labelSelector: 'app.kubernetes.io/managed-by=weft' });
  return list.items;
}
async function proxyConfig(ns = NS): Promise<ProxyConfig | undefined> {
  const cms = await configMaps(ns);
  if (cms.length === 0) return undefined;
  return decode(new Map(cms.map((c) => [c.metadata.name, c])));
}
const waitConfig = (what: string, pred: (c: ProxyConfig) => boolean) =>
  waitFor(what, async () => {
    const c = await proxyConfig();
    return c && pred(c) ? c : undefined;
  });

function service(name: string, selector: Record<string, string>) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NS },
    spec: { selector, ports: [{ name: 'http', port: 9080, targetPort: 8080, appProtocol: 'http' }] },
  };
}

let podSeq = 0;
const podIPs = new Map<string, string>();
async function startPod(name: string, labels: Record<string, string>, sa: string) {
  await client.create(RESOURCES.pods, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels },
    spec: {
      nodeName: 'node-1',
      serviceAccountName: sa,
      automountServiceAccountToken: false,
      containers: [
        { name: 'app', image: 'app', ports: [{ name: 'http', containerPort: 8080 }] },
        { name: 'weft-proxy', image: 'weft' },
      ],
    },
  });
  const ip = `10.244.0.${++podSeq}`;
  podIPs.set(name, ip);
  await setReady(name, true);
  return ip;
}
/** Applies the pod's whole status (server-side apply drops fields a manager stops sending). */
async function setReady(name: string, ready: boolean) {
  const ip = podIPs.get(name)!;
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const status: Record<string, unknown> = {
    phase: 'Running',
    conditions: [
      { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now },
      { type: 'ContainersReady', status: ready ? 'True' : 'False', lastTransitionTime: now },
    ],
  };
  Object.assign(status, { podIP: ip, podIPs: [{ ip }], hostIP: '127.0.0.1' });
  await client.apply(
    RESOURCES.pods,
    { metadata: { name, namespace: NS }, status },
    { subresource: 'status', fieldManager: 'weft-test' },
  );
}

const split = (name: string, spec: TrafficSplit['spec']) => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'TrafficSplit',
  metadata: { name, namespace: NS },
  spec,
});
const getSplit = (name: string) => client.get<KubeObject & TrafficSplit>(RESOURCES.trafficSplits, name, NS);
const cond = (o: { status?: { conditions?: { type: string }[] } }, type: string) =>
  o.status?.conditions?.find((c) => c.type === type) as
    | { status: string; reason: string; message: string; observedGeneration?: number }
    | undefined;

before(async () => {
  cluster = await startTestCluster({ controllerManager: true });
  await installCrds(cluster);
  client = new KubeClient(cluster.kc, 'weft-test');
  for (const [name, labels] of [
    ['weft-system', {}],
    [NS, { 'weft.dev/inject': 'enabled' }],
    ['web', { 'weft.dev/inject': 'enabled' }],
  ] as const) {
    await client.create(RESOURCES.namespaces, {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, labels },
    });
  }
  await client.create(RESOURCES.nodes, {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'zone-a' } },
  });
  await client.create(
    { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'reviews', namespace: NS },
    },
  );
  op = await startOperator({
    kubeConfig: cluster.kc,
    namespace: 'weft-system',
    healthAddress: '127.0.0.1:0',
    metricsAddress: '127.0.0.1:0',
  });
});

after(async () => {
  await op?.stop();
  client?.close();
  await cluster?.stop();
});

describe('operator on a real control plane', () => {
  let ipA = '';

  test('a Service + TrafficSplit + AuthorizationPolicy produce the expected ProxyConfig', async () => {
    for (const [name, sel] of [
      ['reviews', { app: 'reviews' }],
      ['reviews-v1', { app: 'reviews', version: 'v1' }],
      ['reviews-v2', { app: 'reviews', version: 'v2' }],
    ] as const)
      await client.create(RESOURCES.services, service(name, sel) as unknown as KubeObject);
    ipA = await startPod('reviews-v1-a', { app: 'reviews', version: 'v1' }, 'reviews');
    await client.create(
      RESOURCES.trafficSplits,
      split('canary', {
        service: 'reviews',
        backends: [
          { service: 'reviews-v1', weight: 90 },
          { service: 'reviews-v2', weight: 10 },
        ],
        timeout: '5s',
      }) as unknown as KubeObject,
    );
    await client.create(RESOURCES.authorizationPolicies, {
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'readers', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'reviews' } },
        action: 'ALLOW',
        rules: [{ from: [{ source: { serviceAccounts: ['web/frontend'] } }] }],
      } satisfies AuthorizationPolicy['spec'],
    });

    const cfg = await waitConfig('reviews-v1 endpoint, route and policy', (c) => {
      const v1 = c.services.find((s) => s.id === 'shop/reviews-v1');
      return (
        !!v1?.endpoints.some((e) => e.address === ipA) &&
        c.routes.length === 1 &&
        c.authorizationPolicies.length === 1
      );
    });
    const v1 = cfg.services.find((s) => s.id === 'shop/reviews-v1')!;
    assert.match(v1.clusterIPs[0]!, /^10\.96\./, 'the ClusterIP the apiserver allocated');
    assert.deepEqual(v1.ports, [{ appProtocol: 'http', name: 'http', port: 9080, protocol: 'TCP' }]);
    assert.deepEqual(v1.endpoints, [
      {
        address: ipA,
        identity: 'spiffe://cluster.local/ns/shop/sa/reviews',
        meshed: true,
        pod: 'reviews-v1-a',
        ports: { http: 8080 },
        ready: true,
        serving: true,
        terminating: false,
        zone: 'zone-a',
      },
    ]);
    assert.deepEqual(
      cfg.services.find((s) => s.id === 'shop/reviews')!.endpoints.map((e) => e.address),
      [ipA],
      'the root Service selects the pod too',
    );
    assert.deepEqual(cfg.routes, [
      {
        backends: [
          { service: 'shop/reviews-v1', weight: 90 },
          { service: 'shop/reviews-v2', weight: 10 },
        ],
        matches: [],
        name: 'shop/canary',
        service: 'shop/reviews',
        timeoutMs: 5000,
      },
    ]);
    assert.deepEqual(cfg.authorizationPolicies, [
      {
        action: 'ALLOW',
        name: 'shop/readers',
        namespace: 'shop',
        rules: [{ from: [{ source: { serviceAccounts: ['web/frontend'] } }] }],
        selector: { matchLabels: { app: 'reviews' } },
      },
    ]);
    assert.ok(!cfg.services.some((s) => s.id === 'default/kubernetes'));

    // The caller namespace gets the routes but not shop's policies.
    const web = await waitFor('web config', () => proxyConfig('web'));
    assert.equal(web.routes.length, 1);
    assert.equal(web.authorizationPolicies.length, 0);

    // Status on the CRs.
    const s = await waitFor('canary Ready', async () => {
      const o = await getSplit('canary');
      return cond(o, 'Ready')?.status === 'True' ? o : undefined;
    });
    assert.equal(cond(s, 'Accepted')?.status, 'True');
    assert.equal(cond(s, 'ResolvedRefs')?.status, 'True');
    assert.equal(s.status?.observedGeneration, 1);
    const p = await waitFor('policy Ready', async () => {
      const o = await client.get<KubeObject & AuthorizationPolicy>(
        RESOURCES.authorizationPolicies,
        'readers',
        NS,
      );
      return cond(o, 'Ready')?.status === 'True' ? o : undefined;
    });
    assert.equal(cond(p, 'Accepted')?.status, 'True');
  });

  test('endpoint changes update the config: a new ready pod, then a pod turning unready', async () => {
    const ipB = await startPod('reviews-v1-b', { app: 'reviews', version: 'v1' }, 'default');
    await waitConfig('second endpoint', (c) =>
      c.services
        .find((s) => s.id === 'shop/reviews-v1')!
        .endpoints.some(
          (e) => e.address === ipB && e.ready && e.identity === 'spiffe://cluster.local/ns/shop/sa/default',
        ),
    );
    await setReady('reviews-v1-a', false);
    const cfg = await waitConfig('first endpoint unready', (c) =>
      c.services
        .find((s) => s.id === 'shop/reviews-v1')!
        .endpoints.some((e) => e.address === ipA && !e.ready),
    );
    assert.deepEqual(
      cfg.services.find((s) => s.id === 'shop/reviews-v1')!.endpoints.map((e) => [e.address, e.ready]),
      [
        [ipA, false],
        [ipB, true],
      ].sort(),
    );
  });

  // Found by the fault suite on the real node: a pod deleted with --grace-period=0 --force left
  // the operator's Pod cache at once while its EndpointSlice still listed it (and its sidecar
  // still ran); compiled as an endpoint of no known pod (meshed false, no identity), it was sent
  // plaintext, and its STRICT sidecar answered 403. Here the slice is written by hand, so it
  // stays stale for as long as the test looks.
  test('a pod deleted without grace that its EndpointSlice still lists is left out of the config', async () => {
    await client.create(RESOURCES.services, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'stale', namespace: NS },
      spec: { ports: [{ name: 'http', port: 9080, targetPort: 8080, appProtocol: 'http' }] },
    } as unknown as KubeObject);
    const ip = await startPod('stale-a', { app: 'stale' }, 'reviews');
    await client.create(RESOURCES.endpointSlices, {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'stale-1',
        namespace: NS,
        labels: {
          'kubernetes.io/service-name': 'stale',
          'endpointslice.kubernetes.io/managed-by': 'weft-test',
        },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [
        {
          addresses: [ip],
          conditions: { ready: true },
          targetRef: { kind: 'Pod', name: 'stale-a', namespace: NS },
        },
      ],
    } as unknown as KubeObject);
    const stale = (c: ProxyConfig) => c.services.find((s) => s.id === 'shop/stale');
    await waitConfig(
      'the stale-a endpoint, meshed',
      (c) => !!stale(c)?.endpoints.some((e) => e.address === ip && e.meshed && e.identity !== undefined),
    );
    await client.delete(RESOURCES.pods, 'stale-a', NS, { gracePeriodSeconds: 0 });
    const cfg = await waitConfig('the stale-a endpoint left out', (c) => stale(c)?.endpoints.length === 0);
    assert.deepEqual(stale(cfg)!.clusterIPs.length, 1, 'the Service itself stays');
    await client.delete(RESOURCES.endpointSlices, 'stale-1', NS);
    await client.delete(RESOURCES.services, 'stale', NS);
  });

  test('a weight change updates the route', async () => {
    // The operator writes this TrafficSplit's status meanwhile (Programmed follows the proxies'
    // reports): an update from a stale read is a conflict, read again.
    await waitFor('the weight update accepted', async () => {
      const cur = await getSplit('canary');
      try {
        await client.update(RESOURCES.trafficSplits, {
          ...cur,
          spec: {
            ...cur.spec,
            backends: [
              { service: 'reviews-v1', weight: 50 },
              { service: 'reviews-v2', weight: 50 },
            ],
          },
        } as unknown as KubeObject);
        return true;
      } catch (err) {
        if (isConflict(err)) return undefined;
        throw err;
      }
    });
    const cfg = await waitConfig(
      'weights 50/50',
      (c) => c.routes[0]?.backends.every((b) => b.weight === 50) ?? false,
    );
    assert.equal(cfg.routes.length, 1);
    const s = await waitFor('observedGeneration 2', async () => {
      const o = await getSplit('canary');
      return o.status?.observedGeneration === 2 ? o : undefined;
    });
    assert.equal(cond(s, 'Ready')?.observedGeneration, 2);
  });

  test('a TrafficSplit naming a missing Service reports ResolvedRefs=False; other routes keep working', async () => {
    await client.create(
      RESOURCES.trafficSplits,
      split('broken', {
        service: 'reviews',
        backends: [{ service: 'ratings-v9', weight: 1 }],
      }) as unknown as KubeObject,
    );
    const b = await waitFor('broken ResolvedRefs=False', async () => {
      const o = await getSplit('broken');
      return cond(o, 'ResolvedRefs')?.status === 'False' ? o : undefined;
    });
    assert.equal(cond(b, 'ResolvedRefs')!.reason, 'ServiceNotFound');
    assert.match(cond(b, 'ResolvedRefs')!.message, /ratings-v9/);
    assert.equal(cond(b, 'Accepted')?.status, 'True');
    assert.equal(cond(b, 'Ready')?.status, 'False');
    assert.equal(cond(b, 'Ready')?.reason, 'NotProgrammed');
    const events = await waitFor('a RefNotFound Event', async () => {
      const l = await client.list<
        KubeObject & { reason?: string; involvedObject?: { name?: string }; message?: string }
      >(RESOURCES.events, { namespace: NS });
      const e = l.items.filter((x) => x.reason === 'RefNotFound' && x.involvedObject?.name === 'broken');
      return e.length > 0 ? e : undefined;
    });
    assert.match(events[0]!.message ?? '', /ratings-v9/);
    await op!.idle();
    const cfg = await proxyConfig();
    assert.deepEqual(
      cfg!.routes.map((r) => r.name),
      ['shop/canary'],
      'the broken split is not programmed; the canary is',
    );

    // An update that breaks a working split keeps its last good route programmed.
    const before = (await proxyConfig())!.version;
    const cur = await getSplit('canary');
    await client.update(RESOURCES.trafficSplits, {
      ...cur,
      spec: { ...cur.spec, backends: [{ service: 'reviews-v3', weight: 1 }] },
    } as unknown as KubeObject);
    const c = await waitFor('canary LastGoodProgrammed', async () => {
      const o = await getSplit('canary');
      return cond(o, 'Ready')?.reason === 'LastGoodProgrammed' ? o : undefined;
    });
    assert.equal(cond(c, 'ResolvedRefs')?.status, 'False');
    assert.match(cond(c, 'ResolvedRefs')!.message, /reviews-v3/);
    await op!.idle();
    assert.equal((await proxyConfig())!.version, before, 'nothing programmed changed');

    // Fixing it programs the new version.
    const cur2 = await getSplit('canary');
    await client.update(RESOURCES.trafficSplits, {
      ...cur2,
      spec: { ...cur2.spec, backends: [{ service: 'reviews-v2', weight: 1 }] },
    } as unknown as KubeObject);
    await waitConfig('canary to v2 only', (x) => x.routes[0]?.backends.length === 1);
    await client.delete(RESOURCES.trafficSplits, 'broken', NS);
  });

  test('/readyz and /metrics answer on every replica', async () => {
    const ready = await fetch(`http://127.0.0.1:${op!.healthPort}/readyz`);
    assert.equal(ready.status, 200);
    const text = await (await fetch(`http://127.0.0.1:${op!.metricsPort}/metrics`)).text();
    assert.match(text, /weft_operator_configmap_writes_total\{namespace="shop",op="apply"\} \d+/);
    assert.match(text, /weft_operator_reconcile_total\{controller="proxyconfig",result="success"\} \d+/);
    assert.match(text, /weft_operator_config_bytes\{namespace="shop",encoding="gzip"\} \d+/);
    assert.match(text, /weft_operator_queue_depth\{controller="proxyconfig"\} 0/);
    assert.match(text, /weft_operator_is_leader 1/);
  });

  test('an operator restart writes nothing when nothing changed', async () => {
    await op!.idle();
    const rvs = async () =>
      Object.fromEntries(
        [...(await configMaps(NS)), ...(await configMaps('web'))].map((c) => [
          `${c.metadata.namespace}/${c.metadata.name}`,
          c.metadata.resourceVersion,
        ]),
      );
    const splitRv = (await getSplit('canary')).metadata.resourceVersion;
    const before = await rvs();
    await op!.stop();
    op = await startOperator({ kubeConfig: cluster.kc, namespace: 'weft-system' });
    await op.synced;
    await op.leading();
    await op.resync();
    assert.equal(op.stats.configMapWrites, 0, 'no ConfigMap written');
    assert.equal(op.stats.configMapDeletes, 0);
    assert.equal(op.stats.statusWrites, 0, 'no status written');
    assert.deepEqual(await rvs(), before);
    assert.equal((await getSplit('canary')).metadata.resourceVersion, splitRv);
  });

  test('a corrupted or deleted config part (manifest intact) is repaired', async () => {
    await op!.idle();
    const first = async () => (await configMaps(NS)).find((c) => c.metadata.name === 'weft-proxy-config')!;
    const good = (await first()).binaryData!['part-000.gz']!;
    const intact = () =>
      waitFor('the part is rewritten from the config', async () => {
        const cm = await first();
        return cm.binaryData?.['part-000.gz'] === good && (await proxyConfig()) ? true : undefined;
      });
    // Corrupted: the manifest still names the current version, so comparing versions sees nothing.
    let cm = await first();
    await client.update(RESOURCES.configMaps, {
      ...cm,
      binaryData: { 'part-000.gz': Buffer.from('not the gzip the manifest hashes').toString('base64') },
    });
    await intact();
    // Deleted.
    cm = await first();
    await client.update(RESOURCES.configMaps, { ...cm, binaryData: {} });
    await intact();
  });

  test('a namespace leaving the mesh loses its ConfigMaps', async () => {
    assert.ok((await configMaps('web')).length > 0);
    const ns = await client.get(RESOURCES.namespaces, 'web');
    await client.update(RESOURCES.namespaces, { ...ns, metadata: { ...ns.metadata, labels: {} } });
    await waitFor('web ConfigMaps removed', async () =>
      (await configMaps('web')).length === 0 ? true : undefined,
    );
    const cms = await configMaps(NS);
    assert.ok(cms.every((c) => c.metadata.labels?.['weft.dev/component'] === 'proxy-config'));
  });
});
