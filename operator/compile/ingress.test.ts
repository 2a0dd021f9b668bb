// Weft's gateway (compile/ingress.ts, reconcilers/ingress.ts): pure tests of the routing table,
// the Gateway, class and route verdicts, and the objects that run a Gateway.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Route as RouteSchema } from '../../api/proxyconfig.ts';
import { check } from '../../api/validate.ts';
import { issueServingCertificate } from '../../webhook/tls.ts';
import {
  gatewayStatus,
  gatewayWorkload,
  SERVICE_TYPE_ANNOTATION,
  tableGeneration,
  workloadName,
} from '../reconcilers/ingress.ts';
import { cluster, http, to } from './gatewayfixtures.ts';
import {
  GATEWAY_CONTROLLER_NAME,
  GATEWAY_GROUP,
  type GatewayListenerSpec,
  type GatewayObj,
  type ReferenceGrantObj,
} from './gatewaytypes.ts';
import {
  compileIngress,
  effectiveHostnames,
  gatewayClassConditions,
  gatewayKeysOf,
  hostOrder,
  isWeftClass,
} from './ingress.ts';
import { indexServices } from './services.ts';

const gateway = (listeners: GatewayListenerSpec[], extra: Partial<GatewayObj['spec']> = {}): GatewayObj => ({
  metadata: { name: 'edge', namespace: 'shop', generation: 2, uid: 'u-1' },
  spec: { gatewayClassName: 'weft', listeners, ...extra },
});
const gwParent = (extra: Record<string, unknown> = {}) => ({
  group: GATEWAY_GROUP,
  kind: 'Gateway',
  name: 'edge',
  ...extra,
});
/** The fields of the workload objects these tests read. */
interface Shape {
  data: Record<string, string>;
  spec: {
    type?: string;
    ports: unknown[];
    template: {
      spec: {
        serviceAccountName: string;
        initContainers?: unknown;
        containers: {
          command: string[];
          restartPolicy?: string;
          env: { name: string; value?: string }[];
          readinessProbe: { periodSeconds: number };
        }[];
      };
    };
  };
  rules: unknown[];
  roleRef: unknown;
  subjects: unknown[];
}
const services = () => indexServices(cluster().services);
const cond = (list: { type: string; status: string; reason: string; message: string }[], type: string) =>
  list.find((c) => c.type === type);

describe('Weft gateway: GatewayClass', () => {
  test('only the weft.dev/gateway controllerName is Weft’s; parametersRef is refused naming the field', () => {
    const mine = { metadata: { name: 'weft' }, spec: { controllerName: GATEWAY_CONTROLLER_NAME } };
    assert.equal(isWeftClass(mine), true);
    assert.equal(isWeftClass({ metadata: { name: 'x' }, spec: { controllerName: 'weft.dev/mesh' } }), false);
    assert.equal(gatewayClassConditions(mine)[0]?.status, 'True');
    const bad = gatewayClassConditions({ ...mine, spec: { ...mine.spec, parametersRef: { name: 'p' } } })[0]!;
    assert.equal(bad.status, 'False');
    assert.equal(bad.reason, 'InvalidParameters');
    assert.match(bad.message, /spec\.parametersRef/);
  });
});

describe('Weft gateway: hostnames', () => {
  test('listener and route hostnames intersect as the Gateway API says', () => {
    assert.deepEqual(effectiveHostnames(undefined, undefined), ['*']);
    assert.deepEqual(effectiveHostnames('a.example.com', undefined), ['a.example.com']);
    assert.deepEqual(effectiveHostnames('*.example.com', ['a.example.com', 'other.org']), ['a.example.com']);
    assert.deepEqual(effectiveHostnames('a.example.com', ['*.example.com']), ['a.example.com']);
    assert.deepEqual(effectiveHostnames('*.example.com', ['*.b.example.com']), ['*.b.example.com']);
    assert.deepEqual(effectiveHostnames('*.example.com', ['example.com']), []);
    assert.deepEqual(['*', '*.example.com', 'b.example.com', 'a.b.example.com'].sort(hostOrder), [
      'a.b.example.com',
      'b.example.com',
      '*.example.com',
      '*',
    ]);
  });
});

