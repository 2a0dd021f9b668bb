// npm run bench:operator — the operator at 100 and 1,000 Services × 10 endpoints on a real
// control plane (etcd + kube-apiserver; EndpointSlices and Pods are created directly, the
// way the controller-manager would, so setup takes seconds). The operator runs as its own
// process (`node cmd/weft.ts operator`) so its RSS is its own. Writes bench/results/operator.json.
//
// Measured per scale:
//  - TrafficSplit change → ConfigMap written: from just before the update request until the
//    bench's watch sees the ConfigMap carrying the new version (p50/p99 over N changes);
//  - cold sync: operator start → first ConfigMap written (list everything, compile, write);
//  - full resync: operator restart → every namespace reconciled with nothing to write;
//  - operator RSS (VmRSS and peak VmHWM from /proc), config bytes per namespace.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createNamespaces, installCrds, repoRoot, type TestCluster } from '../hack/lib/cluster.ts';
import { startControlPlane } from '../hack/lib/control-plane.ts';
import { KubeClient, type KubeObject, RESOURCES, resourcePath } from '../kube/client.ts';
import { ipOf } from '../operator/fixtures.ts';

const NS = 'bench';
const CHANGES = Number(process.env.WEFT_BENCH_CHANGES ?? 60);
const SCALES = (process.env.WEFT_BENCH_SCALES ?? '100,1000').split(',').map(Number);
const ENDPOINTS = 10;
/**
 * The operator's Node flags, exactly as NODE_OPTIONS in config/manager/manager.yaml: a small
 * young generation, and an old-space cap that makes V8 collect before its heap doubles
 * (docs/operator.md, "Memory and latency").
 */
const NODE_FLAGS = (process.env.WEFT_BENCH_NODE_FLAGS ?? '--max-semi-space-size=2 --max-old-space-size=128')
  .split(' ')
  .filter(Boolean);

const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const round = (x: number) => Math.round(x * 10) / 10;

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<unknown>) {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

function rssOf(pid: number) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
  return { rssMB: round(kb('VmRSS') / 1024), peakRssMB: round(kb('VmHWM') / 1024) };
}

async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}
const metric = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);

function startOperator(kubeconfig: string) {
  const proc = spawn(
    process.execPath,
    [
      ...NODE_FLAGS,
      join(repoRoot, 'cmd', 'weft.ts'),
      'operator',
      '--kubeconfig',
      kubeconfig,
      '--namespace',
      'weft-system',
      '--no-leader-elect',
      '--metrics-bind-address',
      '127.0.0.1:0',
      '--health-probe-bind-address',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return proc;
}

async function metricsPortOf(proc: ChildProcess): Promise<number> {
  // At --log-level warn the ports are not logged: find the pid's listening sockets in /proc.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const ports = listeningPorts(proc.pid!);
    for (const p of ports) {
      try {
        const r = await fetch(`http://127.0.0.1:${p}/metrics`);
        if (r.status === 200) return p;
      } catch {}
    }
    await sleep(50);
  }
  throw new Error('operator metrics port not found');
}

function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const l = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const m = /^socket:\[(\d+)\]$/.exec(l);
      if (m) inodes.add(m[1]!);
    } catch {}
  }
  const out: number[] = [];
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== '0A') continue; // LISTEN
    if (inodes.has(f[9]!)) out.push(Number.parseInt(f[1]!.split(':')[1]!, 16));
  }
  return out;
}

