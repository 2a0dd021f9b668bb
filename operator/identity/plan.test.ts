import assert from 'node:assert/strict';
import { test } from 'node:test';
import { goDuration, workloadCertificate } from './certmanager.ts';
import { identitySecretName, planIdentities } from './plan.ts';

const now = new Date('2026-11-24T12:00:00Z');
const H = 3_600_000;
const td = 'cluster.local';
const existing = (sa: string, from: number, to: number, root = 'R1', ns = 'shop') => ({
  namespace: ns,
  serviceAccount: sa,
  spiffeId: `spiffe://${td}/ns/${ns}/sa/${sa}`,
  notBefore: new Date(now.getTime() + from),
  notAfter: new Date(now.getTime() + to),
  rootFingerprint: root,
});

test('missing identities are issued, orphaned ones removed, and the next check is the earliest renewal', () => {
  const plan = planIdentities({
    trustDomain: td,
    wanted: [
      { namespace: 'shop', serviceAccount: 'web' },
      { namespace: 'shop', serviceAccount: 'api' },
    ],
    existing: [existing('api', -1 * H, 23 * H), existing('old', -1 * H, 23 * H)],
    rootFingerprint: 'R1',
    now,
  });
  assert.deepEqual(plan.issue, [{ namespace: 'shop', serviceAccount: 'web', reason: 'missing' }]);
  assert.deepEqual(plan.remove, [{ namespace: 'shop', serviceAccount: 'old' }]);
  assert.equal(plan.nextCheck?.getTime(), now.getTime() + 15 * H, 'api renews at 2/3 of its 24 h');
});

test('renewal at two thirds, expiry, CA rotation and identity changes each cause a reissue with the reason', () => {
  const plan = planIdentities({
    trustDomain: td,
    wanted: ['a', 'b', 'c', 'd', 'e'].map((s) => ({ namespace: 'shop', serviceAccount: s })),
    existing: [
      existing('a', -17 * H, 7 * H),
      existing('b', -25 * H, -1 * H),
      existing('c', -1 * H, 23 * H, 'R0'),
      { ...existing('d', -1 * H, 23 * H), spiffeId: 'spiffe://other/ns/shop/sa/d' },
      existing('e', -1 * H, 23 * H),
    ],
    rootFingerprint: 'R1',
    now,
  });
  assert.deepEqual(
    plan.issue.map((i) => `${i.serviceAccount}:${i.reason}`),
    ['a:renewal-due', 'b:expired', 'c:ca-rotated', 'd:identity-changed'],
  );
});

test('renewBefore overrides the default two-thirds point', () => {
  const plan = planIdentities({
    trustDomain: td,
    wanted: [{ namespace: 'shop', serviceAccount: 'a' }],
    existing: [existing('a', -1 * H, 23 * H)],
    rootFingerprint: 'R1',
    renewBeforeMs: 2 * H,
    now,
  });
  assert.deepEqual(plan.issue, []);
  assert.equal(plan.nextCheck?.getTime(), now.getTime() + 21 * H);
});

test('cert-manager Certificate: same SAN, Secret name and renewal, ECDSA P-256, validated by its own schema', () => {
  const c = workloadCertificate({
    trustDomain: td,
    namespace: 'shop',
    serviceAccount: 'web',
    issuerRef: { name: 'mesh-ca' },
    lifetimeMs: 24 * H,
  });
  assert.equal(c.metadata?.name, identitySecretName('web'));
  assert.equal(c.spec?.secretName, 'weft-identity-web');
  assert.deepEqual(c.spec?.uris, ['spiffe://cluster.local/ns/shop/sa/web']);
  assert.equal(c.spec?.duration, '24h0m0s');
  assert.equal(c.spec?.renewBefore, '8h0m0s');
  assert.deepEqual(c.spec?.privateKey, {
    algorithm: 'ECDSA',
    size: 256,
    rotationPolicy: 'Always',
    encoding: 'PKCS8',
  });
  assert.deepEqual(c.spec?.issuerRef, { name: 'mesh-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  assert.equal(goDuration(90 * 60_000), '1h30m0s');
});
