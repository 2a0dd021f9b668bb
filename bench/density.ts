// npm run bench:density — what a node spends per meshed pod (issue 15), on the real one-node
// cluster (hack/node: takes the real-cluster lock, needs root), Weft installed by Helm from its
// image. The app is the demo image's server (hack/demo-apps/server.ts), WEFT_DENSITY_PODS (100)
// replicas in a namespace without injection and as many in one with it, beside them. In one run:
//
//   1. no app pod (Weft's control plane, CoreDNS): the node's used memory;
//   2. the unmeshed pods Ready, each sent a few requests: again;
//   3. the meshed pods Ready beside them (the Mesh PERMISSIVE, as config/demo/mesh.yaml), each
//      sent a few requests from the host (the sidecar's plaintext inbound) and from a meshed
//      client in the namespace through the Service (client sidecar → server sidecar over mutual
//      TLS): again, and each sidecar's container working set and private memory.
//
// The node's used memory is read three ways at each step, as the median of WEFT_DENSITY_SAMPLES
// (6) readings 10 s apart after WEFT_DENSITY_SETTLE_S (30) s of quiet (the sidecars' malloc_trim
// runs every 10 s, cAdvisor refreshes every 10–15 s): the working set of the kubelet's system
// container "pods" (the kubepods cgroup: every pod on the node and nothing else; the basis of
// nodeMemoryPerSidecarMB, since this machine is shared and the other two count other people's
// work too), the kubelet's node.memory.workingSet (the machine's root cgroup) and /proc/meminfo's
// MemTotal − MemAvailable. nodeMemoryPerSidecarMB = (meshed pod − unmeshed pod) = ((3 − 2) − (2 −
// 1)) / pods. Writes bench/results/density.json; the node's stop removes everything it made.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { PROXY } from '../api/constants.ts';
import { repoRoot } from '../hack/lib/cluster.ts';
import { DEMO_IMAGE, DEMO_PORT, demoServerContainer } from '../hack/lib/demo-pod.ts';
import { eventually } from '../hack/lib/eventually.ts';
import { metricSum } from '../hack/lib/netns.ts';
import {
  distribution,
  type KubeletSummary,
  memInfoUsedMB,
  parseSmapsRollup,
  perPodMemory,
  summaryMemory,
} from '../hack/lib/nodememory.ts';
import { containerPids, pidOfContainer, startWeftNode } from '../hack/lib/weft-node.ts';

const log = (m: string) => process.stderr.write(`[density] ${m}\n`);
const PODS = Number(process.env.WEFT_DENSITY_PODS ?? 100);
const SAMPLES = Number(process.env.WEFT_DENSITY_SAMPLES ?? 6);
const SETTLE_S = Number(process.env.WEFT_DENSITY_SETTLE_S ?? 30);
/** Requests each pod gets from the host before the readings, and per pod from the in-namespace client. */
const REQUESTS_PER_POD = 5;
const STEP = 25;
const MESHED = 'density-meshed';
const PLAIN = 'density-plain';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => distribution(xs).p50;

interface Pod {
  metadata: { name: string; namespace: string; deletionTimestamp?: string };
  status: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { name: string; containerID?: string }[];
    initContainerStatuses?: { name: string; containerID?: string }[];
  };
}

for (const [k, v, min] of [
  ['WEFT_DENSITY_PODS', PODS, 1],
  ['WEFT_DENSITY_SAMPLES', SAMPLES, 1],
  ['WEFT_DENSITY_SETTLE_S', SETTLE_S, 0],
] as const) {
  if (!Number.isInteger(v) || v < min) {
    process.stderr.write(`${k}=${process.env[k]}: must be a whole number, at least ${min}\n`);
    process.exit(2);
  }
}

