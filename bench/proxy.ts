// Benchmark of weft-proxy: `npm run bench:proxy` (as root). In network namespaces, fortio drives
// HTTP/1.1 requests with a 1 KiB body (echoed back: 1 KiB response) at a fixed 1,000 rps and
// then at its maximum rate, through four paths side by side in the same run:
//   direct:    client → server app (no proxy)
//   nginx:     client → nginx (client side) → nginx (server side) → app, keep-alive upstreams
//   weft:      client → VIP, iptables → weft-proxy outbound → iptables → weft-proxy inbound → app
//              (no identities: the sidecar-to-sidecar hop is plaintext)
//   node-pipe: client → Node.js TCP forwarder → Node.js TCP forwarder → app: ten lines of
//              net.Socket#pipe with the sidecar's node flags, laid out like the nginx pair; the
//              least any proxy written for Node.js can cost per hop
//   weft-tcp:  the weft pair's sidecars, but the Service port says appProtocol tcp: the bytes are
//              forwarded opaque (no HTTP parsing, routing or metrics per request), the floor of
//              what a Node.js proxy costs per hop
//   weft-mtls: the same as weft, but both sidecars have identity dirs (mesh CA, ECDSA P-256) and the
//              endpoint is meshed with its SPIFFE ID, so the hop is mutual TLS 1.3; proven by the
//              sidecars' weft_mtls_connections_total (checked before the rounds, counted after)
// Each proxy runs one worker (nginx worker_processes 1, master off; Node is single-threaded).
// Writes bench/results/proxy.json: p50/p90/p99 latency at 1,000 rps, max throughput, and the
// proxies' CPU (% of one core, both sidecars summed) and RSS (largest sidecar) during each run.
//   node bench/proxy.ts [--rounds 3] [--duration 5] [--max-duration 4] [--rate 1000] [--only weft]
// `--only <name>` (or WEFT_BENCH_ONLY=<name>) keeps direct and the paths whose name starts with
// <name>: `--only weft` runs direct, weft and weft-mtls. Without it, every path runs.
// `--baseline <git-ref>` also runs the weft pairs (weft, weft-tcp, weft-mtls) with the proxy of
// that commit, as `weft@base`…, interleaved in the same rounds: hack/lib/baseline.ts checks
// the ref out into a temporary git worktree (node_modules linked, the addon copied or built, its
// own dist built), which is removed at the end. proxy.json gets `baseline`: its figures and the
// ratios this tree / baseline.
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PROXY_ENV, PROXY_NODE_FLAGS, PROXY_V8_FLAGS } from '../api/constants.ts';
import { buildDist } from '../hack/build-dist.ts';
import { type Baseline, prepareBaseline } from '../hack/lib/baseline.ts';
import { newCa, spiffe, writeIdentity } from '../hack/lib/mtlsfixture.ts';
import { metricLines, metricSum, type Pod, sleep, Topology } from '../hack/lib/netns.ts';
import { endpoint, proxyConfig, service } from '../proxy/testdata.ts';

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
/**
 * fortio's histogram resolution (-r, seconds). Its default, 1 ms, puts every sub-millisecond
 * request in one bucket and the percentiles become interpolations inside it (loopback: p50 0.37
 * reported vs 0.086 ms at 10 µs); 10 µs resolves them.
 */
const RESOLUTION_S = 0.00001;
const CLK_TCK = 100;
const LABELS: Record<string, string> = {
  direct: 'direct',
  nginx: 'nginx pair',
  'node-pipe': 'Node.js pipe pair',
  weft: 'weft pair',
  'weft-tcp': 'weft pair, opaque TCP',
  'weft-mtls': 'weft pair, mTLS',
  'weft-mux': 'weft pair, mTLS, HTTP/2 mux',
};
/** The weft paths that --baseline runs again with the baseline's proxy, as `<name>@base`. */
const BASELINE_PATHS = ['weft', 'weft-tcp', 'weft-mtls'] as const;
const BASE = '@base';
for (const n of BASELINE_PATHS) LABELS[`${n}${BASE}`] = `${LABELS[n]} (baseline)`;

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
      '-r',
      String(RESOLUTION_S),
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

/** The process's private memory (RssAnon: V8's heap, malloc, stacks), MB. */
async function rssAnonMB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
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

/** The Node.js pipe forwarder: `node -e PIPE_JS <listen port> <upstream host> <upstream port>`. */
const PIPE_JS = `
const net = require('node:net');
const [port, host, upPort] = process.argv.slice(1);
net.createServer({ noDelay: true }, (c) => {
  const u = net.connect({ host, port: Number(upPort), noDelay: true });
  c.pipe(u);
  u.pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
}).listen(Number(port), port === '15001' ? '127.0.0.1' : '0.0.0.0');
`;

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

