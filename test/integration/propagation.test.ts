// Configuration in every proxy within a second, and status that proves it (docs/proxy-config.md,
// Fast path and proof of application). A real kube-apiserver, the operator in-process, and
// three real proxies as local processes (`node proxy/main.ts`) that watch their namespace's
// ConfigMap with a ServiceAccount token limited by the ClusterRole of config/rbac/proxy_role.yaml
// and the RoleBinding the operator writes. Their config directories (the "volume") are written
// once before start and then left alone, as a kubelet that has not synced yet would: every
// change here can only arrive through the fast path.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AuthorizationPolicy, Mesh, TrafficSplit } from '../../api/index.ts';
import { clusterChecks } from '../../cli/checks.ts';
import { collectStatus, renderStatus } from '../../cli/status.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { dirFingerprint, writeProjected } from '../../proxy/configdir.ts';
import { installCrds, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';
import { meshedNamespaceWithProxyToken, runningMeshedPod } from '../support/propagation.ts';
import { type ProxyProcess, spawnProxy } from '../support/proxyprocess.ts';

const NS = 'shop';
const step = (m: string) => process.env.WEFT_TEST_DEBUG && console.error(`[propagation] ${m}`);
const PODS = ['web-0', 'web-1', 'web-2'];
const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000) =>
  eventually(what, probe, { timeoutMs, intervalMs: 50 });

interface Proxy extends ProxyProcess {
  name: string;
  dir: string;
}
interface Applied {
  status: { version: string; generation: number | null; source: string | null; stale: number };
  config: {
    routes: { name: string; backends: { service: string; weight: number }[] }[];
    authorizationPolicies: { name: string; action: string }[];
  } | null;
}

