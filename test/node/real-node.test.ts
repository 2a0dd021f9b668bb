// The real one-node cluster (hack/node): etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd + runc + CNI bridge, kubelet, kube-proxy (iptables) and CoreDNS.
// A pod from an imported image starts and becomes Ready; kubectl exec and logs work; a pod
// reaches another through a ClusterIP Service by its DNS name; a ConfigMap update reaches a
// mounted volume; and stopping leaves nothing behind on the host. Needs root.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type HostSnapshot, iptablesRules, snapshotHost } from '../../hack/node/host.ts';
import { buildOciArchive, busyboxImage } from '../../hack/node/images.ts';
import { BUSYBOX_IMAGE, type RealNode, type StopReport, startRealNode } from '../../hack/node/index.ts';
import { eventually } from '../support/eventually.ts';
import { EMPTY_LEFTOVERS, leftovers } from '../support/leftovers.ts';
import { lockRealCluster, noteRealClusterDir } from '../support/real-cluster-lock.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (containerd, kubelet, iptables)' : false;
const pid = process.pid;
// Its own bridge and ranges, so it runs beside a cluster of `npm run cluster:up`.
const BRIDGE = `wn${pid % 100000}`;
const POD_CIDR = '10.125.0.0/16';
const SERVICE_CIDR = '10.126.0.0/16';
const RANGES = /10\.125\.|10\.126\./;
// Lowered so that the ConfigMap test is quick; WEFT_NODE_SYNC_FREQUENCY=1m runs it at the default.
const SYNC = process.env.WEFT_NODE_SYNC_FREQUENCY ?? '2s';
const NS = 'node-test';

const BUILTIN = /^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) /;

/** "*table (empty)" for each table of an iptables-save output that holds no rule or own chain. */
function emptyTables(rules: string): string[] {
  const out: string[] = [];
  for (const section of rules.split(/^(?=\*)/m)) {
    const lines = section.split('\n').filter((l) => l && l !== 'COMMIT');
    if (lines[0]?.startsWith('*') && lines.slice(1).every((l) => BUILTIN.test(l)))
      out.push(`${lines[0]} (empty)`);
  }
  return out;
}

function kubectlOf(node: RealNode, ns = NS) {
  return (...args: string[]) =>
    execFileSync(node.kubectl, ['--kubeconfig', node.kubeconfigPath, '-n', ns, ...args], {
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
}

function applyTo(node: RealNode, obj: object): void {
  execFileSync(node.kubectl, ['--kubeconfig', node.kubeconfigPath, 'apply', '-f', '-'], {
    input: JSON.stringify(obj),
    encoding: 'utf8',
  });
}

function pod(
  name: string,
  script: string,
  opts: {
    namespace?: string;
    image?: string;
    container?: object;
    volumes?: object[];
    labels?: Record<string, string>;
  } = {},
) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.namespace ?? NS, labels: opts.labels ?? {} },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'main',
          image: opts.image ?? BUSYBOX_IMAGE,
          imagePullPolicy: 'Never',
          command: ['/bin/sh', '-c', script],
          ...opts.container,
        },
      ],
      volumes: opts.volumes ?? [],
    },
  };
}

