// Benchmark of weft-proxy: `npm run bench:proxy` (as root). In network namespaces, fortio drives
// HTTP/1.1 requests with a 1 KiB body (echoed back: 1 KiB response) at a fixed 1,000 rps and
// then at its maximum rate, through three paths side by side in the same run:
//   direct: client → server app (no proxy)
//   nginx:  client → nginx (client side) → nginx (server side) → app, keep-alive upstreams
//   weft:   client → VIP, iptables → weft-proxy outbound → iptables → weft-proxy inbound → app
// Each proxy runs one worker (nginx worker_processes 1, master off; Node is single-threaded).
// Writes bench/results/proxy.json: p50/p90/p99 latency at 1,000 rps, max throughput, and the
// proxies' CPU (% of one core, both sidecars summed) and RSS (largest sidecar) during each run.
//   node bench/proxy.ts [--rounds 3] [--duration 5] [--max-duration 4] [--rate 1000] [--only weft]
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { endpoint, proxyConfig, service } from '../proxy/testdata.ts';
import { type Pod, sleep, Topology } from '../test/netns/netns.ts';

const run = promisify(execFile);
const ROOT = new URL('../', import.meta.url).pathname;
const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const DURATION_S = arg('duration', 5);
const MAX_DURATION_S = arg('max-duration', 4);
/** Rounds interleave the paths so a burst of load from elsewhere on the machine hits all of them. */
const ROUNDS = arg('rounds', 3);
const RATE = arg('rate', 1000);
const CONNECTIONS = 16;
const MAX_CONNECTIONS = 32;
const PAYLOAD = 1024;
const CLK_TCK = 100;

interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
}

let scratch = '/tmp';

const median = (xs: number[]) => {
  const v = xs.filter((x) => x !== null && !Number.isNaN(x)).sort((a, b) => a - b);
  return v.length === 0 ? Number.NaN : v[Math.floor(v.length / 2)]!;
};

function medianRun(rs: RunResult[]): RunResult {
  return {
    qps: median(rs.map((r) => r.qps)),
    latencyMs: {
      p50: median(rs.map((r) => r.latencyMs.p50)),
      p90: median(rs.map((r) => r.latencyMs.p90)),
      p99: median(rs.map((r) => r.latencyMs.p99)),
    },
    errors: rs.reduce((a, r) => a + r.errors, 0),
    proxyCpuPercent: rs[0]!.proxyCpuPercent === null ? null : median(rs.map((r) => r.proxyCpuPercent!)),
    proxyRssMB: rs[0]!.proxyRssMB === null ? null : Math.max(...rs.map((r) => r.proxyRssMB!)),
  };
}

function medianOf(rs: Array<{ at1000: RunResult; max: RunResult }>): { at1000: RunResult; max: RunResult } {
  return { at1000: medianRun(rs.map((r) => r.at1000)), max: medianRun(rs.map((r) => r.max)) };
}

interface RunResult {
  qps: number;
  latencyMs: Percentiles;
  errors: number;
  proxyCpuPercent: number | null;
  proxyRssMB: number | null;
}

async function fortio(
  bin: string,
  pod: Pod,
  url: string,
  qps: number,
  seconds: number,
  conns: number,
): Promise<{ qps: number; latencyMs: Percentiles; errors: number }> {
  const out = join(scratch, `${pod.ns}-fortio-${Date.now()}.json`);
  await run(
    'ip',
    [
      'netns',
      'exec',
      pod.ns,
      bin,
      'load',
      '-qps',
      String(qps),
      '-c',
      String(conns),
      '-t',
      `${seconds}s`,
      '-payload-size',
      String(PAYLOAD),
      '-uniform',
      '-nocatchup',
      '-a',
      '-json',
      out,
      '-quiet',
      '-keepalive=true',
      url,
    ],
    { timeout: (seconds + 60) * 1000, maxBuffer: 64 * 1024 * 1024 },
  );
  const j = JSON.parse(await readFile(out, 'utf8')) as {
    ActualQPS: number;
    RetCodes: Record<string, number>;
    DurationHistogram: { Percentiles: Array<{ Percentile: number; Value: number }> };
  };
  const pct = (p: number) =>
    1000 * (j.DurationHistogram.Percentiles.find((x) => x.Percentile === p)?.Value ?? Number.NaN);
  const ok = j.RetCodes['200'] ?? 0;
  const total = Object.values(j.RetCodes).reduce((a, b) => a + b, 0);
  return { qps: j.ActualQPS, latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99) }, errors: total - ok };
}

