import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { contentVersion } from '../api/hash.ts';
import type { AuthorizationPolicy, Mesh } from '../api/index.ts';
import { durationMs } from '../api/index.ts';
import { CONFIG_DISTRIBUTION, ProxyConfig } from '../api/proxyconfig.ts';
import { check } from '../api/validate.ts';
import { Compiler, compile, compileNamespace, meshedNamespaces } from './compiler.ts';
import { REASON } from './conditions.ts';
import { decode, encode } from './distribution.ts';
import { scaleSnapshot, split } from './fixtures.ts';
import type { ClusterSnapshot } from './types.ts';

const policy = (ns: string, name: string, spec: AuthorizationPolicy['spec']): AuthorizationPolicy => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: ns, generation: 1 },
  spec,
});

/** reviews (root) → reviews-v1 / reviews-v2 in "shop", plus a caller namespace "web". */
function shop(): ClusterSnapshot {
  const snap = scaleSnapshot(0, 0, 'shop');
  snap.namespaces.push({ metadata: { name: 'web', labels: { 'weft.dev/inject': 'enabled' } } });
  snap.namespaces.push({ metadata: { name: 'plain' } });
  for (const [i, name] of ['reviews', 'reviews-v1', 'reviews-v2'].entries()) {
    snap.services.push({
      metadata: { name, namespace: 'shop' },
      spec: { clusterIP: `10.96.0.${10 + i}`, ports: [{ name: 'http', port: 9080, appProtocol: 'http' }] },
    });
  }
  snap.services.push({
    metadata: { name: 'kubernetes', namespace: 'default' },
    spec: { clusterIP: '10.96.0.1' },
  });
  snap.pods.push({
    metadata: { name: 'reviews-v1-a', namespace: 'shop' },
    spec: { serviceAccountName: 'reviews', containers: [{ name: 'app' }, { name: 'weft-proxy' }] },
  });
  snap.pods.push({
    metadata: { name: 'reviews-v1-b', namespace: 'shop' },
    spec: { containers: [{ name: 'app' }] },
  });
  snap.endpointSlices.push({
    metadata: {
      name: 'reviews-v1-x',
      namespace: 'shop',
      labels: { 'kubernetes.io/service-name': 'reviews-v1' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [
      {
        addresses: ['10.0.0.2'],
        conditions: { ready: false, serving: true, terminating: true },
        targetRef: { kind: 'Pod', name: 'reviews-v1-b', namespace: 'shop' },
      },
      {
        addresses: ['10.0.0.1'],
        conditions: { ready: true },
        targetRef: { kind: 'Pod', name: 'reviews-v1-a', namespace: 'shop' },
        zone: 'z1',
      },
    ],
  });
  snap.trafficSplits.push(
    split('shop', 'canary', {
      service: 'reviews',
      backends: [
        { service: 'reviews-v2', weight: 10 },
        { service: 'reviews-v1', weight: 90 },
      ],
      timeout: '5s',
      retries: { attempts: 3, perTryTimeout: '1s', retryOn: ['gateway-error'] },
    }),
  );
  snap.authorizationPolicies.push(
    policy('shop', 'readers', {
      selector: { matchLabels: { app: 'reviews' } },
      action: 'ALLOW',
      rules: [{ from: [{ source: { serviceAccounts: ['web/frontend'] } }] }],
    }),
    policy('web', 'deny-all', { action: 'DENY', rules: [{}] }),
  );
  return snap;
}

function shuffle<T>(list: T[], seed: number): T[] {
  const out = [...list];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('compiler', () => {
  test('a Service, TrafficSplit and AuthorizationPolicy produce the expected, valid config', () => {
    const cfg = compileNamespace(shop(), 'shop')!;
    assert.deepEqual(check(ProxyConfig, cfg), [], 'valid against the ProxyConfig schema the proxy uses');
    const { version, ...rest } = cfg;
    assert.equal(version, contentVersion(rest), 'version is the content hash of the rest');
    assert.deepEqual(
      cfg.services.map((s) => s.id),
      ['shop/reviews', 'shop/reviews-v1', 'shop/reviews-v2'],
      'the apiserver Service is left out',
    );
    const v1 = cfg.services.find((s) => s.id === 'shop/reviews-v1')!;
    assert.deepEqual(v1.clusterIPs, ['10.96.0.11']);
    assert.deepEqual(v1.ports, [{ appProtocol: 'http', name: 'http', port: 9080, protocol: 'TCP' }]);
    assert.deepEqual(v1.hostnames, [
      'reviews-v1.shop.svc.cluster.local',
      'reviews-v1.shop.svc',
      'reviews-v1.shop',
      'reviews-v1',
    ]);
    assert.deepEqual(v1.endpoints, [
      {
        address: '10.0.0.1',
        identity: 'spiffe://cluster.local/ns/shop/sa/reviews',
        meshed: true,
        pod: 'reviews-v1-a',
        ports: { http: 8080 },
        ready: true,
        serving: true,
        terminating: false,
        zone: 'z1',
      },
      {
        address: '10.0.0.2',
        identity: 'spiffe://cluster.local/ns/shop/sa/default',
        meshed: false,
        pod: 'reviews-v1-b',
        ports: { http: 8080 },
        ready: false,
        serving: true,
        terminating: true,
      },
    ]);
    assert.deepEqual(cfg.routes, [
      {
        backends: [
          { service: 'shop/reviews-v1', weight: 90 },
          { service: 'shop/reviews-v2', weight: 10 },
        ],
        matches: [],
        name: 'shop/canary',
        retries: {
          attempts: 3,
          budgetPercent: 20,
          minRetriesPerSecond: 10,
          perTryTimeoutMs: 1000,
          retryOn: ['gateway-error'],
        },
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
    assert.equal(cfg.mesh.mtls.mode, 'PERMISSIVE');
    assert.equal(cfg.mesh.trustDomain, 'cluster.local');
  });

  // Found by the fault suite: a pod deleted with --grace-period=0 --force leaves the Pod cache at
  // once while the EndpointSlice still lists it and its sidecar still runs. Compiled as an
  // endpoint of no known pod (not meshed, no identity), it was sent plaintext, and its STRICT
  // sidecar answered 403 "plaintext refused" to one request of 127.
  test('an EndpointSlice entry whose Pod is not in the cache is left out, never sent plaintext', () => {
    const snap = shop();
    snap.pods = snap.pods.filter((p) => p.metadata.name !== 'reviews-v1-a');
    const v1 = compileNamespace(snap, 'shop')!.services.find((s) => s.id === 'shop/reviews-v1')!;
    assert.deepEqual(
      v1.endpoints.map((e) => e.pod),
      ['reviews-v1-b'],
      'the force-deleted pod reviews-v1-a is not an endpoint',
    );
    // An endpoint that names no pod (a hand-written EndpointSlice) is kept, as before.
    snap.endpointSlices[0]!.endpoints!.push({ addresses: ['10.0.0.9'], conditions: { ready: true } });
    const again = compileNamespace(snap, 'shop')!.services.find((s) => s.id === 'shop/reviews-v1')!;
    assert.deepEqual(
      again.endpoints.map((e) => [e.address, e.meshed]),
      [
        ['10.0.0.2', false],
        ['10.0.0.9', false],
      ],
    );
  });

  test('each meshed namespace gets its own policies and short hostnames; others get nothing', () => {
    const c = compile(shop());
    assert.deepEqual([...c.configs.keys()], ['shop', 'web']);
    const web = c.configs.get('web')!.config();
    assert.deepEqual(
      web.authorizationPolicies.map((p) => p.name),
      ['web/deny-all'],
    );
    assert.equal(web.routes.length, 1, 'routes apply to every caller namespace');
    assert.ok(!web.services[0]!.hostnames.includes('reviews'), 'no short name outside the namespace');
    assert.notEqual(web.version, c.configs.get('shop')!.version);
  });

  test('shuffled inputs give the identical document and version', () => {
    const base = scaleSnapshot(50, 5);
    base.trafficSplits.push(
      split('shop', 'b', { service: 'svc-0001', backends: [{ service: 'svc-0002', weight: 1 }] }),
      split('shop', 'a', {
        service: 'svc-0003',
        backends: [
          { service: 'svc-0004', weight: 1 },
          { service: 'svc-0005', weight: 3 },
        ],
      }),
    );
    base.authorizationPolicies.push(
      policy('shop', 'p2', {
        action: 'DENY',
        rules: [{ to: [{ operation: { paths: ['/admin'], methods: ['GET'] } }] }],
      }),
      policy('shop', 'p1', { selector: { matchLabels: { b: '1', a: '2' } } }),
    );
    const want = JSON.stringify(compileNamespace(base, 'shop'));
    for (let seed = 1; seed <= 5; seed++) {
      const shuffled: ClusterSnapshot = {
        ...base,
        services: shuffle(base.services, seed),
        pods: shuffle(base.pods, seed + 1),
        endpointSlices: shuffle(base.endpointSlices, seed + 2).map((s) => ({
          ...s,
          endpoints: shuffle(s.endpoints ?? [], seed),
        })),
        trafficSplits: shuffle(base.trafficSplits, seed).map((t) => ({
          ...t,
          spec: { ...t.spec, backends: shuffle(t.spec.backends, seed) },
        })),
        authorizationPolicies: shuffle(base.authorizationPolicies, seed),
        namespaces: shuffle(base.namespaces, seed),
      };
      assert.equal(JSON.stringify(compileNamespace(shuffled, 'shop')), want, `seed ${seed}`);
    }
  });

  test('a TrafficSplit naming a missing Service reports it; other routes keep working', () => {
    const snap = shop();
    snap.trafficSplits.push(
      split('shop', 'broken', { service: 'reviews', backends: [{ service: 'reviews-v9', weight: 1 }] }),
    );
    const c = compile(snap);
    const broken = c.splits.find((r) => r.key === 'shop/broken')!;
    assert.deepEqual(broken.resolvedRefs, {
      ok: false,
      reason: REASON.ServiceNotFound,
      message: 'Service(s) not found in namespace shop: reviews-v9',
    });
    assert.equal(broken.programmed, 'none');
    assert.deepEqual(
      c.configs
        .get('shop')!
        .config()
        .routes.map((r) => r.name),
      ['shop/canary'],
    );
  });

  test('a split that stops resolving keeps its last good route programmed', () => {
    const snap = shop();
    const good = compile(snap);
    snap.trafficSplits[0] = split(
      'shop',
      'canary',
      { service: 'reviews', backends: [{ service: 'reviews-v3', weight: 1 }] },
      2,
    );
    snap.lastGood = { routes: good.routes, policies: good.authz };
    const c = compile(snap);
    assert.equal(c.splits[0]!.programmed, 'lastGood');
    assert.equal(c.splits[0]!.resolvedRefs?.ok, false);
    assert.equal(
      c.configs.get('shop')!.version,
      good.configs.get('shop')!.version,
      'nothing programmed changes',
    );
  });

  test('a split stored with a timeout past its bound (before the CEL rule) is not accepted', () => {
    const snap = shop();
    const good = compile(snap);
    snap.trafficSplits[0] = split('shop', 'canary', { ...snap.trafficSplits[0]!.spec, timeout: '600h' }, 2);
    snap.lastGood = { routes: good.routes, policies: good.authz };
    const c = compile(snap);
    const r = c.splits[0]!;
    assert.equal(r.accepted.ok, false);
    assert.match(!r.accepted.ok ? r.accepted.message : '', /spec\.timeout: must be at most 24h/);
    assert.equal(c.configs.get('shop')!.version, good.configs.get('shop')!.version);
  });

  test('an invalid AuthorizationPolicy is not accepted and changes nothing programmed', () => {
    const snap = shop();
    const good = compile(snap);
    snap.authorizationPolicies[0] = policy('shop', 'readers', {
      rules: [{ from: [{ source: { serviceAccounts: ['a/b/c'] } }] }],
    });
    snap.lastGood = { routes: good.routes, policies: good.authz };
    const c = compile(snap);
    const r = c.policies.find((p) => p.key === 'shop/readers')!;
    assert.equal(r.accepted.ok, false);
    assert.equal(!r.accepted.ok && r.accepted.reason, REASON.Invalid);
    assert.match(!r.accepted.ok ? r.accepted.message : '', /serviceAccounts.*a\/b\/c/);
    assert.equal(c.configs.get('shop')!.version, good.configs.get('shop')!.version);
  });

  test('a lower-case method is not accepted, naming the field and the fix', () => {
    const snap = shop();
    snap.authorizationPolicies[0] = policy('shop', 'readers', {
      action: 'DENY',
      rules: [{ to: [{ operation: { methods: ['GET', 'get'], notMethods: ['P*'] } }] }],
    });
    const r = compile(snap).policies.find((p) => p.key === 'shop/readers')!;
    assert.equal(r.accepted.ok, false);
    const message = !r.accepted.ok ? r.accepted.message : '';
    assert.match(
      message,
      /spec\.rules\[0\]\.to\[0\]\.operation\.methods: "get": .*upper-case methods such as GET/,
    );
    assert.doesNotMatch(message, /notMethods/, 'P* is a valid prefix');
    assert.equal(r.programmed, 'none');
  });

  test('Mesh settings: namespace mTLS override, defaults, trust domain in identities', () => {
    const snap = shop();
    const mesh: Mesh = {
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'Mesh',
      metadata: { name: 'default', generation: 1 },
      spec: {
        trustDomain: 'example.org',
        mtls: {
          mode: 'STRICT',
          namespaces: [{ namespace: 'web', mode: 'PERMISSIVE', ports: [{ port: 9090, mode: 'DISABLE' }] }],
        },
        defaults: { timeout: '2s', authorization: 'DENY' },
        pathNormalization: { normalization: 'DECODE_AND_MERGE_SLASHES' },
      },
    };
    assert.equal(compile(snap).configs.get('shop')!.config().mesh.pathNormalization, 'BASE', 'the default');
    snap.mesh = mesh;
    const c = compile(snap);
    assert.equal(c.configs.get('shop')!.config().mesh.mtls.mode, 'STRICT');
    assert.deepEqual(c.configs.get('web')!.config().mesh.mtls, {
      mode: 'PERMISSIVE',
      ports: [{ mode: 'DISABLE', port: 9090 }],
    });
    assert.equal(c.configs.get('shop')!.config().mesh.defaultTimeoutMs, 2000);
    assert.equal(c.configs.get('shop')!.config().mesh.defaultAuthorization, 'DENY');
    assert.equal(c.configs.get('shop')!.config().mesh.pathNormalization, 'DECODE_AND_MERGE_SLASHES');
    const ep = c.configs
      .get('shop')!
      .config()
      .services.find((s) => s.id === 'shop/reviews-v1')!.endpoints[0]!;
    assert.equal(ep.identity, 'spiffe://example.org/ns/shop/sa/reviews');
  });

  test('meshed namespaces: the label, never kube-system or excluded ones', () => {
    assert.deepEqual(
      meshedNamespaces({
        namespaces: [
          { metadata: { name: 'a', labels: { 'weft.dev/inject': 'enabled' } } },
          { metadata: { name: 'kube-system', labels: { 'weft.dev/inject': 'enabled' } } },
          { metadata: { name: 'weft-system', labels: { 'weft.dev/inject': 'enabled' } } },
          { metadata: { name: 'b', labels: { 'weft.dev/inject': 'disabled' } } },
        ],
        excludedNamespaces: ['weft-system'],
      }),
      ['a'],
    );
  });

  test('the memoizing Compiler gives what a fresh compile gives, as inputs change', () => {
    const snap = scaleSnapshot(20, 3);
    for (const [i, s] of snap.endpointSlices.entries()) s.metadata.resourceVersion = String(100 + i);
    for (const p of snap.pods) p.metadata.resourceVersion = '7';
    const compiler = new Compiler();
    const v1 = compiler.compile(snap).configs.get('shop')!;
    assert.equal(v1.json, compile(snap).configs.get('shop')!.json);
    // An endpoint turns unready (new slice resourceVersion); a pod changes ServiceAccount.
    const slice = snap.endpointSlices[3]!;
    snap.endpointSlices[3] = {
      ...slice,
      metadata: { ...slice.metadata, resourceVersion: '999' },
      endpoints: slice.endpoints!.map((e, i) => (i === 0 ? { ...e, conditions: { ready: false } } : e)),
    };
    const pod = snap.pods[0]!;
    snap.pods[0] = {
      metadata: { ...pod.metadata, resourceVersion: '8' },
      spec: { ...pod.spec, serviceAccountName: 'other' },
    };
    const v2 = compiler.compile(snap).configs.get('shop')!;
    assert.notEqual(v2.version, v1.version);
    assert.equal(v2.json, compile(snap).configs.get('shop')!.json);
    const doc = v2.config();
    assert.equal(doc.services[3]!.endpoints[0]!.ready, false);
    assert.equal(doc.services[0]!.endpoints[0]!.identity, 'spiffe://cluster.local/ns/shop/sa/other');
  });

  test('durations', () => {
    assert.equal(durationMs('1h30m'), 5_400_000);
    assert.equal(durationMs('250ms'), 250);
    assert.equal(durationMs('1.5s'), 1500);
    assert.equal(durationMs('0s'), 0);
  });

  test('1,000 services × 10 endpoints fit the ConfigMap limit and round-trip', () => {
    const snap = scaleSnapshot(1000, 10);
    const cfg = compileNamespace(snap, 'shop')!;
    assert.equal(cfg.services.length, 1000);
    assert.deepEqual(check(ProxyConfig, cfg), []);
    const enc = encode(cfg);
    assert.ok(enc.configMaps.length <= CONFIG_DISTRIBUTION.maxShards);
    for (const cm of enc.configMaps) {
      const bytes = Buffer.byteLength(JSON.stringify(cm));
      assert.ok(bytes < 1024 * 1024, `${cm.metadata.name} is ${bytes} bytes`);
    }
    const back = decode(new Map(enc.configMaps.map((cm) => [cm.metadata.name, cm])));
    assert.deepEqual(back, cfg);
    process.stdout.write(
      `# 1000×10: ${enc.size} bytes JSON, ${enc.compressedSize} gzipped, ${enc.configMaps.length} ConfigMap(s)\n`,
    );
  });

  test('a config larger than one shard is split across ConfigMaps and reassembled', () => {
    const cfg = compileNamespace(scaleSnapshot(200, 10), 'shop')!;
    const enc = encode(cfg, { maxBytesPerShard: 8 * 1024 });
    assert.ok(enc.configMaps.length > 1);
    assert.equal(enc.configMaps[0]!.metadata.name, 'weft-proxy-config');
    assert.equal(enc.configMaps[1]!.metadata.name, 'weft-proxy-config-1');
    const back = decode(new Map(enc.configMaps.map((cm) => [cm.metadata.name, cm])));
    assert.equal(back.version, cfg.version);
    const tampered = new Map(enc.configMaps.map((cm) => [cm.metadata.name, structuredClone(cm)]));
    tampered.get('weft-proxy-config-1')!.binaryData!['part-001.gz'] = Buffer.from('x').toString('base64');
    assert.throws(() => decode(tampered), /does not match/);
  });
});
