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