async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function rssMB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** Runs `load` while sampling the proxies' CPU and peak RSS. */
async function measured(
  pids: number[],
  load: () => Promise<{ qps: number; latencyMs: Percentiles; errors: number }>,
): Promise<RunResult> {
  if (pids.length === 0) return { ...(await load()), proxyCpuPercent: null, proxyRssMB: null };
  const t0 = performance.now();
  const c0 = await Promise.all(pids.map(cpuTicks));
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    for (let i = 0; sampling && i < 10_000; i++) {
      for (const p of pids) peak = Math.max(peak, await rssMB(p).catch(() => 0));
      await sleep(250);
    }
  })();
  const r = await load();
  sampling = false;
  await sampler;
  const c1 = await Promise.all(pids.map(cpuTicks));
  const secs = (performance.now() - t0) / 1000;
  const ticks = c1.reduce((a, b, i) => a + b - c0[i]!, 0);
  return {
    ...r,
    proxyCpuPercent: Math.round(((ticks / CLK_TCK) * 100 * 10) / secs) / 10,
    proxyRssMB: Math.round(peak * 10) / 10,
  };
}

function nginxConf(prefix: string, listen: string, upstream: string): string {
  return `
worker_processes 1;
master_process off;
daemon off;
pid ${prefix}/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  upstream up { server ${upstream}; keepalive 64; }
  server {
    listen ${listen};
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:proxy needs root (network namespaces, iptables)');
  const { stdout } = await run('bash', [join(ROOT, 'bench/fortio.sh')], { timeout: 900_000 });
  const fortioBin = stdout.trim();
  const topo = new Topology();
  const results: Record<string, { at1000: RunResult; max: RunResult }> = {};
  let roundsOut: Record<string, Array<{ at1000: RunResult; max: RunResult }>> = {};
  try {
    await topo.create();
    scratch = await topo.tempDir('bench');
    const pods = {
      directC: await topo.addPod('dc'),
      directS: await topo.addPod('ds'),
      nginxC: await topo.addPod('nc'),
      nginxS: await topo.addPod('ns'),
      weftC: await topo.addPod('wc'),
      weftS: await topo.addPod('ws'),
    };
    // The app: fortio's echo server (Go, fast, identical in every path).
    for (const s of [pods.directS, pods.nginxS, pods.weftS]) {
      const p = spawn(
        'ip',
        [
          'netns',
          'exec',
          s.ns,
          fortioBin,
          'server',
          '-http-port',
          '8080',
          '-grpc-port',
          'disabled',
          '-redirect-port',
          'disabled',
          '-tcp-port',
          'disabled',
          '-udp-port',
          'disabled',
          '-loglevel',
          'error',
        ],
        { stdio: 'ignore' },
      );
      topo.procs.push(p);
    }
    // nginx pair.
    const pids: Record<string, number[]> = { direct: [], nginx: [], weft: [] };
    for (const [pod, listen, upstream] of [
      [pods.nginxC, '127.0.0.1:15001', `${pods.nginxS.ip}:15006`],
      [pods.nginxS, '0.0.0.0:15006', '127.0.0.1:8080'],
    ] as const) {
      const prefix = join(scratch, `${pod.ns}-nginx`);
      await mkdir(prefix, { recursive: true });
      await writeFile(join(prefix, 'nginx.conf'), nginxConf(prefix, listen, upstream));
      const p = spawn(
        'ip',
        ['netns', 'exec', pod.ns, 'nginx', '-c', join(prefix, 'nginx.conf'), '-p', prefix],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      topo.procs.push(p);
      pids.nginx!.push(p.pid!);
    }
    // weft pair, with the init container's iptables rules.
    const web = service('web', 'bench', '10.96.0.10', 80, [
      { ...endpoint(pods.weftS.ip, 8080), pod: 'server-abc' },
    ]);
    await topo.writeConfig(proxyConfig('bench', [web], [], { defaultTimeoutMs: 0 }));
    for (const p of [pods.weftC, pods.weftS]) await topo.intercept(p);
    for (const p of [pods.weftC, pods.weftS]) {
      const child = await topo.startProxy(p);
      pids.weft!.push(child.pid!);
    }
    await sleep(1000);
    const urls: Record<string, [Pod, string]> = {
      direct: [pods.directC, `http://${pods.directS.ip}:8080/echo?size=${PAYLOAD}`],
      nginx: [pods.nginxC, `http://127.0.0.1:15001/echo?size=${PAYLOAD}`],
      weft: [pods.weftC, `http://10.96.0.10/echo?size=${PAYLOAD}`],
    };
    const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
    const names = Object.keys(urls).filter((n) => !only || n === only || n === 'direct');
    const rounds: Record<string, Array<{ at1000: RunResult; max: RunResult }>> = {};
    for (const name of names) {
      const [pod, url] = urls[name]!;
      await fortio(fortioBin, pod, url, 200, 2, CONNECTIONS); // warm-up (JIT, pools)
      rounds[name] = [];
    }
    for (let round = 1; round <= ROUNDS; round++) {
      for (const name of names) {
        const [pod, url] = urls[name]!;
        console.error(
          `[bench] round ${round}/${ROUNDS} ${name}: ${RATE} rps for ${DURATION_S}s, then max for ${MAX_DURATION_S}s`,
        );
        const at1000 = await measured(pids[name]!, () =>
          fortio(fortioBin, pod, url, RATE, DURATION_S, CONNECTIONS),
        );
        const max = await measured(pids[name]!, () =>
          fortio(fortioBin, pod, url, 0, MAX_DURATION_S, MAX_CONNECTIONS),
        );
        rounds[name]!.push({ at1000, max });
      }
    }
    for (const name of names) results[name] = medianOf(rounds[name]!);
    roundsOut = rounds;
  } finally {
    await topo.destroy();
  }

  const d = results.direct!;
  const w = results.weft ?? results.nginx!;
  const n = results.nginx ?? w;
  const added = (r: RunResult) => Math.round((r.latencyMs.p99 - d.at1000.latencyMs.p99) * 1000) / 1000;
  const targets = {
    addedP99VsNginx: {
      weft: added(w.at1000),
      nginx: added(n.at1000),
      limit: '<= 1.5x nginx',
      pass: added(w.at1000) <= 1.5 * Math.max(added(n.at1000), 0.001),
    },
    weftRssMBAt1000: { value: w.at1000.proxyRssMB, limit: '<= 60', pass: (w.at1000.proxyRssMB ?? 0) <= 60 },
    maxThroughputVsNginx: {
      ratio: Math.round((w.max.qps / n.max.qps) * 100) / 100,
      limit: '>= 0.40',
      pass: w.max.qps / n.max.qps >= 0.4,
    },
  };
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    load: {
      generator: 'fortio',
      rate: RATE,
      rounds: ROUNDS,
      durationS: DURATION_S,
      maxDurationS: MAX_DURATION_S,
      connections: CONNECTIONS,
      maxConnections: MAX_CONNECTIONS,
      requestBytes: PAYLOAD,
      responseBytes: PAYLOAD,
    },
    note: 'each figure is the median over the rounds; every round is in `rounds`',
    results,
    targets,
    rounds: roundsOut,
  };
  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(join(ROOT, 'bench/results/proxy.json'), `${JSON.stringify(report, null, 2)}\n`);
  const row = (name: string, r: { at1000: RunResult; max: RunResult }) =>
    `| ${name} | ${r.at1000.latencyMs.p50.toFixed(3)} | ${r.at1000.latencyMs.p90.toFixed(3)} | ${r.at1000.latencyMs.p99.toFixed(3)} | ${name === 'direct' ? '–' : added(r.at1000).toFixed(3)} | ${Math.round(r.max.qps)} | ${r.at1000.proxyCpuPercent ?? '–'} / ${r.max.proxyCpuPercent ?? '–'} | ${r.at1000.proxyRssMB ?? '–'} / ${r.max.proxyRssMB ?? '–'} | ${r.at1000.errors + r.max.errors} |`;
  console.log(
    '| path | p50 ms @1k | p90 ms @1k | p99 ms @1k | added p99 ms | max rps | proxy CPU % @1k / max | proxy RSS MB @1k / max | errors |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [name, r] of Object.entries(results)) console.log(row(name, r));
  console.log(`\ntargets: ${JSON.stringify(targets)}`);
}

await main();
