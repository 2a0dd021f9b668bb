// The whole mesh, end to end, with real parts only: the control plane built from source
// (with kube-controller-manager, so Deployments, ReplicaSets and EndpointSlices are
// Kubernetes' own), the local node running pods as processes in network namespaces, the
// webhook registered with and called by the apiserver, the operator programming the
// proxies through ConfigMaps, and the sidecars moving real bytes behind real iptables rules.
// It deploys the demo (config/demo) under a STRICT Mesh and checks what a user would:
// sidecars injected, the canary split honoured, mutual TLS between the sidecars, plaintext
// refused, a caller without the right identity denied by the policy, a weight change applied.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { AdmissionregistrationV1Api, AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import pino from 'pino';
import { type LocalNode, startLocalNode } from '../../hack/local-node/index.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { WEBHOOK_NAMES, webhookConfigurations } from '../../webhook/manifests.ts';
import { startWebhook, type WebhookHandle } from '../../webhook/server.ts';
import { installCrds, repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { ensureBinaries } from '../support/control-plane.ts';
import { eventually as poll } from '../support/eventually.ts';

const isRoot = process.getuid?.() === 0;
const pid = process.pid;
const NS = 'weft-demo';
const MESH_NS = 'weft-system';
const logger = pino({ level: process.env.WEFT_TEST_LOG_LEVEL ?? 'silent' });

function freePodCidr(): string {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  for (let i = 0; i < 250; i++) {
    const x = (pid * 3 + i * 11) % 250;
    if (!routes.includes(`10.244.${x}.`)) return `10.244.${x}.0/24`;
  }
  throw new Error('no free /24 in 10.244.0.0/16');
}

const eventually = <T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 120_000) =>
  poll(what, fn, { timeoutMs, intervalMs: 300 });

