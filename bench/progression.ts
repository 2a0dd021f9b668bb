// npm run bench:progression — what gating a canary costs the operator when WEFT_BENCH_PROXIES
// (1000) proxies back its Services: every reading of a running progression asks each backend pod's
// proxy for /stats/inbound (operator/progression/sampler.ts) and sums the differences.
//
// The simulated proxies run the proxy's own code for this: its health handler (proxy/admin.ts)
// over a ProxyMetrics whose InboundSummary has recorded requests through the proxy's finish
// reporter, one HTTP server each on loopback, all in one child process (`--simulate`) so the
// operator's side (this process) has its CPU measured alone. Per reading: wall time, operator CPU,
// bytes read; over WEFT_BENCH_ROUNDS (20) readings.
//
// The mesh's size does not matter: only the pods behind the canary and stable Services are
// read, so 1,000 here is 1,000 backend pods (a mesh of 1,000 proxies whose canary has 10 pods
// costs 10 reads). Writes bench/results/progression.json.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from '../hack/lib/cluster.ts';
import { WindowSampler } from '../operator/progression/sampler.ts';
import { readInboundStats } from '../operator/progression/stats.ts';
import { healthHandler } from '../proxy/admin.ts';
import { ProxyMetrics } from '../proxy/metrics.ts';
import type { ProxyHandle } from '../proxy/proxy.ts';
import { finishReporter } from '../proxy/telemetry/finish.ts';

const N = Number(process.env.WEFT_BENCH_PROXIES ?? 1000);
const ROUNDS = Number(process.env.WEFT_BENCH_ROUNDS ?? 20);

async function simulate(n: number): Promise<void> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const metrics = new ProxyMetrics();
    let t = 0;
    const report = finishReporter(metrics, undefined, () => t);
    const who = { workload: 'reviews', namespace: 'shop' };
    // Some traffic behind each, spread over the histogram.
    for (let r = 0; r < 200; r++) {
      t = r * 7;
      report({
        direction: 'inbound',
        started: t - (r % 50),
        status: r % 97 === 0 ? 503 : 200,
        method: 'GET',
        authority: 'reviews',
        path: '/',
        src: who,
        dst: { ...who, service: '8080' },
      });
    }
    const srv = createServer(
      healthHandler({ proxy: {} as ProxyHandle, status: {} as never, metrics, draining: () => false }),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    ports.push((srv.address() as { port: number }).port);
  }
  process.stdout.write(`${JSON.stringify(ports)}\n`);
}

async function main(): Promise<void> {
  const child = spawn(process.execPath, [import.meta.filename, '--simulate', String(N)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`simulated proxies exited (${code})`)));
    });
    const ports = JSON.parse(line) as number[];
    let bytes = 0;
    const read = readInboundStats();
    const sampler = new WindowSampler({
      read: async (address) => {
        const s = await read(address);
        bytes += JSON.stringify(s, null, 2).length + 1;
        return s;
      },
    });
    const pods = ports.map((p, i) => ({ key: `shop/reviews-${i}`, address: `http://127.0.0.1:${p}` }));
    const half = Math.floor(pods.length / 2);
    const groups = { canary: pods.slice(0, half), stable: pods.slice(half) };
    const wall: number[] = [];
    const cpu: number[] = [];
    for (let r = 0; r < ROUNDS + 1; r++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await sampler.sample('shop/reviews', 'window-1', groups, 99);
      // The first reading opens the window (baselines): not counted.
      if (r === 0) continue;
      wall.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    const q = (a: number[], p: number) =>
      [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]!;
    const round = (x: number) => Math.round(x * 10) / 10;
    const result = {
      proxies: N,
      rounds: ROUNDS,
      readsPerRound: N,
      failedReads: (ROUNDS + 1) * N - sampler.reads,
      wallMsP50: round(q(wall, 0.5)),
      wallMsP99: round(q(wall, 0.99)),
      operatorCpuMsPerRound: round(cpu.reduce((a, b) => a + b, 0) / cpu.length),
      bytesPerProxyPerRound: Math.round(bytes / ((ROUNDS + 1) * N)),
      // At the default pollMs (5 s), one running progression whose backends have N pods.
      operatorCpuPercentAt5s: round((cpu.reduce((a, b) => a + b, 0) / cpu.length / 5000) * 100),
      measuredAt: new Date().toISOString(),
    };
    writeFileSync(
      join(repoRoot, 'bench', 'results', 'progression.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    child.kill();
  }
}

if (process.argv[2] === '--simulate') await simulate(Number(process.argv[3]));
else await main();