const weft = await startWeftNode({
  dirPrefix: 'weft-bench-density-',
  bridge: `wd${process.pid % 100000}`,
  podCIDR: '10.111.0.0/16',
  serviceCIDR: '10.112.0.0/16',
  // Both sets of app pods, two clients, Weft's control plane and CoreDNS.
  maxPods: 2 * PODS + 20,
  log,
  // A benchmark may wait for the e2e files of other people's runs on a shared machine.
  lockTimeoutMs: 120 * 60_000,
});
const node = weft.node;
const t0 = Date.now();
const since = () => `${Math.round((Date.now() - t0) / 1000)} s`;
let result: Record<string, unknown>;
try {
  const kubectl = (...a: string[]) =>
    execFileSync(node.kubectl, ['--kubeconfig', node.kubeconfigPath, ...a], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 256 * 2 ** 20,
    });
  const apply = (obj: object) =>
    execFileSync(node.kubectl, ['--kubeconfig', node.kubeconfigPath, 'apply', '--server-side', '-f', '-'], {
      input: JSON.stringify(obj),
      encoding: 'utf8',
    });
  const pods = (ns: string, selector: string): Pod[] =>
    (JSON.parse(kubectl('get', 'pods', '-n', ns, '-l', selector, '-o', 'json')).items as Pod[]).filter(
      (p) => !p.metadata.deletionTimestamp,
    );
  const ready = (p: Pod) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

  kubectl('apply', '--server-side', '-f', join(repoRoot, 'config', 'demo', 'mesh.yaml'));
  for (const ns of [PLAIN, MESHED]) {
    kubectl('create', 'namespace', ns);
    apply({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: ns },
      spec: {
        selector: { app: 'web' },
        ports: [{ name: 'http', port: 80, targetPort: DEMO_PORT, appProtocol: 'http' }],
      },
    });
  }
  kubectl('label', 'namespace', MESHED, 'weft.dev/inject=enabled');

  /** One reading of the node's used memory, three ways, and the kubelet's per-container figures. */
  const reading = () => {
    const summary = summaryMemory(
      JSON.parse(kubectl('get', '--raw', `/api/v1/nodes/${node.name}/proxy/stats/summary`)) as KubeletSummary,
    );
    return { summary, hostUsedMB: memInfoUsedMB(readFileSync('/proc/meminfo', 'utf8')) };
  };
  /** The median of SAMPLES readings after SETTLE_S s of quiet. */
  const usedMemory = async (what: string) => {
    log(`${what}: ${SETTLE_S} s to settle, then ${SAMPLES} readings 10 s apart (${since()})`);
    await sleep(SETTLE_S * 1000);
    const rs: ReturnType<typeof reading>[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      if (i > 0) await sleep(10_000);
      rs.push(reading());
    }
    // Without the system container "pods" (a kubelet that does not report its kubepods cgroup),
    // the sum of the pods' own working sets stands in for it.
    const sum = (ps: { workingSetMB: number }[]) =>
      Math.round(ps.reduce((n, p) => n + p.workingSetMB, 0) * 10) / 10;
    const podsSum = (r: (typeof rs)[number]) => sum(r.summary.pods);
    const m = {
      podsCgroupWorkingSetMB: median(rs.map((r) => r.summary.podsWorkingSetMB ?? podsSum(r))),
      podsCgroupReported: rs.every((r) => r.summary.podsWorkingSetMB !== null),
      sumOfPodsWorkingSetMB: median(rs.map(podsSum)),
      nodeWorkingSetMB: median(rs.map((r) => r.summary.nodeWorkingSetMB)),
      hostUsedMB: median(rs.map((r) => r.hostUsedMB)),
      weftSystemWorkingSetMB: median(
        rs.map((r) => sum(r.summary.pods.filter((p) => p.namespace === 'weft-system'))),
      ),
      loadavg1m: loadavg()[0]!,
    };
    log(`${what}: ${JSON.stringify(m)}`);
    return { ...m, last: rs.at(-1)!.summary };
  };

  /** The Deployment of the demo server in `ns`, scaled up STEP pods at a time until PODS are Ready. */
  const deploy = async (ns: string) => {
    for (let n = Math.min(STEP, PODS); ; n = Math.min(n + STEP, PODS)) {
      apply({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: ns },
        spec: {
          replicas: n,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              terminationGracePeriodSeconds: 1,
              // Readiness every 5 s, not the helper's 1 s: 200 pods' probes are load on 2 cores.
              containers: [
                {
                  ...demoServerContainer('web'),
                  readinessProbe: { httpGet: { path: '/healthz', port: DEMO_PORT }, periodSeconds: 5 },
                },
              ],
            },
          },
        },
      });
      await eventually(
        `${n} pods Ready in ${ns}`,
        () => (pods(ns, 'app=web').filter(ready).length === n ? true : undefined),
        { timeoutMs: 900_000, intervalMs: 3000 },
      );
      log(`${ns}: ${n} pods Ready (${since()})`);
      if (n === PODS) break;
    }
  };

  /**
   * A few requests to every pod of `ns` from the host (REQUESTS_PER_POD each, its own connection
   * per pod), then a client pod in the namespace calling the Service REQUESTS_PER_POD × PODS
   * times (in the meshed namespace: client sidecar → server sidecars over mutual TLS).
   */
  const warm = async (ns: string) => {
    const ips = pods(ns, 'app=web').map((p) => p.status.podIP!);
    let hostOk = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < ips.length; i = next++) {
          for (let k = 0; k < REQUESTS_PER_POD; k++) {
            const r = await fetch(`http://${ips[i]}:${DEMO_PORT}/`, {
              signal: AbortSignal.timeout(10_000),
            }).catch((e: Error) => e);
            if (r instanceof Error) continue;
            await r.text();
            if (r.status === 200) hostOk++;
          }
        }
      }),
    );
    const count = REQUESTS_PER_POD * PODS;
    apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'client', namespace: ns, labels: { app: 'client' } },
      spec: {
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'app',
            image: DEMO_IMAGE,
            command: ['node', 'hack/demo-apps/client.ts', 'http://web/'],
            env: [
              { name: 'COUNT', value: String(count) },
              { name: 'INTERVAL_MS', value: '0' },
              { name: 'TIMEOUT_MS', value: '10000' },
            ],
          },
        ],
      },
    });
    await eventually(
      `the client in ${ns} done`,
      () =>
        ['Succeeded', 'Failed'].includes(pods(ns, 'app=client')[0]?.status.phase ?? '') ? true : undefined,
      { timeoutMs: 600_000, intervalMs: 3000 },
    );
    const lines = kubectl('logs', '-n', ns, 'client', '-c', 'app').split('\n').filter(Boolean);
    const ok = lines.filter((l) => l.split(' ')[1] === '200');
    const answeredBy = new Set(ok.map((l) => l.split(' ')[4]));
    kubectl('delete', 'pod', '-n', ns, 'client', '--wait=true');
    const w = {
      fromHost: { ok: hostOk, sent: ips.length * REQUESTS_PER_POD },
      fromClientPod: { ok: ok.length, sent: count, podsAnswering: answeredBy.size },
    };
    log(`${ns}: warm-up ${JSON.stringify(w)} (${since()})`);
    if (hostOk < w.fromHost.sent / 2 || ok.length < count / 2)
      throw new Error(
        `${ns}: most warm-up requests failed: ${JSON.stringify(w)}; ${lines.slice(-3).join(' | ')}`,
      );
    return w;
  };

  /** Each running container `container` of `ns`'s app pods: its host pid's smaps_rollup. */
  const processMemory = (ns: string, container: string, init: boolean) => {
    const pids = containerPids(node);
    return pods(ns, 'app=web')
      .map((p) =>
        pidOfContainer(
          pids,
          (init ? p.status.initContainerStatuses : p.status.containerStatuses)?.find(
            (c) => c.name === container,
          )?.containerID,
        ),
      )
      .filter((pid) => pid > 0)
      .map((pid) => parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')));
  };
  const workingSets = (s: ReturnType<typeof summaryMemory>, ns: string, container: string) =>
    s.containers.filter((c) => c.namespace === ns && c.container === container).map((c) => c.workingSetMB);

  const loadBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  const none = await usedMemory('no app pods');
  await deploy(PLAIN);
  const warmPlain = await warm(PLAIN);
  const unmeshed = await usedMemory(`${PODS} unmeshed pods`);
  await deploy(MESHED);
  const warmMeshed = await warm(MESHED);
  const both = await usedMemory(`${PODS} unmeshed + ${PODS} meshed pods`);
  const loadAfter = loadavg().map((x) => Math.round(x * 100) / 100);

  // The sidecars' own processes and what their metrics say of the warm-up.
  const sidecars = processMemory(MESHED, PROXY.containerName, true);
  const meshedApps = processMemory(MESHED, 'app', false);
  const plainApps = processMemory(PLAIN, 'app', false);
  let mtlsInbound = 0;
  for (const p of pods(MESHED, 'app=web')) {
    const text = await fetch(`http://${p.status.podIP}:${PROXY.healthPort}/metrics`, {
      signal: AbortSignal.timeout(10_000),
    })
      .then((r) => r.text())
      .catch(() => '');
    if (metricSum(text, 'weft_mtls_connections_total{', 'direction="inbound"') > 0) mtlsInbound++;
  }
  const per = (k: 'podsCgroupWorkingSetMB' | 'sumOfPodsWorkingSetMB' | 'nodeWorkingSetMB' | 'hostUsedMB') =>
    perPodMemory({ none: none[k], unmeshed: unmeshed[k], both: both[k] }, PODS);
  const phase = ({ last: _, ...m }: typeof none) => m;
  const dist = (xs: number[]) => (xs.length ? distribution(xs) : null);
  const perPod = per('podsCgroupWorkingSetMB');
  result = {
    date: new Date().toISOString(),
    conditions: {
      pods: { unmeshed: PODS, meshed: PODS, note: 'the meshed pods run beside the unmeshed ones' },
      app: `${DEMO_IMAGE}: node hack/demo-apps/server.ts, one Deployment per namespace (${PLAIN}; ${MESHED}, labelled weft.dev/inject=enabled)`,
      mesh: 'config/demo/mesh.yaml (mtls PERMISSIVE)',
      traffic: `idle after a warm-up: ${REQUESTS_PER_POD} requests to each pod from the host, then a client pod in the namespace calling the Service ${REQUESTS_PER_POD * PODS} times (meshed: over mutual TLS), deleted before the readings`,
      readings: `median of ${SAMPLES} readings 10 s apart after ${SETTLE_S} s of quiet`,
      node: {
        kind: 'real one-node cluster (hack/node: kubelet, containerd, kube-proxy iptables)',
        kubernetes: JSON.parse(kubectl('version', '-o', 'json')).serverVersion.gitVersion,
        maxPods: 2 * PODS + 20,
        cpus: cpus().length,
        memoryMB: Math.round(totalmem() / 2 ** 20),
        loadavg: { before: loadBefore, after: loadAfter },
      },
      weft: {
        version: JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version,
        commit: execFileSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(),
        dirty:
          execFileSync('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'proxy', 'api', 'webhook'], {
            encoding: 'utf8',
          }).trim() !== '',
      },
      durationS: Math.round((Date.now() - t0) / 1000),
    },
    nodeMemoryPerSidecarMB: perPod.perSidecarMB,
    nodeMemoryBasis: [none, unmeshed, both].every((m) => m.podsCgroupReported)
      ? 'working set of the kubelet\'s system container "pods" (the kubepods cgroup: every pod on the node, nothing else); the machine is shared, so node.memory.workingSet and MemTotal − MemAvailable count other work too (perPodBy)'
      : 'the sum of the pods\' working sets (the kubelet reported no system container "pods"); the machine is shared, so node.memory.workingSet and MemTotal − MemAvailable count other work too (perPodBy)',
    perPod,
    perPodBy: {
      podsCgroupWorkingSet: perPod,
      sumOfPodsWorkingSets: per('sumOfPodsWorkingSetMB'),
      nodeWorkingSet: per('nodeWorkingSetMB'),
      hostMemTotalMinusAvailable: per('hostUsedMB'),
    },
    nodeMemoryMB: { noAppPods: phase(none), unmeshed: phase(unmeshed), unmeshedAndMeshed: phase(both) },
    sidecars: {
      note: "each weft-proxy of the meshed pods: the kubelet's container working set, and /proc/<pid>/smaps_rollup of its process (anonymous; private = pages no other process maps; rss counts the node binary's shared pages)",
      workingSetMB: dist(workingSets(both.last, MESHED, PROXY.containerName)),
      anonymousMB: dist(sidecars.map((m) => m.anonymousMB)),
      privateMB: dist(sidecars.map((m) => m.privateMB)),
      rssMB: dist(sidecars.map((m) => m.rssMB)),
      pssMB: dist(sidecars.map((m) => m.pssMB)),
      withInboundMtls: mtlsInbound,
    },
    apps: {
      unmeshed: {
        workingSetMB: dist(workingSets(both.last, PLAIN, 'app')),
        privateMB: dist(plainApps.map((m) => m.privateMB)),
      },
      meshed: {
        workingSetMB: dist(workingSets(both.last, MESHED, 'app')),
        privateMB: dist(meshedApps.map((m) => m.privateMB)),
      },
    },
    warmup: { unmeshed: warmPlain, meshed: warmMeshed },
    targets: { nodeMemoryPerSidecarMB: '<= 30' },
  };
  log(JSON.stringify(result));
} finally {
  log(`stopping the node (${since()})`);
  await weft.stop();
}
writeFileSync(join(repoRoot, 'bench', 'results', 'density.json'), `${JSON.stringify(result, null, 2)}\n`);
log('wrote bench/results/density.json');
process.exit(0);
