import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertValid,
  check,
  contentVersion,
  ProxyConfig,
  TrafficSplitSpec,
  ValidationError,
} from './index.ts';

test('a valid TrafficSplit spec has no errors', () => {
  assert.deepEqual(
    check(TrafficSplitSpec, { service: 'web', backends: [{ service: 'web-v1', weight: 1 }] }),
    [],
  );
});

test('errors name the field with its full path', () => {
  const errors = check(
    TrafficSplitSpec,
    { service: 'web', backends: [{ service: 'web-v1', weight: -3 }] },
    'spec',
  );
  assert.deepEqual(errors, [{ field: 'spec.backends[0].weight', message: 'must be >= 0' }]);
});

test('a duration past its bound is refused at run time too, naming the field', () => {
  // The apiserver checks the same bound with CEL; this catches objects stored before it existed.
  const errors = check(
    TrafficSplitSpec,
    {
      service: 'a',
      backends: [{ service: 'a', weight: 1 }],
      timeout: '600h',
      retries: { attempts: 1, perTryTimeout: '24h' },
    },
    'spec',
  );
  assert.deepEqual(errors, [{ field: 'spec.timeout', message: 'must be at most 24h' }]);
});

test('a missing field is named, not its parent', () => {
  const errors = check(TrafficSplitSpec, { backends: [{ service: 'a', weight: 1 }] }, 'spec');
  assert.deepEqual(errors, [{ field: 'spec.service', message: 'is required' }]);
});

test('a bad enum value lists the allowed values once', () => {
  const errors = check(
    TrafficSplitSpec,
    { service: 'a', backends: [{ service: 'a', weight: 1 }], loadBalancer: { type: 'RANDOM' } },
    'spec',
  );
  assert.deepEqual(errors, [
    {
      field: 'spec.loadBalancer.type',
      message: 'must be one of "P2C_EWMA", "ROUND_ROBIN", "CONSISTENT_HASH"',
    },
  ]);
});

test('assertValid throws a ValidationError with a stable code and every field', () => {
  assert.throws(
    () => assertValid(ProxyConfig, { apiVersion: 'weft.dev/proxyconfig/v1' }, 'proxy config'),
    (err: unknown) =>
      err instanceof ValidationError &&
      err.code === 'WEFT_INVALID' &&
      err.errors.some((e) => e.field === 'version') &&
      /proxy config is invalid: /.test(err.message),
  );
});

test('contentVersion ignores key order and changes with content', () => {
  assert.equal(contentVersion({ a: 1, b: [1, 2] }), contentVersion({ b: [1, 2], a: 1 }));
  assert.notEqual(contentVersion({ a: 1 }), contentVersion({ a: 2 }));
  assert.match(contentVersion({}), /^[0-9a-f]{16}$/);
});

test('the precompiled ProxyConfig validator (api/generated) gives the same field errors as ajv at run time', async () => {
  const { checkCompiled } = await import('./fielderrors.ts');
  const { validateProxyConfig } = await import('./generated/validators.js');
  const { endpoint, proxyConfig, service } = await import('../proxy/testdata.ts');
  const good = proxyConfig('shop', [service('web', 'shop', '10.96.0.10', 80, [endpoint('10.0.0.2', 8080)])]);
  const cases: unknown[] = [
    good,
    { ...good, apiVersion: 'weft.dev/proxyconfig/v0' },
    { ...good, mesh: { ...good.mesh, mtls: { mode: 'SOMETIMES', ports: [] } } },
    { ...good, services: [{ ...good.services[0], ports: [{ name: 'http', port: 70000, protocol: 'TCP' }] }] },
    { ...good, version: '' },
    { ...good, routes: undefined },
    'not an object',
    // A timer this long fires after 1 ms in Node: the proxy refuses it.
    { ...good, mesh: { ...good.mesh, defaultTimeoutMs: 2 ** 31 } },
  ];
  let invalid = 0;
  for (const c of cases) {
    const compiled = checkCompiled(validateProxyConfig, c);
    assert.deepEqual(compiled, check(ProxyConfig, c));
    if (compiled.length > 0) invalid++;
  }
  assert.equal(invalid, cases.length - 1, 'every case but the first is invalid');
  assert.deepEqual(checkCompiled(validateProxyConfig, cases[3]), [
    { field: 'services[0].ports[0].port', message: 'must be <= 65535' },
  ]);
  assert.deepEqual(checkCompiled(validateProxyConfig, cases[7]), [
    { field: 'mesh.defaultTimeoutMs', message: 'must be <= 2147483647' },
  ]);
});
