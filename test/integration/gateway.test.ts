// Gateway API routes (GAMMA) on a real kube-apiserver with the upstream standard-channel CRDs
// (pinned, from the Go module cache): the operator in-process writes route status under its
// controllerName, leaves other controllers' entries alone, and compiles the routes into the
// ProxyConfig of each namespace (producer everywhere, consumer only in its namespace, routes
// over a TrafficSplit on the same Service).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ProxyConfig, Route } from '../../api/proxyconfig.ts';
import { collectStatus } from '../../cli/status.ts';
import { argoHealth, scriptOf } from '../../hack/argocd.ts';
import { applyGatewayApiCrds, GATEWAY_API_VERSION } from '../../hack/gateway-api.ts';
import {
  KubeClient,
  type KubeObject,
  RESOURCES,
  type ResourceType,
  resourcePath,
} from '../../kube/client.ts';
import { isConflict } from '../../kube/errors.ts';
import {
  CONTROLLER_NAME,
  GATEWAY_RESOURCES,
  type RouteParentStatus,
} from '../../operator/compile/gatewaytypes.ts';
import { decode } from '../../operator/distribution.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { installCrds, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

let cluster: TestCluster;
let client: KubeClient;
let op: OperatorHandle | undefined;

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>) =>
  eventually(what, probe, { timeoutMs: 30_000, intervalMs: 100 });

async function proxyConfig(ns: string): Promise<ProxyConfig | undefined> {
  const cms = await client.list<KubeObject & { data?: Record<string, string> }>(RESOURCES.configMaps, {
    namespace: ns,
    labelSelector: 'app.kubernetes.io/managed-by=weft',
  });
  if (cms.items.length === 0) return undefined;
  return decode(new Map(cms.items.map((c) => [c.metadata.name, c])));
}
const routesFor = async (ns: string, service: string) =>
  ((await proxyConfig(ns))?.routes ?? []).filter((r) => r.service === service);
const show = (r: Route) =>
  `${r.name} ${r.matches[0]?.path ? `${r.matches[0].path.type} ${r.matches[0].path.value}` : '*'}${r.directResponse ? ` → ${r.directResponse.status}` : ''}`;

type RouteObj = KubeObject & { spec: Record<string, unknown>; status?: { parents?: RouteParentStatus[] } };
const HTTP = GATEWAY_RESOURCES.httpRoutes;
const route = (ns: string, name: string, spec: Record<string, unknown>, type: ResourceType = HTTP) => ({
  apiVersion: `${type.group}/${type.version}`,
  kind: type.kind,
  metadata: { name, namespace: ns },
  spec,
});
const svcParent = (name: string, namespace?: string) => ({
  group: '',
  kind: 'Service',
  name,
  ...(namespace ? { namespace } : {}),
});
const ours = (o: RouteObj) => (o.status?.parents ?? []).filter((p) => p.controllerName === CONTROLLER_NAME);
const cond = (p: RouteParentStatus | undefined, type: string) => p?.conditions?.find((c) => c.type === type);
/** The route once Weft's status says `pred`. */
const waitStatus = (ns: string, name: string, pred: (o: RouteObj) => boolean, type: ResourceType = HTTP) =>
  waitFor(`${type.kind} ${ns}/${name} status`, async () => {
    const o = await client.get<RouteObj>(type, name, ns);
    return pred(o) ? o : undefined;
  });

before(async () => {
  cluster = await startTestCluster();
  await installCrds(cluster);
  applyGatewayApiCrds(cluster.kubectl);
  client = new KubeClient(cluster.kc, 'weft-test');
  cluster.kubectl('create', 'namespace', 'weft-system');
  cluster.kubectl('create', 'namespace', 'lib');
  for (const ns of ['shop', 'web']) {
    cluster.kubectl('create', 'namespace', ns);
    cluster.kubectl('label', 'namespace', ns, 'weft.dev/inject=enabled');
  }
  for (const [ns, name] of [
    ['shop', 'reviews'],
    ['shop', 'reviews-v1'],
    ['shop', 'reviews-v2'],
    ['lib', 'other'],
  ])
    await client.create(RESOURCES.services, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: ns },
      spec: { selector: { app: name }, ports: [{ name: 'http', port: 9080 }] },
    } as KubeObject);
  await client.create(RESOURCES.meshes, {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'Mesh',
    metadata: { name: 'default' },
    spec: {},
  } as KubeObject);
  op = await startOperator({ kubeConfig: cluster.kc, namespace: 'weft-system', identity: false });
});

