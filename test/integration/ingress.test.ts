// Weft's own gateway (docs/ingress.md) on a real kube-apiserver with the upstream
// standard-channel Gateway API CRDs: the operator in-process accepts its GatewayClass, runs each
// Gateway of it (Deployment, Service, ServiceAccount, routing ConfigMap, owned by the Gateway),
// writes the Gateway's status and its routes' status.parents under weft.dev/gateway, beside the
// mesh's weft.dev/mesh entries, and leaves other controllers' classes alone.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Condition } from '../../api/common.ts';
import { argoHealth, scriptOf } from '../../hack/argocd.ts';
import { applyGatewayApiCrds } from '../../hack/gateway-api.ts';
import { KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../../kube/client.ts';
import {
  CONTROLLER_NAME,
  GATEWAY_CONTROLLER_NAME,
  GATEWAY_RESOURCES,
  type GatewayObj,
  type RouteParentStatus,
} from '../../operator/compile/gatewaytypes.ts';
import type { GatewayProxyConfig } from '../../operator/compile/ingress.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { GATEWAY_CONFIG_KEY } from '../../operator/reconcilers/ingress.ts';
import { writeProjected } from '../../proxy/configdir.ts';
import { issueServingCertificate } from '../../webhook/tls.ts';
import {
  canI,
  dryRunApplyAs,
  installCrds,
  repoRoot,
  startTestCluster,
  type TestCluster,
} from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';
import { writeServiceAccountToken } from '../support/propagation.ts';
import { type ProxyProcess, spawnProxy } from '../support/proxyprocess.ts';

let cluster: TestCluster;
let client: KubeClient;
let op: OperatorHandle | undefined;
let gatewayProxy: ProxyProcess | undefined;
const work = mkdtempSync(join(tmpdir(), 'weft-ingress-'));

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>) =>
  eventually(what, probe, { timeoutMs: 30_000, intervalMs: 100 });
const cond = (l: readonly Condition[] | undefined, type: string) => l?.find((c) => c.type === type);
const obj = (t: ResourceType, metadata: KubeObject['metadata'], rest: Record<string, unknown>) =>
  ({
    apiVersion: t.group ? `${t.group}/${t.version}` : t.version,
    kind: t.kind,
    metadata,
    ...rest,
  }) as KubeObject;
type GatewayK = KubeObject & GatewayObj;
type RouteK = KubeObject & { status?: { parents?: RouteParentStatus[] } };
type ClassK = KubeObject & { status?: { conditions?: Condition[] } };

before(async () => {
  cluster = await startTestCluster();
  await installCrds(cluster);
  applyGatewayApiCrds(cluster.kubectl);
  client = new KubeClient(cluster.kc, 'weft-test');
  for (const ns of ['weft-system', 'edge', 'shop']) cluster.kubectl('create', 'namespace', ns);
  cluster.kubectl('label', 'namespace', 'shop', 'weft.dev/inject=enabled');
  await client.create(
    RESOURCES.services,
    obj(
      RESOURCES.services,
      { name: 'web', namespace: 'shop' },
      { spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 8080 }] } },
    ),
  );
  await client.create(RESOURCES.meshes, obj(RESOURCES.meshes, { name: 'default' }, { spec: {} }));
  op = await startOperator({ kubeConfig: cluster.kc, namespace: 'weft-system', identity: false });
});

after(async () => {
  await gatewayProxy?.stop();
  rmSync(work, { recursive: true, force: true });
  await op?.stop();
  client?.close();
  await cluster?.stop();
});

