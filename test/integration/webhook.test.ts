// The admission webhook against a real kube-apiserver: the webhook runs in-process on a
// loopback port with its bootstrapped certificate, the configurations built by
// webhook/manifests.ts are registered with clientConfig.url, and everything below is shown
// through `create` calls on the apiserver, as kubectl or a ReplicaSet would make them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from '@kubernetes/client-node';
import pino from 'pino';
import { ANNOTATIONS, COMMANDS, MESHED_LABEL } from '../../webhook/constants.ts';
import { WEBHOOK_NAMES, webhookConfigurations } from '../../webhook/manifests.ts';
import { startWebhook, type WebhookHandle } from '../../webhook/server.ts';
import { MESH, typicalPod } from '../../webhook/testdata/pods.ts';
import { fingerprint, issueServingCertificate } from '../../webhook/tls.ts';
import { installCrds, refusal, repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { ensureBinaries, freePort } from '../support/control-plane.ts';
import { eventually as poll } from '../support/eventually.ts';

const MESH_NS = 'weft-system';
let cluster: TestCluster;
let webhook: WebhookHandle;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let admission: AdmissionregistrationV1Api;
const extraServers: https.Server[] = [];
let configDryRun: { status: number; stdout: string; stderr: string };

const eventually = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000) =>
  poll(what, probe, { timeoutMs, intervalMs: 100 });

/** The client's model classes as plain JSON, for deepEqual. */
const plain = (v: unknown) => JSON.parse(JSON.stringify(v));
const isInjected = (p: V1Pod) => (p.spec?.initContainers ?? []).some((c) => c.name === 'weft-proxy');

async function createNamespace(name: string, labels: Record<string, string> = {}) {
  await core.createNamespace({ body: { metadata: { name, labels } } });
}

/** kubectl with stderr, where the apiserver's Warning headers are printed (async: the webhook runs in this process). */
function kubectl(
  stdin: string,
  ...args: string[]
): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(join(ensureBinaries(), 'kubectl'), ['--kubeconfig', cluster.kubeconfigPath, ...args]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => {
      stdout += c;
    });
    p.stderr.on('data', (c) => {
      stderr += c;
    });
    p.on('error', reject);
    p.on('close', (status) => resolve({ status: status ?? -1, stdout, stderr }));
    p.stdin.end(stdin);
  });
}

/** The certificate a TLS server on loopback presents, PEM. */
function servedCert(port: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const pem = s.getPeerX509Certificate()!.toString();
      s.end();
      resolve(pem);
    });
    s.on('error', reject);
  });
}