async function startForTest(dir: string, syncFrequency?: string): Promise<RealNode> {
  const t0 = Date.now();
  const node = await startRealNode({
    dir,
    bridge: BRIDGE,
    podCIDR: POD_CIDR,
    serviceCIDR: SERVICE_CIDR,
    ...(syncFrequency ? { syncFrequency } : {}),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  process.stderr.write(
    `[test] cluster up in ${Date.now() - t0} ms, node Ready ${node.nodeReadyMs} ms after kubelet start\n`,
  );
  return node;
}

// One real cluster per host: the e2e suite starts one too (test/support/real-cluster-lock.ts).
let releaseLock: (() => void) | undefined;
before(async () => {
  if (!skip) releaseLock = await lockRealCluster();
});
after(() => releaseLock?.());

describe('real node', { skip, concurrency: false }, () => {
  let node: RealNode;
  let hostBefore: HostSnapshot;
  let dir: string; // made in before(): a filtered run creates nothing
  const kubectl = (...args: string[]) => kubectlOf(node)(...args);
  const apply = (obj: object) => applyTo(node, obj);
  const ready = (name: string) =>
    kubectl('get', 'pod', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') === 'True';

  before(async () => {
    hostBefore = snapshotHost();
    dir = mkdtempSync(join(tmpdir(), 'weft-node-'));
    noteRealClusterDir(dir);
    node = await startForTest(dir, SYNC);
    apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await eventually(
      'the default ServiceAccount',
      () => kubectl('get', 'serviceaccount', 'default', '-o', 'name').trim() !== '',
      { timeoutMs: 60_000 },
    );
  });

  after(async () => {
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('registers a Ready node running kubelet v1.34.4 with the bridge address', () => {
    const n = JSON.parse(kubectl('get', 'nodes', '-o', 'json')).items;
    assert.equal(n.length, 1);
    assert.equal(n[0].status.nodeInfo.kubeletVersion, 'v1.34.4');
    assert.match(n[0].status.nodeInfo.containerRuntimeVersion, /^containerd:\/\//);
    assert.deepEqual(
      n[0].status.addresses
        .filter((a: { type: string }) => a.type === 'InternalIP')
        .map((a: { address: string }) => a.address),
      ['10.125.0.1'],
    );
  });

  it('starts a pod from an imported image and makes it Ready; kubectl exec and logs work', async () => {
    const archive = join(dir, 'web.oci.tar');
    buildOciArchive({ ...busyboxImage(), ref: 'weft.local/web:test' }, archive);
    node.importImage(archive);
    const t0 = Date.now();
    apply(
      pod(
        'web',
        'mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && echo web-started && exec httpd -f -p 8080 -h /tmp/www',
        {
          image: 'weft.local/web:test',
          container: { readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 } },
          labels: { app: 'web' },
        },
      ),
    );
    await eventually('pod web Ready', () => ready('web'), { timeoutMs: 120_000 });
    process.stderr.write(`[test] pod web Ready ${Date.now() - t0} ms after it was created\n`);
    const ip = kubectl('get', 'pod', 'web', '-o', 'jsonpath={.status.podIP}');
    assert.match(ip, /^10\.125\./);
    assert.equal(kubectl('exec', 'web', '--', 'cat', '/tmp/www/index.html'), 'hello-from-web\n');
    assert.equal(kubectl('exec', 'web', '--', 'hostname').trim(), 'web');
    await eventually('the log line', () => kubectl('logs', 'web').includes('web-started'));
  });

  it('reaches a pod through a ClusterIP Service by its DNS name (CoreDNS + kube-proxy)', async () => {
    apply({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: NS },
      spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
    });
    apply(pod('client', 'exec sleep 3600'));
    await eventually('pod client Ready', () => ready('client'), { timeoutMs: 120_000 });
    const vip = kubectl('get', 'service', 'web', '-o', 'jsonpath={.spec.clusterIP}');
    assert.match(vip, /^10\.126\./);
    const resolved = await eventually(
      'web.node-test.svc.cluster.local to resolve',
      () => kubectl('exec', 'client', '--', 'nslookup', `web.${NS}.svc.cluster.local`),
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    assert.ok(resolved.includes(vip), resolved);
    // The short name through the search path, and the answer from the other pod through the VIP.
    const body = await eventually(
      'http://web/ from the client pod',
      () => kubectl('exec', 'client', '--', 'wget', '-q', '-O', '-', 'http://web/'),
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    assert.equal(body, 'hello-from-web\n');
    // The apiserver through the `kubernetes` Service, as in-cluster clients see it.
    const api = kubectl(
      'exec',
      'client',
      '--',
      'sh',
      '-c',
      'nc -w 5 kubernetes.default.svc.cluster.local 443 </dev/null && echo open',
    );
    assert.match(api, /open/);
  });

  it(`a ConfigMap update reaches a mounted volume (syncFrequency ${SYNC})`, async () => {
    apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'conf', namespace: NS },
      data: { greeting: 'one' },
    });
    apply(
      pod('reader', 'exec sleep 3600', {
        container: { volumeMounts: [{ name: 'conf', mountPath: '/conf' }] },
        volumes: [{ name: 'conf', configMap: { name: 'conf' } }],
      }),
    );
    await eventually('pod reader Ready', () => ready('reader'), { timeoutMs: 120_000 });
    assert.equal(kubectl('exec', 'reader', '--', 'cat', '/conf/greeting'), 'one');
    const t0 = Date.now();
    apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'conf', namespace: NS },
      data: { greeting: 'two' },
    });
    await eventually(
      'the new value in the volume',
      () => kubectl('exec', 'reader', '--', 'cat', '/conf/greeting') === 'two',
      {
        timeoutMs: 180_000,
        intervalMs: 250,
      },
    );
    process.stderr.write(
      `[test] ConfigMap update visible in the pod after ${Date.now() - t0} ms (syncFrequency ${SYNC})\n`,
    );
  });

  it('stops and leaves no process, mount, interface, netns, cgroup, iptables rule or sysctl change behind', async () => {
    // A chain someone else (the local node, another test) adds while the cluster runs stays.
    const foreign = `WEFT-T-${pid}`;
    execFileSync('iptables', ['-t', 'nat', '-N', foreign]);
    try {
      const t0 = Date.now();
      const report = await node.stop();
      process.stderr.write(`[test] cluster down in ${Date.now() - t0} ms\n`);
      const left = leftovers(hostBefore, snapshotHost(), { dir, bridge: BRIDGE, ranges: RANGES });
      assert.deepEqual(left, EMPTY_LEFTOVERS);
      assert.deepEqual(report.nftTablesLeft, []);
      assert.match(
        execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }),
        new RegExp(`^:${foreign} `, 'm'),
      );
    } finally {
      try {
        execFileSync('iptables', ['-t', 'nat', '-X', foreign], { stdio: 'ignore' });
        const natBefore = /^\*nat$/m.test(hostBefore.iptables['iptables-nft-save'] ?? '');
        if (!natBefore && emptyTables(iptablesRules('iptables-nft-save')).includes('*nat (empty)'))
          execFileSync('nft', ['delete', 'table', 'ip', 'nat']);
      } catch {}
    }
  });
});