describe('Weft gateway on a real apiserver', () => {
  test('a GatewayClass with controllerName weft.dev/gateway is Accepted; another controller’s class is left alone', async () => {
    const GC = GATEWAY_RESOURCES.gatewayClasses;
    await client.create(GC, obj(GC, { name: 'weft' }, { spec: { controllerName: GATEWAY_CONTROLLER_NAME } }));
    await client.create(GC, obj(GC, { name: 'other' }, { spec: { controllerName: 'example.com/other' } }));
    const gc = await waitFor('class weft Accepted', async () => {
      const c = await client.get<ClassK>(GC, 'weft');
      return cond(c.status?.conditions, 'Accepted')?.status === 'True' ? c : undefined;
    });
    assert.equal(cond(gc.status?.conditions, 'Accepted')?.observedGeneration, gc.metadata.generation);
    await op!.resync();
    const other = await client.get<ClassK>(GC, 'other');
    // The CRD's default status says Pending/Unknown; Weft must not have changed it.
    assert.notEqual(cond(other.status?.conditions, 'Accepted')?.status, 'True');
  });

  test('a Gateway gets its proxy Deployment, NodePort Service, ServiceAccount and routing ConfigMap, owned by it; status and the attached route', async () => {
    const GW = GATEWAY_RESOURCES.gateways;
    const gw = (await client.create(
      GW,
      obj(
        GW,
        { name: 'public', namespace: 'edge' },
        {
          spec: {
            gatewayClassName: 'weft',
            listeners: [
              {
                name: 'http',
                port: 80,
                protocol: 'HTTP',
                hostname: '*.example.com',
                allowedRoutes: { namespaces: { from: 'All' } },
              },
              { name: 'https', port: 443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'cert' }] } },
            ],
          },
        },
      ),
    )) as GatewayK;
    const HR = GATEWAY_RESOURCES.httpRoutes;
    await client.create(
      HR,
      obj(
        HR,
        { name: 'web', namespace: 'shop' },
        {
          spec: {
            parentRefs: [
              { name: 'public', namespace: 'edge', sectionName: 'http' },
              { group: '', kind: 'Service', name: 'web' },
            ],
            hostnames: ['shop.example.com'],
            rules: [{ backendRefs: [{ name: 'web', port: 8080 }] }],
          },
        },
      ),
    );
    const name = 'public-weft-gateway';
    const owned = (o: KubeObject) => {
      const ref = o.metadata.ownerReferences?.[0];
      assert.equal(ref?.kind, 'Gateway');
      assert.equal(ref?.uid, gw.metadata.uid);
      assert.equal(ref?.controller, true);
    };
    const cm = await waitFor('the routing ConfigMap with the route', async () => {
      const c = await client
        .get<KubeObject & { data?: Record<string, string> }>(RESOURCES.configMaps, name, 'edge')
        .catch(() => undefined);
      const raw = c?.data?.[GATEWAY_CONFIG_KEY];
      const cfg = raw ? (JSON.parse(raw) as GatewayProxyConfig) : undefined;
      return cfg?.ports[0]?.hosts.length ? { c, cfg } : undefined;
    });
    owned(cm.c!);
    assert.deepEqual(
      cm.cfg.ports.map((p) => [p.port, p.bind, p.hosts.map((h) => h.hostname)]),
      [[80, 15_080, ['shop.example.com']]],
      'only the HTTP listener is served; the route on its hostname',
    );
    assert.deepEqual(
      cm.cfg.ports[0]!.hosts[0]!.routes.map((r) => [r.name, r.backends.map((b) => b.service)]),
      [
        ['HTTPRoute/shop/web/0', ['shop/web']],
        ['Gateway/edge/public:no-route-matched', []],
      ],
    );
    const dep = await client.get<KubeObject & { spec: { template: { spec: Record<string, unknown> } } }>(
      RESOURCES.deployments,
      name,
      'edge',
    );
    owned(dep);
    const pod = dep.spec.template.spec as {
      serviceAccountName: string;
      containers: { command: string[] }[];
      initContainers?: unknown[];
    };
    assert.equal(pod.serviceAccountName, name);
    assert.ok(pod.containers[0]!.command.includes('--gateway'));
    assert.equal(pod.initContainers, undefined);
    owned(await client.get(RESOURCES.serviceAccounts, name, 'edge'));
    const svc = await client.get<
      KubeObject & { spec: { type: string; clusterIP: string; ports: { port: number; nodePort?: number }[] } }
    >(RESOURCES.services, name, 'edge');
    owned(svc);
    assert.equal(svc.spec.type, 'NodePort');
    assert.ok(svc.spec.ports[0]!.nodePort, 'the apiserver allocated a node port');

    const status = await waitFor('Gateway status', async () => {
      const g = await client.get<GatewayK>(GW, 'public', 'edge');
      // The route may be seen after the Gateway's first status: wait for it to be counted.
      const http = g.status?.listeners?.find((x) => x.name === 'http');
      return g.status?.listeners?.length === 2 && g.status.addresses?.length && http?.attachedRoutes === 1
        ? g
        : undefined;
    });
    assert.equal(cond(status.status?.conditions, 'Accepted')?.status, 'True');
    assert.equal(cond(status.status?.conditions, 'Programmed')?.reason, 'Pending', 'no pod is ready yet');
    assert.equal(argoHealth(scriptOf('gateway.networking.k8s.io_Gateway'), status).status, 'Progressing');
    assert.deepEqual(status.status?.addresses, [{ type: 'IPAddress', value: svc.spec.clusterIP }]);
    const l = (n: string) => status.status?.listeners?.find((x) => x.name === n);
    assert.equal(l('http')?.attachedRoutes, 1);
    assert.equal(cond(l('http')?.conditions, 'Programmed')?.status, 'True');
    assert.equal(cond(l('https')?.conditions, 'Accepted')?.status, 'True');
    assert.equal(cond(l('https')?.conditions, 'ResolvedRefs')?.reason, 'InvalidCertificateRef');
    assert.match(
      cond(l('https')?.conditions, 'ResolvedRefs')!.message,
      /spec\.listeners\[1\]\.tls\.certificateRefs\[0\]: Secret edge\/cert not found/,
    );

    const route = await waitFor('route status under both controllers', async () => {
      const r = await client.get<RouteK>(HR, 'web', 'shop');
      const names = (r.status?.parents ?? []).map((p) => p.controllerName).sort();
      return names.length === 2 ? r : undefined;
    });
    const gwEntry = route.status!.parents!.find((p) => p.controllerName === GATEWAY_CONTROLLER_NAME)!;
    assert.equal(gwEntry.parentRef.name, 'public');
    assert.equal(cond(gwEntry.conditions, 'Accepted')?.status, 'True');
    assert.equal(cond(gwEntry.conditions, 'ResolvedRefs')?.status, 'True');
    const meshEntry = route.status!.parents!.find((p) => p.controllerName === CONTROLLER_NAME)!;
    assert.equal(meshEntry.parentRef.kind, 'Service');

    // A ready replica makes the Gateway Programmed (nothing runs pods here: the test says so).
    await client.request('PATCH', `/apis/apps/v1/namespaces/edge/deployments/${name}/status`, {
      body: { status: { replicas: 1, readyReplicas: 1, availableReplicas: 1 } },
      contentType: 'application/merge-patch+json',
    });
    const programmed = await waitFor('Gateway Programmed', async () => {
      const g = await client.get<GatewayK>(GW, 'public', 'edge');
      return cond(g.status?.conditions, 'Programmed')?.status === 'True' ? g : undefined;
    });
    assert.match(
      cond(programmed.status?.conditions, 'Programmed')!.message,
      new RegExp(`80 → node port ${svc.spec.ports[0]!.nodePort}`),
    );
    assert.deepEqual(argoHealth(scriptOf('gateway.networking.k8s.io_Gateway'), programmed), {
      status: 'Healthy',
      message: cond(programmed.status?.conditions, 'Programmed')!.message,
    });
  });

  test('an HTTPS listener: its Secret, once valid, is copied to the Gateway’s `-tls` Secret and re-copied when it changes', async () => {
    const tlsSecret = (name: string, c: { certPem: string; keyPem: string }) =>
      obj(
        RESOURCES.secrets,
        { name, namespace: 'edge' },
        {
          type: 'kubernetes.io/tls',
          data: {
            'tls.crt': Buffer.from(c.certPem).toString('base64'),
            'tls.key': Buffer.from(c.keyPem).toString('base64'),
          },
        },
      );
    const now = new Date();
    const first = await issueServingCertificate({ dnsNames: ['*.example.com'], ipAddresses: [], now });
    const second = await issueServingCertificate({ dnsNames: ['*.example.com'], ipAddresses: [], now });
    const copied = (pem: string) =>
      waitFor('the -tls Secret with the certificate', async () => {
        const s = await client
          .get<KubeObject & { data?: Record<string, string> }>(
            RESOURCES.secrets,
            'public-weft-gateway-tls',
            'edge',
          )
          .catch(() => undefined);
        const crt = s?.data?.['https.crt'];
        return crt && Buffer.from(crt, 'base64').toString() === pem ? s : undefined;
      });
    await client.create(RESOURCES.secrets, tlsSecret('cert', first));
    const s = await copied(first.certPem);
    assert.equal(Buffer.from(s.data!['https.key']!, 'base64').toString(), first.keyPem);
    assert.equal(s.metadata.ownerReferences?.[0]?.kind, 'Gateway');
    const g = await waitFor('the https listener resolved', async () => {
      const o = await client.get<GatewayK>(GATEWAY_RESOURCES.gateways, 'public', 'edge');
      const l = o.status?.listeners?.find((x) => x.name === 'https');
      return cond(l?.conditions, 'ResolvedRefs')?.status === 'True' ? o : undefined;
    });
    assert.equal(cond(g.status?.conditions, 'Accepted')?.message, 'Accepted');
    const cm = await client.get<KubeObject & { data: Record<string, string> }>(
      RESOURCES.configMaps,
      'public-weft-gateway',
      'edge',
    );
    const cfg = JSON.parse(cm.data[GATEWAY_CONFIG_KEY]!) as GatewayProxyConfig;
    assert.deepEqual(cfg.ports.find((p) => p.port === 443)?.tls, [
      { hostname: '*', cert: 'https.crt', key: 'https.key' },
    ]);
    assert.doesNotMatch(cm.data[GATEWAY_CONFIG_KEY]!, /PRIVATE KEY/, 'no key in the ConfigMap');
    // Renewed (e.g. by cert-manager): the copy follows.
    await client.apply(RESOURCES.secrets, tlsSecret('cert', second));
    await copied(second.certPem);
  });

  test('a Gateway of another controller’s class gets nothing', async () => {
    const GW = GATEWAY_RESOURCES.gateways;
    await client.create(
      GW,
      obj(
        GW,
        { name: 'theirs', namespace: 'edge' },
        { spec: { gatewayClassName: 'other', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } },
      ),
    );
    await op!.resync();
    await assert.rejects(client.get(RESOURCES.deployments, 'theirs-weft-gateway', 'edge'));
    const g = await client.get<GatewayK>(GW, 'theirs', 'edge');
    assert.equal(g.status?.listeners, undefined);
  });

  test('an object of the same name that the Gateway does not own is never taken over: the Gateway says so', async () => {
    // Someone else's ConfigMap where the Gateway's routing table would go.
    await client.create(
      RESOURCES.configMaps,
      obj(RESOURCES.configMaps, { name: 'taken-weft-gateway', namespace: 'edge' }, { data: { mine: 'yes' } }),
    );
    const GW = GATEWAY_RESOURCES.gateways;
    await client.create(
      GW,
      obj(
        GW,
        { name: 'taken', namespace: 'edge' },
        { spec: { gatewayClassName: 'weft', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } },
      ),
    );
    const g = await waitFor('Gateway taken: not programmed, naming the object', async () => {
      const o = await client.get<GatewayK>(GW, 'taken', 'edge');
      const p = cond(o.status?.conditions, 'Programmed');
      return p?.reason === 'Invalid' ? o : undefined;
    });
    assert.match(
      cond(g.status?.conditions, 'Programmed')!.message,
      /ConfigMap edge\/taken-weft-gateway exists and is not this Gateway's/,
    );
    const cm = await client.get<KubeObject & { data?: Record<string, string> }>(
      RESOURCES.configMaps,
      'taken-weft-gateway',
      'edge',
    );
    assert.deepEqual(cm.data, { mine: 'yes' }, 'the ConfigMap is untouched');
    assert.equal(cm.metadata.ownerReferences, undefined);
    await assert.rejects(
      client.get(RESOURCES.deployments, 'taken-weft-gateway', 'edge'),
      'nothing else is created',
    );
  });

  test('the gateway proxy takes a route change through the apiserver watch, its volume untouched, never back to an older one; its ServiceAccount reads its own ConfigMap only', async () => {
    // A free port on loopback for the listener (above 1023: the proxy binds it as is).
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const GW = GATEWAY_RESOURCES.gateways;
    const HR = GATEWAY_RESOURCES.httpRoutes;
    await client.create(
      GW,
      obj(
        GW,
        { name: 'fast', namespace: 'shop' },
        { spec: { gatewayClassName: 'weft', listeners: [{ name: 'http', port, protocol: 'HTTP' }] } },
      ),
    );
    const redirectTo = (hostname: string) => ({
      parentRefs: [{ name: 'fast' }],
      rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: { hostname, statusCode: 302 } }] }],
    });
    await client.apply(
      HR,
      obj(HR, { name: 'fast', namespace: 'shop' }, { spec: redirectTo('one.example') }),
      {
        fieldManager: 'weft-test',
      },
    );
    const name = 'fast-weft-gateway';
    type CmK = KubeObject & { data?: Record<string, string>; binaryData?: Record<string, string> };
    const routingTable = await waitFor('the routing ConfigMap with the first redirect', async () => {
      const c = await client.get<CmK>(RESOURCES.configMaps, name, 'shop').catch(() => undefined);
      return c?.data?.[GATEWAY_CONFIG_KEY]?.includes('one.example') ? c.data[GATEWAY_CONFIG_KEY] : undefined;
    });
    // The pod's volumes as the kubelet would have projected them at start, then never again: the
    // routing table, the namespace's ProxyConfig, an empty certificate directory.
    const volume = join(work, 'gateway.json');
    writeFileSync(volume, routingTable);
    const configDir = join(work, 'config');
    const pc = await client.get<CmK>(RESOURCES.configMaps, 'weft-proxy-config', 'shop');
    const files = new Map<string, Buffer | string>(Object.entries(pc.data ?? {}));
    for (const [k, v] of Object.entries(pc.binaryData ?? {})) files.set(k, Buffer.from(v, 'base64'));
    await writeProjected(configDir, files);
    const tokenDir = join(work, 'token');
    writeServiceAccountToken({
      kc: cluster.kc,
      kubectl: cluster.kubectl,
      namespace: 'shop',
      serviceAccount: name,
      tokenDir,
    });
    gatewayProxy = await spawnProxy(
      [
        '--gateway',
        `--gateway-config=${volume}`,
        `--gateway-certs=${join(work, 'gateway-tls')}`,
        `--config-dir=${configDir}`,
        '--namespace=shop',
        '--pod-name=fast-weft-gateway-0',
        '--outbound-port=0',
        '--inbound-port=0',
        '--admin-port=0',
        '--health-port=0',
        `--apiserver=${cluster.kc.getCurrentCluster()!.server}`,
        `--token-dir=${tokenDir}`,
        '--poll-ms=200',
      ],
      // What the operator's Deployment sets.
      { WEFT_GATEWAY_CONFIGMAP: name },
    );
    const location = async () => {
      const r = await fetch(`http://127.0.0.1:${port}/x`, {
        redirect: 'manual',
        signal: AbortSignal.timeout(2000),
      }).catch(() => undefined);
      await r?.body?.cancel();
      return r?.status === 302 ? (r.headers.get('location') ?? undefined) : undefined;
    };
    interface GatewayState {
      generation: number | null;
      source: string | null;
      stale: number;
    }
    const gatewayState = async () =>
      (
        (await (
          await fetch(`http://127.0.0.1:${gatewayProxy!.ports.admin}/config`, {
            signal: AbortSignal.timeout(2000),
          })
        ).json()) as { gateway: GatewayState }
      ).gateway;
    assert.match(await waitFor('the gateway redirects to one.example', location), /\/\/one\.example/);

    const t0 = Date.now();
    await client.apply(
      HR,
      obj(HR, { name: 'fast', namespace: 'shop' }, { spec: redirectTo('two.example') }),
      {
        fieldManager: 'weft-test',
      },
    );
    // The volume is never written again: the change can only arrive through the watch.
    assert.match(
      await waitFor('the gateway redirects to two.example', async () => {
        const l = await location();
        return l && /\/\/two\.example/.test(l) ? l : undefined;
      }),
      /\/\/two\.example/,
    );
    console.log(`route change served by the gateway: ${Date.now() - t0} ms after the write`);
    assert.equal(readFileSync(volume, 'utf8'), routingTable, 'the volume is untouched');
    const now = await gatewayState();
    assert.equal(now.source, 'apiserver');
    const first = (JSON.parse(routingTable) as { generation?: number }).generation;
    assert.ok(first !== undefined && now.generation! > first, `generation ${now.generation} after ${first}`);

    // A late kubelet sync of an older table (rewritten as the kubelet would) is not applied.
    writeFileSync(volume, `${routingTable}\n`);
    await waitFor(
      'the older volume read and refused as stale',
      async () => (await gatewayState()).stale > now.stale,
    );
    assert.match((await location())!, /\/\/two\.example/);
    assert.equal((await gatewayState()).generation, now.generation);

    // RBAC (the operator's Role and RoleBinding for this Gateway): its own ConfigMap by name,
    // nothing else.
    // The namespace's ProxyConfig, which every meshed pod of it reads (ClusterRole weft-proxy).
    cluster.kubectl('apply', '--server-side', '-f', join(repoRoot, 'config', 'rbac', 'proxy_role.yaml'));
    const can = (verb: string, what: string, ns = 'shop') =>
      canI(cluster.kubectl, `system:serviceaccount:shop:${name}`, verb, what, '-n', ns);
    assert.equal(can('get', 'configmaps/weft-proxy-config'), 'yes');
    for (const verb of ['get', 'list', 'watch']) assert.equal(can(verb, `configmaps/${name}`), 'yes', verb);
    assert.equal(can('list', 'configmaps'), 'no', 'list every ConfigMap of the namespace');
    assert.equal(can('get', 'configmaps/kube-root-ca.crt'), 'no');
    assert.equal(can('get', 'configmaps/public-weft-gateway', 'edge'), 'no', "another Gateway's table");
    assert.equal(can('get', `secrets/${name}-tls`), 'no', 'its certificates come through the volume only');
    assert.equal(can('list', 'secrets'), 'no');
    assert.equal(can('update', `configmaps/${name}`), 'no');
  });

  test('the operator’s RBAC and admission policy let it write a Gateway’s Role and RoleBinding in that shape only', async () => {
    cluster.kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-k',
      join(repoRoot, 'config', 'rbac'),
    );
    const rbac = 'rbac.authorization.k8s.io/v1';
    const labels = { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'gateway' };
    const role = (name: string, rule: Record<string, unknown>, l: Record<string, string> = labels) => ({
      apiVersion: rbac,
      kind: 'Role',
      metadata: { name, namespace: 'shop', labels: l },
      rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'], ...rule }],
    });
    const binding = (name: string, subject: Record<string, string>) => ({
      apiVersion: rbac,
      kind: 'RoleBinding',
      metadata: { name, namespace: 'shop', labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [subject],
    });
    const sa = (name: string) => ({ kind: 'ServiceAccount', name, namespace: 'shop' });
    const asOperator = (o: Record<string, unknown>) =>
      dryRunApplyAs(cluster.kubectl, 'system:serviceaccount:weft-system:weft-operator', 'weft-operator', o);
    // The policy is enforced once the apiserver has loaded it.
    const denied = await waitFor('the admission policy to deny a broader Role', async () => {
      const e = asOperator(role('wide-weft-gateway', {}));
      return e ? e : undefined;
    });
    assert.match(denied, /may only write its own Roles and RoleBindings/, 'every ConfigMap of the namespace');
    // What the operator writes for Gateway `fast` (the previous test) passes RBAC and the policy.
    for (const [type, n] of [
      [RESOURCES.roles, 'fast-weft-gateway'],
      [RESOURCES.roleBindings, 'fast-weft-gateway'],
      // The sidecars' binding (proxyconfig.ts) too.
      [RESOURCES.roleBindings, 'weft-proxy'],
    ] as const) {
      const o = await client.get<KubeObject & Record<string, unknown>>(type, n, 'shop');
      const { metadata, ...rest } = o;
      const mine = { ...rest, metadata: { name: n, namespace: 'shop', labels: metadata.labels } };
      assert.equal(asOperator(mine), '', `${type.kind} ${n}`);
    }
    assert.match(
      asOperator(role('x-weft-gateway', { resourceNames: ['weft-proxy-config'] })),
      /may only write its own/,
      'another ConfigMap',
    );
    assert.match(
      asOperator(role('x-weft-gateway', { resourceNames: ['x-weft-gateway'] }, {})),
      /may only write its own/,
      'no labels',
    );
    assert.match(
      asOperator(role('x', { resourceNames: ['x'] })),
      /may only write its own/,
      'not a gateway name',
    );
    assert.match(
      asOperator(binding('fast-weft-gateway', sa('default'))),
      /may only write its own/,
      'another ServiceAccount',
    );
    assert.match(
      asOperator(
        binding('fast-weft-gateway', {
          kind: 'Group',
          name: 'system:authenticated',
          apiGroup: 'rbac.authorization.k8s.io',
        }),
      ),
      /may only write its own/,
      'a group',
    );
  });
});