async function stopProc(p: ChildProcess) {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await Promise.race([done, sleep(15_000)]);
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

async function runScale(services: number) {
  log(`scale ${services} services × ${ENDPOINTS} endpoints: starting a control plane`);
  const cp = await startControlPlane({ log: () => {} });
  const procs: ChildProcess[] = [];
  try {
    const kc = cp.kubeConfig();
    const cluster = {
      kc,
      kubectl: (...a: string[]) => require_exec(cp.kubectl, cp.kubeconfigPath, a),
    } as unknown as TestCluster;
    await installCrds(cluster);
    const client = new KubeClient(kc, 'weft-bench');
    await createNamespaces(client, { 'weft-system': {}, [NS]: { 'weft.dev/inject': 'enabled' } });

    const t0 = Date.now();
    const idx = Array.from({ length: services }, (_, i) => i);
    let n = 1;
    await pool(idx, 24, async (s) => {
      const name = `svc-${String(s).padStart(4, '0')}`;
      await client.create(RESOURCES.services, {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: NS },
        spec: { ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] },
      });
      const endpoints = [];
      for (let e = 0; e < ENDPOINTS; e++) {
        const pod = `${name}-${e}`;
        endpoints.push({
          addresses: [ipOf(n++)],
          conditions: { ready: true, serving: true, terminating: false },
          targetRef: { kind: 'Pod', name: pod, namespace: NS },
          zone: `zone-${e % 3}`,
        });
        await client.create(RESOURCES.pods, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: pod, namespace: NS, labels: { app: name } },
          spec: {
            nodeName: 'node-1',
            serviceAccountName: name,
            containers: [
              { name: 'app', image: 'app' },
              { name: 'weft-proxy', image: 'weft' },
            ],
          },
        });
      }
      await client.create(RESOURCES.endpointSlices, {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${name}-x`, namespace: NS, labels: { 'kubernetes.io/service-name': name } },
        addressType: 'IPv4',
        endpoints,
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      } as unknown as KubeObject);
    });
    await client.create(RESOURCES.trafficSplits, {
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'TrafficSplit',
      metadata: { name: 'canary', namespace: NS },
      spec: {
        service: 'svc-0000',
        backends: [
          { service: 'svc-0001', weight: 1 },
          { service: 'svc-0002', weight: 1 },
        ],
      },
    });
    log(
      `created ${services} Services, ${services * ENDPOINTS} Pods, ${services} EndpointSlices in ${Date.now() - t0} ms`,
    );

    // Watch our ConfigMaps: version → time seen.
    const seen: { version: string; at: number }[] = [];
    let waiter: ((v: string) => void) | undefined;
    const list = await client.list(RESOURCES.configMaps, {
      labelSelector: 'app.kubernetes.io/managed-by=weft',
    });
    const watch = await client.watch<
      KubeObject & { data?: Record<string, string>; binaryData?: Record<string, string> }
    >(
      RESOURCES.configMaps,
      { labelSelector: 'app.kubernetes.io/managed-by=weft', resourceVersion: list.resourceVersion },
      (ev) => {
        if (ev.type !== 'ADDED' && ev.type !== 'MODIFIED') return;
        const m = ev.object.data?.['manifest.json'];
        if (!m) return;
        const v = (JSON.parse(m) as { version: string }).version;
        seen.push({ version: v, at: performance.now() });
        lastFirst = ev.object;
        waiter?.(v);
      },
      3_600_000,
    );
    let lastFirst: (KubeObject & { binaryData?: Record<string, string> }) | undefined;
    const nextVersion = (prev: string | undefined) =>
      new Promise<string>((resolve) => {
        const last = seen.at(-1)?.version;
        if (last && last !== prev) return resolve(last);
        waiter = (v) => {
          if (v !== prev) {
            waiter = undefined;
            resolve(v);
          }
        };
      });

    // Cold sync.
    const startAt = performance.now();
    let op = startOperator(cp.kubeconfigPath);
    procs.push(op);
    let version = await nextVersion(undefined);
    const coldSyncMs = performance.now() - startAt;
    const port = await metricsPortOf(op);
    await sleep(500);
    version = seen.at(-1)!.version;
    log(`cold sync ${Math.round(coldSyncMs)} ms`);

    // TrafficSplit change → ConfigMap written.
    const lat: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const patch = {
        spec: {
          backends: [
            { service: 'svc-0001', weight: 1 },
            { service: 'svc-0002', weight: 2 + i },
          ],
        },
      };
      const t = performance.now();
      const wait = nextVersion(version);
      await client.request('PATCH', resourcePath(RESOURCES.trafficSplits, NS, 'canary'), {
        body: patch,
        contentType: 'application/merge-patch+json',
      });
      version = await wait;
      lat.push(seen.at(-1)!.at - t);
    }
    lat.sort((a, b) => a - b);
    const rss = rssOf(op.pid!);
    const text = await scrape(port);
    const jsonBytes = metric(text, /weft_operator_config_bytes\{namespace="bench",encoding="json"\} (\d+)/);
    const gzipBytes = metric(text, /weft_operator_config_bytes\{namespace="bench",encoding="gzip"\} (\d+)/);
    const configMaps = (
      await client.list(RESOURCES.configMaps, {
        namespace: NS,
        labelSelector: 'app.kubernetes.io/managed-by=weft',
      })
    ).items.length;
    log(`latency p50 ${round(pct(lat, 50))} ms p99 ${round(pct(lat, 99))} ms; RSS ${rss.rssMB} MB`);

    // Full resync: restart; every namespace reconciled, nothing written.
    await stopProc(op);
    const writesBefore = seen.length;
    const restartAt = performance.now();
    op = startOperator(cp.kubeconfigPath);
    procs.push(op);
    const port2 = await metricsPortOf(op);
    let resyncMs = 0;
    for (;;) {
      const t = await scrape(port2).catch(() => '');
      const done = metric(
        t,
        /weft_operator_reconcile_total\{controller="proxyconfig",result="success"\} (\d+)/,
      );
      if (done >= 1) {
        resyncMs = performance.now() - restartAt;
        break;
      }
      await sleep(10);
    }
    await sleep(1000);
    const restartWrites = seen.length - writesBefore;
    const rssAfterRestart = rssOf(op.pid!);
    log(`full resync after restart ${Math.round(resyncMs)} ms, ${restartWrites} writes`);
    watch.abort();
    await stopProc(op);
    client.close();
    return {
      services,
      endpointsPerService: ENDPOINTS,
      pods: services * ENDPOINTS,
      changes: lat.length,
      splitChangeToConfigMapMs: {
        p50: round(pct(lat, 50)),
        p90: round(pct(lat, 90)),
        p99: round(pct(lat, 99)),
        max: round(lat.at(-1)!),
      },
      coldSyncMs: Math.round(coldSyncMs),
      fullResyncAfterRestartMs: Math.round(resyncMs),
      configMapWritesOnRestart: restartWrites,
      operatorRssMB: rss.rssMB,
      operatorPeakRssMB: rss.peakRssMB,
      operatorRssAfterRestartMB: rssAfterRestart.rssMB,
      configBytesPerNamespace: { json: jsonBytes, gzip: gzipBytes, configMaps },
      lastManifestBytes: lastFirst ? Buffer.byteLength(JSON.stringify(lastFirst)) : undefined,
    };
  } finally {
    for (const p of procs) await stopProc(p);
    await cp.stop();
  }
}

function require_exec(bin: string, kubeconfig: string, args: string[]) {
  return execFileSync(bin, ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8' });
}

const LOAD_START = readFileSync('/proc/loadavg', 'utf8').trim();
const results = [];
for (const s of SCALES) results.push(await runScale(s));
const out = {
  benchmark: 'operator',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  nodeFlags: NODE_FLAGS.join(' '),
  loadAvg: { start: LOAD_START, end: readFileSync('/proc/loadavg', 'utf8').trim() },
  notes:
    'Latency: TrafficSplit update request sent → the ConfigMap with the new version observed by a watch. Cold sync: operator process start → first ConfigMap written. Full resync: operator restart → first namespace reconciled (nothing to write). The machine is shared with other work.',
  targets: { p99Ms: 100, rssMB: 200 },
  results,
};
writeFileSync(join(repoRoot, 'bench', 'results', 'operator.json'), `${JSON.stringify(out, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
