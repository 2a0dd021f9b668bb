// Semantic checks of the CRs against an in-memory view of the cluster: the errors name the
// field, and missing references only warn.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TrafficSplitSpec } from '../api/index.ts';
import { type ClusterView, parseQuantity, type ReviewedObject, validateResource } from './validate.ts';

function view(state: {
  meshes?: string[];
  splits?: Record<string, { name: string; spec: TrafficSplitSpec }[]>;
  objects?: string[];
}): ClusterView {
  const objects = new Set(state.objects ?? []);
  return {
    meshNames: async () => state.meshes ?? [],
    trafficSplits: async (ns) => state.splits?.[ns] ?? [],
    exists: async (kind, ns, name) => objects.has(`${kind}:${ns}/${name}`),
  };
}
const OPTS = { meshNamespace: 'weft-system' };
const split = (name: string, spec: Partial<TrafficSplitSpec> & { service: string }): ReviewedObject => ({
  kind: 'TrafficSplit',
  operation: 'CREATE',
  name,
  namespace: 'shop',
  spec: { backends: [{ service: `${spec.service}-v1`, weight: 1 }], ...spec },
});
const ts = (
  service: string,
  backends: string[],
  extra: Partial<TrafficSplitSpec> = {},
): TrafficSplitSpec => ({
  service,
  backends: backends.map((b) => ({ service: b, weight: 1 })),
  ...extra,
});

describe('Mesh', () => {
  test('only one Mesh; resources and timeouts that cannot work are refused by field', async () => {
    const r = await validateResource(
      {
        kind: 'Mesh',
        operation: 'CREATE',
        name: 'second',
        namespace: '',
        spec: {
          proxy: { resources: { requests: { memory: '256Mi' }, limits: { memory: '128Mi' } } },
          defaults: { timeout: '1s', retries: { attempts: 2, perTryTimeout: '2s' } },
        },
      },
      view({ meshes: ['default'] }),
      OPTS,
    );
    assert.deepEqual(
      r.errors.map((e) => e.field),
      ['metadata.name', 'spec.proxy.resources.requests.memory', 'spec.defaults.retries.perTryTimeout'],
    );
    assert.match(r.errors[0]!.message, /Mesh "default" already does/);
    assert.match(r.warnings.join(), /named "default"/);
  });

  test('updating the one Mesh is fine; missing namespaces and root Secret only warn', async () => {
    const r = await validateResource(
      {
        kind: 'Mesh',
        operation: 'UPDATE',
        name: 'default',
        namespace: '',
        spec: {
          mtls: { namespaces: [{ namespace: 'legacy', mode: 'PERMISSIVE' }] },
          ca: { builtIn: { rootSecretName: 'root' } },
        },
      },
      view({ meshes: ['default'] }),
      OPTS,
    );
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, [
      'spec.ca.builtIn.rootSecretName: Secret weft-system/root does not exist yet; the operator waits for it before issuing identities',
      'spec.mtls.namespaces[0].namespace: namespace legacy does not exist yet',
    ]);
  });

  test('schema errors come first, by field', async () => {
    const r = await validateResource(
      {
        kind: 'Mesh',
        operation: 'CREATE',
        name: 'default',
        namespace: '',
        spec: { mtls: { mode: 'SOMETIMES' } },
      },
      view({}),
      OPTS,
    );
    assert.equal(r.errors[0]!.field, 'spec.mtls.mode');
  });
});

