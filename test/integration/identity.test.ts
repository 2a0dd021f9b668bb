// Workload identity against a real control plane (etcd + kube-apiserver +
// kube-controller-manager), the operator in-process: the built-in CA issues one certificate per
// ServiceAccount of meshed pods, renews it on a timer, removes it when unused, uses a
// user-supplied intermediate, keeps the previous root trusted during a rotation, reports CA
// problems on the Mesh, and in cert-manager mode creates Certificates instead.
// @peculiar/x509 needs the Reflect metadata API before it loads.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import * as x509 from '@peculiar/x509';
import type { Mesh } from '../../api/index.ts';
import type { ProxyConfig } from '../../api/proxyconfig.ts';
import { replaceWeftCa } from '../../hack/lib/mtlsfixture.ts';
import { KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../../kube/client.ts';
import { systemClock } from '../../kube/clock.ts';
import { isNotFound } from '../../kube/errors.ts';
import { decode } from '../../operator/distribution.ts';
import { createRoot, issueWorkloadCertificate } from '../../operator/identity/ca.ts';
import { CERTIFICATES, IDENTITY_CONDITION } from '../../operator/identity/controller.ts';
import { IDENTITY_LABELS, SERVICE_ACCOUNT_ANNOTATION } from '../../operator/identity/plan.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { installCertificateCrd } from '../support/certmanager.ts';
import {
  canI,
  dryRunApplyAs,
  installCrds,
  repoRoot,
  startTestCluster,
  type TestCluster,
} from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

const TD = 'example.org';
const H = 3_600_000;
const SECRETS: ResourceType = {
  group: '',
  version: 'v1',
  plural: 'secrets',
  kind: 'Secret',
  namespaced: true,
};
const SERVICE_ACCOUNTS: ResourceType = {
  group: '',
  version: 'v1',
  plural: 'serviceaccounts',
  kind: 'ServiceAccount',
  namespaced: true,
};
type Secret = KubeObject & { type?: string; data?: Record<string, string> };

let cluster: TestCluster;
let client: KubeClient;
let op: OperatorHandle | undefined;
/** The operator's identity clock: real time plus a skew the test moves forward. */
let skewMs = 0;
const clock = { ...systemClock, now: () => Date.now() + skewMs };

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 45_000) =>
  eventually(what, probe, { timeoutMs, intervalMs: 100 });

const text = (s: Secret, key: string) => Buffer.from(s.data?.[key] ?? '', 'base64').toString('utf8');
const pems = (t: string) =>
  t.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((p) => p.trim()) ?? [];
const certs = (t: string) => pems(t).map((p) => new X509Certificate(p));
const sorted = (a: string[]) => a.map((p) => p.trim()).sort();

async function getSecret(ns: string, name: string): Promise<Secret | undefined> {
  try {
    return await client.get<Secret>(SECRETS, name, ns);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
const waitSecret = (ns: string, name: string, pred: (s: Secret) => boolean = () => true) =>
  waitFor(`Secret ${ns}/${name}`, async () => {
    const s = await getSecret(ns, name);
    return s && pred(s) ? s : undefined;
  });
const waitGone = (t: ResourceType, ns: string, name: string) =>
  waitFor(`${t.kind} ${ns}/${name} deleted`, async () => {
    try {
      await client.get(t, name, ns);
      return undefined;
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
  });

async function proxyConfig(ns: string): Promise<ProxyConfig | undefined> {
  const list = await client.list<
    KubeObject & { data?: Record<string, string>; binaryData?: Record<string, string> }
  >(RESOURCES.configMaps, { namespace: ns, labelSelector: 'weft.dev/component=proxy-config' });
  if (list.items.length === 0) return undefined;
  return decode(new Map(list.items.map((c) => [c.metadata.name, c])));
}
const waitBundle = (ns: string, want: string[]) =>
  waitFor(`trust bundle of ${ns} = ${want.length} root(s)`, async () => {
    const c = await proxyConfig(ns);
    return c && JSON.stringify(sorted(c.trustBundle)) === JSON.stringify(sorted(want)) ? c : undefined;
  });

async function applyMesh(spec: Mesh['spec']) {
  await client.apply(RESOURCES.meshes, { metadata: { name: 'default' }, spec } as KubeObject, {
    fieldManager: 'weft-test',
  });
}
const getMesh = () => client.get<KubeObject & Mesh>(RESOURCES.meshes, 'default');
const meshCondition = (m: Mesh, type: string) => m.status?.conditions?.find((c) => c.type === type);

async function createPod(ns: string, name: string, serviceAccount: string, sidecar: boolean) {
  // No nodeName: an unscheduled pod is deleted at once (no kubelet to confirm).
  await client.create(RESOURCES.pods, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns },
    spec: {
      serviceAccountName: serviceAccount,
      automountServiceAccountToken: false,
      containers: [
        { name: 'app', image: 'app' },
        ...(sidecar ? [{ name: 'weft-proxy', image: 'weft' }] : []),
      ],
    },
  });
}

before(async () => {
  cluster = await startTestCluster({ controllerManager: true });
  await installCrds(cluster);
  client = new KubeClient(cluster.kc, 'weft-test');
  for (const [name, labels] of [
    ['weft-system', {}],
    ['app', { 'weft.dev/inject': 'enabled' }],
    ['legacy', { 'weft.dev/inject': 'enabled' }],
    ['other', {}],
  ] as const)
    await client.create(RESOURCES.namespaces, {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, labels },
    });
  for (const [ns, name] of [
    ['app', 'reviews'],
    ['app', 'ratings'],
    ['legacy', 'worker'],
    ['other', 'batch'],
  ])
    await client.create(SERVICE_ACCOUNTS, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: name!, namespace: ns! },
    });
  await applyMesh({ trustDomain: TD });
  op = await startOperator({
    kubeConfig: cluster.kc,
    namespace: 'weft-system',
    identity: { clock },
  });
  await op.leading();
});