describe('Weft gateway: routing table and status', () => {
  test('routes attach per listener and hostname, compiled like mesh routes (404 catch-all, schema-valid)', () => {
    const gw = gateway([
      { name: 'web', port: 80, protocol: 'HTTP', hostname: '*.example.com' },
      { name: 'api', port: 8080, protocol: 'HTTP' },
    ]);
    const r1 = http('shop', 'shop-web', {
      parentRefs: [gwParent({ sectionName: 'web' })],
      hostnames: ['shop.example.com'],
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/reviews' } }], backendRefs: [to('reviews')] },
      ],
    });
    const r2 = http('shop', 'any', {
      parentRefs: [gwParent()],
      rules: [{ backendRefs: [to('reviews-v1')] }],
    });
    const c = compileIngress({ gateway: gw, httpRoutes: [r1, r2], services: services() });
    assert.equal(c.accepted.ok, true);
    assert.deepEqual(
      c.listeners.map((l) => [l.name, l.attachedRoutes, l.ok]),
      [
        ['web', 2, true],
        ['api', 1, true],
      ],
    );
    const p80 = c.config.ports.find((p) => p.port === 80)!;
    assert.equal(p80.bind, 15_080, 'a port below 1024 is bound higher in the pod (the proxy is not root)');
    assert.deepEqual(
      p80.hosts.map((h) => [h.hostname, h.routes.map((r) => r.name)]),
      [
        [
          'shop.example.com',
          ['HTTPRoute/shop/shop-web/0', 'HTTPRoute/shop/any/0', 'Gateway/shop/edge:no-route-matched'],
        ],
        ['*.example.com', ['HTTPRoute/shop/any/0', 'Gateway/shop/edge:no-route-matched']],
      ],
    );
    const p8080 = c.config.ports.find((p) => p.port === 8080)!;
    assert.deepEqual(
      p8080.hosts.map((h) => h.hostname),
      ['*'],
    );
    assert.equal(p8080.hosts[0]!.routes[0]!.backends[0]!.service, 'shop/reviews-v1');
    for (const p of c.config.ports)
      for (const h of p.hosts) for (const r of h.routes) assert.deepEqual(check(RouteSchema, r, 'route'), []);
    assert.equal(c.routeParents.get('HTTPRoute/shop/shop-web')?.[0]?.accepted.ok, true);
  });

  test('a route that cannot attach says why, naming the listener; other routes are unaffected', () => {
    const gw = gateway([{ name: 'web', port: 80, protocol: 'HTTP', hostname: 'a.example.com' }]);
    const cases = [
      http('other', 'foreign', {
        parentRefs: [gwParent({ namespace: 'shop' })],
        rules: [{ backendRefs: [to('reviews')] }],
      }),
      http('shop', 'wrong-host', {
        parentRefs: [gwParent()],
        hostnames: ['b.example.com'],
        rules: [{ backendRefs: [to('reviews')] }],
      }),
      http('shop', 'no-section', { parentRefs: [gwParent({ sectionName: 'nope' })], rules: [] }),
      http('shop', 'bad-filter', {
        parentRefs: [gwParent()],
        rules: [{ filters: [{ type: 'ExtensionRef' }], backendRefs: [to('reviews')] }],
      }),
      http('shop', 'good', { parentRefs: [gwParent()], rules: [{ backendRefs: [to('reviews')] }] }),
    ];
    const c = compileIngress({ gateway: gw, httpRoutes: cases, services: services() });
    const v = (k: string) => c.routeParents.get(k)?.[0]?.accepted;
    assert.equal(v('HTTPRoute/other/foreign')?.ok, false);
    assert.match(
      JSON.stringify(v('HTTPRoute/other/foreign')),
      /NotAllowedByListeners.*namespace other.*from: Same/,
    );
    assert.match(
      JSON.stringify(v('HTTPRoute/shop/wrong-host')),
      /NoMatchingListenerHostname.*spec\.hostnames/,
    );
    assert.match(
      JSON.stringify(v('HTTPRoute/shop/no-section')),
      /NoMatchingParent.*no listener named \\"nope\\"/,
    );
    assert.match(
      JSON.stringify(v('HTTPRoute/shop/bad-filter')),
      /UnsupportedValue.*spec\.rules\[0\]\.filters/,
    );
    assert.equal(v('HTTPRoute/shop/good')?.ok, true);
    assert.equal(c.listeners[0]!.attachedRoutes, 1);
    assert.deepEqual(
      c.config.ports[0]!.hosts[0]!.routes.map((r) => r.name),
      ['HTTPRoute/shop/good/0', 'Gateway/shop/edge:no-route-matched'],
    );
  });

  test('a gateway route acts for every client: a backend in another namespace needs a ReferenceGrant; Selector admits labelled namespaces', () => {
    const gw = gateway([
      {
        name: 'web',
        port: 80,
        protocol: 'HTTP',
        allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { edge: 'yes' } } } },
      },
    ]);
    const cross = (ns: string) =>
      http(ns, 'cross', {
        parentRefs: [gwParent({ namespace: 'shop' })],
        rules: [{ backendRefs: [{ ...to('other'), namespace: 'lib' }] }],
      });
    const labels = (ns: string) => (ns === 'web' ? { edge: 'yes' } : undefined);
    const c = compileIngress({
      gateway: gw,
      httpRoutes: [cross('web'), cross('other')],
      services: services(),
      namespaceLabels: labels,
    });
    const web = c.routeParents.get('HTTPRoute/web/cross')![0]!;
    assert.equal(web.accepted.ok, true, 'namespace web has the label the selector asks');
    assert.match(JSON.stringify(web.resolvedRefs), /RefNotPermitted/);
    assert.equal(
      c.config.ports[0]!.hosts[0]!.routes[0]!.directResponse?.status,
      500,
      'an unresolved backend gets 500, as in the mesh',
    );
    assert.match(
      JSON.stringify(c.routeParents.get('HTTPRoute/other/cross')![0]!.accepted),
      /NotAllowedByListeners/,
    );
    const granted = compileIngress({
      gateway: gw,
      httpRoutes: [cross('web')],
      services: services(),
      namespaceLabels: labels,
      referenceGrants: [
        {
          metadata: { name: 'g', namespace: 'lib' },
          spec: {
            from: [{ group: GATEWAY_GROUP, kind: 'HTTPRoute', namespace: 'web' }],
            to: [{ group: '', kind: 'Service' }],
          },
        },
      ],
    });
    assert.equal(granted.routeParents.get('HTTPRoute/web/cross')![0]!.resolvedRefs.ok, true);
    assert.equal(granted.config.ports[0]!.hosts[0]!.routes[0]!.backends[0]!.service, 'lib/other');
  });

  test('TLS listeners are refused (not yet), conflicts are reported, the valid listeners still serve', () => {
    const gw = gateway([
      { name: 'web', port: 80, protocol: 'HTTP' },
      { name: 'tls', port: 443, protocol: 'TLS' },
      { name: 'twin', port: 80, protocol: 'HTTP' },
      { name: 'alt', port: 8000, protocol: 'HTTP', allowedRoutes: { kinds: [{ kind: 'TCPRoute' }] } },
    ]);
    const c = compileIngress({ gateway: gw, services: services() });
    const l = (n: string) => c.listeners.find((x) => x.name === n)!;
    assert.equal(cond(l('tls').conditions, 'Accepted')?.reason, 'UnsupportedProtocol');
    assert.match(l('tls').conditions[0]!.message, /spec\.listeners\[1\]\.protocol: TLS/);
    assert.equal(cond(l('web').conditions, 'Conflicted')?.reason, 'HostnameConflict');
    assert.equal(cond(l('alt').conditions, 'ResolvedRefs')?.reason, 'InvalidRouteKinds');
    assert.deepEqual(l('alt').supportedKinds, []);
    assert.equal(c.accepted.ok, true, 'some listeners are valid');
    assert.deepEqual(l('tls').supportedKinds, [], 'an unsupported protocol supports no route kind');
    assert.equal(
      cond(gatewayStatus(gw, c, {}).conditions!, 'Accepted')?.reason,
      'ListenersNotValid',
      'Accepted=True, reason ListenersNotValid, when some listeners are invalid',
    );
    assert.deepEqual(
      c.config.ports.map((p) => p.port),
      [8000],
    );
    const none = compileIngress({
      gateway: gateway([{ name: 'tls', port: 443, protocol: 'TLS' }]),
      services: services(),
    });
    assert.equal(none.accepted.ok, false);
    const addr = compileIngress({
      gateway: gateway([{ name: 'web', port: 80, protocol: 'HTTP' }], { addresses: [{ value: '1.2.3.4' }] }),
      services: services(),
    });
    assert.match(JSON.stringify(addr.accepted), /UnsupportedAddress.*spec\.addresses/);
  });

  test('the workload: owned by the Gateway, the proxy in gateway mode without interception, NodePort unless LoadBalancer is asked', () => {
    const gw = gateway([{ name: 'web', port: 80, protocol: 'HTTP' }]);
    const c = compileIngress({ gateway: gw, services: services() });
    const w = gatewayWorkload(gw, c, undefined);
    assert.ok('objects' in w);
    const by = (kind: string) => w.objects.find((o) => o.type.kind === kind)!.obj as unknown as Shape;
    assert.deepEqual(
      w.objects.map((o) => o.type.kind),
      ['ServiceAccount', 'ConfigMap', 'Role', 'RoleBinding', 'Secret', 'Deployment', 'Service'],
    );
    const certs = by('Secret') as unknown as { metadata: { name: string }; data: Record<string, string> };
    assert.equal(certs.metadata.name, 'edge-weft-gateway-tls');
    assert.deepEqual(certs.data, {}, 'no HTTPS listener: no certificate');
    for (const o of w.objects) {
      assert.equal(
        o.obj.metadata.name,
        o.type.kind === 'Secret' ? 'edge-weft-gateway-tls' : 'edge-weft-gateway',
      );
      assert.deepEqual(o.obj.metadata.ownerReferences?.[0], {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        name: 'edge',
        uid: 'u-1',
        controller: true,
      });
    }
    const pod = by('Deployment').spec.template.spec;
    assert.equal(pod.serviceAccountName, 'edge-weft-gateway');
    assert.equal(pod.initContainers, undefined, 'no iptables init container');
    assert.deepEqual(pod.containers[0].command.slice(-1), ['--gateway']);
    assert.equal(pod.containers[0].restartPolicy, undefined);
    assert.equal(pod.containers[0].readinessProbe.periodSeconds, 1, 'Programmed as soon as it is ready');
    // A listener change must not roll the pods: the template names no listener port.
    const other = compileIngress({
      gateway: gateway([{ name: 'web', port: 8081, protocol: 'HTTP' }]),
      services: services(),
    });
    const w4 = gatewayWorkload(gw, other, undefined);
    assert.ok('objects' in w4);
    assert.deepEqual(
      (w4.objects.find((o) => o.type.kind === 'Deployment')!.obj as unknown as Shape).spec.template,
      by('Deployment').spec.template,
    );
    assert.equal(by('Service').spec.type, 'NodePort');
    assert.deepEqual(by('Service').spec.ports[0], {
      name: 'gw-80',
      port: 80,
      targetPort: 15_080,
      protocol: 'TCP',
    });
    assert.deepEqual(JSON.parse(by('ConfigMap').data['gateway.json']), { ...c.config, generation: 1 });
    // The fast path: the proxy watches its ConfigMap, which its ServiceAccount alone may read.
    assert.deepEqual(
      pod.containers[0].env.find((e) => e.name === 'WEFT_GATEWAY_CONFIGMAP'),
      { name: 'WEFT_GATEWAY_CONFIGMAP', value: 'edge-weft-gateway' },
    );
    assert.deepEqual(by('Role').rules, [
      {
        apiGroups: [''],
        resources: ['configmaps'],
        resourceNames: ['edge-weft-gateway'],
        verbs: ['get', 'list', 'watch'],
      },
    ]);
    assert.deepEqual(by('RoleBinding').roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: 'edge-weft-gateway',
    });
    assert.deepEqual(by('RoleBinding').subjects, [
      { kind: 'ServiceAccount', name: 'edge-weft-gateway', namespace: 'shop' },
    ]);
    const lb = {
      ...gw,
      metadata: { ...gw.metadata, annotations: { [SERVICE_TYPE_ANNOTATION]: 'LoadBalancer' } },
    };
    const w2 = gatewayWorkload(lb, c, undefined);
    assert.ok('objects' in w2);
    assert.equal((w2.objects.at(-1)!.obj as unknown as Shape).spec.type, 'LoadBalancer');
    const long = { ...gw, metadata: { ...gw.metadata, name: 'x'.repeat(60) } };
    const w3 = gatewayWorkload(long, c, undefined);
    assert.ok('error' in w3);
    assert.match(w3.error, /metadata\.name.*50 characters/);
    assert.equal(workloadName('edge'), 'edge-weft-gateway');
  });

  test('a route names its Gateways by parentRef (namespace defaulting to its own); Services are not Gateways', () => {
    const route = {
      metadata: { namespace: 'shop' },
      spec: {
        parentRefs: [
          { name: 'edge' },
          { name: 'public', namespace: 'infra', sectionName: 'http' },
          { group: '', kind: 'Service', name: 'web' },
          { group: 'example.com', kind: 'Gateway', name: 'theirs' },
        ],
      },
    };
    assert.deepEqual(gatewayKeysOf(route), ['shop/edge', 'infra/public']);
    assert.deepEqual(gatewayKeysOf({ metadata: {}, spec: {} }), []);
  });

  test('the routing table’s generation: kept while the content is the same, the next one when it changes', () => {
    const gw = gateway([{ name: 'web', port: 80, protocol: 'HTTP' }]);
    const c = compileIngress({ gateway: gw, services: services() }).config;
    assert.equal(tableGeneration(c, undefined), 1, 'no ConfigMap yet');
    assert.equal(tableGeneration(c, JSON.stringify({ ...c, generation: 4 })), 4, 'the same table');
    const other = compileIngress({
      gateway: gateway([{ name: 'web', port: 81, protocol: 'HTTP' }]),
      services: services(),
    });
    assert.equal(tableGeneration(other.config, JSON.stringify({ ...c, generation: 4 })), 5, 'changed');
    assert.equal(tableGeneration(c, JSON.stringify(c)), 1, 'written before generations: the first');
    assert.equal(tableGeneration(c, 'not json'), 1);
  });

  test('status: Programmed waits for a ready replica; addresses from the Service; listeners with attachedRoutes', () => {
    const gw = gateway([{ name: 'web', port: 80, protocol: 'HTTP' }]);
    const c = compileIngress({
      gateway: gw,
      httpRoutes: [
        http('shop', 'r', { parentRefs: [gwParent()], rules: [{ backendRefs: [to('reviews')] }] }),
      ],
      services: services(),
    });
    const svc = { spec: { clusterIP: '10.96.5.5', ports: [{ port: 80, nodePort: 30080 }] } };
    const pending = gatewayStatus(gw, c, { service: svc, deployment: { status: {} } });
    assert.equal(cond(pending.conditions!, 'Accepted')?.status, 'True');
    assert.equal(cond(pending.conditions!, 'Programmed')?.reason, 'Pending');
    assert.deepEqual(pending.addresses, [{ type: 'IPAddress', value: '10.96.5.5' }]);
    assert.equal(pending.listeners![0]!.attachedRoutes, 1);
    assert.equal(pending.conditions![0]!.observedGeneration, 2);
    const ready = gatewayStatus(
      gw,
      c,
      { service: svc, deployment: { status: { readyReplicas: 1 } } },
      undefined,
    );
    const prog = ready.conditions!.find((x) => x.type === 'Programmed')!;
    assert.equal(prog.status, 'True');
    assert.match(prog.message, /80 → node port 30080/);
    const lb = gatewayStatus(gw, c, {
      service: { ...svc, status: { loadBalancer: { ingress: [{ ip: '192.0.2.7' }] } } },
    });
    assert.deepEqual(lb.addresses, [{ type: 'IPAddress', value: '192.0.2.7' }]);
    const refused = gatewayStatus(gw, c, {}, { accepted: 'metadata.name: too long' });
    assert.equal(cond(refused.conditions!, 'Accepted')?.status, 'False');
    assert.equal(cond(refused.conditions!, 'Programmed')?.status, 'False');
    const inTheWay = gatewayStatus(gw, c, {}, { programmed: 'ConfigMap shop/edge-weft-gateway exists' });
    assert.equal(cond(inTheWay.conditions!, 'Accepted')?.status, 'True');
    assert.equal(cond(inTheWay.conditions!, 'Programmed')?.reason, 'Invalid');
  });
});