/** HTTP GET from the host (no sidecar) to a pod IP; returns status and body. */
async function hostGet(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

describe('the mesh, end to end on the local node', {
  skip: isRoot ? false : 'needs root (network namespaces, iptables)',
}, () => {
  let cluster: TestCluster;
  let node: LocalNode | undefined;
  let webhook: WebhookHandle | undefined;
  let operator: OperatorHandle | undefined;
  let core: CoreV1Api;

  const podsOf = async (selector: string): Promise<V1Pod[]> =>
    (await core.listNamespacedPod({ namespace: NS, labelSelector: selector })).items;
  const logOf = (podName: string, container: string): string[] => {
    const info = node!.pods().find((p) => p.namespace === NS && p.name === podName);
    const file = info?.logs[container];
    if (!file) return [];
    try {
      return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  /**
   * The frontend client's answers once both versions have answered: before that, one backend's
   * endpoint may not have reached the client's proxy configuration yet (the operator writes it
   * after the EndpointSlice, the kubelet projects it after that).
   */
  const clientAnswers = async (): Promise<string[]> => {
    const [fe] = await podsOf('app=frontend');
    const lines = fe ? logOf(fe.metadata!.name!, 'client') : [];
    const seen = new Set<string>();
    const both = lines.findIndex((l) => {
      const [, status, , version] = l.split(' ');
      if (status === '200') seen.add(version!);
      return seen.has('v1') && seen.has('v2');
    });
    return both < 0 ? [] : lines.slice(both + 1);
  };
  const versions = (lines: string[]) => {
    const t = { v1: 0, v2: 0, other: 0 };
    for (const l of lines) {
      const [, status, , version] = l.split(' ');
      if (status === '200' && version === 'v1') t.v1++;
      else if (status === '200' && version === 'v2') t.v2++;
      else t.other++;
    }
    return t;
  };

  // Asynchronous: the webhook runs in this process and must answer while kubectl waits.
  const kubectl = async (...args: string[]) =>
    (
      await promisify(execFile)(join(bin, 'kubectl'), ['--kubeconfig', cluster.kubeconfigPath, ...args], {
        encoding: 'utf8',
      })
    ).stdout;
  let bin: string;

  before(async () => {
    cluster = await startTestCluster({ controllerManager: true });
    bin = ensureBinaries();
    core = cluster.kc.makeApiClient(CoreV1Api);
    await installCrds(cluster);
    await core.createNamespace({ body: { metadata: { name: MESH_NS } } });
    node = await startLocalNode({
      kubeConfig: cluster.kc,
      name: `mesh-${pid}`,
      podCIDR: freePodCidr(),
      logger,
    });
    webhook = await startWebhook({
      kubeConfig: cluster.kc,
      namespace: MESH_NS,
      port: 0,
      logger,
      tls: {
        mode: 'bootstrap',
        webhookConfigurations: {
          mutating: [WEBHOOK_NAMES.mutatingConfiguration],
          validating: [WEBHOOK_NAMES.validatingConfiguration],
        },
      },
    });
    const cfg = webhookConfigurations({
      namespace: MESH_NS,
      clientConfig: (path) => ({ url: `${webhook!.url}${path}` }),
    });
    const admission = cluster.kc.makeApiClient(AdmissionregistrationV1Api);
    await admission.createMutatingWebhookConfiguration({ body: cfg.mutating });
    await admission.createValidatingWebhookConfiguration({ body: cfg.validating });
    await webhook.reload();
    operator = await startOperator({
      kubeConfig: cluster.kc,
      namespace: MESH_NS,
      healthAddress: '127.0.0.1:0',
      metricsAddress: '127.0.0.1:0',
    });
    await operator.synced;
    await operator.leading();
    // The demo under a STRICT Mesh: sidecars accept only mutual TLS.
    await kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-f',
      join(repoRoot, 'config', 'demo', 'mesh.yaml'),
    );
    await kubectl('patch', 'mesh', 'default', '--type=merge', '-p', '{"spec":{"mtls":{"mode":"STRICT"}}}');
    await kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-f',
      join(repoRoot, 'config', 'demo', 'demo.yaml'),
    );
    const apps = cluster.kc.makeApiClient(AppsV1Api);
    for (const d of ['reviews-v1', 'reviews-v2', 'frontend']) {
      await eventually(`deployment ${d} available`, async () =>
        (await apps.readNamespacedDeployment({ name: d, namespace: NS })).status?.availableReplicas === 1
          ? true
          : undefined,
      );
    }
  });

  after(async () => {
    await operator?.stop();
    await node?.stop();
    await webhook?.stop();
    await cluster?.stop();
  });

  test('the apiserver called the webhook: every demo pod runs the injected native sidecar and init', async () => {
    const pods = await podsOf('app in (reviews, frontend)');
    assert.equal(pods.length, 3);
    for (const p of pods) {
      const inits = p.spec!.initContainers!.map((c) => `${c.name}:${c.restartPolicy ?? ''}`);
      assert.deepEqual(inits, ['weft-init:', 'weft-proxy:Always'], p.metadata!.name);
      assert.equal(p.metadata!.annotations!['weft.dev/injected'], 'v1');
      assert.equal(p.status!.phase, 'Running');
    }
  });

  test('the canary TrafficSplit sends about 80% of the calls to v1 and the rest to v2', async () => {
    const lines = await eventually('200 answers from the client', async () => {
      const a = await clientAnswers();
      return a.length >= 200 ? a.slice(0, 200) : undefined;
    });
    const t = versions(lines);
    assert.equal(
      t.other,
      0,
      `every call answered 200: ${lines
        .filter((l) => l.split(' ')[1] !== '200')
        .slice(0, 3)
        .join(' | ')}`,
    );
    // 200 calls at p = 0.8: the standard deviation is ~5.7 calls; the band is ±5 of them.
    assert.ok(t.v1 >= 130 && t.v1 <= 190, `v1 got ${t.v1} of 200`);
    assert.ok(t.v2 >= 10, `v2 got ${t.v2} of 200`);
  });

  test('the sidecars talk mutual TLS 1.3 with the SPIFFE identities of the workloads', async () => {
    const [v1] = await podsOf('app=reviews,version=v1');
    const { body } = await hostGet(`http://${v1!.status!.podIP}:15020/metrics`);
    const line = body
      .split('\n')
      .find(
        (l) =>
          l.startsWith('weft_mtls_connections_total{') &&
          l.includes('direction="inbound"') &&
          l.includes('peer="spiffe://cluster.local/ns/weft-demo/sa/frontend"'),
      );
    assert.ok(line, 'an inbound mTLS connection from the frontend identity was counted');
    assert.match(line!, /tls_version="TLSv1\.3"/);
    assert.ok(Number(line!.split(' ').at(-1)) > 0);
  });

  test('STRICT: a plaintext caller without a sidecar is refused', async () => {
    const [v1] = await podsOf('app=reviews,version=v1');
    const res = await hostGet(`http://${v1!.status!.podIP}:8080/`);
    assert.equal(res.status, 403);
    assert.match(res.body, /mutual TLS is required on port 8080 \(mTLS mode STRICT\): plaintext refused/);
  });

  test('a meshed caller with another identity is denied by the AuthorizationPolicy, which the answer names', async () => {
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'intruder' } } });
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'intruder', labels: { app: 'intruder' } },
        spec: {
          serviceAccountName: 'intruder',
          restartPolicy: 'Never',
          containers: [
            {
              name: 'client',
              image: 'weft-demo:latest',
              command: ['node', 'hack/demo-apps/client.ts'],
              env: [
                { name: 'COUNT', value: '5' },
                { name: 'INTERVAL_MS', value: '200' },
              ],
            },
          ],
        },
      },
    });
    const lines = await eventually('5 answers to the intruder', () => {
      const l = logOf('intruder', 'client');
      return l.length >= 5 ? l : undefined;
    });
    for (const l of lines) {
      assert.match(l, /^\d+ 403 /, l);
      assert.match(l, /weft-demo\/reviews-from-frontend/, l);
    }
    const [v1] = await podsOf('app=reviews,version=v1');
    const [v2] = await podsOf('app=reviews,version=v2');
    let denied = 0;
    for (const p of [v1!, v2!]) {
      const { body } = await hostGet(`http://${p.status!.podIP}:15020/metrics`);
      for (const l of body.split('\n')) {
        if (l.startsWith('weft_authz_decisions_total{') && l.includes('decision="deny"'))
          denied += Number(l.split(' ').at(-1));
      }
    }
    assert.ok(denied >= 5, `denials counted: ${denied}`);
  });

  test('a weight change reaches the proxies: 0/100 sends every call to v2', async () => {
    await kubectl(
      'patch',
      'trafficsplit',
      'reviews-canary',
      '-n',
      NS,
      '--type=json',
      '-p',
      '[{"op":"replace","path":"/spec/backends/0/weight","value":0},{"op":"replace","path":"/spec/backends/1/weight","value":100}]',
    );
    const seen = (await clientAnswers()).length;
    // Once a call lands on v2 after the change, the next 30 must all go there.
    const tail = await eventually('30 calls in a row to v2', async () => {
      const a = (await clientAnswers()).slice(seen);
      const firstAllV2 = a.findIndex(
        (_, i) =>
          a.slice(i, i + 30).length === 30 && a.slice(i, i + 30).every((l) => l.split(' ')[3] === 'v2'),
      );
      return firstAllV2 >= 0 ? a.slice(firstAllV2, firstAllV2 + 30) : undefined;
    });
    assert.equal(versions(tail).v2, 30);
    const ts = JSON.parse(await kubectl('get', 'trafficsplit', 'reviews-canary', '-n', NS, '-o', 'json'));
    assert.equal(ts.status.observedGeneration, ts.metadata.generation);
    assert.equal(ts.status.conditions.find((c: { type: string }) => c.type === 'Ready').status, 'True');
  });
});
