// Network namespaces for the proxy tests: a "router" namespace holding a bridge, and one
// namespace per pod joined to it by a veth pair, each with loopback, 10.244.0.x/24 and a default
// route (so Service VIPs are routable and the OUTPUT rules can catch them). Pods get the same
// iptables rules the init container installs (proxy/iptables.sh) and run weft-proxy as UID 1337.
// Names carry `wft-<pid>-` so parallel runs never collide; `destroy` kills every process started
// here and deletes every namespace (veths and the bridge go with them), even after a failure.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { PROXY_ENV, PROXY_NODE_FLAGS } from '../../api/constants.ts';
import { PROXY, type ProxyConfig } from '../../api/index.ts';
import { encodeConfig, writeProjected } from '../../proxy/configdir.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
const NODE = process.execPath;

export interface Pod {
  name: string;
  ns: string;
  ip: string;
}

export interface Agent {
  send<T = unknown>(cmd: Record<string, unknown>, timeoutMs?: number): Promise<T>;
}

export class Topology {
  readonly prefix = `wft-${process.pid}-`;
  readonly router = `${this.prefix}r`;
  readonly pods = new Map<string, Pod>();
  readonly procs: ChildProcess[] = [];
  readonly proxies = new Map<string, ChildProcess>();
  readonly logs = new Map<string, string[]>();
  configDir = '';
  /**
   * How a proxy is started after the node flags: the source entry by default; the benchmark and
   * the dist test set `[<dist>/weft.js, 'proxy']` to run what an image ships (hack/build-dist.ts).
   */
  proxyCommand: string[] = ['proxy/main.ts'];
  #dirs: string[] = [];
  #next = 2;

