// The webhook's CA replaced under pod creations, with two replicas (issue 16, scenario 2; the
// chart runs two): a real kube-apiserver calls two real webhook replicas (in-process, bootstrap
// TLS mode, each reloading the Secret on its own interval) through a loopback balancer that
// sends each new connection to the next replica. The Secret starts with a CA that is due for
// replacement a few seconds in (its CA expires within a year); pods are created meanwhile, one
// at a time. What must hold: the caBundle in the webhook configurations verifies the
// certificate each replica serves at every moment (else the apiserver refuses the pods that
// replica would admit: failurePolicy Fail), and no pod creation is refused.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import pino from 'pino';
import { splitPem } from '../../api/pem.ts';
import { selfSignedCa } from '../../api/pki.ts';
import { WEBHOOK_NAMES, webhookConfigurations } from '../../webhook/manifests.ts';
import { startWebhook, type WebhookHandle } from '../../webhook/server.ts';
import { MESH, typicalPod } from '../../webhook/testdata/pods.ts';
import { issueServingCertificate, SERVING_LIFETIME_MS } from '../../webhook/tls.ts';
import { installCrds, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

const MESH_NS = 'weft-system';
const SECRET = 'weft-webhook-tls';
/** The CA is due for replacement this long after the test starts. */
const DUE_IN_MS = 15_000;
/**
 * Replica 0 reloads every second; replica 1 only when the test says, LAG_MS after replica 0 first
 * served another certificate: its reload comes after replica 0's next one, as when a replica's
 * read of the Secret failed once (it retries at its next interval) or its timer runs later.
 */
const INTERVALS = [1000, 3_600_000];
const LAG_MS = 5000;
const step = (m: string) => process.env.WEFT_TEST_DEBUG && console.error(`[webhookrotation] ${m}`);

const isInjected = (p: V1Pod) => (p.spec?.initContainers ?? []).some((c) => c.name === 'weft-proxy');
const pems = (t: string) => splitPem(t).map((p) => new X509Certificate(p));

/** The certificate a TLS server on loopback presents. */
function servedCert(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const c = s.getPeerX509Certificate()!;
      s.end();
      resolve(c);
    });
    s.on('error', reject);
  });
}