async function metricsText(): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(`${webhook.url}/metrics`, { ca: webhook.caPem }, (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

function counter(text: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`weft_webhook_admissions_total{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

before(async () => {
  cluster = await startTestCluster();
  await installCrds(cluster);
  core = cluster.kc.makeApiClient(CoreV1Api);
  custom = cluster.kc.makeApiClient(CustomObjectsApi);
  admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
  await createNamespace(MESH_NS);
  // Before the test's own configurations exist (same names): the shipped manifests, dry-run.
  configDryRun = await kubectl('', 'apply', '--dry-run=server', '-k', join(repoRoot, 'config', 'webhook'));
  webhook = await startWebhook({
    kubeConfig: cluster.kc,
    namespace: MESH_NS,
    port: 0,
    logger: pino({ level: process.env.WEFT_TEST_LOG ?? 'silent' }),
    tls: {
      mode: 'bootstrap',
      webhookConfigurations: {
        mutating: [WEBHOOK_NAMES.mutatingConfiguration],
        validating: [WEBHOOK_NAMES.validatingConfiguration],
      },
    },
  });
  // Registered without a caBundle: the webhook writes it (as in a real install).
  const cfg = webhookConfigurations({
    namespace: MESH_NS,
    clientConfig: (path) => ({ url: `${webhook.url}${path}` }),
  });
  await admission.createMutatingWebhookConfiguration({ body: cfg.mutating });
  await admission.createValidatingWebhookConfiguration({ body: cfg.validating });
  await webhook.reload();

  await custom.createClusterCustomObject({
    group: 'weft.dev',
    version: 'v1alpha1',
    plural: 'meshes',
    body: { apiVersion: 'weft.dev/v1alpha1', kind: 'Mesh', metadata: { name: 'default' }, spec: MESH },
  });
  await createNamespace('shop', { 'weft.dev/inject': 'enabled' });
  await createNamespace('plain');
  // The apiserver picks configurations up asynchronously: wait until a dry-run pod is injected.
  await eventually('the webhook configuration to take effect', async () => {
    const p = await core.createNamespacedPod({ namespace: 'shop', body: typicalPod('probe'), dryRun: 'All' });
    return isInjected(p) ? true : undefined;
  });
});

after(async () => {
  for (const s of extraServers) {
    s.closeAllConnections();
    s.close();
  }
  await webhook?.stop();
  await cluster?.stop();
});

describe('serving certificate', () => {
  test('the webhook bootstraps its CA into a Secret and writes the caBundle into both configurations', async () => {
    const secret = await core.readNamespacedSecret({ namespace: MESH_NS, name: 'weft-webhook-tls' });
    assert.equal(secret.type, 'kubernetes.io/tls');
    assert.equal(Buffer.from(secret.data!['ca.crt']!, 'base64').toString(), webhook.caPem);
    const m = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_NAMES.mutatingConfiguration });
    const v = await admission.readValidatingWebhookConfiguration({
      name: WEBHOOK_NAMES.validatingConfiguration,
    });
    for (const h of [...m.webhooks!, ...v.webhooks!])
      assert.equal(h.clientConfig.caBundle, webhook.caBundle, h.name);
  });

  test('the registered configuration is what the docs promise', async () => {
    const m = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_NAMES.mutatingConfiguration });
    for (const h of m.webhooks!) {
      assert.equal(h.sideEffects, 'None');
      assert.equal(h.reinvocationPolicy, 'IfNeeded');
      assert.ok(h.timeoutSeconds! <= 10);
      assert.deepEqual(h.namespaceSelector!.matchExpressions![0]!.values, [
        'kube-system',
        'kube-public',
        'kube-node-lease',
        MESH_NS,
      ]);
    }
    assert.deepEqual(
      m.webhooks!.map((h) => [h.name, h.failurePolicy]),
      [
        ['namespaces.inject.weft.dev', 'Fail'],
        ['pods.inject.weft.dev', 'Ignore'],
      ],
    );
  });
});

describe('injection through the apiserver', () => {
  test('a pod in a labelled namespace gets the proxy, the redirect, volumes, rewritten probes and annotations', async () => {
    const pod = await core.createNamespacedPod({ namespace: 'shop', body: typicalPod('web') });
    const spec = pod.spec!;
    assert.deepEqual(
      spec.initContainers!.map((c) => c.name),
      ['weft-init', 'weft-proxy', 'migrate'],
    );
    const [init, proxy] = spec.initContainers!;
    assert.deepEqual(init!.command, [...COMMANDS.init]);
    assert.equal(init!.env!.find((e) => e.name === 'WEFT_INBOUND_PORT')!.value, '15006');
    assert.equal(proxy!.restartPolicy, 'Always');
    assert.equal(proxy!.image, MESH.proxy!.image, 'image from the Mesh');
    assert.deepEqual(plain(proxy!.resources), MESH.proxy!.resources, 'resources from the Mesh');
    assert.equal(proxy!.startupProbe!.httpGet!.path, '/healthz/ready');
    assert.equal(proxy!.readinessProbe!.httpGet!.port, 15020);
    assert.deepEqual(
      spec.volumes!.map((v) => v.name),
      ['data', 'weft-config', 'weft-identity', 'weft-podinfo', 'weft-token'],
    );
    assert.equal(spec.volumes![1]!.projected!.sources!.length, 4);
    assert.equal(spec.volumes![2]!.secret!.secretName, 'weft-identity-web');
    assert.deepEqual(
      spec.volumes![3]!.downwardAPI!.items!.map((i) => i.path),
      ['labels', 'annotations'],
    );
    assert.equal(spec.containers[0]!.readinessProbe!.httpGet!.path, '/app-health/8080/ready');
    assert.equal(spec.containers[0]!.readinessProbe!.httpGet!.port, 15020);
    assert.equal(spec.containers[0]!.livenessProbe!.httpGet!.path, '/app-health/9090/live');
    assert.deepEqual(plain(spec.containers[0]!.env), [{ name: 'MODE', value: 'prod' }], 'app env kept');
    assert.equal(pod.metadata!.annotations![ANNOTATIONS.injected], 'v1');
    assert.ok(pod.metadata!.annotations![ANNOTATIONS.appProbes]);
    assert.equal(pod.metadata!.annotations!['example.com/owner'], 'team-a');
    assert.equal(pod.metadata!.labels![MESHED_LABEL], 'true');

    const ev = await eventually('the Injected event', async () => {
      const list = await core.listNamespacedEvent({
        namespace: 'shop',
        fieldSelector: 'involvedObject.name=web',
      });
      return list.items.find((e) => e.reason === 'Injected');
    });
    assert.equal(ev.involvedObject.kind, 'Pod');
  });

  test('the pod annotation opts out: no proxy, the reason recorded as annotation and Event', async () => {
    const body = typicalPod('opted-out');
    body.metadata!.annotations![ANNOTATIONS.inject] = 'disabled';
    const pod = await core.createNamespacedPod({ namespace: 'shop', body });
    assert.ok(!isInjected(pod));
    assert.deepEqual(
      pod.spec!.initContainers!.map((c) => c.name),
      ['migrate'],
    );
    assert.match(pod.metadata!.annotations![ANNOTATIONS.skipped]!, /opts out/);
    assert.equal(pod.spec!.containers[0]!.readinessProbe!.httpGet!.port, 'http', 'probes untouched');
    const ev = await eventually('the InjectionSkipped event', async () => {
      const list = await core.listNamespacedEvent({
        namespace: 'shop',
        fieldSelector: 'involvedObject.name=opted-out',
      });
      return list.items.find((e) => e.reason === 'InjectionSkipped');
    });
    assert.match(ev.message!, /opts out/);
  });

  test('hostNetwork pods are skipped with the reason', async () => {
    const body = typicalPod('host');
    body.spec!.hostNetwork = true;
    const pod = await core.createNamespacedPod({ namespace: 'shop', body });
    assert.ok(!isInjected(pod));
    assert.match(pod.metadata!.annotations![ANNOTATIONS.skipped]!, /hostNetwork/);
  });

  test('outside labelled namespaces only pods that opt in are injected; the others are untouched', async () => {
    const optIn = typicalPod('opt-in');
    optIn.metadata!.annotations![ANNOTATIONS.inject] = 'enabled';
    assert.ok(isInjected(await core.createNamespacedPod({ namespace: 'plain', body: optIn })));
    const plain = await core.createNamespacedPod({ namespace: 'plain', body: typicalPod('plain') });
    assert.ok(!isInjected(plain));
    assert.deepEqual(plain.metadata!.annotations, { 'example.com/owner': 'team-a' });
    assert.equal(plain.metadata!.labels![MESHED_LABEL], undefined);
  });

  test('pods in kube-system and in the mesh namespace are untouched, even when they ask', async () => {
    for (const namespace of ['kube-system', MESH_NS]) {
      const body = typicalPod(`asks-${namespace}`);
      body.metadata!.annotations![ANNOTATIONS.inject] = 'enabled';
      const pod = await core.createNamespacedPod({ namespace, body });
      assert.ok(!isInjected(pod), namespace);
      assert.deepEqual(pod.metadata!.annotations, {
        'example.com/owner': 'team-a',
        [ANNOTATIONS.inject]: 'enabled',
      });
    }
  });

  test('a malformed exclusion annotation is refused with a message naming it', async () => {
    const body = typicalPod('bad-annotation');
    body.metadata!.annotations![ANNOTATIONS.excludeOutboundPorts] = '5432,postgres';
    const msg = await refusal(core.createNamespacedPod({ namespace: 'shop', body }));
    assert.match(msg, /weft\.dev\/exclude-outbound-ports: "postgres" is not a port/);
  });

  test('reinvocation after another webhook changes the pod does not inject twice', async () => {
    // A second mutating webhook, ordered after Weft's, adds a container to pods labelled
    // reinvoke=yes; the apiserver then calls Weft again (reinvocationPolicy IfNeeded).
    const cert = await issueServingCertificate({ dnsNames: [], ipAddresses: ['127.0.0.1'], now: new Date() });
    const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        const review = JSON.parse(body);
        const pod = review.request.object as V1Pod;
        const has = pod.spec!.containers.some((c) => c.name === 'logger');
        const patch = has
          ? []
          : [{ op: 'add', path: '/spec/containers/-', value: { name: 'logger', image: 'log:1' } }];
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            response: {
              uid: review.request.uid,
              allowed: true,
              ...(patch.length
                ? { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') }
                : {}),
            },
          }),
        );
      });
    });
    extraServers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const other: V1MutatingWebhookConfiguration = {
      metadata: { name: 'zz-test-mutator' },
      webhooks: [
        {
          name: 'logger.test.example',
          admissionReviewVersions: ['v1'],
          clientConfig: {
            url: `https://127.0.0.1:${port}/`,
            caBundle: Buffer.from(cert.caPem).toString('base64'),
          },
          rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
          objectSelector: { matchLabels: { reinvoke: 'yes' } },
          sideEffects: 'None',
          failurePolicy: 'Fail',
          reinvocationPolicy: 'IfNeeded',
        },
      ],
    };
    await admission.createMutatingWebhookConfiguration({ body: other });
    const body = typicalPod('reinvoked');
    body.metadata!.labels!.reinvoke = 'yes';
    const pod = await eventually('the second webhook to take effect', async () => {
      const p = await core.createNamespacedPod({ namespace: 'shop', body, dryRun: 'All' });
      return p.spec!.containers.some((c) => c.name === 'logger') ? p : undefined;
    });
    const before = counter(await metricsText(), 'webhook="inject",kind="Pod",result="ignored"');
    const created = await core.createNamespacedPod({ namespace: 'shop', body });
    const afterCount = counter(await metricsText(), 'webhook="inject",kind="Pod",result="ignored"');
    assert.ok(afterCount > before, 'Weft was invoked again and left the injected pod alone');
    for (const p of [pod, created]) {
      const names = [...p.spec!.initContainers!, ...p.spec!.containers].map((c) => c.name);
      assert.deepEqual(names, ['weft-init', 'weft-proxy', 'migrate', 'web', 'sidecar', 'logger']);
      assert.equal(p.spec!.volumes!.filter((v) => v.name.startsWith('weft-')).length, 4);
    }
    await admission.deleteMutatingWebhookConfiguration({ name: 'zz-test-mutator' });
  });
});