after(async () => {
  await op?.stop();
  client?.close();
  await cluster?.stop();
});

describe('workload identity on a real control plane', () => {
  let root: X509Certificate;
  let rootPem = '';

  test('built-in CA: a meshed pod gets weft-identity-<sa> with its SPIFFE ID, chained to weft-ca', async () => {
    await createPod('app', 'reviews-1', 'reviews', false); // meshed by its namespace's label
    await createPod('other', 'batch-1', 'batch', true); // meshed by its sidecar
    const ca = await waitSecret('weft-system', 'weft-ca');
    assert.equal(ca.type, 'kubernetes.io/tls');
    rootPem = pems(text(ca, 'tls.crt'))[0]!;
    root = new X509Certificate(rootPem);
    assert.ok(root.ca, 'weft-ca holds a CA certificate');
    assert.equal(root.issuer, root.subject, 'a self-signed root');
    assert.ok(root.checkPrivateKey(createPrivateKey(text(ca, 'tls.key'))));

    for (const [ns, sa] of [
      ['app', 'reviews'],
      ['other', 'batch'],
    ] as const) {
      const s = await waitSecret(ns, `weft-identity-${sa}`);
      assert.equal(s.type, 'kubernetes.io/tls');
      assert.deepEqual(Object.keys(s.data ?? {}).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
      for (const [k, v] of Object.entries(IDENTITY_LABELS)) assert.equal(s.metadata.labels?.[k], v);
      assert.equal(s.metadata.annotations?.[SERVICE_ACCOUNT_ANNOTATION], sa);
      const [leaf, ...rest] = certs(text(s, 'tls.crt'));
      assert.ok(leaf);
      assert.equal(rest.length, 0, 'signed by the root itself: no intermediate in the chain');
      assert.equal(leaf.subjectAltName, `URI:spiffe://${TD}/ns/${ns}/sa/${sa}`);
      assert.equal(leaf.ca, false);
      assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
      assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'ECDSA P-256');
      const key = createPrivateKey(text(s, 'tls.key'));
      assert.ok(leaf.checkPrivateKey(key), 'tls.key belongs to tls.crt');
      assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey), 'chain verifies against weft-ca');
      assert.deepEqual(pems(text(s, 'ca.crt')), [rootPem.trim()], 'ca.crt is the trust bundle');
      const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
      assert.equal(lifetime, 24 * H + 60_000, 'default 24h lifetime (+1 min backdating)');
    }
    // The trust bundle reaches the ProxyConfig of the namespace.
    await waitBundle('app', [rootPem]);
    // The Mesh reports the CA.
    const mesh = await waitFor('Mesh caExpiry', async () => {
      const m = await getMesh();
      return m.status?.caExpiry ? m : undefined;
    });
    assert.equal(Date.parse(mesh.status!.caExpiry!), Date.parse(root.validTo));
    assert.equal(meshCondition(mesh, IDENTITY_CONDITION)?.status, 'True');
    assert.equal(meshCondition(mesh, 'Ready')?.status, 'True');
    // No Gateway API CRDs in this cluster: the operator runs without route watches and says so.
    assert.equal(meshCondition(mesh, 'GatewayAPI')?.reason, 'NotInstalled');
  });

  test('renewal: a short lifetime is renewed by the timer (new serial, same identity)', async () => {
    const first = new X509Certificate(
      pems(text((await getSecret('app', 'weft-identity-reviews'))!, 'tls.crt'))[0]!,
    );
    // renewBefore just under the lifetime: renewal falls due ~1 s after issuance.
    await applyMesh({ trustDomain: TD, ca: { workloadCertLifetime: '10m', renewBefore: '9m59s' } });
    const short = (s: Secret) => {
      const c = new X509Certificate(pems(text(s, 'tls.crt'))[0]!);
      return Date.parse(c.validTo) - Date.parse(c.validFrom) === 11 * 60_000 ? c : undefined;
    };
    const a = short(await waitSecret('app', 'weft-identity-reviews', (s) => short(s) !== undefined))!;
    assert.notEqual(a.serialNumber, first.serialNumber);
    // Nothing else changes now: only the requeue timer can renew it again.
    const b = short(
      await waitSecret('app', 'weft-identity-reviews', (s) => {
        const c = short(s);
        return c !== undefined && c.serialNumber !== a.serialNumber;
      }),
    )!;
    assert.equal(b.subjectAltName, `URI:spiffe://${TD}/ns/app/sa/reviews`);
    assert.ok(b.checkIssued(root) && b.verify(root.publicKey));
    assert.ok(Date.parse(b.validFrom) >= Date.parse(a.validFrom));
    // Back to 24-hour certificates. A longer lifetime applies at the next renewal; with
    // renewBefore 8h that renewal is due at once for a 10-minute certificate.
    await applyMesh({ trustDomain: TD, ca: { workloadCertLifetime: '24h', renewBefore: '8h' } });
    await waitSecret('app', 'weft-identity-reviews', (s) => {
      const c = new X509Certificate(pems(text(s, 'tls.crt'))[0]!);
      return Date.parse(c.validTo) - Date.parse(c.validFrom) === 24 * H + 60_000;
    });
  });

  test('cleanup: the Secret goes when no meshed pod uses the ServiceAccount or the namespace leaves', async () => {
    await client.delete(RESOURCES.pods, 'batch-1', 'other');
    await waitGone(SECRETS, 'other', 'weft-identity-batch');

    await createPod('legacy', 'worker-1', 'worker', false);
    await waitSecret('legacy', 'weft-identity-worker');
    await client.apply(
      RESOURCES.namespaces,
      { metadata: { name: 'legacy', labels: { 'weft.dev/inject': 'disabled' } } },
      { fieldManager: 'weft-test' },
    );
    await waitGone(SECRETS, 'legacy', 'weft-identity-worker');
    // The other identity is untouched.
    assert.ok(await getSecret('app', 'weft-identity-reviews'));
  });

  let userRootPem = '';
  test('a user-supplied intermediate signs; the previous root stays trusted for the overlap, then goes', async () => {
    const crypto = webcrypto;
    const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
    const userRoot = await createRoot({ trustDomain: TD, lifetimeMs: 1000 * H, now: new Date() });
    userRootPem = userRoot.certPem;
    const rootKey = await crypto.subtle.importKey(
      'pkcs8',
      x509.PemConverter.decodeFirst(userRoot.keyPem),
      EC,
      false,
      ['sign'],
    );
    const keys = (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const rootCert = new x509.X509Certificate(userRoot.certPem);
    const inter = await x509.X509CertificateGenerator.create({
      serialNumber: '0a01',
      subject: 'O=Example, CN=example intermediate',
      issuer: rootCert.subject,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 500 * H),
      publicKey: keys.publicKey,
      signingKey: rootKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ],
    });
    const interKey = x509.PemConverter.encode(
      await crypto.subtle.exportKey('pkcs8', keys.privateKey),
      'PRIVATE KEY',
    );
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'example-ca', namespace: 'weft-system' },
      type: 'kubernetes.io/tls',
      data: {
        'tls.crt': Buffer.from(inter.toString('pem')).toString('base64'),
        'tls.key': Buffer.from(interKey).toString('base64'),
        'ca.crt': Buffer.from(userRoot.certPem).toString('base64'),
      },
    } as KubeObject);
    await applyMesh({ trustDomain: TD, ca: { builtIn: { rootSecretName: 'example-ca' } } });

    const interX = new X509Certificate(inter.toString('pem'));
    const userRootX = new X509Certificate(userRoot.certPem);
    const s = await waitSecret('app', 'weft-identity-reviews', (sec) => {
      const leaf = certs(text(sec, 'tls.crt'))[0]!;
      return leaf.checkIssued(interX);
    });
    const [leaf, chainInter] = certs(text(s, 'tls.crt'));
    assert.ok(leaf!.verify(interX.publicKey), 'signed by the user intermediate');
    assert.equal(chainInter?.fingerprint256, interX.fingerprint256, 'tls.crt carries the intermediate');
    assert.ok(interX.checkIssued(userRootX) && interX.verify(userRootX.publicKey), 'chains to the user root');
    assert.equal(leaf!.subjectAltName, `URI:spiffe://${TD}/ns/app/sa/reviews`);
    // Overlap: both roots trusted, in the Secret and in the ProxyConfig.
    assert.deepEqual(sorted(pems(text(s, 'ca.crt'))), sorted([userRoot.certPem, rootPem]));
    await waitBundle('app', [userRoot.certPem, rootPem]);
    const mesh = await waitFor('caExpiry of the intermediate', async () => {
      const m = await getMesh();
      return m.status?.caExpiry && Date.parse(m.status.caExpiry) === Date.parse(interX.validTo)
        ? m
        : undefined;
    });
    assert.equal(meshCondition(mesh, IDENTITY_CONDITION)?.status, 'True');

    // After the overlap (one workload lifetime, 24h) the old root is dropped everywhere.
    skewMs += 25 * H;
    await op!.resync();
    await waitBundle('app', [userRoot.certPem]);
    await waitSecret(
      'app',
      'weft-identity-reviews',
      (sec) => JSON.stringify(pems(text(sec, 'ca.crt'))) === JSON.stringify([userRoot.certPem.trim()]),
    );
  });

  test('a restarted operator rewrites no identity Secret, CA state or ProxyConfig', async () => {
    const rvs = async () => {
      const out: Record<string, string | undefined> = {};
      for (const [t, ns, name] of [
        [SECRETS, 'app', 'weft-identity-reviews'],
        [SECRETS, 'weft-system', 'weft-ca'],
        [RESOURCES.configMaps, 'weft-system', 'weft-trust-bundle'],
        [RESOURCES.configMaps, 'app', 'weft-proxy-config'],
      ] as const)
        out[`${ns}/${name}`] = (await client.get(t, name, ns)).metadata.resourceVersion;
      return out;
    };
    await op!.stop();
    const before = await rvs();
    op = await startOperator({ kubeConfig: cluster.kc, namespace: 'weft-system', identity: { clock } });
    await op.leading();
    await op.resync();
    assert.deepEqual(await rvs(), before);
    assert.equal(op.stats.configMapWrites, 0);
  });

  test('a CA that cannot be loaded is reported on the Mesh, naming the Secret and key', async () => {
    await applyMesh({ trustDomain: TD, ca: { builtIn: { rootSecretName: 'missing-ca' } } });
    let m = await waitFor('CA condition False', async () => {
      const x = await getMesh();
      return meshCondition(x, IDENTITY_CONDITION)?.reason === 'SecretNotFound' ? x : undefined;
    });
    assert.equal(meshCondition(m, IDENTITY_CONDITION)?.status, 'False');
    assert.match(meshCondition(m, IDENTITY_CONDITION)!.message, /Secret weft-system\/missing-ca/);
    assert.equal(meshCondition(m, 'Ready')?.status, 'False');

    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'bad-ca', namespace: 'weft-system' },
      data: {
        'tls.crt': Buffer.from(userRootPem).toString('base64'),
        'tls.key': Buffer.from('not a key').toString('base64'),
      },
    } as KubeObject);
    await applyMesh({ trustDomain: TD, ca: { builtIn: { rootSecretName: 'bad-ca' } } });
    m = await waitFor('CA condition InvalidSecret', async () => {
      const x = await getMesh();
      return meshCondition(x, IDENTITY_CONDITION)?.reason === 'InvalidSecret' ? x : undefined;
    });
    assert.match(meshCondition(m, IDENTITY_CONDITION)!.message, /Secret weft-system\/bad-ca key tls\.key/);
    // What was trusted stays trusted.
    assert.deepEqual(sorted((await proxyConfig('app'))!.trustBundle), sorted([userRootPem]));
  });

  test('cert-manager mode: one Certificate per ServiceAccount; the bundle comes from the issued ca.crt', async () => {
    await installCertificateCrd(cluster);
    await applyMesh({
      trustDomain: TD,
      ca: {
        certManager: { issuerRef: { name: 'weft-issuer', kind: 'ClusterIssuer', group: 'cert-manager.io' } },
        workloadCertLifetime: '48h',
        renewBefore: '16h',
      },
    });
    type Cert = KubeObject & { spec: Record<string, unknown> };
    const cert = await waitFor('Certificate app/weft-identity-reviews', async () => {
      try {
        return await client.get<Cert>(CERTIFICATES, 'weft-identity-reviews', 'app');
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
    assert.deepEqual(cert.spec.uris, [`spiffe://${TD}/ns/app/sa/reviews`]);
    assert.equal(cert.spec.secretName, 'weft-identity-reviews');
    assert.equal(cert.spec.duration, '48h0m0s');
    assert.equal(cert.spec.renewBefore, '16h0m0s');
    assert.deepEqual(cert.spec.issuerRef, {
      name: 'weft-issuer',
      kind: 'ClusterIssuer',
      group: 'cert-manager.io',
    });
    const pk = cert.spec.privateKey as { algorithm: string; size: number };
    assert.equal(pk.algorithm, 'ECDSA');
    assert.equal(pk.size, 256);
    assert.deepEqual(cert.metadata.labels, { ...IDENTITY_LABELS });

    // Play cert-manager's controller: write the issued Secret with the issuer's ca.crt.
    const issuer = await createRoot({ trustDomain: TD, lifetimeMs: 100 * H, now: new Date() });
    const leaf = await issueWorkloadCertificate(issuer, {
      trustDomain: TD,
      namespace: 'app',
      serviceAccount: 'reviews',
      lifetimeMs: 48 * H,
      now: new Date(),
    });
    const existing = (await getSecret('app', 'weft-identity-reviews'))!;
    await client.update(SECRETS, {
      ...existing,
      metadata: {
        ...existing.metadata,
        labels: { ...IDENTITY_LABELS },
        annotations: {
          [SERVICE_ACCOUNT_ANNOTATION]: 'reviews',
          'cert-manager.io/certificate-name': 'weft-identity-reviews',
        },
      },
      data: {
        'tls.crt': Buffer.from(leaf.chainPem).toString('base64'),
        'tls.key': Buffer.from(leaf.keyPem).toString('base64'),
        'ca.crt': Buffer.from(issuer.certPem).toString('base64'),
      },
    } as Secret);
    await waitBundle('app', [issuer.certPem]);
    const m = await waitFor('CA condition CertManager', async () => {
      const x = await getMesh();
      return meshCondition(x, IDENTITY_CONDITION)?.reason === 'CertManager' ? x : undefined;
    });
    assert.equal(Date.parse(m.status!.caExpiry!), Date.parse(new X509Certificate(issuer.certPem).validTo));
    // The operator did not sign over cert-manager's Secret.
    assert.equal(text((await getSecret('app', 'weft-identity-reviews'))!, 'ca.crt'), issuer.certPem);

    // Unused: the Certificate and its Secret go.
    await client.delete(RESOURCES.pods, 'reviews-1', 'app');
    await waitGone(CERTIFICATES, 'app', 'weft-identity-reviews');
    await waitGone(SECRETS, 'app', 'weft-identity-reviews');
  });
  test('RBAC and the admission policy hold the operator to its own Secrets', async () => {
    cluster.kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-k',
      join(repoRoot, 'config', 'rbac'),
    );
    const operator = 'system:serviceaccount:weft-system:weft-operator';
    const can = (...args: string[]) => canI(cluster.kubectl, operator, ...args);
    assert.equal(can('list', 'secrets', '-n', 'app'), 'yes', 'the identity informer lists Secrets');
    assert.equal(can('patch', 'secrets', '-n', 'app'), 'yes', 'identity Secrets are server-side applied');
    assert.equal(can('get', 'secrets', '-n', 'app'), 'no', 'no get outside the operator namespace');
    assert.equal(can('update', 'secrets/weft-ca', '-n', 'weft-system'), 'yes');
    assert.equal(can('update', 'secrets/weft-ca', '-n', 'app'), 'no', 'the CA Secret only in weft-system');
    assert.equal(can('update', 'secrets/other', '-n', 'weft-system'), 'no');
    assert.equal(can('patch', 'configmaps/weft-trust-bundle', '-n', 'weft-system'), 'yes');
    assert.equal(can('create', 'certificates.cert-manager.io', '-n', 'app'), 'yes');
    assert.equal(can('delete', 'certificates.cert-manager.io', '-n', 'app'), 'yes');
    assert.equal(can('create', 'issuers.cert-manager.io', '-n', 'app'), 'no');

    const tryApply = (name: string, labels: Record<string, string>) =>
      dryRunApplyAs(cluster.kubectl, operator, 'weft-operator', {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace: 'app', labels },
      });
    // The policy is enforced once the apiserver has loaded it.
    const denied = await waitFor('the admission policy to deny a foreign Secret', async () => {
      const e = tryApply('db-password', {});
      return e ? e : undefined;
    });
    assert.match(denied, /may only write its own Secrets/);
    assert.match(
      tryApply('weft-identity-x', {}),
      /may only write its own Secrets/,
      'the name alone is not enough',
    );
    assert.equal(
      tryApply('weft-identity-x', { ...IDENTITY_LABELS }),
      '',
      'its own identity Secret is allowed',
    );
    // A Weft Gateway's certificates (docs/ingress.md): that name suffix with the gateway labels only.
    const gatewayLabels = { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'gateway' };
    assert.equal(
      tryApply('edge-weft-gateway-tls', gatewayLabels),
      '',
      'a Gateway’s certificates are allowed',
    );
    assert.match(tryApply('edge-weft-gateway-tls', {}), /may only write its own Secrets/);
    assert.match(tryApply('db-password', gatewayLabels), /may only write its own Secrets/);
  });

  // bench/faults.ts "mesh root CA rotated": weft-ca replaced in place (docs/reliability.md).
  test('weft-ca replaced in place by a new root: the identity Secret is a chain its own ca.crt verifies, old root kept', async () => {
    skewMs = 0; // certificates valid now, for the handshake below
    await applyMesh({ trustDomain: TD });
    await createPod('app', 'ratings-1', 'ratings', false);
    await waitSecret('app', 'weft-identity-ratings', (sec) =>
      certs(text(sec, 'tls.crt'))[0]!.checkIssued(root),
    );
    const next = await replaceWeftCa(cluster.kubectl, {
      trustDomain: TD,
      lifetimeMs: 1000 * H,
      now: new Date(clock.now()),
    });
    const nextX = new X509Certificate(next.certPem);
    const s = await waitSecret('app', 'weft-identity-ratings', (sec) =>
      certs(text(sec, 'tls.crt'))[0]!.checkIssued(nextX),
    );
    const [leaf, ...chain] = certs(text(s, 'tls.crt'));
    assert.ok(
      leaf!.verify(nextX.publicKey),
      `signed with the new root's key (issuer ${leaf!.issuer}; chain: ${chain.map((c) => c.subject).join(', ')}; signed by the old key: ${leaf!.verify(root.publicKey)})`,
    );
    const roots = pems(text(s, 'ca.crt'));
    assert.ok(roots.includes(next.certPem.trim()), 'ca.crt carries the new root');
    assert.ok(roots.includes(rootPem.trim()), 'and the old one, for the overlap');
    // Two sidecars of this ServiceAccount: mutual TLS with this Secret's files, as the proxies do.
    const key = text(s, 'tls.key');
    const cert = text(s, 'tls.crt');
    const ca = text(s, 'ca.crt');
    const server = tlsServer({ key, cert, ca, requestCert: true, rejectUnauthorized: true }, (c) =>
      c.end('ok'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        const c = tlsConnect(
          {
            host: '127.0.0.1',
            port: (server.address() as { port: number }).port,
            key,
            cert,
            ca,
            checkServerIdentity: () => undefined,
          },
          () => c.once('data', (d) => resolve(d.toString())),
        );
        c.on('error', reject);
      });
      assert.equal(answer, 'ok');
    } finally {
      server.close();
    }
    await waitFor('the ProxyConfig trusts both roots', async () => {
      const b = (await proxyConfig('app'))?.trustBundle.map((p) => p.trim()) ?? [];
      return b.includes(next.certPem.trim()) && b.includes(rootPem.trim()) ? true : undefined;
    });
  });
});
