// npm run bench:propagation — a TrafficSplit change to every proxy, and the control plane's
// cost, in two modes (WEFT_BENCH_MODE, default "real,simulated"):
//
// real: the real one-node cluster (hack/node, kubelet default syncFrequency 1m, needs root and
// takes the real-cluster lock), Weft installed by Helm from the image, WEFT_BENCH_PODS (100)
// meshed pods (busybox httpd + the sidecar). Per change (WEFT_BENCH_CHANGES, 50): write → every
// sidecar applied it, from long polls of each sidecar's /config/version; apiserver writes (its
// own request counters for the resources the operator writes, less the benchmark's own patch)
// and the leader operator's CPU (its process). Then a rolling restart of a backend under a
// meshed client's steady traffic (hack/lib/faults.ts), then the fast path disabled (the
// ClusterRole weft-proxy deleted, watches left to expire) for WEFT_BENCH_VOLUME_CHANGES (5)
// changes through the ConfigMap volume only. Also the sidecars' private memory.
//
// simulated: WEFT_BENCH_PROXIES (1000) SIMULATED proxies on a real control plane (etcd +
// kube-apiserver, no kubelet). A simulated proxy speaks the same protocols as weft-proxy and runs
// the same code for them: proxy/apisource.ts (list + watch of weft-proxy-config with a
// ServiceAccount token limited by ClusterRole weft-proxy, reassembly and ajv validation of every
// event), ConfigWatcher.offer, and the health handler's /config/version long poll the operator
// uses. What it does not do is route traffic. All simulated proxies run in one child process
// (`--simulate`), so the operator (in this process) has its CPU measured alone. Per change:
// write → every simulated proxy applied it (p50/p99), write → Programmed True, apiserver writes
// by the operator, operator CPU; kube-apiserver RSS with and without the watches, the simulated
// proxies' RSS per proxy.
//
// Writes bench/results/propagation.json: the real-node figures at the top level, the simulated
// ones under `simulated` (a mode not run keeps its figures from the previous file).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type HttpTypes from 'node:http';
import { createServer, get as httpGet } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { KubeConfig } from '@kubernetes/client-node';
import { PROXY } from '../api/constants.ts';
import type { TrafficSplit } from '../api/index.ts';
import { installCrds, repoRoot, type TestCluster } from '../hack/lib/cluster.ts';
import { startControlPlane } from '../hack/lib/control-plane.ts';
import { eventually } from '../hack/lib/eventually.ts';
import { rollingRestartUnderLoad } from '../hack/lib/faults.ts';
import { parseSmapsRollup, percentile } from '../hack/lib/nodememory.ts';
import { meshedNamespaceWithProxyToken } from '../hack/lib/propagation.ts';
import { watcherHealthHandler } from '../hack/lib/proxy.ts';
import { containerPids, pidOfContainer, startWeftNode } from '../hack/lib/weft-node.ts';
import { BUSYBOX_IMAGE } from '../hack/node/index.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import { startOperator } from '../operator/operator.ts';
import { ApiConfigSource } from '../proxy/apisource.ts';
import { ConfigWatcher } from '../proxy/watcher.ts';

const NS = 'bench';
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

/** The child: n simulated proxies; one line `ready <port>`, then `all <version> <epoch ms>`. */
async function simulate(n: number, server: string, tokenDir: string): Promise<void> {
  const appliedBy = new Map<string, number>();
  const handlers = new Map<string, HttpTypes.RequestListener>();
  for (let i = 0; i < n; i++) {
    const name = `p-${i}`;
    const watcher: ConfigWatcher = new ConfigWatcher(join(tokenDir, 'none'), {
      apply: (c) => {
        const k = (appliedBy.get(c.version) ?? 0) + 1;
        appliedBy.set(c.version, k);
        if (k === n) process.stdout.write(`all ${c.version} ${Date.now()}\n`);
      },
      rejected: (e) => log(`${name}: refused ${e.message}`),
    });
    const access = { server, tokenFile: join(tokenDir, 'token'), caFile: join(tokenDir, 'ca.crt') };
    new ApiConfigSource(access, NS, watcher).start();
    handlers.set(name, watcherHealthHandler(watcher));
  }
  const srv = createServer((req, res) => {
    const m = /^\/(p-\d+)(\/.*)$/.exec(req.url ?? '');
    const h = m && handlers.get(m[1]!);
    if (!h) return void res.writeHead(404).end();
    req.url = m[2]!;
    h(req, res);
  });
  srv.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  process.stdout.write(`ready ${(srv.address() as { port: number }).port}\n`);
}

