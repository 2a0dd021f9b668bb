// npm run bench:propagation — a TrafficSplit change to every proxy, and the control plane's
// cost, with SIMULATED proxies on a real control plane (etcd + kube-apiserver; no kubelet yet:
// the real-node run is still to do, so volumeOnly is not measured here).
//
// A simulated proxy speaks the same protocols as weft-proxy and runs the same code for them:
// proxy/apisource.ts (list + watch of weft-proxy-config with a ServiceAccount token limited by
// ClusterRole weft-proxy, reassembly and ajv validation of every event), ConfigWatcher.offer,
// and the health handler's /config/version long poll the operator uses. What it does not do
// is route traffic. All simulated proxies run in one child process (`--simulate`), so the
// operator (in this process) has its CPU measured alone.
//
// Per change: write → every simulated proxy applied it (p50/p99), write → Programmed True,
// apiserver writes by the operator, operator CPU. Also: kube-apiserver RSS with and without the
// watches, the simulated proxies' RSS per proxy. Writes bench/results/propagation.json.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type HttpTypes from 'node:http';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TrafficSplit } from '../api/index.ts';
import { installCrds, repoRoot, type TestCluster } from '../hack/lib/cluster.ts';
import { startControlPlane } from '../hack/lib/control-plane.ts';
import { meshedNamespaceWithProxyToken } from '../hack/lib/propagation.ts';
import { watcherHealthHandler } from '../hack/lib/proxy.ts';
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

const rssMB = (pid: number) =>
  Math.round(Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 102.4) /
  10;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

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
  const scales = (process.env.WEFT_BENCH_PROXIES ?? '100,1000').split(',').map(Number);
  const changes = Number(process.env.WEFT_BENCH_CHANGES ?? 50);
  const results = [];
  for (const n of scales) results.push(await run(n, changes));
  const out = { date: new Date().toISOString(), results };
  writeFileSync(join(repoRoot, 'bench', 'results', 'propagation.json'), `${JSON.stringify(out, null, 2)}\n`);
  log('wrote bench/results/propagation.json');
  process.exit(0);
}