/** GETs `url` from inside the pod's network namespace (the sidecar's loopback ports); the body as text. */
async function fetchInPod(pod: Pod, url: string): Promise<string> {
  const { stdout } = await run(
    'ip',
    [
      'netns',
      'exec',
      pod.ns,
      process.execPath,
      '-e',
      `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ],
    { timeout: 20_000, maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout;
}

/** A sidecar's memory now: VmRSS split into anonymous and file-backed (the node binary), and V8's view (admin /stats). */
async function sidecarMemory(pod: Pod, pid: number): Promise<Record<string, unknown>> {
  const stats = JSON.parse(await fetchInPod(pod, 'http://127.0.0.1:15000/stats')) as { memory: unknown };
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) =>
    Math.round(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 102.4) / 10;
  return {
    vmRssMB: kb('VmRSS'),
    rssAnonMB: kb('RssAnon'),
    rssFileMB: kb('RssFile'),
    v8MB: stats.memory,
  };
}

/** The Prometheus text of the sidecar in `pod` (127.0.0.1:15020). */
function sidecarMetrics(pod: Pod): Promise<string> {
  return fetchInPod(pod, 'http://127.0.0.1:15020/metrics');
}

/** What the sidecars of a pair say about their hop: mTLS 1.3 with the expected peers, or plaintext. */
interface HopEvidence {
  /** Client sidecar: mTLS connections it opened, TLS 1.3, server's SPIFFE ID verified. */
  clientOutboundMtls13: number;
  /** Server sidecar: mTLS connections it accepted, TLS 1.3, client's SPIFFE ID verified. */
  serverInboundMtls13: number;
  /** Server sidecar: inbound connections served in plaintext. */
  serverInboundPlaintext: number;
  /** Both sidecars: weft_mtls_failures_total. */
  mtlsFailures: number;
  /** Server sidecar: inbound requests answered 200. */
  serverInboundRequests200: number;
  /** The weft_mtls_* lines of both sidecars as read. */
  lines: string[];
}

/**
 * The pair's sidecars at 1,000 rps after the rounds' bursts (issue 15's `rssAnonMB`): one more
 * fixed-rate run of DURATION_S; each sidecar's memory is read in its middle, and the peak of its
 * anonymous memory over the run is kept beside it.
 */
async function memoryAt1000(
  fortioBin: string,
  pair: readonly [Pod, Pod],
  pidsOfPair: number[],
  url: string,
): Promise<{ client: Record<string, unknown>; server: Record<string, unknown> }> {
  const peak = pidsOfPair.map(() => 0);
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const [i, pid] of pidsOfPair.entries())
        peak[i] = Math.max(peak[i]!, await rssAnonMB(pid).catch(() => 0));
      await sleep(250);
    }
  })();
  const load = fortio(fortioBin, pair[0], url, RATE, DURATION_S, CONNECTIONS);
  await sleep((DURATION_S * 1000) / 2);
  const [client, server] = await Promise.all(pair.map((pod, i) => sidecarMemory(pod, pidsOfPair[i]!)));
  await load;
  sampling = false;
  await sampler;
  const r1 = (x: number) => Math.round(x * 10) / 10;
  return {
    client: { ...client, peakRssAnonMB: r1(peak[0]!) },
    server: { ...server, peakRssAnonMB: r1(peak[1]!) },
  };
}

async function hopEvidence(
  client: Pod,
  server: Pod,
  clientId: string,
  serverId: string,
): Promise<HopEvidence> {
  const [cm, sm] = await Promise.all([sidecarMetrics(client), sidecarMetrics(server)]);
  const mtls = 'weft_mtls_connections_total{';
  const v13 = 'tls_version="TLSv1.3"';
  return {
    clientOutboundMtls13: metricSum(cm, mtls, 'direction="outbound"', v13, `peer="${serverId}"`),
    serverInboundMtls13: metricSum(sm, mtls, 'direction="inbound"', v13, `peer="${clientId}"`),
    serverInboundPlaintext: metricSum(sm, 'weft_plaintext_connections_total{', 'direction="inbound"'),
    mtlsFailures: metricSum(cm, 'weft_mtls_failures_total') + metricSum(sm, 'weft_mtls_failures_total'),
    serverInboundRequests200: metricSum(
      sm,
      'weft_requests_total{',
      'direction="inbound"',
      'status_code="200"',
    ),
    lines: [
      ...metricLines(cm, 'weft_mtls_').map((l) => `client ${l}`),
      ...metricLines(sm, 'weft_mtls_').map((l) => `server ${l}`),
    ],
  };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:proxy needs root (network namespaces, iptables)');
  const { stdout } = await run('bash', [join(ROOT, 'bench/fortio.sh')], { timeout: 900_000 });
  const fortioBin = stdout.trim();
  const baselineRef = args.includes('--baseline') ? args[args.indexOf('--baseline') + 1] : undefined;
  if (args.includes('--baseline') && !baselineRef)
    throw new Error('--baseline needs a git ref (a commit, branch or tag, e.g. main~5)');
  let baseline: Baseline | undefined;
  let baselineRemoved: { path: string; removed: boolean } | undefined;
  const topo = new Topology();
  const results: Record<string, { at1000: RunResult; max: RunResult }> = {};
  let roundsOut: Record<string, Array<{ at1000: RunResult; max: RunResult }>> = {};
  const hops: Record<string, { afterWarmup: HopEvidence; afterRounds?: HopEvidence }> = {};
  const loadavg = { before: (await readFile('/proc/loadavg', 'utf8')).trim(), after: '' };
  const only = args.includes('--only')
    ? args[args.indexOf('--only') + 1]
    : process.env.WEFT_BENCH_ONLY || undefined;
  let proxyCommandLine = '';
  /** VmRSS peak (larger sidecar) during the first 6 s at the fixed rate, before any burst. */
  const steadyRss: Record<string, number | null> = {};
  const memory: Record<string, unknown> = {
    note: "each weft sidecar (weft: plaintext pair, mtls: mTLS pair) at 1,000 rps after the rounds' bursts, read in the middle of one more fixed-rate run: VmRSS, its anonymous part (rssAnonMB: the memory each sidecar adds to a node) and file-backed part (mostly the node binary, shared by every sidecar on a node), process.memoryUsage() from admin /stats (v8MB), and the peak of the anonymous part over that run",
  };
  const baseMemory: Record<string, unknown> = {};
  try {
    // The sidecars run the bundle an image ships (plain JavaScript: no type stripping at start).
    const dist = await buildDist();
    topo.proxyCommand = [dist.entry, 'proxy'];
    proxyCommandLine = `${Object.entries(PROXY_ENV)
      .map(([k, v]) => `${k}=${v} `)
      .join(
        '',
      )}node ${PROXY_NODE_FLAGS.join(' ')} ${topo.proxyCommand.map((a) => a.replace(ROOT, '')).join(' ')} (sets ${PROXY_V8_FLAGS.join(' ')} itself)`;
    console.error(`[bench] weft-proxy: ${proxyCommandLine}`);
    if (baselineRef) {
      baseline = await prepareBaseline(ROOT, baselineRef, (l) => console.error(`[bench] ${l}`));
      console.error(
        `[bench] baseline weft-proxy: ${baseline.ref} (${baseline.commit}) from ${baseline.entry}`,
      );
    }
    await topo.create();
    scratch = await topo.tempDir('bench');
    const pods = {
      directC: await topo.addPod('dc'),
      directS: await topo.addPod('ds'),
      nginxC: await topo.addPod('nc'),
      nginxS: await topo.addPod('ns'),
      weftC: await topo.addPod('wc'),
      weftS: await topo.addPod('ws'),
      mtlsC: await topo.addPod('mc'),
      mtlsS: await topo.addPod('ms'),
      pipeC: await topo.addPod('pc'),
      pipeS: await topo.addPod('ps'),
      muxC: await topo.addPod('xc'),
      muxS: await topo.addPod('xs'),
    };
    // The baseline's weft pairs (plaintext, mTLS), when --baseline is given.
    const basePods = baseline
      ? {
          weftC: await topo.addPod('bwc'),
          weftS: await topo.addPod('bws'),
          mtlsC: await topo.addPod('bmc'),
          mtlsS: await topo.addPod('bms'),
        }
      : undefined;
    // The app: fortio's echo server (Go, fast, identical in every path).
    const apps = [pods.directS, pods.nginxS, pods.weftS, pods.mtlsS, pods.pipeS, pods.muxS];
    if (basePods) apps.push(basePods.weftS, basePods.mtlsS);
    for (const s of apps) {
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
    const pids: Record<string, number[]> = {
      direct: [],
      nginx: [],
      'node-pipe': [],
      weft: [],
      'weft-tcp': [],
      'weft-mtls': [],
      'weft-mux': [],
    };
    if (basePods) for (const n of BASELINE_PATHS) pids[`${n}${BASE}`] = [];
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
    // Node.js pipe pair: the floor of a Node.js proxy (no parsing, no metrics, no routing).
    for (const [pod, port, upHost, upPort] of [
      [pods.pipeC, 15001, pods.pipeS.ip, 15006],
      [pods.pipeS, 15006, '127.0.0.1', 8080],
    ] as const) {
      const p = spawn(
        'ip',
        [
          'netns',
          'exec',
          pod.ns,
          process.execPath,
          ...PROXY_NODE_FLAGS,
          '-e',
          PIPE_JS,
          String(port),
          upHost,
          String(upPort),
        ],
        { stdio: 'ignore', env: { ...process.env, ...PROXY_ENV } },
      );
      topo.procs.push(p);
      pids['node-pipe']!.push(p.pid!);
    }
    // weft pairs, with the init container's iptables rules. One config for all sidecars (mesh
    // mTLS mode PERMISSIVE, the default): `web` has no endpoint identity and its sidecars no
    // identity dirs (plaintext hop); `web-mtls`'s endpoint carries the server's SPIFFE ID and
    // both of its sidecars have identities (mTLS 1.3 hop).
    const clientId = spiffe('client');
    const serverId = spiffe('web');
    // One set of weft pairs: this tree's (VIPs 10.96.0.1x) and, with --baseline, the baseline's
    // (`@base`, VIPs 10.96.0.2x, their own pods): web (plaintext), web-mtls, web-tcp (opaque).
    type WeftPods = { weftC: Pod; weftS: Pod; mtlsC: Pod; mtlsS: Pod };
    const sets: Array<{ suffix: string; vip: string; pods: WeftPods; command?: string[] }> = [
      { suffix: '', vip: '10.96.0.1', pods },
    ];
    if (baseline && basePods)
      sets.push({ suffix: BASE, vip: '10.96.0.2', pods: basePods, command: [baseline.entry, 'proxy'] });
    const tag = (suffix: string) => (suffix ? `-${suffix.slice(1)}` : '');
    const services = sets.flatMap(({ suffix, vip, pods: p }) => [
      service(`web${tag(suffix)}`, 'bench', `${vip}0`, 80, [
        { ...endpoint(p.weftS.ip, 8080), pod: `server${tag(suffix)}-abc` },
      ]),
      service(`web-mtls${tag(suffix)}`, 'bench', `${vip}1`, 80, [
        { ...endpoint(p.mtlsS.ip, 8080), pod: `server-mtls${tag(suffix)}-abc`, identity: serverId },
      ]),
      service(
        `web-tcp${tag(suffix)}`,
        'bench',
        `${vip}2`,
        80,
        [{ ...endpoint(p.weftS.ip, 8080), pod: `server${tag(suffix)}-abc` }],
        'tcp',
      ),
    ]);
    // weft-mux: a third mTLS pair whose sidecars send HTTP/1.1 as HTTP/2 streams (the mux); the
    // weft-mtls pair runs with --mux-connections 0 (HTTP/1.1 over mTLS), so both are in one run.
    services.push(
      service('web-mux', 'bench', '10.96.0.13', 80, [
        { ...endpoint(pods.muxS.ip, 8080), pod: 'server-mux-abc', identity: serverId },
      ]),
    );
    await topo.writeConfig(proxyConfig('bench', services, [], { defaultTimeoutMs: 0 }));
    const ca = await newCa();
    const idDir: Record<string, string> = {};
    for (const p of [...sets.map((x) => x.pods), { mtlsC: pods.muxC, mtlsS: pods.muxS }])
      for (const [pod, sa] of [
        [p.mtlsC, 'client'],
        [p.mtlsS, 'web'],
      ] as const) {
        idDir[pod.name] = await topo.tempDir(`id-${pod.name}`);
        await writeIdentity(idDir[pod.name]!, ca, sa, { lifetimeMs: 24 * 3_600_000 });
      }
    const ours = topo.proxyCommand;
    for (const { suffix, pods: p, command } of sets) {
      topo.proxyCommand = command ?? ours;
      try {
        for (const pod of [p.weftC, p.weftS, p.mtlsC, p.mtlsS]) await topo.intercept(pod);
        for (const [pod, name] of [
          [p.weftC, 'weft'],
          [p.weftS, 'weft'],
          [p.mtlsC, 'weft-mtls'],
          [p.mtlsS, 'weft-mtls'],
        ] as const) {
          // This tree's mTLS pair without the mux (a baseline may predate the flag).
          const noMux = name === 'weft-mtls' && !suffix ? ['--mux-connections', '0'] : [];
          const child = await topo.startProxy(
            pod,
            idDir[pod.name] ? ['--identity-dir', idDir[pod.name]!, ...noMux] : [],
          );
          pids[`${name}${suffix}`]!.push(child.pid!);
        }
      } finally {
        topo.proxyCommand = ours;
      }
      pids[`weft-tcp${suffix}`] = pids[`weft${suffix}`]!;
    }
    for (const pod of [pods.muxC, pods.muxS]) {
      await topo.intercept(pod);
      pids['weft-mux']!.push(
        (await topo.startProxy(pod, ['--identity-dir', idDir[pod.name]!, '--mux-connections', '2'])).pid!,
      );
    }
    await sleep(1000);
    const urls: Record<string, [Pod, string]> = {
      direct: [pods.directC, `http://${pods.directS.ip}:8080/echo?size=${PAYLOAD}`],
      nginx: [pods.nginxC, `http://127.0.0.1:15001/echo?size=${PAYLOAD}`],
      'node-pipe': [pods.pipeC, `http://127.0.0.1:15001/echo?size=${PAYLOAD}`],
    };
    for (const { suffix, vip, pods: p } of sets) {
      urls[`weft${suffix}`] = [p.weftC, `http://${vip}0/echo?size=${PAYLOAD}`];
      urls[`weft-tcp${suffix}`] = [p.weftC, `http://${vip}2/echo?size=${PAYLOAD}`];
      urls[`weft-mtls${suffix}`] = [p.mtlsC, `http://${vip}1/echo?size=${PAYLOAD}`];
    }
    urls['weft-mux'] = [pods.muxC, `http://10.96.0.13/echo?size=${PAYLOAD}`];
    const names = Object.keys(urls).filter((n) => !only || n.startsWith(only) || n === 'direct');
    const rounds: Record<string, Array<{ at1000: RunResult; max: RunResult }>> = {};
    for (const name of names) {
      const [pod, url] = urls[name]!;
      // Warm-up: pools, and V8's optimizing compilers (a sidecar runs for hours; the first
      // seconds of a Node process run unoptimized code: about 40 % more CPU and a p99 3x higher,
      // and only a burst gets every hot function optimized). The fixed-rate part comes first and
      // gives the RSS of a sidecar at 1,000 rps that has never seen a burst (V8 keeps a heap
      // grown under load for a while); the rounds' RSS is after bursts.
      steadyRss[name] = (
        await measured(pids[name]!, () => fortio(fortioBin, pod, url, RATE, 6, CONNECTIONS))
      ).proxyRssMB;
      await fortio(fortioBin, pod, url, 0, 2, MAX_CONNECTIONS);
      rounds[name] = [];
    }
    // The figures must be known to be what they say: the mTLS pair's hop is mTLS 1.3 with both
    // SPIFFE IDs verified and nothing inbound in plaintext; the plaintext pair's hop has no mTLS.
    const pairs: Record<string, readonly [Pod, Pod]> = {};
    for (const { suffix, pods: p } of sets) {
      pairs[`weft${suffix}`] = [p.weftC, p.weftS];
      pairs[`weft-mtls${suffix}`] = [p.mtlsC, p.mtlsS];
    }
    pairs['weft-mux'] = [pods.muxC, pods.muxS];
    for (const name of names.filter((n) => n in pairs)) {
      const [c, s] = pairs[name]!;
      const e = await hopEvidence(c, s, clientId, serverId);
      hops[name] = { afterWarmup: e };
      const isMtls =
        e.clientOutboundMtls13 > 0 &&
        e.serverInboundMtls13 > 0 &&
        e.serverInboundPlaintext === 0 &&
        e.mtlsFailures === 0;
      const isPlain = e.clientOutboundMtls13 === 0 && e.serverInboundMtls13 === 0;
      if (name.startsWith('weft-mtls') || name === 'weft-mux' ? !isMtls : !isPlain)
        throw new Error(`the ${LABELS[name]} hop is not what it should be: ${JSON.stringify(e)}`);
      console.error(
        `[bench] ${LABELS[name]}: mTLS 1.3 connections client→server ${e.clientOutboundMtls13}, accepted ${e.serverInboundMtls13}, inbound plaintext ${e.serverInboundPlaintext}`,
      );
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
    for (const name of Object.keys(hops)) {
      const [c, s] = pairs[name]!;
      hops[name]!.afterRounds = await hopEvidence(c, s, clientId, serverId);
    }
    for (const { suffix, pods: p } of sets)
      for (const [name, c, s, key] of [
        ['weft', p.weftC, p.weftS, 'weft'],
        ['weft-mtls', p.mtlsC, p.mtlsS, 'mtls'],
      ] as const) {
        if (!names.includes(`${name}${suffix}`)) continue;
        const m = await memoryAt1000(
          fortioBin,
          [c, s],
          pids[`${name}${suffix}`]!,
          urls[`${name}${suffix}`]![1],
        );
        const into = suffix ? baseMemory : memory;
        into[`${key}Client`] = m.client;
        into[`${key}Server`] = m.server;
      }
    loadavg.after = (await readFile('/proc/loadavg', 'utf8')).trim();
  } finally {
    await topo.destroy();
    if (baseline) {
      baselineRemoved = { path: baseline.dir, removed: await baseline.remove() };
      console.error(
        `[bench] baseline worktree ${baseline.dir}: ${baselineRemoved.removed ? 'removed (no directory, not in git worktree list)' : 'NOT removed'}`,
      );
    }
  }
  // The baseline's figures leave `results` (its field names stay those of this tree's paths).
  const baseResults: Record<string, { at1000: RunResult; max: RunResult }> = {};
  const baseRounds: Record<string, Array<{ at1000: RunResult; max: RunResult }>> = {};
  for (const name of Object.keys(results).filter((n) => n.endsWith(BASE))) {
    baseResults[name.slice(0, -BASE.length)] = results[name]!;
    baseRounds[name.slice(0, -BASE.length)] = roundsOut[name]!;
    delete results[name];
    delete roundsOut[name];
  }

  const d = results.direct!;
  const w = results.weft ?? results['weft-mtls'] ?? results.nginx ?? d;
  const n = results.nginx ?? w;
  const added = (r: RunResult) => Math.round((r.latencyMs.p99 - d.at1000.latencyMs.p99) * 1000) / 1000;
  // The nginx comparisons mean nothing when nginx did not run (--only weft).
  const vsNginx = results.nginx !== undefined && results.weft !== undefined;
  const firstRss = steadyRss.weft ?? steadyRss.nginx ?? null;
  const targets = {
    ...(vsNginx
      ? {}
      : { note: 'nginx or weft not run (--only): the comparisons with nginx are not measured' }),
    addedP99VsNginx: {
      weft: added(w.at1000),
      nginx: added(n.at1000),
      limit: '<= 1.5x nginx',
      pass: vsNginx ? added(w.at1000) <= 1.5 * Math.max(added(n.at1000), 0.001) : null,
    },
    weftRssMBAt1000: {
      note: 'VmRSS peak of the larger weft sidecar during its first 6 s at 1,000 rps (the warm-up), before any maximum-rate run; afterMax: the median over the rounds at 1,000 rps, after bursts',
      value: firstRss,
      afterMax: w.at1000.proxyRssMB,
      limit: '<= 60',
      pass: (firstRss ?? 0) <= 60,
    },
    maxThroughputVsNginx: {
      ratio: Math.round((w.max.qps / n.max.qps) * 100) / 100,
      limit: '>= 0.40',
      pass: vsNginx ? w.max.qps / n.max.qps >= 0.4 : null,
    },
    // What Node.js itself costs, in the same run: the pipe pair does nothing per request.
    nodeFloor:
      results['node-pipe'] && results.nginx
        ? {
            note: 'a ten-line Node.js TCP pipe pair with the sidecar flags: the least a Node.js proxy costs',
            addedP99Ms: added(results['node-pipe'].at1000),
            addedP99VsNginx:
              Math.round((added(results['node-pipe'].at1000) / Math.max(added(n.at1000), 0.001)) * 100) / 100,
            rssMBAt1000: results['node-pipe'].at1000.proxyRssMB,
            maxRpsVsNginx: Math.round((results['node-pipe'].max.qps / n.max.qps) * 100) / 100,
          }
        : null,
  };
  const m = results['weft-mtls'];
  const p = results.weft;
  // Issue 15's ratios: weft against the floor of a Node.js proxy and against nginx, same run.
  const pipe = results['node-pipe'];
  const ratioOf = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || !(b > 0) ? null : Math.round((a / b) * 100) / 100;
  const ratios = {
    note: "issue 15: added p99 = the path's p99 at 1,000 rps minus direct's; CPU = both proxies, % of one core at 1,000 rps; null when a path did not run (--only)",
    addedP99VsNodePipe: ratioOf(p && added(p.at1000), pipe && added(pipe.at1000)),
    addedP99MtlsVsNodePipe: ratioOf(m && added(m.at1000), pipe && added(pipe.at1000)),
    cpuAt1kVsNodePipe: ratioOf(
      p?.at1000.proxyCpuPercent ?? undefined,
      pipe?.at1000.proxyCpuPercent ?? undefined,
    ),
    maxQpsVsNginx: ratioOf(p?.max.qps, results.nginx?.max.qps),
    addedP99VsNginx: ratioOf(p && added(p.at1000), results.nginx && added(results.nginx.at1000)),
    targets: {
      addedP99VsNodePipe: '<= 1.5',
      addedP99MtlsVsNodePipe: '<= 2.0',
      cpuAt1kVsNodePipe: '<= 1.5',
      maxQpsVsNginx: '>= 0.70',
      addedP99VsNginx: '<= 1.5 (the far goal)',
      rssAnonMB: '<= 26 per sidecar (memory.weftClient, memory.weftServer)',
    },
  };
  // mTLS on vs off through the same sidecar pair topology (same run, interleaved rounds).
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  const cpuUsPerRequest = (r: RunResult) =>
    r.proxyCpuPercent === null ? null : Math.round((r.proxyCpuPercent / 100) * (1e6 / r.qps) * 10) / 10;
  const mtlsVsPlaintext =
    m && p
      ? {
          addedP50Ms: r3(m.at1000.latencyMs.p50 - p.at1000.latencyMs.p50),
          addedP90Ms: r3(m.at1000.latencyMs.p90 - p.at1000.latencyMs.p90),
          addedP99Ms: r3(m.at1000.latencyMs.p99 - p.at1000.latencyMs.p99),
          maxRps: {
            mtls: Math.round(m.max.qps),
            plaintext: Math.round(p.max.qps),
            ratio: Math.round((m.max.qps / p.max.qps) * 100) / 100,
          },
          proxyCpuUsPerRequest: {
            at1000: { mtls: cpuUsPerRequest(m.at1000), plaintext: cpuUsPerRequest(p.at1000) },
            max: { mtls: cpuUsPerRequest(m.max), plaintext: cpuUsPerRequest(p.max) },
          },
          proxyRssMBAt1000: { mtls: m.at1000.proxyRssMB, plaintext: p.at1000.proxyRssMB },
        }
      : undefined;
  // The mux (HTTP/2 streams between the sidecars) vs HTTP/1.1 over mTLS, both mTLS, same run.
  const x = results['weft-mux'];
  const muxVsHttp1 =
    x && m
      ? {
          addedP50Ms: r3(x.at1000.latencyMs.p50 - m.at1000.latencyMs.p50),
          addedP99Ms: r3(x.at1000.latencyMs.p99 - m.at1000.latencyMs.p99),
          maxRps: { mux: Math.round(x.max.qps), http1: Math.round(m.max.qps) },
          proxyCpuUsPerRequest: {
            at1000: { mux: cpuUsPerRequest(x.at1000), http1: cpuUsPerRequest(m.at1000) },
            max: { mux: cpuUsPerRequest(x.max), http1: cpuUsPerRequest(m.max) },
          },
          proxyRssMBAt1000: { mux: x.at1000.proxyRssMB, http1: m.at1000.proxyRssMB },
          mtlsConnections: {
            mux: hops['weft-mux']?.afterRounds?.clientOutboundMtls13 ?? null,
            http1: hops['weft-mtls']?.afterRounds?.clientOutboundMtls13 ?? null,
          },
        }
      : undefined;
  const ratio = (a: number | null, b: number | null) =>
    a === null || b === null || !b ? null : Math.round((a / b) * 100) / 100;
  const baselineReport = baseline
    ? {
        ref: baseline.ref,
        commit: baseline.commit,
        note: 'the same load against the proxy of the baseline commit, in the same run, rounds interleaved with the paths above; ratios are this tree / baseline (latency and CPU: < 1 is better; maxRps: > 1 is better)',
        worktree: baselineRemoved,
        results: baseResults,
        memory: baseMemory,
        rssAnonRatios: Object.fromEntries(
          Object.keys(baseMemory).map((k) => [
            k,
            ratio(
              (memory[k] as { rssAnonMB?: number } | undefined)?.rssAnonMB ?? null,
              (baseMemory[k] as { rssAnonMB: number }).rssAnonMB,
            ),
          ]),
        ),
        steadyRssMB: Object.fromEntries(
          Object.keys(baseResults).map((n) => [n, steadyRss[`${n}${BASE}`] ?? null]),
        ),
        ratios: Object.fromEntries(
          Object.entries(baseResults)
            .filter(([n]) => results[n])
            .map(([n, b]) => {
              const c = results[n]!;
              return [
                n,
                {
                  p50At1000: ratio(c.at1000.latencyMs.p50, b.at1000.latencyMs.p50),
                  p90At1000: ratio(c.at1000.latencyMs.p90, b.at1000.latencyMs.p90),
                  p99At1000: ratio(c.at1000.latencyMs.p99, b.at1000.latencyMs.p99),
                  maxRps: ratio(c.max.qps, b.max.qps),
                  proxyCpuAt1000: ratio(c.at1000.proxyCpuPercent, b.at1000.proxyCpuPercent),
                  proxyCpuMax: ratio(c.max.proxyCpuPercent, b.max.proxyCpuPercent),
                  proxyRssAt1000: ratio(c.at1000.proxyRssMB, b.at1000.proxyRssMB),
                  steadyRss: ratio(steadyRss[n] ?? null, steadyRss[`${n}${BASE}`] ?? null),
                },
              ];
            }),
        ),
        rounds: baseRounds,
      }
    : undefined;
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    weftProxy: proxyCommandLine,
    loadavg,
    load: {
      generator: 'fortio',
      rate: RATE,
      rounds: ROUNDS,
      durationS: DURATION_S,
      maxDurationS: MAX_DURATION_S,
      connections: CONNECTIONS,
      maxConnections: MAX_CONNECTIONS,
      requestBytes: PAYLOAD,
      histogramResolutionS: RESOLUTION_S,
      responseBytes: PAYLOAD,
    },
    note: 'each figure is the median over the rounds; every round is in `rounds`',
    results,
    targets,
    ratios,
    mtlsVsPlaintext,
    muxVsHttp1,
    memory,
    steadyRssMB: Object.fromEntries(Object.entries(steadyRss).filter(([n]) => !n.endsWith(BASE))),
    hops: {
      note: "the sidecars' own counters: weft_mtls_connections_total (TLSv1.3, verified SPIFFE IDs), inbound plaintext connections, mTLS failures, inbound 200s; read after the warm-up and after the rounds",
      clientId: spiffe('client'),
      serverId: spiffe('web'),
      ...hops,
    },
    rounds: roundsOut,
    ...(baselineReport ? { baseline: baselineReport } : {}),
  };
  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(join(ROOT, 'bench/results/proxy.json'), `${JSON.stringify(report, null, 2)}\n`);
  const row = (name: string, r: { at1000: RunResult; max: RunResult }) =>
    `| ${LABELS[name] ?? name} | ${r.at1000.latencyMs.p50.toFixed(3)} | ${r.at1000.latencyMs.p90.toFixed(3)} | ${r.at1000.latencyMs.p99.toFixed(3)} | ${name === 'direct' ? '–' : added(r.at1000).toFixed(3)} | ${Math.round(r.max.qps)} | ${r.at1000.proxyCpuPercent ?? '–'} / ${r.max.proxyCpuPercent ?? '–'} | ${steadyRss[name] ?? '–'} / ${r.at1000.proxyRssMB ?? '–'} / ${r.max.proxyRssMB ?? '–'} | ${r.at1000.errors + r.max.errors} |`;
  console.log(
    '| path | p50 ms @1k | p90 ms @1k | p99 ms @1k | added p99 ms | max rps | proxy CPU % @1k / max | proxy RSS MB @1k before bursts / @1k / max | errors |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [name, r] of Object.entries(results)) console.log(row(name, r));
  for (const [name, r] of Object.entries(baseResults)) console.log(row(`${name}${BASE}`, r));
  if (baselineReport)
    console.log(
      `\nvs baseline ${baselineReport.ref} (${baselineReport.commit.slice(0, 12)}): ${JSON.stringify(baselineReport.ratios)}`,
    );
  console.log(`\ntargets: ${JSON.stringify(targets)}`);
  console.log(`ratios: ${JSON.stringify(ratios)}`);
  console.log(`memory: ${JSON.stringify(memory)}`);
  if (mtlsVsPlaintext) console.log(`mTLS vs plaintext: ${JSON.stringify(mtlsVsPlaintext)}`);
  if (muxVsHttp1) console.log(`mux vs HTTP/1.1 over mTLS: ${JSON.stringify(muxVsHttp1)}`);
  for (const [name, h] of Object.entries(hops))
    console.log(
      `${LABELS[name]}: mTLS 1.3 connections ${h.afterRounds?.clientOutboundMtls13} out / ${h.afterRounds?.serverInboundMtls13} in, inbound plaintext ${h.afterRounds?.serverInboundPlaintext}, inbound 200s ${h.afterRounds?.serverInboundRequests200}`,
    );
  console.log(`loadavg: ${loadavg.before} → ${loadavg.after}`);
}

await main();