describe('validation through the apiserver', () => {
  const split = (name: string, service: string, backends: string[], extra: Record<string, unknown> = {}) => ({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'TrafficSplit',
    metadata: { name, namespace: 'shop' },
    spec: { service, backends: backends.map((b) => ({ service: b, weight: 1 })), ...extra },
  });
  const createSplit = (body: object) =>
    custom.createNamespacedCustomObject({
      group: 'weft.dev',
      version: 'v1alpha1',
      plural: 'trafficsplits',
      namespace: 'shop',
      body,
    });

  test('a TrafficSplit that closes a cycle is refused, naming the backend field', async () => {
    await createSplit(split('a', 'svc-a', ['svc-b']));
    const msg = await refusal(createSplit(split('b', 'svc-b', ['svc-a'])));
    assert.match(msg, /admission webhook "validate.weft.dev" denied the request/);
    assert.match(
      msg,
      /spec\.backends\[0\]\.service: routing to svc-a forms a cycle of TrafficSplits: svc-b → svc-a → svc-b/,
    );
  });

  test('a second split of the same service for the same requests is refused, naming spec.service', async () => {
    const msg = await refusal(createSplit(split('a-dup', 'svc-a', ['svc-c'])));
    assert.match(msg, /spec\.service: TrafficSplit shop\/a already splits service svc-a/);
  });

  test('an invalid regular expression is refused, naming the match', async () => {
    const msg = await refusal(
      createSplit(
        split('re', 'svc-r', ['svc-r1'], {
          matches: [{ path: { type: 'RegularExpression', value: '/(v1' } }],
        }),
      ),
    );
    assert.match(msg, /spec\.matches\[0\]\.path\.value: "\/\(v1" is not an RE2 regular expression/);
  });

  test('a regular expression outside RE2 (backreference, lookahead) is refused, naming the field', async () => {
    // Both compile on a backtracking engine, which is what let ^/(a+)+$-style patterns freeze sidecars.
    const msg = await refusal(
      createSplit(
        split('re2', 'svc-r', ['svc-r1'], {
          matches: [
            { path: { type: 'RegularExpression', value: '/(a+)\\1' } },
            { headers: [{ name: 'x-user', type: 'RegularExpression', value: '(?!admin).*' }] },
          ],
        }),
      ),
    );
    assert.match(msg, /spec\.matches\[0\]\.path\.value: "\/\(a\+\)\\1" is not an RE2 regular expression/);
    assert.match(msg, /spec\.matches\[1\]\.headers\[0\]\.value: .* is not an RE2 regular expression/);
  });

  test('a Mesh whose proxy requests exceed its limits is refused, naming the field', async () => {
    const msg = await refusal(
      custom.patchClusterCustomObject({
        group: 'weft.dev',
        version: 'v1alpha1',
        plural: 'meshes',
        name: 'default',
        body: [{ op: 'replace', path: '/spec/proxy/resources/requests/memory', value: '1Gi' }],
      }),
    );
    assert.match(msg, /spec\.proxy\.resources\.requests\.memory: 1Gi is more than limits\.memory 128Mi/);
  });

  test('an AuthorizationPolicy with a misplaced wildcard is refused, naming the field', async () => {
    const msg = await refusal(
      custom.createNamespacedCustomObject({
        group: 'weft.dev',
        version: 'v1alpha1',
        plural: 'authorizationpolicies',
        namespace: 'shop',
        body: {
          apiVersion: 'weft.dev/v1alpha1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'bad' },
          spec: { rules: [{ to: [{ operation: { paths: ['/api/*/admin'] } }] }] },
        },
      }),
    );
    assert.match(msg, /spec\.rules\[0\]\.to\[0\]\.operation\.paths\[0\]: "\/api\/\*\/admin": a \* wildcard/);
  });

  test('dangling references are accepted with warnings, because GitOps applies in any order', async () => {
    await core.createNamespacedService({
      namespace: 'shop',
      body: { metadata: { name: 'reviews' }, spec: { ports: [{ port: 80 }] } },
    });
    const r = await kubectl(
      JSON.stringify(split('reviews', 'reviews', ['reviews-v1', 'reviews-v2'])),
      'apply',
      '-f',
      '-',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /Warning: spec\.backends\[0\]\.service: Service shop\/reviews-v1 does not exist yet/,
    );
    assert.match(
      r.stderr,
      /Warning: spec\.backends\[1\]\.service: Service shop\/reviews-v2 does not exist yet/,
    );
    assert.doesNotMatch(r.stderr, /Service shop\/reviews does not/);

    const p = await kubectl(
      JSON.stringify({
        apiVersion: 'weft.dev/v1alpha1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'readers', namespace: 'shop' },
        spec: { rules: [{ from: [{ source: { serviceAccounts: ['frontend'] } }] }] },
      }),
      'apply',
      '-f',
      '-',
    );
    assert.equal(p.status, 0, p.stderr);
    assert.match(
      p.stderr,
      /Warning: spec\.rules\[0\]\.from\[0\]\.source\.serviceAccounts\[0\]: ServiceAccount shop\/frontend does not exist yet/,
    );
  });
});