after(async () => {
  await op?.stop();
  client?.close();
  await cluster?.stop();
});

describe(`Gateway API ${GATEWAY_API_VERSION} routes on a real apiserver`, () => {
  test('the Mesh says the routes are watched', async () => {
    await waitFor('Mesh GatewayAPI condition', async () => {
      const m = await client.get<
        KubeObject & { status?: { conditions?: { type: string; status: string }[] } }
      >(RESOURCES.meshes, 'default');
      return m.status?.conditions?.find((c) => c.type === 'GatewayAPI' && c.status === 'True');
    });
  });

  test('a producer HTTPRoute: status under weft.dev/mesh beside another controller, ProxyConfig in every namespace, the TrafficSplit it overrides says so', async () => {
    await client.create(RESOURCES.trafficSplits, {
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'TrafficSplit',
      metadata: { name: 'canary', namespace: 'shop' },
      spec: { service: 'reviews', backends: [{ service: 'reviews-v1', weight: 1 }] },
    } as KubeObject);
    await waitFor('the split in web', async () =>
      (await routesFor('web', 'shop/reviews')).length === 1 ? true : undefined,
    );
    await client.create(
      HTTP,
      route('shop', 'reviews', {
        parentRefs: [svcParent('reviews'), { name: 'some-gateway' }],
        rules: [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/v2' } }],
            filters: [
              {
                type: 'RequestHeaderModifier',
                requestHeaderModifier: { set: [{ name: 'x-v', value: '2' }] },
              },
            ],
            backendRefs: [{ name: 'reviews-v2', port: 9080 }],
          },
          {
            backendRefs: [
              { name: 'reviews-v1', port: 9080 },
              { name: 'missing', port: 9080 },
            ],
          },
        ],
      }) as KubeObject,
    );
    // Another controller's entry, written the way the spec asks (read-modify-write).
    const foreign: RouteParentStatus = {
      parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'some-gateway' },
      controllerName: 'example.com/gateway',
      conditions: [
        {
          type: 'Accepted',
          status: 'True',
          reason: 'Accepted',
          message: 'theirs',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    };
    await waitFor('the foreign status entry written', async () => {
      const o = await client.get<RouteObj>(HTTP, 'reviews', 'shop');
      if (o.status?.parents?.some((p) => p.controllerName === foreign.controllerName)) return true;
      try {
        await client.request('PUT', resourcePath(HTTP, 'shop', 'reviews', 'status'), {
          body: { ...o, status: { parents: [...(o.status?.parents ?? []), foreign] } },
        });
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
      return undefined;
    });
    const o = await waitStatus(
      'shop',
      'reviews',
      (x) => ours(x).length === 1 && x.status!.parents!.length === 2,
    );
    const mine = ours(o)[0]!;
    assert.deepEqual(mine.parentRef, svcParent('reviews'), 'only the Service parent is Weft’s');
    assert.equal(cond(mine, 'Accepted')?.status, 'True');
    assert.equal(cond(mine, 'Accepted')?.observedGeneration, o.metadata.generation);
    assert.equal(cond(mine, 'ResolvedRefs')?.status, 'False');
    assert.equal(cond(mine, 'ResolvedRefs')?.reason, 'BackendNotFound');
    assert.match(
      cond(mine, 'ResolvedRefs')!.message,
      /spec\.rules\[1\]\.backendRefs\[1\]: Service shop\/missing not found/,
    );
    assert.deepEqual(
      o.status!.parents!.find((p) => p.controllerName === foreign.controllerName),
      foreign,
      'the other controller’s entry is untouched',
    );
    // Argo CD's health (config/argocd/route.lua) on the live route names Weft's verdict.
    assert.deepEqual(argoHealth(scriptOf('gateway.networking.k8s.io_HTTPRoute'), o), {
      status: 'Degraded',
      message: `Service reviews (weft.dev/mesh): ResolvedRefs BackendNotFound: ${cond(mine, 'ResolvedRefs')!.message}`,
    });
    // The missing backend appears: Weft rewrites its entry, and keeps the other one.
    await client.create(RESOURCES.services, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'missing', namespace: 'shop' },
      spec: { selector: { app: 'missing' }, ports: [{ name: 'http', port: 9080 }] },
    } as KubeObject);
    const resolved = await waitStatus(
      'shop',
      'reviews',
      (x) => cond(ours(x)[0], 'ResolvedRefs')?.status === 'True',
    );
    assert.deepEqual(
      resolved.status!.parents!.find((p) => p.controllerName === foreign.controllerName),
      foreign,
      'the other controller’s entry survives Weft’s rewrite',
    );
    assert.deepEqual(argoHealth(scriptOf('gateway.networking.k8s.io_HTTPRoute'), resolved), {
      status: 'Healthy',
      message: 'Accepted by 2 parent(s)',
    });

    for (const ns of ['shop', 'web'])
      await waitFor(`the route in ${ns}'s ProxyConfig`, async () => {
        const routes = (await routesFor(ns, 'shop/reviews')).map(show);
        return JSON.stringify(routes) ===
          JSON.stringify([
            'HTTPRoute/shop/reviews/0 PathPrefix /v2',
            'HTTPRoute/shop/reviews/1 PathPrefix /',
            'shop/reviews:no-route-matched * → 404',
          ])
          ? true
          : undefined;
      });
    const split = await waitFor('TrafficSplit Overridden', async () => {
      const s = await client.get<
        KubeObject & {
          status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
        }
      >(RESOURCES.trafficSplits, 'canary', 'shop');
      return s.status?.conditions?.find((c) => c.type === 'Overridden' && c.status === 'True')
        ? s
        : undefined;
    });
    const c = (t: string) => split.status!.conditions!.find((x) => x.type === t)!;
    assert.match(c('Overridden').message, /HTTPRoute\/shop\/reviews .* everywhere/);
    assert.equal(c('Ready').status, 'False');
    // Overridden everywhere: Stalled (kstatus Failed), Degraded for Argo CD.
    assert.equal(c('Stalled').reason, 'RouteTakesPrecedence');
    assert.equal(argoHealth(scriptOf('weft.dev_TrafficSplit'), split).status, 'Degraded');
  });

  test('a consumer route changes only its namespace, needs no ReferenceGrant; a producer route’s cross-namespace backend does', async () => {
    await client.create(
      HTTP,
      route('web', 'to-reviews', {
        parentRefs: [svcParent('reviews', 'shop')],
        rules: [{ backendRefs: [{ name: 'other', namespace: 'lib', port: 9080 }] }],
      }) as KubeObject,
    );
    const o = await waitStatus('web', 'to-reviews', (x) => ours(x).length === 1);
    assert.equal(cond(ours(o)[0], 'ResolvedRefs')?.status, 'True');
    assert.match(cond(ours(o)[0], 'Accepted')!.message, /consumer route: requests from namespace web/);
    await waitFor('web uses its consumer route', async () => {
      const r = await routesFor('web', 'shop/reviews');
      return r[0]?.name === 'HTTPRoute/web/to-reviews/0' && r[0].backends[0]?.service === 'lib/other'
        ? true
        : undefined;
    });
    assert.deepEqual(
      (await routesFor('shop', 'shop/reviews')).map((r) => r.name)[0],
      'HTTPRoute/shop/reviews/0',
      'shop keeps the producer route',
    );

    await client.create(
      HTTP,
      route('shop', 'to-lib', {
        parentRefs: [svcParent('reviews-v1')],
        rules: [{ backendRefs: [{ name: 'other', namespace: 'lib', port: 9080 }] }],
      }) as KubeObject,
    );
    const refused = await waitStatus(
      'shop',
      'to-lib',
      (x) => cond(ours(x)[0], 'ResolvedRefs')?.reason === 'RefNotPermitted',
    );
    assert.match(cond(ours(refused)[0], 'ResolvedRefs')!.message, /needs a ReferenceGrant in lib/);
    await waitFor('the refused backend answers 500', async () => {
      const r = await routesFor('web', 'shop/reviews-v1');
      return r[0]?.directResponse?.status === 500 ? true : undefined;
    });
    await client.create(GATEWAY_RESOURCES.referenceGrants, {
      apiVersion: 'gateway.networking.k8s.io/v1beta1',
      kind: 'ReferenceGrant',
      metadata: { name: 'from-shop', namespace: 'lib' },
      spec: {
        from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' }],
        to: [{ group: '', kind: 'Service' }],
      },
    } as KubeObject);
    await waitStatus('shop', 'to-lib', (x) => cond(ours(x)[0], 'ResolvedRefs')?.status === 'True');
    await waitFor('the granted backend is used', async () => {
      const r = await routesFor('web', 'shop/reviews-v1');
      return r[0] && !r[0].directResponse && r[0].backends[0]?.service === 'lib/other' ? true : undefined;
    });
  });

  test('an unsupported filter is refused with its field and breaks no other route; a GRPCRoute method becomes a path', async () => {
    await client.create(
      HTTP,
      route('shop', 'ext', {
        parentRefs: [svcParent('reviews-v2')],
        rules: [
          {
            filters: [
              { type: 'ExtensionRef', extensionRef: { group: 'example.com', kind: 'Thing', name: 't' } },
            ],
            backendRefs: [{ name: 'reviews-v2', port: 9080 }],
          },
        ],
      }) as KubeObject,
    );
    const o = await waitStatus('shop', 'ext', (x) => cond(ours(x)[0], 'Accepted')?.status === 'False');
    assert.equal(cond(ours(o)[0], 'Accepted')?.reason, 'UnsupportedValue');
    assert.match(
      cond(ours(o)[0], 'Accepted')!.message,
      /spec\.rules\[0\]\.filters\[0\]\.type: ExtensionRef is not supported/,
    );
    await client.create(
      GATEWAY_RESOURCES.grpcRoutes,
      route(
        'shop',
        'grpc',
        {
          parentRefs: [svcParent('reviews-v2')],
          rules: [
            {
              matches: [{ method: { service: 'pkg.Reviews', method: 'Get' } }],
              backendRefs: [{ name: 'reviews-v1', port: 9080 }],
            },
          ],
        },
        GATEWAY_RESOURCES.grpcRoutes,
      ) as KubeObject,
    );
    await waitStatus(
      'shop',
      'grpc',
      (x) => cond(ours(x)[0], 'Accepted')?.status === 'True',
      GATEWAY_RESOURCES.grpcRoutes,
    );
    await waitFor('the GRPCRoute alone on reviews-v2, the others intact', async () => {
      const r = (await routesFor('shop', 'shop/reviews-v2')).map(show);
      const reviews = await routesFor('shop', 'shop/reviews');
      return JSON.stringify(r) ===
        JSON.stringify([
          'GRPCRoute/shop/grpc/0 Exact /pkg.Reviews/Get',
          'shop/reviews-v2:no-route-matched * → 404',
        ]) && reviews.length === 3
        ? true
        : undefined;
    });
  });

  test('weftctl status lists the routes with Weft’s verdict', async () => {
    const rows = await collectStatus(client);
    const row = (kind: string, ns: string, name: string) =>
      rows.find((r) => r.kind === kind && r.namespace === ns && r.name === name);
    assert.equal(row('HTTPRoute', 'shop', 'to-lib')?.reason, 'Accepted');
    assert.equal(row('HTTPRoute', 'shop', 'to-lib')?.ready, 'True');
    assert.equal(row('HTTPRoute', 'shop', 'ext')?.reason, 'UnsupportedValue');
    assert.equal(row('GRPCRoute', 'shop', 'grpc')?.ready, 'True');
  });
});
