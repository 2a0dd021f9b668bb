// The local node's network: one Linux bridge with the first address of the pod range, and per
// pod a network namespace joined to it by a veth pair. Pods get a route for the pod range and
// the Service range only (no default route), and the FORWARD chain lets traffic from the bridge
// go back to the bridge and nowhere else, so nothing a pod sends leaves this machine.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { LocalNodeError } from './errors.ts';

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a tool; rejects with its stderr in the message. */
export function run(cmd: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const e = new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err });
          reject(e);
        } else resolve({ stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs a tool and ignores failure (cleanup of things that may already be gone). */
export async function tryRun(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

export function shortHash(s: string, len: number): string {
  return createHash('sha256').update(s).digest('hex').slice(0, len);
}

const ipToInt = (ip: string): number => {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new LocalNodeError('WEFT_LN_CIDR', `not an IPv4 address: ${ip}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
};
const intToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  base: number;
  prefix: number;
  text: string;
}

export function parseCidr(text: string): Cidr {
  const [addr, p] = text.split('/');
  const prefix = Number(p);
  if (!addr || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new LocalNodeError('WEFT_LN_CIDR', `not an IPv4 CIDR: ${text}`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const base = (ipToInt(addr) & mask) >>> 0;
  return { base, prefix, text: `${intToIp(base)}/${prefix}` };
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}

export function cidrContains(c: Cidr, ip: string): boolean {
  return cidrsOverlap(c, parseCidr(`${ip}/32`));
}

/** Hands out pod addresses: the first address is the bridge (gateway), the last the broadcast. */
export class IpAllocator {
  readonly gateway: string;
  readonly #cidr: Cidr;
  readonly #used = new Set<number>();
  constructor(cidr: Cidr) {
    if (cidr.prefix > 30 || cidr.prefix < 16) {
      throw new LocalNodeError('WEFT_LN_CIDR', `pod CIDR ${cidr.text}: use a prefix between /16 and /30`);
    }
    this.#cidr = cidr;
    this.gateway = intToIp(cidr.base + 1);
  }
  allocate(): string {
    const size = 2 ** (32 - this.#cidr.prefix);
    for (let i = 2; i < size - 1; i++) {
      if (!this.#used.has(i)) {
        this.#used.add(i);
        return intToIp(this.#cidr.base + i);
      }
    }
    throw new LocalNodeError('WEFT_LN_IP_EXHAUSTED', `no free address left in ${this.#cidr.text}`);
  }
  release(ip: string): void {
    this.#used.delete(ipToInt(ip) - this.#cidr.base);
  }
}

export interface HostNetworkOptions {
  /** Unique per node: names of the bridge, namespaces, veths and chains derive from it. */
  id: string;
  podCidr: Cidr;
  serviceCidr: Cidr;
  log: (msg: string) => void;
}

export interface PodNetwork {
  netns: string;
  netnsPath: string;
  hostVeth: string;
  ip: string;
}

const IPT = ['-w', '5'];

/** The host side: bridge, forwarding rules; and per-pod namespaces. */
export class HostNetwork {
  readonly bridge: string;
  readonly gateway: string;
  readonly fwdChain: string;
  readonly ips: IpAllocator;
  readonly #o: HostNetworkOptions;
  constructor(o: HostNetworkOptions) {
    this.#o = o;
    this.bridge = `wb${o.id}`;
    this.fwdChain = `WEFT-LN-${o.id}-FWD`;
    this.ips = new IpAllocator(o.podCidr);
    this.gateway = this.ips.gateway;
  }

  get netnsPrefix(): string {
    return `wln-${this.#o.id}-`;
  }

  /** Removes what an earlier agent with the same id left behind (after a crash). */
  async removeStale(): Promise<void> {
    const { stdout } = await run('ip', ['netns', 'list']);
    for (const line of stdout.split('\n')) {
      const name = line.split(' ')[0];
      if (name?.startsWith(this.netnsPrefix)) {
        this.#o.log(`removing stale network namespace ${name}`);
        await tryRun('ip', ['netns', 'del', name]);
      }
    }
    await this.#removeHostRules();
    if (await tryRun('ip', ['link', 'show', this.bridge])) {
      this.#o.log(`removing stale bridge ${this.bridge}`);
      await tryRun('ip', ['link', 'del', this.bridge]);
    }
  }

  /** Refuses a pod range that overlaps a route this machine already has. */
  async checkCidrFree(): Promise<void> {
    const { stdout } = await run('ip', ['-j', '-4', 'route', 'show', 'table', 'all']);
    const routes = JSON.parse(stdout || '[]') as { dst?: string; dev?: string; type?: string }[];
    for (const r of routes) {
      if (!r.dst || r.dst === 'default' || r.type === 'broadcast' || r.type === 'local') continue;
      if (r.dev === this.bridge) continue;
      const dst = parseCidr(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
      if (dst.prefix === 0) continue;
      if (cidrsOverlap(dst, this.#o.podCidr)) {
        throw new LocalNodeError(
          'WEFT_LN_CIDR_IN_USE',
          `pod CIDR ${this.#o.podCidr.text} overlaps the route ${r.dst} on ${r.dev ?? '?'}: choose another --pod-cidr`,
        );
      }
    }
  }

  async setUp(): Promise<void> {
    const br = this.bridge;
    await run('ip', ['link', 'add', br, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${this.gateway}/${this.#o.podCidr.prefix}`, 'dev', br]);
    await run('ip', ['link', 'set', br, 'up']);
    // Routing back onto the bridge (Service VIPs DNATed to a pod) needs forwarding on this
    // interface only; the host's global ip_forward setting is left alone.
    await run('sysctl', ['-q', '-w', `net.ipv4.conf.${br}.forwarding=1`]);
    const c = this.fwdChain;
    await run('iptables', [...IPT, '-t', 'filter', '-N', c]);
    await run('iptables', [...IPT, '-t', 'filter', '-A', c, '-i', br, '-o', br, '-j', 'ACCEPT']);
    await run('iptables', [...IPT, '-t', 'filter', '-A', c, '-j', 'DROP']);
    await run('iptables', [...IPT, '-t', 'filter', '-I', 'FORWARD', '-i', br, '-j', c]);
    await run('iptables', [...IPT, '-t', 'filter', '-I', 'FORWARD', '-o', br, '-j', c]);
  }

  async #removeHostRules(): Promise<void> {
    const c = this.fwdChain;
    while (await tryRun('iptables', [...IPT, '-t', 'filter', '-D', 'FORWARD', '-i', this.bridge, '-j', c])) {}
    while (await tryRun('iptables', [...IPT, '-t', 'filter', '-D', 'FORWARD', '-o', this.bridge, '-j', c])) {}
    await tryRun('iptables', [...IPT, '-t', 'filter', '-F', c]);
    await tryRun('iptables', [...IPT, '-t', 'filter', '-X', c]);
  }

  async tearDown(): Promise<void> {
    await this.#removeHostRules();
    await tryRun('ip', ['link', 'del', this.bridge]);
  }

  /** A network namespace for one pod, with eth0 on the bridge and loopback up. */
  async addPod(podUid: string): Promise<PodNetwork> {
    const h = shortHash(`${this.#o.id}/${podUid}`, 10);
    const netns = `${this.netnsPrefix}${h}`;
    const hostVeth = `wv${h}`;
    const peer = `wp${h}`;
    const ip = this.ips.allocate();
    try {
      await run('ip', ['netns', 'add', netns]);
      const inNs = (...args: string[]) => run('ip', ['-n', netns, ...args]);
      await inNs('link', 'set', 'lo', 'up');
      await run('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', peer]);
      await run('ip', ['link', 'set', peer, 'netns', netns]);
      await inNs('link', 'set', peer, 'name', 'eth0');
      await inNs('addr', 'add', `${ip}/${this.#o.podCidr.prefix}`, 'dev', 'eth0');
      await inNs('link', 'set', 'eth0', 'up');
      await run('ip', ['link', 'set', hostVeth, 'master', this.bridge]);
      await run('ip', ['link', 'set', hostVeth, 'up']);
      // Only the Service range goes through the gateway: no default route.
      await inNs('route', 'add', this.#o.serviceCidr.text, 'via', this.gateway, 'dev', 'eth0');
      return { netns, netnsPath: `/run/netns/${netns}`, hostVeth, ip };
    } catch (err) {
      await this.removePod({ netns, netnsPath: `/run/netns/${netns}`, hostVeth, ip });
      throw err;
    }
  }

  async removePod(n: PodNetwork): Promise<void> {
    await tryRun('ip', ['link', 'del', n.hostVeth]);
    await tryRun('ip', ['netns', 'del', n.netns]);
    this.ips.release(n.ip);
  }
}