/** The TrafficSplit every change rewrites: web split between web-v1 and web-v2, `w` % to v2. */
const split = (w: number): KubeObject & TrafficSplit =>
  ({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'TrafficSplit',
    metadata: { name: 'canary', namespace: NS },
    spec: {
      service: 'web',
      backends: [
        { service: 'web-v1', weight: 100 - w },
        { service: 'web-v2', weight: w },
      ],
    },
  }) as KubeObject & TrafficSplit;

const rssMB = (pid: number) =>
  Math.round(Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 102.4) /
  10;
const pct = percentile;

/** GET a sidecar's health port on a connection of its own; undefined when it does not answer. */
function healthGet(ip: string, path: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = httpGet(
      { host: ip, port: PROXY.healthPort, path, agent: false, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

interface Applied {
  version: string;
  generation: number;
  source: string;
}

/**
 * Applies `change` and returns how long until every sidecar (pod IPs) runs the version the
 * operator then writes, following each one with long polls, and the sources they applied it from.
 */
async function changeToAll(
  ips: string[],
  known: Map<string, Applied>,
  change: () => Promise<void>,
  target: () => Promise<{ version: string; generation: number }>,
  timeoutMs: number,
): Promise<{ ms: number; sources: Set<string> }> {
  let resolveTarget: (v: { version: string; generation: number }) => void = () => {};
  const want = new Promise<{ version: string; generation: number }>((r) => (resolveTarget = r));
  const deadline = Date.now() + timeoutMs;
  const t0 = Date.now();
  const follow = async (ip: string) => {
    for (;;) {
      if (Date.now() > deadline) throw new Error(`${ip} did not apply the change within ${timeoutMs} ms`);
      const wait = Math.min(60_000, Math.max(1000, deadline - Date.now()));
      const body = await healthGet(
        ip,
        `/config/version?known=${encodeURIComponent(known.get(ip)!.version)}&waitMs=${wait}`,
        wait + 5000,
      );
      const at = Date.now();
      if (!body) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const a = JSON.parse(body) as Applied;
      known.set(ip, a);
      // An answer before the target is known (another change, or a stale `known`) is checked once it is.
      // A later generation counts too: the operator may write again (an endpoint, a status) before a
      // sidecar catches up, and the sidecar then applies the newer one without the target between.
      const t = await want;
      if (a.version === t.version || (a.generation ?? 0) >= t.generation) return at;
    }
  };
  const all = Promise.all(ips.map(follow));
  // Handled now: a sidecar may time out while the change or its target is still awaited, and an
  // unhandled rejection would end the process before `finally` stops the cluster.
  all.catch(() => {});
  await change();
  resolveTarget(await target());
  const times = await all;
  return { ms: Math.max(...times) - t0, sources: new Set(ips.map((ip) => known.get(ip)!.source)) };
}

/** Sum of the apiserver's write requests for the resources the operator writes. */
function apiserverWrites(kubectl: (...a: string[]) => string): number {
  let n = 0;
  for (const l of kubectl('get', '--raw', '/metrics').split('\n')) {
    if (!l.startsWith('apiserver_request_total{')) continue;
    if (!/verb="(APPLY|PATCH|UPDATE|CREATE|DELETE)"/.test(l)) continue;
    if (!/resource="(configmaps|trafficsplits|authorizationpolicies|meshes|events)"/.test(l)) continue;
    n += Number(l.split(' ').at(-1));
  }
  return n;
}

/** Private memory (MiB) of a process: what it alone costs. */
const privateMB = (pid: number) =>
  parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')).privateMB;

/** CPU milliseconds a process used so far (utime + stime). */
const cpuMs = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};

async function runReal(pods: number, changes: number, volumeChanges: number) {
  // Ranges of its own (test/e2e/propagation.test.ts lists the others); syncFrequency default.
  const weft = await startWeftNode({
    dirPrefix: 'weft-bench-real-',
    bridge: `wb${process.pid % 100000}`,
    podCIDR: '10.115.0.0/16',
    serviceCIDR: '10.116.0.0/16',
    log: (l) => log(l),
  });
  const node = weft.node;
  try {
    const kubeconfig = node.kubeconfigPath;
    const kubectlBin = node.kubectl;
    const kubectl = (...a: string[]) =>
      execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...a], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        maxBuffer: 256 * 2 ** 20,
      });
    const apply = (obj: object) =>
      execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, 'apply', '--server-side', '-f', '-'], {
        input: JSON.stringify(obj),
        encoding: 'utf8',
      });
    kubectl('apply', '--server-side', '-f', join(repoRoot, 'config', 'demo', 'mesh.yaml'));
    kubectl('create', 'namespace', NS);
    kubectl('label', 'namespace', NS, 'weft.dev/inject=enabled');
    kubectl('create', 'serviceaccount', 'app', '-n', NS);
    for (const [name, selector] of [
      ['web', { app: 'web' }],
      ['web-v1', { app: 'web', version: 'v1' }],
      ['web-v2', { app: 'web', version: 'v2' }],
    ] as const)
      apply({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: NS },
        spec: { selector, ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] },
      });
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const client = new KubeClient(kc, 'weft-bench');
    await client.apply(RESOURCES.trafficSplits, split(0), { fieldManager: 'weft-bench' });
    // The tiny app: busybox httpd. Scaled up in steps, so sidecars start a few at a time.
    const deployment = (replicas: number) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web-v1', namespace: NS },
      spec: {
        replicas,
        selector: { matchLabels: { app: 'web', version: 'v1' } },
        template: {
          metadata: { labels: { app: 'web', version: 'v1' } },
          spec: {
            serviceAccountName: 'app',
            containers: [
              { name: 'app', image: BUSYBOX_IMAGE, command: ['httpd', '-f', '-p', '8080', '-h', '/etc'] },
            ],
          },
        },
      },
    });
    const readyPods = () =>
      (
        JSON.parse(kubectl('get', 'pods', '-n', NS, '-l', 'app=web', '-o', 'json')).items as {
          metadata: { name: string; deletionTimestamp?: string };
          status: {
            podIP?: string;
            conditions?: { type: string; status: string }[];
            initContainerStatuses?: { name: string; containerID?: string }[];
          };
        }[]
      ).filter(
        (p) =>
          !p.metadata.deletionTimestamp &&
          p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
    const t0 = Date.now();
    for (let n = Math.min(20, pods); ; n = Math.min(n + 20, pods)) {
      apply(deployment(n));
      await eventually(`${n} meshed pods Ready`, () => (readyPods().length === n ? true : undefined), {
        timeoutMs: 600_000,
        intervalMs: 2000,
      });
      log(`${n} meshed pods Ready after ${Math.round((Date.now() - t0) / 1000)} s`);
      if (n === pods) break;
    }
    const ready = readyPods();
    const ips = ready.map((p) => p.status.podIP!);
    // The sidecars' processes: containerd's task of each weft-proxy container.
    const tasks = () => containerPids(node);
    const pidOf = (containerID: string | undefined, t = tasks()) => pidOfContainer(t, containerID);
    const running = tasks();
    const sidecarMB = ready
      .map((p) =>
        pidOf(
          p.status.initContainerStatuses?.find((c) => c.name === PROXY.containerName)?.containerID,
          running,
        ),
      )
      .filter((pid) => pid > 0)
      .map(privateMB);
    // Everyone on one version first.
    const known = new Map<string, Applied>();
    const cmVersion = async () => {
      const cm = await client.get<KubeObject & { data: Record<string, string> }>(
        RESOURCES.configMaps,
        'weft-proxy-config',
        NS,
      );
      return JSON.parse(cm.data['manifest.json']!) as { version: string; generation: number };
    };
    await eventually(
      'every sidecar on the namespace version',
      async () => {
        const v = (await cmVersion()).version;
        const a = await Promise.all(ips.map((ip) => healthGet(ip, '/config/version', 5000)));
        a.forEach((b, i) => {
          if (b) known.set(ips[i]!, JSON.parse(b));
        });
        return a.every((b) => b && JSON.parse(b).version === v) ? true : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 2000 },
    );
    // The leader operator's process (the Lease may be between holders for a moment).
    const opPid = await eventually(
      "the leader operator's process",
      () => {
        const holder = JSON.parse(kubectl('get', 'lease', 'weft-operator', '-n', 'weft-system', '-o', 'json'))
          .spec.holderIdentity as string | undefined;
        const pod = (
          JSON.parse(kubectl('get', 'pods', '-n', 'weft-system', '-o', 'json')).items as {
            metadata: { name: string };
            status: { containerStatuses?: { containerID?: string }[] };
          }[]
        ).find((p) => holder?.startsWith(p.metadata.name));
        const pid = pidOf(pod?.status.containerStatuses?.[0]?.containerID);
        return pid > 0 ? pid : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    /** The target of a change: the version the operator writes after it (the manifest changes). */
    const nextVersion = async (before: number) =>
      eventually(
        'the operator writes the change',
        async () => {
          const m = await cmVersion();
          return m.generation > before ? m : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 20 },
      );
    let w = 0;
    /** The host's 1-minute load average after each change: other work on the machine shows here. */
    const load: number[] = [];
    /** `n` weight changes, each timed until every sidecar runs it. */
    const measure = async (what: string, n: number, timeoutMs: number) => {
      const ms: number[] = [];
      const sources = new Set<string>();
      for (let i = 1; i <= n; i++) {
        const before = (await cmVersion()).generation;
        w = (w + 1) % 100;
        const r = await changeToAll(
          ips,
          known,
          async () => {
            await client.apply(RESOURCES.trafficSplits, split(w), { fieldManager: 'weft-bench' });
          },
          () => nextVersion(before),
          timeoutMs,
        );
        ms.push(r.ms);
        load.push(loadavg()[0]!);
        for (const s of r.sources) sources.add(s);
        log(
          `${what}: change ${i} in every sidecar after ${r.ms} ms (applied from ${[...r.sources].join(', ')})`,
        );
      }
      return { ms, sources: [...sources].sort() };
    };
    const writes0 = apiserverWrites(kubectl);
    const cpu0 = cpuMs(opPid);
    const fast = await measure('fast path', changes, 60_000);
    // Let the operator finish the statuses of the last change before counting.
    await new Promise((r) => setTimeout(r, 3000));
    const writes = apiserverWrites(kubectl) - writes0 - changes;
    const opCpu = cpuMs(opPid) - cpu0;

    const churn = await rollingRestartUnderLoad({
      kubectl: kubectlBin,
      kubeconfig,
      namespace: NS,
      serviceAccount: 'app',
    });
    log(
      `rolling restart: ${churn.failed.length} of ${churn.requests} failed ${churn.failed.slice(0, 5).join(' | ')}`,
    );

    // The volume alone: without the ClusterRole, every watch fails once it ends (timeoutSeconds
    // 300 in proxy/apisource.ts) and the sidecars take new configs from the kubelet's projection.
    if (volumeChanges > 0) {
      // The apiserver's open watches of ConfigMaps: the sidecars' and the kubelet's.
      const watches = () =>
        kubectl('get', '--raw', '/metrics')
          .split('\n')
          .filter(
            (l) =>
              l.startsWith('apiserver_longrunning_requests{') &&
              l.includes('resource="configmaps"') &&
              l.includes('verb="WATCH"'),
          )
          .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
      const before = watches();
      kubectl('delete', 'clusterrole', 'weft-proxy');
      // Open watches outlive the RBAC change: their connections from the pods are cut on the
      // apiserver's side (SOCK_DESTROY) so the sidecars re-list and are refused at once; when
      // the kernel cannot, they end by their timeoutSeconds (300). Pods only: not the node's own
      // clients (kubelet, kube-proxy) on the bridge address.
      const port = new URL(node.server).port;
      try {
        execFileSync(
          'ss',
          [
            '-K',
            'state',
            'established',
            `( sport = :${port} )`,
            'and',
            'dst',
            '10.115.0.0/16',
            'and',
            'not',
            'dst',
            '10.115.0.1',
          ],
          {
            stdio: 'ignore',
          },
        );
      } catch {}
      log(
        `fast path disabled (ClusterRole weft-proxy deleted): waiting for the ${ips.length} sidecars' watches to end`,
      );
      await eventually(
        "the sidecars' watches ended",
        () => (watches() <= before - ips.length ? true : undefined),
        { timeoutMs: 330_000, intervalMs: 2000 },
      );
    }
    const volume = await measure('volume only', volumeChanges, 300_000);
    const result = {
      proxies: ips.length,
      changes,
      realNode: true,
      fast: {
        changeToAllProxiesMs: { p50: pct(fast.ms, 50), p99: pct(fast.ms, 99) },
        appliedFrom: fast.sources,
      },
      volumeOnly: {
        changes: volumeChanges,
        changeToAllProxiesMs: volumeChanges ? { p50: pct(volume.ms, 50), p99: pct(volume.ms, 99) } : null,
        appliedFrom: volume.sources,
        syncFrequency: '1m',
        note: 'the fast path disabled: ClusterRole weft-proxy deleted and the watches left to expire',
      },
      hostLoadAverage1m: { min: Math.min(...load), max: Math.max(...load), cores: cpus().length },
      apiserverWritesPerChange: Math.round((writes / changes) * 100) / 100,
      operatorCpuMsPerChange: Math.round((opCpu / changes) * 10) / 10,
      sidecarPrivateMB: { p50: pct(sidecarMB, 50), max: Math.max(...sidecarMB), measured: sidecarMB.length },
      rollingRestart: {
        failedRequests: churn.failed.length,
        requests: churn.requests,
        replicas: 2,
        requestsPerSecond: 20,
        rolloutMs: churn.rolloutMs,
      },
    };
    log(JSON.stringify(result));
    return result;
  } finally {
    await weft.stop();
  }
}

async function run(proxies: number, changes: number) {
  const cp = await startControlPlane({ log: () => {} });
  const work = mkdtempSync(join(tmpdir(), 'weft-bench-propagation-'));
  const children: ReturnType<typeof spawn>[] = [];
  let op: Awaited<ReturnType<typeof startOperator>> | undefined;
  try {
    const kc = cp.kubeConfig();
    const kubectl = (...a: string[]) =>
      execFileSync(cp.kubectl, ['--kubeconfig', cp.kubeconfigPath, ...a], { encoding: 'utf8' });
    await installCrds({ kc, kubectl } as unknown as TestCluster);
    const client = new KubeClient(kc, 'weft-bench');
    const tokenDir = join(work, 'token');
    await meshedNamespaceWithProxyToken({
      client,
      kc,
      kubectl,
      namespace: NS,
      serviceAccount: 'app',
      tokenDir,
    });
    await client.apply(RESOURCES.trafficSplits, split(0), { fieldManager: 'weft-bench' });
    for (let i = 0; i < proxies; i++)
      await client.create(RESOURCES.pods, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `p-${i}`, namespace: NS, labels: { app: 'web' } },
        spec: {
          serviceAccountName: 'app',
          containers: [
            { name: 'app', image: 'app' },
            { name: 'weft-proxy', image: 'weft' },
          ],
        },
      });
    const apiserverPid = cp.pids[cp.pids.length - 1]!;
    const apiserverRssBefore = rssMB(apiserverPid);

    const child = spawn(
      process.execPath,
      [import.meta.filename, '--simulate', String(proxies), cp.server, tokenDir],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    const allApplied = new Map<string, number>();
    let waiters: (() => void)[] = [];
    let simPort = 0;
    lines.on('line', (l) => {
      const [what, a, b] = l.split(' ');
      if (what === 'ready') simPort = Number(a);
      if (what === 'all') allApplied.set(a!, Number(b));
      for (const w of waiters) w();
      waiters = [];
    });
    const until = async (pred: () => boolean, what: string, timeoutMs = 120_000) => {
      const end = Date.now() + timeoutMs;
      while (!pred()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    };
    await until(() => simPort > 0, 'the simulated proxies');

    op = await startOperator({
      kubeConfig: kc,
      namespace: 'weft-system',
      identity: false,
      proxyAddress: (pod) => `http://127.0.0.1:${simPort}/${pod.metadata.name}`,
    });
    await op.synced;
    await op.leading();
    const versionNow = async () => {
      const cm = await client.get<KubeObject & { data: Record<string, string> }>(
        RESOURCES.configMaps,
        'weft-proxy-config',
        NS,
      );
      return JSON.parse(cm.data['manifest.json']!).version as string;
    };
    let lastProgrammed = '';
    const programmed = async (gen: number) => {
      const s = await client.get<KubeObject & TrafficSplit>(RESOURCES.trafficSplits, 'canary', NS);
      const c = s.status?.conditions?.find((x) => x.type === 'Programmed');
      lastProgrammed = `generation ${s.metadata.generation}: ${c?.status} ${c?.message}`;
      return s.metadata.generation === gen && c?.status === 'True';
    };
    // Settle: everyone on the first version, and Programmed True.
    let first = '';
    while (!first)
      first = await versionNow().catch(() => new Promise<string>((r) => setTimeout(() => r(''), 100)));
    await until(() => allApplied.has(first), 'the first version everywhere');
    log(`${proxies} simulated proxies watching; first config applied by all`);
    const apiserverRssWatching = rssMB(apiserverPid);

    const toAll: number[] = [];
    const toProgrammed: number[] = [];
    const writes0 = { ...op.stats };
    const cpu0 = process.cpuUsage();
    for (let i = 1; i <= changes; i++) {
      const t0 = Date.now();
      const s = await client.apply<KubeObject & TrafficSplit>(RESOURCES.trafficSplits, split(i % 100), {
        fieldManager: 'weft-bench',
      });
      await until(() => allApplied.size > i, `change ${i} in every proxy`);
      const v = [...allApplied.keys()].at(-1)!;
      toAll.push(allApplied.get(v)! - t0);
      const end = Date.now() + 60_000;
      while (!(await programmed(s.metadata.generation!))) {
        if (Date.now() > end) throw new Error(`Programmed not True within 60 s: ${lastProgrammed}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      toProgrammed.push(Date.now() - t0);
    }
    const cpu = process.cpuUsage(cpu0);
    const w = op.stats;
    const writes =
      w.configMapWrites -
      writes0.configMapWrites +
      (w.configMapDeletes - writes0.configMapDeletes) +
      (w.statusWrites - writes0.statusWrites) +
      (w.events - writes0.events);
    const result = {
      proxies,
      changes,
      simulated: true,
      fast: {
        changeToAllProxiesMs: { p50: pct(toAll, 50), p99: pct(toAll, 99) },
        changeToProgrammedMs: { p50: pct(toProgrammed, 50), p99: pct(toProgrammed, 99) },
      },
      volumeOnly: {
        changeToAllProxiesMs: null,
        note: 'needs the real node (kubelet); FACTS.md: 69-88 s at the default syncFrequency',
      },
      apiserverWritesPerChange: Math.round((writes / changes) * 100) / 100,
      operatorCpuMsPerChange: Math.round(((cpu.user + cpu.system) / 1000 / changes) * 10) / 10,
      apiserverRssMB: { withoutWatches: apiserverRssBefore, withWatches: apiserverRssWatching },
      simulatedProxiesRssMBPerProxy: Math.round((rssMB(child.pid!) / proxies) * 100) / 100,
      operatorRssMB: rssMB(process.pid),
      rollingRestart: { failedRequests: null, requests: null, note: 'needs the real node' },
    };
    log(JSON.stringify(result));
    return result;
  } finally {
    await op?.stop();
    for (const c of children) c.kill('SIGKILL');
    await cp.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--simulate') {
  await simulate(Number(process.argv[3]), process.argv[4]!, process.argv[5]!);
} else {
  const modes = (process.env.WEFT_BENCH_MODE ?? 'real,simulated').split(',');
  const changes = Number(process.env.WEFT_BENCH_CHANGES ?? 50);
  const file = join(repoRoot, 'bench', 'results', 'propagation.json');
  let previous: Record<string, unknown> = {};
  try {
    previous = JSON.parse(readFileSync(file, 'utf8'));
  } catch {}
  let out: Record<string, unknown> = { ...previous };
  if (modes.includes('real')) {
    const r = await runReal(
      Number(process.env.WEFT_BENCH_PODS ?? 100),
      changes,
      Number(process.env.WEFT_BENCH_VOLUME_CHANGES ?? 5),
    );
    // A file from before the real-node mode held only simulated results.
    const simulated =
      previous.simulated ??
      (previous.results ? { date: previous.date, results: previous.results } : undefined);
    out = { date: new Date().toISOString(), ...r, simulated };
  }
  if (modes.includes('simulated')) {
    const scales = (process.env.WEFT_BENCH_PROXIES ?? '1000').split(',').map(Number);
    const results = [];
    for (const n of scales) results.push(await run(n, changes));
    out.simulated = { date: new Date().toISOString(), results };
  }
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  log('wrote bench/results/propagation.json');
  process.exit(0);
}
