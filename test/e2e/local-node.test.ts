// The local node on a real control plane (etcd, kube-apiserver, kube-controller-manager):
// registration, binding, pods as processes in network namespaces, status → EndpointSlices,
// pod-to-pod and Service VIP traffic over the bridge, projected volumes with the ..data swap,
// init containers, runAsUser, deletion and cleanup. Needs root.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoordinationV1Api, CoreV1Api, DiscoveryV1Api, type V1Pod } from '@kubernetes/client-node';
import pino from 'pino';
import { type LocalNode, startLocalNode } from '../../hack/local-node/index.ts';
import { repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually as poll } from '../support/eventually.ts';

const isRoot = process.getuid?.() === 0;
const external = !!process.env.WEFT_TEST_KUBECONFIG;
const skip = !isRoot
  ? 'needs root (network namespaces)'
  : external
    ? 'the local node runs on the embedded control plane only'
    : false;

const pid = process.pid;
const NODE = `ln-${pid}`;
const NS = `ln-${pid}`;
// Mount paths inside the containers; the node creates them on the host and removes them on stop.
const DEMO = `/etc/weft-demo-${pid}`;
const WORK = `/var/lib/weft-demo-${pid}/work`;
const nodeBin = join(repoRoot, 'node_modules', '.bin', 'node');

const eventually = <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000) =>
  poll(what, fn, { timeoutMs, intervalMs: 200 });

/** A /24 in 10.244.0.0/16 that no route of this machine covers (parallel runs pick different ones). */
function freePodCidr(): string {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  for (let i = 0; i < 250; i++) {
    const x = (pid + i * 7) % 250;
    if (!routes.includes(`10.244.${x}.`)) return `10.244.${x}.0/24`;
  }
  throw new Error('no free /24 in 10.244.0.0/16');
}