describe('config propagation: apiserver fast path, proxies report what they applied', () => {
  let cluster: TestCluster;
  let client: KubeClient;
  let op: OperatorHandle | undefined;
  const work = mkdtempSync(join(tmpdir(), 'weft-propagation-'));
  const tokenDir = join(work, 'token');
  const proxies = new Map<string, Proxy>();
  let clusterStopped = false;

  /** Starts `node proxy/main.ts` for a pod, resolving once it logged its ports. */
  const startProxy = async (name: string, dir: string): Promise<Proxy> => {
    const server = cluster.kc.getCurrentCluster()!.server;
    const proc = await spawnProxy([
      `--config-dir=${dir}`,
      `--namespace=${NS}`,
      `--pod-name=${name}`,
      '--outbound-port=0',
      '--inbound-port=0',
      '--admin-port=0',
      '--health-port=0',
      `--apiserver=${server}`,
      `--token-dir=${tokenDir}`,
      '--poll-ms=200',
    ]);
    const p = { name, dir, ...proc };
    proxies.set(name, p);
    return p;
  };
  const stopProxy = (p: Proxy) => p.stop();
  const applied = async (p: Proxy): Promise<Applied> =>
    (await (
      await fetch(`http://127.0.0.1:${p.ports.admin}/config`, { signal: AbortSignal.timeout(2000) })
    ).json()) as Applied;

  const splitSpec = (v1: number, v2: number): TrafficSplit['spec'] => ({
    service: 'web',
    backends: [
      { service: 'web-v1', weight: v1 },
      { service: 'web-v2', weight: v2 },
    ],
  });
  const setWeights = (v1: number, v2: number) =>
    client.apply(
      RESOURCES.trafficSplits,
      {
        apiVersion: 'weft.dev/v1alpha1',
        kind: 'TrafficSplit',
        metadata: { name: 'canary', namespace: NS },
        spec: splitSpec(v1, v2),
      },
      { fieldManager: 'weft-test' },
    );
  const getSplit = () => client.get<KubeObject & TrafficSplit>(RESOURCES.trafficSplits, 'canary', NS);
  const getMesh = () => client.get<KubeObject & Mesh>(RESOURCES.meshes, 'default');
  const condOf = (
    o: { status?: { conditions?: { type: string; status: string; message: string }[] } },
    t: string,
  ) => o.status?.conditions?.find((c) => c.type === t);
  const configMapGeneration = async () => {
    const cm = await client.get<KubeObject & { data: Record<string, string> }>(
      RESOURCES.configMaps,
      'weft-proxy-config',
      NS,
    );
    return (JSON.parse(cm.data['manifest.json']!) as { generation: number }).generation;
  };
  /** Copies the namespace's ConfigMaps into a config dir, as the kubelet projects them. */
  const project = async (dir: string) => {
    const cm = await client.get<
      KubeObject & { data: Record<string, string>; binaryData: Record<string, string> }
    >(RESOURCES.configMaps, 'weft-proxy-config', NS);
    const files = new Map<string, Buffer | string>(Object.entries(cm.data));
    for (const [k, v] of Object.entries(cm.binaryData)) files.set(k, Buffer.from(v, 'base64'));
    await writeProjected(dir, files);
  };

  before(async () => {
    cluster = await startTestCluster();
    step('cluster up');
    await installCrds(cluster);
    client = new KubeClient(cluster.kc, 'weft-test');
    await meshedNamespaceWithProxyToken({
      client,
      kc: cluster.kc,
      kubectl: cluster.kubectl,
      namespace: NS,
      serviceAccount: 'web',
      tokenDir,
    });
    await client.create(RESOURCES.trafficSplits, {
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'TrafficSplit',
      metadata: { name: 'canary', namespace: NS },
      spec: splitSpec(90, 10),
    });
    for (const name of PODS)
      await runningMeshedPod(client, { namespace: NS, name, serviceAccount: 'web', labels: { app: 'web' } });

    op = await startOperator({
      kubeConfig: cluster.kc,
      namespace: 'weft-system',
      identity: false,
      // Local processes: each pod's proxy answers on its own health port.
      proxyAddress: (pod) => {
        const p = proxies.get(pod.metadata.name);
        return p ? `http://127.0.0.1:${p.ports.health}` : undefined;
      },
    });
    await op.synced;
    await op.leading();
    step('operator leading');
    await waitFor('the first ProxyConfig', async () => (await configMapGeneration()) >= 1);
    // The volume holds the first config; it is never updated again by this test (slow kubelet).
    for (const name of PODS) {
      const dir = join(work, name);
      await project(dir);
      await startProxy(name, dir);
      step(`proxy ${name} started`);
    }
    // Pod events tell the operator to start polling: touch the pods now that the ports are known.
    for (const name of PODS)
      await client.apply(
        RESOURCES.pods,
        { metadata: { name, namespace: NS, labels: { app: 'web', started: 'yes' } } },
        { fieldManager: 'weft-test' },
      );
  });

  after(async () => {
    for (const p of proxies.values()) await stopProxy(p);
    await op?.stop();
    client?.close();
    if (!clusterStopped) await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('a weight change is in effect in every running proxy through the watch, the volume untouched; Programmed counts them', async () => {
    const before = new Map<string, string>();
    for (const p of proxies.values()) before.set(p.name, await dirFingerprint(p.dir));
    const gen0 = await configMapGeneration();
    const t0 = Date.now();
    await setWeights(0, 100);
    const results = await Promise.all(
      [...proxies.values()].map((p) =>
        waitFor(`${p.name} applies weight 0/100`, async () => {
          const a = await applied(p);
          const r = a.config?.routes.find((x) => x.name === `${NS}/canary`);
          return r?.backends.find((b) => b.service === `${NS}/web-v2`)?.weight === 100
            ? { a, ms: Date.now() - t0 }
            : undefined;
        }),
      ),
    );
    console.log(
      `weight change to all ${results.length} proxies: ${Math.max(...results.map((r) => r.ms))} ms`,
    );
    for (const { a } of results) {
      assert.equal(a.status.source, 'apiserver', 'applied from the watch');
      assert.ok((a.status.generation ?? 0) > gen0, `generation ${a.status.generation} > ${gen0}`);
    }
    for (const p of proxies.values())
      assert.equal(await dirFingerprint(p.dir), before.get(p.name), 'volume untouched');
    const split = await waitFor('Programmed True on the TrafficSplit', async () => {
      const s = await getSplit();
      return condOf(s, 'Programmed')?.status === 'True' ? s : undefined;
    });
    assert.equal(
      condOf(split, 'Programmed')!.message,
      `3/3 proxies applied generation ${split.metadata.generation}`,
    );
  });

  test('a new DENY policy is in effect in every running proxy through the watch; Programmed counts them', async () => {
    await client.create(RESOURCES.authorizationPolicies, {
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-admin', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        action: 'DENY',
        rules: [{ to: [{ operation: { paths: ['/admin'] } }] }],
      },
    } as unknown as KubeObject & AuthorizationPolicy);
    for (const p of proxies.values())
      await waitFor(`${p.name} applies the DENY policy`, async () => {
        const a = await applied(p);
        return (
          a.config?.authorizationPolicies.some((x) => x.name === `${NS}/deny-admin` && x.action === 'DENY') &&
          a.status.source === 'apiserver'
        );
      });
    const pol = await waitFor('Programmed True on the policy', async () => {
      const o = await client.get<KubeObject & AuthorizationPolicy>(
        RESOURCES.authorizationPolicies,
        'deny-admin',
        NS,
      );
      return condOf(o, 'Programmed')?.status === 'True' ? o : undefined;
    });
    assert.equal(condOf(pol, 'Programmed')!.message, '3/3 proxies applied generation 1');
  });

  test('a paused proxy is named as lagging, with its version, in the Mesh status, Programmed, weftctl status and check', async () => {
    await client.apply(
      RESOURCES.meshes,
      { apiVersion: 'weft.dev/v1alpha1', kind: 'Mesh', metadata: { name: 'default' }, spec: {} },
      { fieldManager: 'weft-test' },
    );
    await waitFor('Mesh: 3 proxies in sync', async () => {
      const m = await getMesh();
      return m.status?.proxiesInSync === 3 && m.status.proxiesOutOfSync === 0;
    });
    const paused = proxies.get('web-2')!;
    // Paused once it runs the namespace's latest write (applying the Mesh may rewrite the same
    // content under a new generation just after the counts above were reached).
    const old = await waitFor('web-2 runs the latest generation', async () => {
      const a = await applied(paused);
      return a.status.generation === (await configMapGeneration()) ? a : undefined;
    });
    paused.proc.kill('SIGSTOP');
    // The generation the operator last heard from web-2: the one above, or a later write of the
    // same content that landed before the pause. Its version is what must be named.
    const g = old.status.generation ?? 0;
    const gen = `(${g}|${g + 1})`;
    try {
      await setWeights(50, 50);
      const split = await waitFor('Programmed 2/3 on the TrafficSplit', async () => {
        const s = await getSplit();
        return condOf(s, 'Programmed')?.message.startsWith('2/3 ') ? s : undefined;
      });
      const c = condOf(split, 'Programmed')!;
      assert.equal(c.status, 'False');
      assert.match(
        c.message,
        new RegExp(
          `^2/3 proxies applied generation ${split.metadata.generation}; waiting for ${NS}/web-2 runs generation ${gen} \\(version ${old.status.version}\\)`,
        ),
      );
      const mesh = await waitFor('Mesh: web-2 out of sync', async () => {
        const m = await getMesh();
        return m.status?.proxiesOutOfSync === 1 ? m : undefined;
      });
      assert.equal(mesh.status!.proxiesInSync, 2);
      const lag = mesh.status!.laggingProxies!;
      assert.deepEqual(
        lag.map((l) => [l.namespace, l.pod, l.version, l.wantGeneration]),
        [[NS, 'web-2', old.status.version, await configMapGeneration()]],
      );
      assert.match(String(lag[0]!.generation), new RegExp(`^${gen}$`));
      const text = renderStatus(await collectStatus(client));
      assert.match(
        text,
        new RegExp(`lagging: ${NS}/web-2 runs generation ${gen} \\(version ${old.status.version}\\)`),
      );
      const check = clusterChecks(client).find((x) => x.name.startsWith('every proxy runs'))!;
      await assert.rejects(check.run(), (e: Error) =>
        new RegExp(`${NS}/web-2 runs generation ${gen}`).test(e.message),
      );
    } finally {
      paused.proc.kill('SIGCONT');
    }
    await waitFor(
      'Programmed 3/3 once web-2 runs again',
      async () => condOf(await getSplit(), 'Programmed')?.status === 'True',
    );
    await waitFor('Mesh: all in sync again', async () => (await getMesh()).status?.proxiesOutOfSync === 0);
    const check = clusterChecks(client).find((x) => x.name.startsWith('every proxy runs'))!;
    assert.equal(await check.run(), '3 proxies in sync');
  });

  test('neither path moves a proxy back: an older volume is ignored', async () => {
    const p = proxies.get('web-0')!;
    const now = await applied(p);
    // The volume still holds generation 1; make the watcher re-read it.
    const dir = p.dir;
    const files = new Map<string, Buffer>();
    for (const k of ['manifest.json', 'part-000.gz']) files.set(k, readFileSync(join(dir, k)));
    await writeProjected(dir, files);
    await waitFor(
      'the volume re-read and refused as stale',
      async () => (await applied(p)).status.stale > now.status.stale,
    );
    const after = await applied(p);
    assert.equal(after.status.version, now.status.version);
    assert.equal(after.status.generation, now.status.generation);
  });

  test('a proxy restarted while the apiserver is down serves from its volume', async () => {
    const p = proxies.get('web-1')!;
    // The kubelet catches up with the latest ConfigMaps in this pod's volume.
    await project(p.dir);
    const latest = await applied(p);
    await stopProxy(p);
    await op?.stop();
    op = undefined;
    await cluster.stop();
    clusterStopped = true;
    const again = await startProxy('web-1', p.dir);
    const a = await applied(again);
    assert.equal(a.status.version, latest.status.version);
    assert.equal(a.status.source, 'volume');
    const ready = await fetch(`http://127.0.0.1:${again.ports.admin}/ready`);
    assert.equal(ready.status, 200);
  });
});