  async ip(ns: string, ...args: string[]): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', ns, ...args], { timeout: 20_000 });
    return stdout;
  }

  async create(): Promise<void> {
    await run('ip', ['netns', 'add', this.router]);
    await this.ip(this.router, 'ip', 'link', 'set', 'lo', 'up');
    await this.ip(this.router, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
    await this.ip(this.router, 'ip', 'addr', 'add', '10.244.0.1/24', 'dev', 'br0');
    await this.ip(this.router, 'ip', 'link', 'set', 'br0', 'up');
    const dir = await mkdtemp(join(tmpdir(), `${this.prefix}cfg-`));
    await chmod(dir, 0o755);
    this.#dirs.push(dir);
    this.configDir = join(dir, 'config');
  }

  /** A temporary directory removed by destroy(). */
  async tempDir(tag: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `${this.prefix}${tag}-`));
    await chmod(dir, 0o755);
    this.#dirs.push(dir);
    return dir;
  }

  async addPod(name: string): Promise<Pod> {
    const ns = `${this.prefix}${name}`;
    const ip = `10.244.0.${this.#next++}`;
    await run('ip', ['netns', 'add', ns]);
    await this.ip(ns, 'ip', 'link', 'set', 'lo', 'up');
    const veth = `v${name}`.slice(0, 15);
    await this.ip(
      this.router,
      'ip',
      'link',
      'add',
      veth,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    );
    await this.ip(this.router, 'ip', 'link', 'set', veth, 'master', 'br0');
    await this.ip(this.router, 'ip', 'link', 'set', veth, 'up');
    await this.ip(ns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
    await this.ip(ns, 'ip', 'link', 'set', 'eth0', 'up');
    await this.ip(ns, 'ip', 'route', 'add', 'default', 'via', '10.244.0.1');
    const pod = { name, ns, ip };
    this.pods.set(name, pod);
    return pod;
  }

  /** Installs the init container's rules (the same script the injector runs). */
  async intercept(pod: Pod): Promise<void> {
    await this.ip(pod.ns, 'sh', join(ROOT, 'proxy/iptables.sh'));
  }

  async writeConfig(config: ProxyConfig | Map<string, Buffer | string>): Promise<void> {
    await writeProjected(this.configDir, config instanceof Map ? config : encodeConfig(config));
    await chmod(this.configDir, 0o755);
  }

  /** Runs `node <args>` in the pod (as the proxy's user with `asProxy`); `env` adds variables. */
  spawnIn(
    pod: Pod,
    args: string[],
    opts: { asProxy?: boolean; tag: string; env?: Record<string, string> },
  ): ChildProcess {
    const prefix = opts.asProxy
      ? ['setpriv', `--reuid=${PROXY.uid}`, `--regid=${PROXY.gid}`, '--clear-groups']
      : [];
    // WEFT_PROXY_NODE_FLAGS adds node flags to the proxies (e.g. --trace-gc while investigating);
    // WEFT_NETNS_LOG_DIR keeps every process's output in <dir>/<tag>.log.
    const flags = opts.asProxy
      ? [...PROXY_NODE_FLAGS, ...(process.env.WEFT_PROXY_NODE_FLAGS ?? '').split(' ').filter(Boolean)]
      : [];
    const p = spawn('ip', ['netns', 'exec', pod.ns, ...prefix, NODE, ...flags, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...(opts.asProxy ? PROXY_ENV : {}), ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.procs.push(p);
    const log: string[] = [];
    this.logs.set(opts.tag, log);
    const logFile = process.env.WEFT_NETNS_LOG_DIR
      ? createWriteStream(join(process.env.WEFT_NETNS_LOG_DIR, `${opts.tag}.log`))
      : undefined;
    const keep = (d: Buffer) => {
      logFile?.write(d);
      log.push(d.toString());
      if (log.length > 400) log.splice(0, 200);
    };
    p.stderr?.on('data', keep);
    p.stdout?.on('data', keep);
    return p;
  }

  /** Starts weft-proxy in the pod and waits for its "started" log line. */
  async startProxy(pod: Pod, extra: string[] = []): Promise<ChildProcess> {
    const p = this.spawnIn(
      pod,
      [
        ...this.proxyCommand,
        '--config-dir',
        this.configDir,
        '--namespace',
        'shop',
        '--pod-name',
        `${pod.name}-7d9f8b6c5d-x2x4q`,
        '--workload',
        pod.name,
        '--poll-ms',
        '500',
        ...extra,
      ],
      { asProxy: true, tag: `proxy-${pod.name}` },
    );
    this.proxies.set(pod.name, p);
    await waitForLine(
      p,
      (l) => l.includes('weft-proxy started'),
      20_000,
      this.logs.get(`proxy-${pod.name}`)!,
    );
    return p;
  }

  async startApp(pod: Pod, cfg: Record<string, unknown>): Promise<void> {
    const p = this.spawnIn(pod, ['test/netns/fixtures/app.ts', JSON.stringify({ name: pod.name, ...cfg })], {
      tag: `app-${pod.name}`,
    });
    await waitForLine(p, (l) => l === 'ready', 15_000, this.logs.get(`app-${pod.name}`)!);
  }

  async startAgent(pod: Pod): Promise<Agent> {
    const p = this.spawnIn(pod, ['test/netns/fixtures/agent.ts'], { tag: `agent-${pod.name}` });
    const pending = new Map<number, (v: unknown) => void>();
    let id = 0;
    const rl = createInterface({ input: p.stdout! });
    let ready: () => void;
    const isReady = new Promise<void>((r) => {
      ready = r;
    });
    rl.on('line', (line) => {
      const msg = JSON.parse(line) as { id: number; result: unknown };
      if (msg.id === 0) ready();
      pending.get(msg.id)?.(msg.result);
      pending.delete(msg.id);
    });
    await Promise.race([isReady, sleep(15_000).then(() => Promise.reject(new Error('agent did not start')))]);
    return {
      send<T>(cmd: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
        const n = ++id;
        return new Promise<T>((resolve, reject) => {
          const t = setTimeout(
            () => reject(new Error(`agent command ${JSON.stringify(cmd).slice(0, 200)} timed out`)),
            timeoutMs,
          );
          pending.set(n, (v) => {
            clearTimeout(t);
            resolve(v as T);
          });
          p.stdin!.write(`${JSON.stringify({ ...cmd, id: n })}\n`);
        });
      },
    };
  }

  async destroy(): Promise<void> {
    // WEFT_NETNS_GRACEFUL=1: proxies get SIGTERM and up to 3 s to exit (so --cpu-prof can write).
    if (process.env.WEFT_NETNS_GRACEFUL === '1') {
      const live = [...this.proxies.values()].filter((p) => p.exitCode === null && p.signalCode === null);
      for (const p of live) p.kill('SIGTERM');
      await Promise.race([Promise.all(live.map((p) => new Promise((r) => p.once('exit', r)))), sleep(3000)]);
    }
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await sleep(100);
    for (const pod of this.pods.values()) await run('ip', ['netns', 'del', pod.ns]).catch(() => {});
    await run('ip', ['netns', 'del', this.router]).catch(() => {});
    for (const d of this.#dirs) await rm(d, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function waitForLine(
  p: ChildProcess,
  match: (line: string) => boolean,
  timeoutMs: number,
  stderr: string[],
): Promise<void> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: p.stdout! });
    const t = setTimeout(
      () => reject(new Error(`timed out waiting for output; stderr:\n${stderr.join('').slice(-2000)}`)),
      timeoutMs,
    );
    rl.on('line', (line) => {
      if (match(line)) {
        clearTimeout(t);
        resolve();
      }
    });
    p.once('exit', (code) => {
      clearTimeout(t);
      reject(
        new Error(`process exited (${code}) before it was ready; stderr:\n${stderr.join('').slice(-2000)}`),
      );
    });
  });
}

/** Polls `check` (bounded: at most `tries` times, `everyMs` apart) until it returns true. */
export async function eventually(check: () => Promise<boolean>, tries = 50, everyMs = 200): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return true;
    await sleep(everyMs);
  }
  return false;
}

/** Lines of Prometheus text whose metric name and labels contain every `parts`. */
export function metricLines(text: string, ...parts: string[]): string[] {
  return text.split('\n').filter((l) => !l.startsWith('#') && parts.every((p) => l.includes(p)));
}

/** The sum of the values of the metric lines containing every one of `parts`. */
export function metricSum(text: string, ...parts: string[]): number {
  return metricLines(text, ...parts).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}