function netnsList(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

/** Runs the project's Node inside a network namespace and returns what the script prints. */
function nodeInNetns(netns: string, script: string): string {
  return execFileSync('ip', ['netns', 'exec', netns, nodeBin, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
}
const httpGet = (netns: string, url: string) =>
  nodeInNetns(
    netns,
    `const r = await fetch(${JSON.stringify(url)}, {signal: AbortSignal.timeout(3000)}); process.stdout.write(await r.text());`,
  );

/** A file as the container sees it (its own mount namespace). */
const catInContainer = (containerPid: number, path: string) =>
  execFileSync('nsenter', ['-t', String(containerPid), '-m', '--', 'cat', path], { encoding: 'utf8' });

const isReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

describe('local node', { skip }, () => {
  let cluster: TestCluster;
  let node: LocalNode | undefined;
  let core: CoreV1Api;
  let podCidr: string;
  const progress: string[] = [];

  const podInfo = (name: string) => node!.pods().find((p) => p.namespace === NS && p.name === name);

  before(async () => {
    cluster = await startTestCluster({ controllerManager: true });
    core = cluster.kc.makeApiClient(CoreV1Api);
    podCidr = freePodCidr();
    node = await startLocalNode({
      kubeConfig: cluster.kc,
      name: NODE,
      podCIDR: podCidr,
      logger: pino({ level: process.env.WEFT_TEST_LOG_LEVEL ?? 'warn' }),
      progress: (l) => progress.push(l),
    });
    await core.createNamespace({ body: { metadata: { name: NS } } });
    // The ServiceAccount admission plugin refuses pods until the default ServiceAccount exists.
    await eventually('the default ServiceAccount', () =>
      core.readNamespacedServiceAccount({ name: 'default', namespace: NS }).then(() => true),
    );
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: { metadata: { name: 'demo-config' }, data: { greeting: 'hello' } },
    });
    await core.createNamespacedService({
      namespace: NS,
      body: {
        metadata: { name: 'reviews' },
        spec: { selector: { app: 'reviews' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });
    const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'reviews-v1', labels: { app: 'reviews', version: 'v1' } },
        spec: {
          terminationGracePeriodSeconds: 5,
          initContainers: [
            {
              name: 'prepare',
              image: 'busybox',
              command: ['sh', '-c', `echo "init ran as $(id -u)" > ${WORK}/marker`],
              volumeMounts: [{ name: 'work', mountPath: WORK }],
            },
          ],
          containers: [
            {
              name: 'server',
              image: 'weft/demo-reviews',
              command: ['node', 'hack/demo-apps/server.ts'],
              ports: [{ name: 'http', containerPort: 8080 }],
              env: [
                { name: 'VERSION', value: 'v1' },
                { name: 'FILES_DIR', value: `${DEMO}/config` },
                fieldEnv('POD_NAME', 'metadata.name'),
                fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
                fieldEnv('POD_IP', 'status.podIP'),
                fieldEnv('POD_SA', 'spec.serviceAccountName'),
              ],
              securityContext: { runAsUser: 1337 },
              readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
              volumeMounts: [
                { name: 'config', mountPath: `${DEMO}/config`, readOnly: true },
                { name: 'podinfo', mountPath: `${DEMO}/podinfo`, readOnly: true },
                { name: 'work', mountPath: WORK },
              ],
            },
          ],
          volumes: [
            { name: 'config', configMap: { name: 'demo-config' } },
            {
              name: 'podinfo',
              downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] },
            },
            { name: 'work', emptyDir: {} },
          ],
        },
      },
    });
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'client', labels: { app: 'client' } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'client', image: 'busybox', command: ['sleep', '3600'] }],
        },
      },
    });
  });

  after(async () => {
    await node?.stop().catch(() => {});
    await cluster?.stop();
  });

  it('shows one progress line per start-up step', () => {
    assert.ok(
      progress.some((l) => l.includes(`registering Node ${NODE}`)),
      progress.join('\n'),
    );
    assert.ok(progress.at(-1)?.includes('ready'), progress.join('\n'));
  });

  it('registers a Ready Node with its pod CIDR and renews its Lease', async () => {
    const n = await core.readNode({ name: NODE });
    assert.equal(n.spec?.podCIDR, podCidr);
    assert.equal(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal(n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address, node!.hostIP);
    assert.ok(Number(n.status?.capacity?.pods) > 0);
    const lease = await cluster.kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: NODE, namespace: 'kube-node-lease' });
    assert.equal(lease.spec?.holderIdentity, NODE);
    assert.ok(lease.spec?.renewTime);
  });

  it('binds the unscheduled pod to itself and reports it Ready with an IP from the pod range', async () => {
    const pod = await eventually('reviews-v1 Ready', async () => {
      const p = await core.readNamespacedPod({ name: 'reviews-v1', namespace: NS });
      return isReady(p) ? p : undefined;
    });
    assert.equal(pod.spec?.nodeName, NODE);
    assert.equal(pod.status?.phase, 'Running');
    const prefix = podCidr.split('.').slice(0, 3).join('.');
    assert.ok(pod.status?.podIP?.startsWith(`${prefix}.`), `pod IP ${pod.status?.podIP} not in ${podCidr}`);
    assert.equal(pod.status?.hostIP, node!.hostIP);
    for (const t of ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready']) {
      assert.equal(pod.status?.conditions?.find((c) => c.type === t)?.status, 'True', t);
    }
    assert.equal(pod.status?.initContainerStatuses?.[0]?.state?.terminated?.exitCode, 0);
    assert.ok(pod.status?.containerStatuses?.[0]?.state?.running);
    const info = podInfo('reviews-v1');
    assert.ok(info?.netns && netnsList().includes(info.netns), 'the pod has its own network namespace');
    assert.equal(info.ip, pod.status?.podIP);
  });

  it('the EndpointSlice of the Service lists the pod, ready', async () => {
    const ip = podInfo('reviews-v1')!.ip!;
    const discovery = cluster.kc.makeApiClient(DiscoveryV1Api);
    const ep = await eventually('an EndpointSlice endpoint for reviews-v1', async () => {
      const list = await discovery.listNamespacedEndpointSlice({
        namespace: NS,
        labelSelector: 'kubernetes.io/service-name=reviews',
      });
      return list.items
        .flatMap((s) => s.endpoints ?? [])
        .find((e) => e.addresses.includes(ip) && e.conditions?.ready);
    });
    assert.equal(ep.targetRef?.name, 'reviews-v1');
    assert.equal(ep.nodeName, NODE);
  });

  it('another pod reaches the server on its pod IP; the server runs as UID 1337 with downward-API env', async () => {
    const client = await eventually('client running', async () => {
      const c = podInfo('client');
      return c?.pids.client ? c : undefined;
    });
    const server = podInfo('reviews-v1')!;
    const body = JSON.parse(httpGet(client.netns!, `http://${server.ip}:8080/hello`)) as Record<
      string,
      unknown
    >;
    assert.deepEqual(body, {
      service: 'reviews',
      version: 'v1',
      pod: 'reviews-v1',
      namespace: NS,
      podIP: server.ip,
      path: '/hello',
      uid: 1337,
    });
  });

  it('gives pods Service env vars and routes the ClusterIP to a ready endpoint for pods without a sidecar', async () => {
    const svc = await core.readNamespacedService({ name: 'reviews', namespace: NS });
    const vip = svc.spec!.clusterIP!;
    const client = podInfo('client')!;
    const environ = execFileSync('cat', [`/proc/${client.pids.client}/environ`], { encoding: 'utf8' }).split(
      '\0',
    );
    assert.ok(environ.includes(`REVIEWS_SERVICE_HOST=${vip}`), environ.join(' '));
    assert.ok(environ.includes('REVIEWS_SERVICE_PORT=80'));
    assert.ok(environ.includes('REVIEWS_SERVICE_PORT_HTTP=80'));
    const body = await eventually('an answer through the Service VIP', async () =>
      JSON.parse(httpGet(client.netns!, `http://${vip}/via-vip`)),
    );
    assert.equal(body.pod, 'reviews-v1');
    assert.equal(body.path, '/via-vip');
  });

  it('ran the init container first, in order, sharing the emptyDir', () => {
    const server = podInfo('reviews-v1')!;
    assert.equal(catInContainer(server.pids.server!, `${WORK}/marker`), 'init ran as 0\n');
  });

  it('projects the downward API labels and swaps a ConfigMap update in atomically (..data)', async () => {
    const server = podInfo('reviews-v1')!;
    const spid = server.pids.server!;
    assert.equal(catInContainer(spid, `${DEMO}/podinfo/labels`), 'app="reviews"\nversion="v1"');
    assert.equal(catInContainer(spid, `${DEMO}/config/greeting`), 'hello');
    const volDir = join(node!.stateDir, 'pods', `${NS}_reviews-v1_${server.uid}`, 'volumes', 'config');
    const before = readlinkSync(join(volDir, '..data'));
    assert.equal(readlinkSync(join(volDir, 'greeting')), '..data/greeting');

    await core.replaceNamespacedConfigMap({
      name: 'demo-config',
      namespace: NS,
      body: { metadata: { name: 'demo-config' }, data: { greeting: 'bonjour', extra: 'new key' } },
    });
    await eventually('the new greeting in the container', async () =>
      catInContainer(spid, `${DEMO}/config/greeting`) === 'bonjour' ? true : undefined,
    );
    assert.equal(catInContainer(spid, `${DEMO}/config/extra`), 'new key');
    const afterTarget = readlinkSync(join(volDir, '..data'));
    assert.notEqual(afterTarget, before, '..data points at a new timestamped directory');
    assert.ok(!existsSync(join(volDir, before)), 'the old timestamped directory is removed');
    // The server reads through the same mount.
    assert.equal(httpGet(podInfo('client')!.netns!, `http://${server.ip}:8080/files/greeting`), 'bonjour');
  });

  it('runs the weft-init iptables script, then a native sidecar until its startup probe passes, then the app', async () => {
    const gate = `${nodeBin} -e "await fetch('http://127.0.0.1:15020/healthz')" && exec node hack/demo-apps/server.ts`;
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'meshed', labels: { app: 'meshed' } },
        spec: {
          terminationGracePeriodSeconds: 2,
          initContainers: [
            { name: 'weft-init', image: 'weft', command: ['sh', 'proxy/iptables.sh'] },
            {
              name: 'weft-proxy',
              image: 'weft',
              restartPolicy: 'Always',
              command: ['node', 'hack/demo-apps/server.ts'],
              env: [
                { name: 'PORT', value: '15020' },
                { name: 'SERVICE_NAME', value: 'sidecar' },
              ],
              securityContext: { runAsUser: 1337, runAsGroup: 1337 },
              startupProbe: {
                httpGet: { path: '/healthz', port: 15020 },
                periodSeconds: 1,
                failureThreshold: 30,
              },
            },
          ],
          // Exits 1 (and would be restarted) if the sidecar were not serving yet.
          containers: [{ name: 'app', image: 'app', command: ['sh', '-c', gate] }],
        },
      },
    });
    const pod = await eventually('meshed Ready', async () => {
      const p = await core.readNamespacedPod({ name: 'meshed', namespace: NS });
      return isReady(p) ? p : undefined;
    });
    const [init, sidecar] = pod.status!.initContainerStatuses!;
    assert.equal(init?.state?.terminated?.exitCode, 0);
    assert.ok(sidecar?.state?.running && sidecar.started && sidecar.ready, JSON.stringify(sidecar));
    assert.equal(
      pod.status?.containerStatuses?.[0]?.restartCount,
      0,
      'the app started after the sidecar was up',
    );
    const info = podInfo('meshed')!;
    const nat = execFileSync('ip', ['netns', 'exec', info.netns!, 'iptables-save', '-t', 'nat'], {
      encoding: 'utf8',
    });
    assert.match(nat, /-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN/);
    assert.match(nat, /-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006/);
    const hostNat = execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' });
    assert.doesNotMatch(hostNat, /WEFT_IN_REDIRECT/, 'the redirect stays inside the pod');
    const status = execFileSync('cat', [`/proc/${info.pids['weft-proxy']}/status`], { encoding: 'utf8' });
    assert.match(status, /^Uid:\s+1337\s/m);
    assert.match(status, /^Gid:\s+1337\s/m);
  });

  it('deleting a pod stops its process, removes its network namespace and finalizes the object', async () => {
    const server = podInfo('reviews-v1')!;
    const spid = server.pids.server!;
    await core.deleteNamespacedPod({ name: 'reviews-v1', namespace: NS });
    await eventually('reviews-v1 gone from the API', async () => {
      try {
        await core.readNamespacedPod({ name: 'reviews-v1', namespace: NS });
        return undefined;
      } catch (err) {
        return (err as { code?: number }).code === 404 ? true : undefined;
      }
    });
    assert.throws(() => process.kill(spid, 0), 'the server process has ended');
    assert.ok(!netnsList().includes(server.netns!), 'its network namespace is removed');
    assert.equal(podInfo('reviews-v1'), undefined);
  });

  it('stop() ends every pod and removes every namespace, the bridge and the iptables rules', async () => {
    const client = podInfo('client')!;
    const bridge = node!.bridge;
    await node!.stop();
    assert.throws(() => process.kill(client.pids.client!, 0), 'the client process has ended');
    assert.ok(!netnsList().includes(client.netns!));
    assert.throws(
      () => execFileSync('ip', ['link', 'show', bridge], { stdio: 'ignore' }),
      'the bridge is removed',
    );
    const rules = execFileSync('iptables-save', { encoding: 'utf8' });
    const id = bridge.slice(2);
    assert.ok(!rules.includes(`WEFT-LN-${id}`), 'no iptables chain of this node is left');
    assert.ok(!existsSync(node!.stateDir), 'the state directory is removed');
    assert.ok(!existsSync(DEMO) && !existsSync(WORK), 'the mount points it created are removed');
    node = undefined;
  });
});