describe('Weft gateway: HTTPS listeners', async () => {
  const now = new Date();
  const a = await issueServingCertificate({ dnsNames: ['shop.example.com'], ipAddresses: [], now });
  const b = await issueServingCertificate({ dnsNames: ['*.example.com'], ipAddresses: [], now });
  const secret = (cert: string, key: string, type = 'kubernetes.io/tls') => ({
    type,
    data: { 'tls.crt': Buffer.from(cert).toString('base64'), 'tls.key': Buffer.from(key).toString('base64') },
  });
  const secrets = new Map([
    ['shop/a', secret(a.certPem, a.keyPem)],
    ['shop/b', secret(b.certPem, b.keyPem)],
    ['lib/b', secret(b.certPem, b.keyPem)],
    ['shop/malformed', secret('Hello world\n', 'Hello world\n')],
    ['shop/mismatch', secret(a.certPem, b.keyPem)],
    ['shop/opaque', secret(a.certPem, a.keyPem, 'Opaque')],
  ]);
  const https = (name: string, ref: Record<string, unknown> | undefined, hostname?: string) => ({
    name,
    port: 443,
    protocol: 'HTTPS',
    ...(hostname ? { hostname } : {}),
    tls: ref ? { certificateRefs: [ref] } : {},
  });
  const compile = (listeners: GatewayListenerSpec[], referenceGrants: ReferenceGrantObj[] = []) =>
    compileIngress({
      gateway: gateway(listeners),
      services: services(),
      referenceGrants,
      secrets: (ns, name) => secrets.get(`${ns}/${name}`),
    });
  const resolved = (c: ReturnType<typeof compile>, name: string) =>
    cond(c.listeners.find((l) => l.name === name)!.conditions, 'ResolvedRefs')!;

  test('a valid Secret: served by SNI hostname, certificate and key in the `-tls` Secret, never in the ConfigMap', () => {
    const c = compile([
      https('wild', { name: 'b' }, '*.example.com'),
      https('shop', { name: 'a', kind: 'Secret', group: '' }, 'shop.example.com'),
    ]);
    assert.equal(resolved(c, 'shop').status, 'True');
    assert.deepEqual(c.config.ports, [
      {
        port: 443,
        bind: 15_443,
        hosts: [],
        tls: [
          { hostname: 'shop.example.com', cert: 'shop.crt', key: 'shop.key' },
          { hostname: '*.example.com', cert: 'wild.crt', key: 'wild.key' },
        ],
      },
    ]);
    assert.equal(c.certificates.get('shop.crt'), a.certPem);
    assert.equal(c.certificates.get('wild.key'), b.keyPem);
    const w = gatewayWorkload(gateway([]), c, undefined);
    assert.ok('objects' in w);
    const kinds = (k: string) => w.objects.find((o) => o.type.kind === k)!.obj as Record<string, unknown>;
    const data = kinds('Secret').data as Record<string, string>;
    assert.equal(Buffer.from(data['shop.key']!, 'base64').toString(), a.keyPem);
    assert.doesNotMatch(JSON.stringify(kinds('ConfigMap')), /PRIVATE KEY|BEGIN CERTIFICATE/);
    const pod = JSON.stringify(kinds('Deployment'));
    assert.match(pod, /"secretName":"edge-weft-gateway-tls"/);
    assert.match(pod, /"WEFT_GATEWAY_CERTS","value":"\/etc\/weft\/gateway-tls"/);
  });

  test('a bad certificateRef: ResolvedRefs False naming the field and the fix; the listener is not served, the others are', () => {
    const cases: [Record<string, unknown> | undefined, string, RegExp][] = [
      [undefined, 'InvalidCertificateRef', /tls\.certificateRefs: an HTTPS listener needs a certificate/],
      [{ name: 'nope' }, 'InvalidCertificateRef', /certificateRefs\[0\]: Secret shop\/nope not found/],
      [{ name: 'a', kind: 'WrongKind' }, 'InvalidCertificateRef', /core\/WrongKind is not supported/],
      [{ name: 'a', group: 'wrong.group.company.io' }, 'InvalidCertificateRef', /wrong\.group\.company\.io/],
      [{ name: 'malformed' }, 'InvalidCertificateRef', /tls\.crt is not a PEM certificate/],
      [{ name: 'mismatch' }, 'InvalidCertificateRef', /tls\.key is not the key of the tls\.crt/],
      [{ name: 'opaque' }, 'InvalidCertificateRef', /type Opaque/],
      [{ name: 'b', namespace: 'lib' }, 'RefNotPermitted', /ReferenceGrant in lib from Gateways in shop/],
    ];
    for (const [ref, reason, message] of cases) {
      const c = compile([https('bad', ref), { name: 'web', port: 80, protocol: 'HTTP' }]);
      const r = resolved(c, 'bad');
      assert.deepEqual([r.status, r.reason], ['False', reason], JSON.stringify(ref));
      assert.match(r.message, message);
      assert.match(r.message, /spec\.listeners\[0\]\.tls/);
      assert.equal(cond(c.listeners[0]!.conditions, 'Programmed')?.status, 'False');
      assert.deepEqual(
        c.config.ports.map((p) => p.port),
        [80],
        'the valid listener still serves',
      );
      assert.equal(c.certificates.size, 0);
    }
  });

  test('a Secret in another namespace needs a ReferenceGrant from Gateways to that Secret (or all Secrets)', () => {
    const grant = (to: Record<string, unknown>, kind = 'Gateway'): ReferenceGrantObj => ({
      metadata: { name: 'g', namespace: 'lib' },
      spec: {
        from: [{ group: GATEWAY_GROUP, kind, namespace: 'shop' }],
        to: [{ group: '', ...to } as never],
      },
    });
    const l = [https('x', { name: 'b', namespace: 'lib' })];
    assert.equal(resolved(compile(l, [grant({ kind: 'Secret', name: 'b' })]), 'x').status, 'True');
    assert.equal(resolved(compile(l, [grant({ kind: 'Secret' })]), 'x').status, 'True');
    assert.equal(
      resolved(compile(l, [grant({ kind: 'Secret', name: 'other' })]), 'x').reason,
      'RefNotPermitted',
    );
    assert.equal(resolved(compile(l, [grant({ kind: 'Service' })]), 'x').reason, 'RefNotPermitted');
    assert.equal(
      resolved(compile(l, [grant({ kind: 'Secret' }, 'HTTPRoute')]), 'x').reason,
      'RefNotPermitted',
    );
  });

  test('a route attaches to (and is counted by) a listener whose certificate does not resolve, which serves nothing', () => {
    const c = compileIngress({
      gateway: gateway([https('tls', { name: 'nope' })]),
      httpRoutes: [
        http('shop', 'r', { parentRefs: [gwParent()], rules: [{ backendRefs: [to('reviews')] }] }),
      ],
      services: services(),
      secrets: (ns, name) => secrets.get(`${ns}/${name}`),
    });
    assert.equal(c.listeners[0]!.attachedRoutes, 1);
    assert.equal(c.routeParents.get('HTTPRoute/shop/r')![0]!.accepted.ok, true);
    assert.equal(cond(c.listeners[0]!.conditions, 'Programmed')?.status, 'False');
    assert.deepEqual(c.config.ports, []);
  });

  test('HTTP and HTTPS on one port conflict; tls.mode Passthrough is refused on HTTPS', () => {
    const c = compile([
      https('s', { name: 'a' }),
      { name: 'p', port: 443, protocol: 'HTTP', hostname: 'x.org' },
    ]);
    for (const l of c.listeners) assert.equal(cond(l.conditions, 'Conflicted')?.reason, 'ProtocolConflict');
    assert.deepEqual(c.config.ports, []);
    const p = compile([{ name: 's', port: 443, protocol: 'HTTPS', tls: { mode: 'Passthrough' } }]);
    const acc = cond(p.listeners[0]!.conditions, 'Accepted')!;
    assert.equal(acc.reason, 'UnsupportedValue');
    assert.match(acc.message, /tls\.mode: Passthrough/);
  });
});