describe("the webhook's CA replaced with two replicas, pods created meanwhile", () => {
  let cluster: TestCluster;
  let core: CoreV1Api;
  let admission: AdmissionregistrationV1Api;
  const replicas: WebhookHandle[] = [];
  let balancer: net.Server | undefined;
  const sockets = new Set<net.Socket>();

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    core = cluster.kc.makeApiClient(CoreV1Api);
    admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    const custom = cluster.kc.makeApiClient(CustomObjectsApi);
    await core.createNamespace({ body: { metadata: { name: MESH_NS } } });
    await core.createNamespace({
      body: { metadata: { name: 'shop', labels: { 'weft.dev/inject': 'enabled' } } },
    });
    await custom.createClusterCustomObject({
      group: 'weft.dev',
      version: 'v1alpha1',
      plural: 'meshes',
      body: { apiVersion: 'weft.dev/v1alpha1', kind: 'Mesh', metadata: { name: 'default' }, spec: MESH },
    });
    // The Secret as a webhook wrote it long ago: its CA expires one year and DUE_IN_MS from now.
    const now = new Date();
    const ca = await selfSignedCa({
      name: 'O=Weft, CN=weft-webhook-ca old',
      now,
      lifetimeMs: 365 * 86_400_000 + DUE_IN_MS,
      pathLength: 0,
    });
    const names = {
      dnsNames: [`weft-webhook.${MESH_NS}.svc`, `weft-webhook.${MESH_NS}.svc.cluster.local`],
      ipAddresses: ['127.0.0.1'],
    };
    const serving = await issueServingCertificate(
      { ...names, now, servingLifetimeMs: SERVING_LIFETIME_MS },
      { caPem: ca.certPem, caKeyPem: ca.keyPem },
    );
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    await core.createNamespacedSecret({
      namespace: MESH_NS,
      body: {
        metadata: {
          name: SECRET,
          labels: { 'app.kubernetes.io/managed-by': 'weft', 'weft.dev/component': 'webhook' },
        },
        type: 'kubernetes.io/tls',
        data: {
          'tls.crt': b64(serving.certPem),
          'tls.key': b64(serving.keyPem),
          'ca.crt': b64(ca.certPem),
          'ca.key': b64(ca.keyPem),
        },
      },
    });
    for (const reloadIntervalMs of INTERVALS)
      replicas.push(
        await startWebhook({
          kubeConfig: cluster.kc,
          namespace: MESH_NS,
          port: 0,
          reloadIntervalMs,
          events: false,
          logger: pino({ level: process.env.WEFT_TEST_LOG ?? 'silent' }),
          tls: {
            mode: 'bootstrap',
            webhookConfigurations: {
              mutating: [WEBHOOK_NAMES.mutatingConfiguration],
              validating: [WEBHOOK_NAMES.validatingConfiguration],
            },
          },
        }),
      );
    // The Service in front of the replicas: each new connection to the next replica.
    let next = 0;
    balancer = net.createServer((down) => {
      const port = replicas[next++ % replicas.length]!.port;
      const up = net.connect(port, '127.0.0.1');
      for (const s of [down, up]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      }
      down.pipe(up).pipe(down);
      // The apiserver keeps connections to a webhook open: close them when idle, so every
      // creation below makes a new connection (and a new certificate check).
      down.setTimeout(100, () => down.destroy());
      up.on('close', () => down.destroy());
    });
    await new Promise<void>((r) => balancer!.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(balancer.address() as net.AddressInfo).port}`;
    const cfg = webhookConfigurations({
      namespace: MESH_NS,
      clientConfig: (path) => ({ url: `${url}${path}` }),
    });
    await admission.createMutatingWebhookConfiguration({ body: cfg.mutating });
    await admission.createValidatingWebhookConfiguration({ body: cfg.validating });
    for (const r of replicas) await r.reload();
    await eventually(
      'the webhook configuration to take effect',
      async () => {
        const p = await core.createNamespacedPod({
          namespace: 'shop',
          body: typicalPod('probe'),
          dryRun: 'All',
        });
        return isInjected(p) ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    balancer?.close();
    for (const r of replicas) await r.stop();
    await cluster?.stop();
  });

  test('every replica serves a certificate the caBundle verifies, and no pod is refused', async () => {
    const oldCa = new X509Certificate(
      Buffer.from(
        (await core.readNamespacedSecret({ namespace: MESH_NS, name: SECRET })).data!['ca.crt']!,
        'base64',
      ),
    );
    const unverified: string[] = [];
    const refused: string[] = [];
    let created = 0;
    let unmeshed = 0;
    let switchedAt: number | undefined;
    let firstSwitch: number | undefined;
    let lateReload: Promise<void> | undefined;
    const t0 = Date.now();
    // Until both replicas have served a certificate of the new CA for three of replica 0's intervals.
    while (switchedAt === undefined || Date.now() - switchedAt < 3 * INTERVALS[0]!) {
      if (Date.now() - t0 > DUE_IN_MS + 120_000) assert.fail('the replicas never switched to a new CA');
      // What the apiserver checks on a new connection: the served certificate against the caBundle.
      const m = await admission.readMutatingWebhookConfiguration({
        name: WEBHOOK_NAMES.mutatingConfiguration,
      });
      const bundle = pems(Buffer.from(m.webhooks![0]!.clientConfig.caBundle ?? '', 'base64').toString());
      const served = await Promise.all(replicas.map((r) => servedCert(r.port)));
      served.forEach((c, i) => {
        if (!bundle.some((ca) => c.checkIssued(ca) && c.verify(ca.publicKey)))
          unverified.push(
            `+${((Date.now() - t0) / 1000).toFixed(1)}s replica ${i} serves a certificate from ${c.issuer} that the caBundle (${bundle.map((b) => b.subject).join(' | ')}) does not verify`,
          );
      });
      if (firstSwitch === undefined && !served[0]!.verify(oldCa.publicKey)) {
        firstSwitch = Date.now();
        step(`replica 0 on a new certificate after ${((firstSwitch - t0) / 1000).toFixed(1)} s`);
      }
      if (firstSwitch !== undefined && !lateReload && Date.now() - firstSwitch >= LAG_MS)
        lateReload = replicas[1]!.reload();
      if (switchedAt === undefined && served.every((c) => !c.verify(oldCa.publicKey))) {
        switchedAt = Date.now();
        step(`both replicas on the new CA after ${((switchedAt - t0) / 1000).toFixed(1)} s`);
      }
      try {
        const p = await core.createNamespacedPod({
          namespace: 'shop',
          body: typicalPod(`rotation-${created}`),
          dryRun: 'All',
        });
        if (!isInjected(p)) unmeshed++;
      } catch (e) {
        const body = (e as { body?: string }).body ?? String(e);
        refused.push(`+${((Date.now() - t0) / 1000).toFixed(1)}s ${body.slice(0, 300)}`);
      }
      created++;
      // More than the balancer's idle timeout: the next creation opens a new connection.
      await new Promise((r) => setTimeout(r, 250));
    }
    await lateReload;
    step(`${created} pods created, ${refused.length} refused, ${unverified.length} unverified moments`);
    assert.deepEqual(unverified, [], 'the caBundle verified every served certificate at every moment');
    assert.deepEqual(refused, [], `no pod creation was refused (of ${created})`);
    assert.equal(unmeshed, 0, 'every pod was injected');
    // The new CA is a new one, and the old one is still trusted for the overlap.
    const m = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_NAMES.mutatingConfiguration });
    const bundle = pems(Buffer.from(m.webhooks![0]!.clientConfig.caBundle ?? '', 'base64').toString());
    assert.ok(
      bundle.some((b) => b.fingerprint256 !== oldCa.fingerprint256),
      'a new CA in the caBundle',
    );
  });
});
