// Cost of a new sidecar-to-sidecar connection: `node bench/handshake.ts`. On loopback, N sequential
// new connections each way, interleaved in blocks so load from elsewhere on the machine hits both:
//   mtls:  WorkloadIdentity.connect (what the client sidecar's Transport does) to a tls.Server made
//          with WorkloadIdentity.serverOptions() (what the server sidecar's inbound does): TLS 1.3,
//          client certificate required, ECDSA P-256 certificates from the mesh CA library, no
//          session resumption (the proxy never resumes)
//   tcp:   net.connect to a net.Server (the plaintext hop)
// Per connection: setup (connect() until 'connect' / 'secureConnect', where the client may send)
// and first echo (setup plus a 1-byte round trip, which includes the server's verification of the
// client certificate). CPU per connection from process.cpuUsage over each block, on the client
// (this process) and the server (a child process started with the sidecar's Node flags), teardown
// included. Writes bench/results/handshake.json.
// Key exchange: Node's default groups (Node 24 with OpenSSL 3.5 negotiates the hybrid
// X25519MLKEM768), as the proxy uses them; WEFT_BENCH_TLS_GROUPS=X25519 (tls.DEFAULT_ECDH_CURVE, both
// sides) measures another group for comparison.
//   node bench/handshake.ts [--n 2000] [--warmup 200] [--block 250]
import { type ChildProcess, fork } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { PROXY_NODE_FLAGS } from '../api/constants.ts';
import { newCa, spiffe, writeIdentity } from '../hack/lib/mtlsfixture.ts';
import { peerSpiffeId, WorkloadIdentity } from '../proxy/identity/tls.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = arg('n', 2000);
const WARMUP = arg('warmup', 200);
const BLOCK = arg('block', 250);
const TIMEOUT_MS = 5000;
const GROUPS = process.env.WEFT_BENCH_TLS_GROUPS;
if (GROUPS) tls.DEFAULT_ECDH_CURVE = GROUPS;

type Mode = 'tcp' | 'mtls';
type Cpu = { user: number; system: number };
type ToServer = { op: 'cpu' } | { op: 'stats' };
type FromServer =
  | { op: 'ports'; tcp: number; mtls: number }
  | { op: 'cpu'; cpu: Cpu }
  | { op: 'stats'; mtlsAccepted: number; peers: string[]; versions: string[]; failures: number };

// ---- server (child process) ------------------------------------------------------------------