describe('real node stopped after containerd and the kubelet were killed', { skip }, () => {
  it('still leaves nothing behind (its containers are killed through their cgroups)', async () => {
    const before = snapshotHost();
    const dir = mkdtempSync(join(tmpdir(), 'weft-node-'));
    noteRealClusterDir(dir);
    const node = await startForTest(dir).catch((err) => {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    });
    let report: StopReport;
    try {
      const kubectl = kubectlOf(node, 'default');
      await eventually(
        'the default ServiceAccount',
        () => kubectl('get', 'serviceaccount', 'default', '-o', 'name').trim() !== '',
        { timeoutMs: 60_000 },
      );
      applyTo(node, pod('sleeper', 'exec sleep 3600', { namespace: 'default' }));
      await eventually(
        'pod sleeper Running',
        () => kubectl('get', 'pod', 'sleeper', '-o', 'jsonpath={.status.phase}') === 'Running',
        { timeoutMs: 120_000 },
      );
      for (const name of ['kubelet', 'containerd']) {
        const p = node.processes.find((x) => x.name === name)!;
        process.kill(p.pid, 'SIGKILL');
      }
    } finally {
      report = await node.stop();
    }
    assert.deepEqual(
      leftovers(before, snapshotHost(), { dir, bridge: BRIDGE, ranges: RANGES }),
      EMPTY_LEFTOVERS,
    );
    assert.deepEqual(report.nftTablesLeft, []);
  });
});