describe('operations', () => {
  test('/healthz answers and /metrics counts admissions by result with a latency histogram', async () => {
    const health = await new Promise<number>((resolve, reject) =>
      https
        .get(`${webhook.url}/healthz`, { ca: webhook.caPem }, (res) => resolve(res.statusCode ?? 0))
        .on('error', reject),
    );
    assert.equal(health, 200);
    const text = await metricsText();
    assert.ok(counter(text, 'webhook="inject",kind="Pod",result="injected"') >= 3);
    assert.ok(counter(text, 'webhook="inject",kind="Pod",result="skipped"') >= 2);
    assert.ok(counter(text, 'webhook="validate",kind="TrafficSplit",result="denied"') >= 3);
    assert.ok(counter(text, 'webhook="validate",kind="TrafficSplit",result="warned"') >= 1);
    assert.match(text, /weft_webhook_admission_duration_seconds_bucket\{le="0.01",webhook="inject"\} \d+/);
  });

  test('a new certificate in the Secret is served without a restart and the caBundle follows', async () => {
    const peer = () => servedCert(webhook.port);
    const oldCa = webhook.caPem;
    const oldServed = await fingerprint(await peer());
    // Another CA and certificate, as a restore from backup or a manual rotation would write.
    const next = await issueServingCertificate({
      dnsNames: ['weft-webhook.weft-system.svc', 'weft-webhook.weft-system.svc.cluster.local'],
      ipAddresses: ['127.0.0.1'],
      now: new Date(),
    });
    const secret = await core.readNamespacedSecret({ namespace: MESH_NS, name: 'weft-webhook-tls' });
    secret.data = {
      'tls.crt': Buffer.from(next.certPem).toString('base64'),
      'tls.key': Buffer.from(next.keyPem).toString('base64'),
      'ca.crt': Buffer.from(next.caPem).toString('base64'),
      'ca.key': Buffer.from(next.caKeyPem!).toString('base64'),
    };
    await core.replaceNamespacedSecret({ namespace: MESH_NS, name: 'weft-webhook-tls', body: secret });
    await webhook.reload();

    assert.equal(await fingerprint(await peer()), await fingerprint(next.certPem));
    assert.notEqual(await fingerprint(next.certPem), oldServed);
    assert.equal(webhook.caPem, next.caPem);
    const m = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_NAMES.mutatingConfiguration });
    const bundle = Buffer.from(m.webhooks![0]!.clientConfig.caBundle!, 'base64').toString();
    assert.ok(bundle.includes(next.caPem.trim()), 'the new CA is trusted');
    assert.ok(bundle.includes(oldCa.trim()), 'the old CA stays trusted until the next reload');
    await eventually('an injection through the new certificate', async () => {
      const p = await core.createNamespacedPod({
        namespace: 'shop',
        body: typicalPod('after-rotation'),
        dryRun: 'All',
      });
      return isInjected(p) ? true : undefined;
    });
  });

  test('cert-manager mode serves the Secret cert-manager writes, follows its renewals, and writes nothing', async () => {
    const b64 = (v: string) => Buffer.from(v).toString('base64');
    const issue = () =>
      issueServingCertificate({
        dnsNames: ['weft-webhook.weft-system.svc'],
        ipAddresses: ['127.0.0.1'],
        now: new Date(),
      });
    const first = await issue();
    const secret = (c: typeof first) => ({
      metadata: { name: 'cm-tls', namespace: MESH_NS },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(c.certPem), 'tls.key': b64(c.keyPem), 'ca.crt': b64(c.caPem) },
    });
    await core.createNamespacedSecret({ namespace: MESH_NS, body: secret(first) });
    const before = await admission.readMutatingWebhookConfiguration({
      name: WEBHOOK_NAMES.mutatingConfiguration,
    });
    const cm = await startWebhook({
      kubeConfig: cluster.kc,
      namespace: MESH_NS,
      logger: pino({ level: 'silent' }),
      tls: { mode: 'cert-manager', secretName: 'cm-tls' },
    });
    try {
      assert.equal(await fingerprint(await servedCert(cm.port)), await fingerprint(first.certPem));
      const renewed = await issue();
      await core.replaceNamespacedSecret({ namespace: MESH_NS, name: 'cm-tls', body: secret(renewed) });
      await cm.reload();
      assert.equal(await fingerprint(await servedCert(cm.port)), await fingerprint(renewed.certPem));
      const stored = await core.readNamespacedSecret({ namespace: MESH_NS, name: 'cm-tls' });
      assert.equal(stored.data!['tls.crt'], b64(renewed.certPem), 'the Secret is left to cert-manager');
      const afterCfg = await admission.readMutatingWebhookConfiguration({
        name: WEBHOOK_NAMES.mutatingConfiguration,
      });
      assert.equal(
        afterCfg.metadata!.resourceVersion,
        before.metadata!.resourceVersion,
        'caBundle is left to the cainjector',
      );
    } finally {
      await cm.stop();
    }
  });

  test('config/webhook applies cleanly to the apiserver (server-side dry run)', async () => {
    const r = configDryRun;
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /deployment.apps\/weft-webhook (created|configured) \(server dry run\)/);
    assert.match(r.stdout, /mutatingwebhookconfiguration.admissionregistration.k8s.io\/weft-injector/);
  });

  test('`weft webhook` runs the same server as a process and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const proc = spawn(process.execPath, [
      join(repoRoot, 'cmd', 'weft.ts'),
      'webhook',
      `--kubeconfig=${cluster.kubeconfigPath}`,
      `--namespace=${MESH_NS}`,
      `--port=${port}`,
      '--host=127.0.0.1',
      '--tls-secret=cli-tls',
      '--mutating-configuration=absent',
      '--validating-configuration=absent',
      '--log-level=warn',
    ]);
    let stderr = '';
    proc.stderr.on('data', (c) => {
      stderr += c;
    });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const ca = await eventually('the bootstrapped Secret', async () => {
        const s = await core.readNamespacedSecret({ namespace: MESH_NS, name: 'cli-tls' });
        return Buffer.from(s.data!['ca.crt']!, 'base64').toString();
      });
      const status = await eventually(
        '/healthz over TLS verified by the Secret CA',
        () =>
          new Promise<number>((resolve, reject) =>
            https
              .get(`https://127.0.0.1:${port}/healthz`, { ca }, (res) => resolve(res.statusCode ?? 0))
              .on('error', reject),
          ),
      );
      assert.equal(status, 200);
    } finally {
      proc.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr);
  });
});