async function server(identityDir: string): Promise<void> {
  const wi = new WorkloadIdentity(identityDir);
  const echo = (s: net.Socket) => {
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => s.destroy());
  };
  let mtlsAccepted = 0;
  let failures = 0;
  const peers = new Set<string>();
  const versions = new Set<string>();
  const tcpServer = net.createServer({ noDelay: true }, echo);
  const tlsServer = tls.createServer(wi.serverOptions(), (t) => {
    const peer = peerSpiffeId(t);
    if (!peer) {
      failures++;
      t.destroy();
      return;
    }
    mtlsAccepted++;
    peers.add(peer);
    versions.add(t.getProtocol() ?? 'unknown');
    t.setNoDelay(true);
    echo(t);
  });
  tlsServer.on('tlsClientError', () => failures++);
  const listen = (s: net.Server) =>
    new Promise<number>((resolve) =>
      s.listen(0, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port)),
    );
  const send = (m: FromServer) => process.send!(m);
  send({ op: 'ports', tcp: await listen(tcpServer), mtls: await listen(tlsServer) });
  process.on('message', (m: ToServer) => {
    if (m.op === 'cpu') send({ op: 'cpu', cpu: process.cpuUsage() });
    else send({ op: 'stats', mtlsAccepted, peers: [...peers], versions: [...versions], failures });
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- client (this process) -------------------------------------------------------------------

interface Sample {
  setupMs: number;
  echoMs: number;
}

interface TlsFacts {
  protocol: string | null;
  cipher: string;
  keyExchange: string;
  peerCurve: string;
  peer: string | undefined;
}

let facts: TlsFacts | undefined;

/** One new connection: setup, a 1-byte round trip, then a clean close (awaited). */
function once(mode: Mode, port: number, wi: WorkloadIdentity, serverId: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let t1 = 0;
    const s: net.Socket =
      mode === 'mtls'
        ? wi.connect({ host: '127.0.0.1', port, expectedId: serverId, protocol: 'tcp' })
        : net.connect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`${mode} connection timed out after ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    s.once(mode === 'mtls' ? 'secureConnect' : 'connect', () => {
      t1 = performance.now();
      if (mode === 'mtls' && !facts) {
        const t = s as tls.TLSSocket;
        const eph = t.getEphemeralKeyInfo() as { name?: string; type?: string };
        facts = {
          protocol: t.getProtocol(),
          cipher: t.getCipher().standardName,
          keyExchange: eph.name ?? eph.type ?? 'unknown',
          peerCurve: t.getPeerCertificate().asn1Curve ?? 'unknown',
          peer: peerSpiffeId(t),
        };
      }
      s.write('x');
    });
    s.once('data', () => {
      const t2 = performance.now();
      s.end();
      s.once('close', () => {
        clearTimeout(timer);
        resolve({ setupMs: t1 - t0, echoMs: t2 - t0 });
      });
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    });
  });
}

const pct = (sorted: number[], p: number) =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const r1 = (x: number) => Math.round(x * 10) / 10;

function summary(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return {
    p50: r3(pct(s, 50)),
    p90: r3(pct(s, 90)),
    p99: r3(pct(s, 99)),
    mean: r3(s.reduce((a, b) => a + b, 0) / s.length),
  };
}

async function main(): Promise<void> {
  const loadBefore = (await readFile('/proc/loadavg', 'utf8')).trim();
  const dir = await mkdtemp(join(tmpdir(), 'weft-handshake-'));
  let child: ChildProcess | undefined;
  try {
    const ca = await newCa();
    const clientDir = join(dir, 'client');
    const serverDir = join(dir, 'server');
    await mkdir(clientDir);
    await mkdir(serverDir);
    await writeIdentity(clientDir, ca, 'client');
    await writeIdentity(serverDir, ca, 'web');
    const serverId = spiffe('web');
    const wi = new WorkloadIdentity(clientDir);

    child = fork(fileURLToPath(import.meta.url), ['--server', serverDir], {
      execArgv: [...PROXY_NODE_FLAGS],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const c = child;
    const ask = <T extends FromServer['op']>(op: T) =>
      new Promise<Extract<FromServer, { op: T }>>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`server did not answer ${op}`)), 10_000);
        const on = (m: FromServer) => {
          if (m.op !== op) return;
          clearTimeout(t);
          c.off('message', on);
          resolve(m as Extract<FromServer, { op: T }>);
        };
        c.on('message', on);
        if (op !== 'ports') c.send({ op });
      });
    const ports = await ask('ports');
    const port = (m: Mode) => (m === 'mtls' ? ports.mtls : ports.tcp);

    // Warm-up (JIT, OpenSSL tables), not measured.
    for (const m of ['tcp', 'mtls'] as const)
      for (let i = 0; i < WARMUP; i++) await once(m, port(m), wi, serverId);

    const samples: Record<Mode, Sample[]> = { tcp: [], mtls: [] };
    const cpu: Record<Mode, { client: number; server: number; n: number }> = {
      tcp: { client: 0, server: 0, n: 0 },
      mtls: { client: 0, server: 0, n: 0 },
    };
    const blocks = Math.ceil(N / BLOCK);
    for (let b = 0; b < blocks; b++) {
      for (const m of ['tcp', 'mtls'] as const) {
        const count = Math.min(BLOCK, N - b * BLOCK);
        const s0 = (await ask('cpu')).cpu;
        const c0 = process.cpuUsage();
        for (let i = 0; i < count; i++) samples[m].push(await once(m, port(m), wi, serverId));
        const c1 = process.cpuUsage(c0);
        const s1 = (await ask('cpu')).cpu;
        cpu[m].client += c1.user + c1.system;
        cpu[m].server += s1.user + s1.system - s0.user - s0.system;
        cpu[m].n += count;
      }
      console.error(`[handshake] block ${b + 1}/${blocks} done`);
    }
    const stats = await ask('stats');
    wi.close();

    const result = (m: Mode) => ({
      connections: samples[m].length,
      setupMs: summary(samples[m].map((x) => x.setupMs)),
      firstEchoMs: summary(samples[m].map((x) => x.echoMs)),
      cpuUsPerConnection: {
        client: r1(cpu[m].client / cpu[m].n),
        server: r1(cpu[m].server / cpu[m].n),
        total: r1((cpu[m].client + cpu[m].server) / cpu[m].n),
      },
    });
    const tcp = result('tcp');
    const mtls = result('mtls');
    const verified =
      facts?.protocol === 'TLSv1.3' &&
      facts.peer === serverId &&
      stats.failures === 0 &&
      stats.mtlsAccepted === WARMUP + N &&
      stats.peers.length === 1 &&
      stats.peers[0] === spiffe('client');
    const report = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      loadavg: { before: loadBefore, after: (await readFile('/proc/loadavg', 'utf8')).trim() },
      method: {
        n: N,
        warmup: WARMUP,
        block: BLOCK,
        groups: GROUPS ?? `default (${tls.DEFAULT_ECDH_CURVE})`,
        transport: 'loopback, sequential, a new connection each time, no session resumption',
        setup: "connect() until 'connect' (tcp) or 'secureConnect' (mtls, peer SPIFFE ID checked)",
        firstEcho: 'setup plus a 1-byte write echoed back (the server has verified the client certificate)',
        cpu: 'process.cpuUsage over each block (teardown included): client = this process, server = a child with the sidecar Node flags',
      },
      tls: {
        ...facts,
        serverSawClient: stats.peers,
        serverVersions: stats.versions,
        mtlsAccepted: stats.mtlsAccepted,
        failures: stats.failures,
        verified,
      },
      results: { tcp, mtls },
      added: {
        setupP50Ms: r3(mtls.setupMs.p50 - tcp.setupMs.p50),
        setupP99Ms: r3(mtls.setupMs.p99 - tcp.setupMs.p99),
        firstEchoP50Ms: r3(mtls.firstEchoMs.p50 - tcp.firstEchoMs.p50),
        firstEchoP99Ms: r3(mtls.firstEchoMs.p99 - tcp.firstEchoMs.p99),
        cpuUsPerConnection: r1(mtls.cpuUsPerConnection.total - tcp.cpuUsPerConnection.total),
      },
    };
    if (!verified)
      throw new Error(`the mTLS connections were not what they should be: ${JSON.stringify(report.tls)}`);
    await mkdir(join(ROOT, 'bench/results'), { recursive: true });
    await writeFile(join(ROOT, 'bench/results/handshake.json'), `${JSON.stringify(report, null, 2)}\n`);
    console.log(
      '| connection | setup p50 ms | setup p99 ms | first echo p50 ms | first echo p99 ms | CPU µs/conn client + server |',
    );
    console.log('|---|---|---|---|---|---|');
    for (const [name, r] of [
      ['plain TCP', tcp],
      ['mTLS 1.3', mtls],
    ] as const)
      console.log(
        `| ${name} | ${r.setupMs.p50} | ${r.setupMs.p99} | ${r.firstEchoMs.p50} | ${r.firstEchoMs.p99} | ${r.cpuUsPerConnection.client} + ${r.cpuUsPerConnection.server} = ${r.cpuUsPerConnection.total} |`,
      );
    console.log(`\nadded by mTLS: ${JSON.stringify(report.added)}`);
    console.log(
      `tls: ${JSON.stringify(report.tls)}; loadavg ${report.loadavg.before} → ${report.loadavg.after}`,
    );
  } finally {
    if (child?.connected) child.disconnect();
    await rm(dir, { recursive: true, force: true });
  }
}

if (args[0] === '--server') await server(args[1]!);
else await main();