describe('TrafficSplit', () => {
  test('a cycle through other splits is refused at the backend that closes it', async () => {
    const r = await validateResource(
      split('c', {
        service: 'c',
        backends: [
          { service: 'c', weight: 1 },
          { service: 'a', weight: 1 },
        ],
      }),
      view({
        splits: {
          shop: [
            { name: 'a', spec: ts('a', ['b']) },
            { name: 'b', spec: ts('b', ['c']) },
          ],
        },
      }),
      OPTS,
    );
    assert.deepEqual(r.errors, [
      {
        field: 'spec.backends[1].service',
        message: 'routing to a forms a cycle of TrafficSplits: c → a → b → c',
      },
    ]);
  });

  test('a backend equal to its own root is not a cycle; the split being updated replaces its old self', async () => {
    const r = await validateResource(
      {
        ...split('a', {
          service: 'a',
          backends: [
            { service: 'a', weight: 1 },
            { service: 'x', weight: 1 },
          ],
        }),
        operation: 'UPDATE',
      },
      view({
        splits: {
          shop: [
            { name: 'a', spec: ts('a', ['b']) },
            { name: 'b', spec: ts('b', ['a']) },
          ],
        },
      }),
      OPTS,
    );
    assert.deepEqual(r.errors, []);
  });

  test('two splits of the same service for the same requests conflict; different matches do not', async () => {
    const existing = { shop: [{ name: 'canary', spec: ts('reviews', ['reviews-v1']) }] };
    const r = await validateResource(
      split('other', { service: 'reviews' }),
      view({ splits: existing }),
      OPTS,
    );
    assert.equal(r.errors[0]!.field, 'spec.service');
    assert.match(r.errors[0]!.message, /TrafficSplit shop\/canary already splits service reviews/);
    const beta = split('beta', {
      service: 'reviews',
      matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
    });
    assert.deepEqual((await validateResource(beta, view({ splits: existing }), OPTS)).errors, []);
    const otherPort = split('p', { service: 'reviews', port: 8080 });
    assert.deepEqual((await validateResource(otherPort, view({ splits: existing }), OPTS)).errors, []);
  });

  test('an update that leaves a (bad) spec alone is not refused, so finalizers and labels can change', async () => {
    const bad = split('b', { service: 'b', backends: [{ service: 'a', weight: 1 }] });
    const state = view({ splits: { shop: [{ name: 'a', spec: ts('a', ['b']) }] } });
    assert.equal((await validateResource(bad, state, OPTS)).errors.length, 1);
    const update = { ...bad, operation: 'UPDATE' as const, oldSpec: structuredClone(bad.spec) };
    assert.deepEqual(await validateResource(update, state, OPTS), { errors: [], warnings: [] });
  });

  test('invalid regular expressions are refused by field', async () => {
    const r = await validateResource(
      split('re', {
        service: 'r',
        matches: [
          {
            path: { type: 'RegularExpression', value: '/api/(v1' },
            headers: [{ name: 'x', type: 'RegularExpression', value: '[' }],
          },
        ],
      }),
      view({}),
      OPTS,
    );
    assert.deepEqual(
      r.errors.map((e) => e.field),
      ['spec.matches[0].path.value', 'spec.matches[0].headers[0].value'],
    );
  });

  test('regular expressions RE2 cannot run (backreferences, lookaround) are refused by field', async () => {
    const r = await validateResource(
      split('re2', {
        service: 'r',
        matches: [
          { path: { type: 'RegularExpression', value: '/(a+)\\1' } },
          { headers: [{ name: 'x', type: 'RegularExpression', value: '(?<=a)b' }] },
          { path: { type: 'RegularExpression', value: '^/(a+)+$' } },
        ],
      }),
      view({}),
      OPTS,
    );
    assert.deepEqual(
      r.errors.map((e) => e.field),
      ['spec.matches[0].path.value', 'spec.matches[1].headers[0].value'],
      'the nested quantifier is RE2 (linear there); backreference and lookbehind are not',
    );
    assert.match(r.errors[0]!.message, /not an RE2 regular expression/);
  });

  test('missing Services warn, existing ones do not', async () => {
    const r = await validateResource(
      split('w', {
        service: 'reviews',
        backends: [{ service: 'reviews-v1', weight: 1 }],
        mirror: { service: 'shadow', percentage: 5 },
      }),
      view({ objects: ['Service:shop/reviews'] }),
      OPTS,
    );
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, [
      'spec.backends[0].service: Service shop/reviews-v1 does not exist yet; traffic for it fails until it does',
      'spec.mirror.service: Service shop/shadow does not exist yet; traffic for it fails until it does',
    ]);
  });
});

describe('AuthorizationPolicy', () => {
  const policy = (spec: unknown): ReviewedObject => ({
    kind: 'AuthorizationPolicy',
    operation: 'CREATE',
    name: 'p',
    namespace: 'shop',
    spec,
  });
  test('wildcards, schemes, ports and IPs are checked by field', async () => {
    const r = await validateResource(
      policy({
        action: 'ALLOW',
        rules: [
          {
            from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b', 'cluster.local/*/sa/x'] } }],
            to: [{ operation: { paths: ['api/*'], hosts: ['a*b'] } }],
            when: [
              { key: 'destination.port', values: ['80', 'http'] },
              { key: 'source.ip', values: ['10.0.0.0/8', '10.0.0.300'] },
            ],
          },
        ],
      }),
      view({}),
      OPTS,
    );
    assert.deepEqual(
      r.errors.map((e) => e.field),
      [
        'spec.rules[0].from[0].source.principals[1]',
        'spec.rules[0].from[0].source.principals[0]',
        'spec.rules[0].to[0].operation.hosts[0]',
        'spec.rules[0].to[0].operation.paths[0]',
        'spec.rules[0].when[0].values[1]',
        'spec.rules[0].when[1].values[1]',
      ],
    );
  });

  test('ServiceAccounts and namespaces that do not exist yet only warn', async () => {
    const r = await validateResource(
      policy({
        rules: [
          {
            from: [
              { source: { serviceAccounts: ['frontend', 'ops/admin'] } },
              { source: { namespaces: ['ops', 'dev'] } },
            ],
          },
        ],
      }),
      view({ objects: ['Namespace:/ops', 'ServiceAccount:ops/admin'] }),
      OPTS,
    );
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, [
      'spec.rules[0].from[0].source.serviceAccounts[0]: ServiceAccount shop/frontend does not exist yet',
      'spec.rules[0].from[1].source.namespaces[1]: namespace dev does not exist yet',
    ]);
  });
});

test('quantities', () => {
  assert.equal(parseQuantity('128Mi'), 128 * 2 ** 20);
  assert.equal(parseQuantity('50m'), 0.05);
  assert.ok(parseQuantity('1G') < parseQuantity('1Gi'));
});
