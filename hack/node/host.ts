// What the real node changes on the host, read so that `stop` can undo it and the tests can
// compare before and after: processes, mounts, network interfaces, cgroups, iptables rules (both
// families, both the nft and the legacy backend) and the sysctls the kubelet, kube-proxy and the
// CNI bridge plugin write.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Sysctls the node's components may change (restored by stop). */
export const SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/forwarding',
  'net/ipv4/conf/all/route_localnet',
  'net/ipv6/conf/all/forwarding',
  'net/bridge/bridge-nf-call-iptables',
  'net/bridge/bridge-nf-call-ip6tables',
  'net/netfilter/nf_conntrack_max',
  'net/netfilter/nf_conntrack_tcp_timeout_established',
  'net/netfilter/nf_conntrack_tcp_timeout_close_wait',
  'net/netfilter/nf_conntrack_tcp_be_liberal',
];

export function readSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of SYSCTLS) {
    const p = join('/proc/sys', k);
    if (existsSync(p)) out[k] = readFileSync(p, 'utf8').trim();
  }
  return out;
}

/** Writes back the values `before` holds where they differ now. */
export function restoreSysctls(before: Record<string, string>): string[] {
  const changed: string[] = [];
  const now = readSysctls();
  for (const [k, v] of Object.entries(before)) {
    if (now[k] === v) continue;
    try {
      writeFileSync(join('/proc/sys', k), v);
      changed.push(`${k}=${v}`);
    } catch {}
  }
  return changed;
}

/** Backends and families whose rule sets the node may touch. */
export const IPTABLES_SAVE = [
  'iptables-nft-save',
  'ip6tables-nft-save',
  'iptables-legacy-save',
  'ip6tables-legacy-save',
];

/** `iptables-save` output without comments and counters, or '' when the tool is missing. */
export function iptablesRules(save: string): string {
  try {
    return execFileSync(save, [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => (l.startsWith(':') ? l.replace(/ \[\d+:\d+\]$/, '') : l))
      .join('\n');
  } catch {
    return '';
  }
}

/** Chain names per table of one rule set ("filter/KUBE-SERVICES", …). */
export function iptablesChains(rules: string): Set<string> {
  const out = new Set<string>();
  let table = '';
  for (const l of rules.split('\n')) {
    if (l.startsWith('*')) table = l.slice(1);
    else if (l.startsWith(':')) out.add(`${table}/${l.slice(1).split(' ')[0]}`);
  }
  return out;
}

/** Every cgroup directory under /sys/fs/cgroup (each hierarchy), relative paths. */
export function cgroups(): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      try {
        if (statSync(p).isDirectory()) {
          out.push(`${rel}/${e}`);
          walk(p, `${rel}/${e}`);
        }
      } catch {}
    }
  };
  walk('/sys/fs/cgroup', '');
  return out.sort();
}

export interface HostSnapshot {
  processes: string[];
  mounts: string[];
  interfaces: string[];
  netns: string[];
  cgroups: string[];
  iptables: Record<string, string>;
  sysctls: Record<string, string>;
}

/** Command lines of every process but `exclude`'s (the caller and its tools come and go). */
function processes(exclude: (pid: number) => boolean): string[] {
  const out: string[] = [];
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid) || exclude(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if (cmd) out.push(`${pid} ${cmd}`);
    } catch {}
  }
  return out.sort();
}

export function snapshotHost(exclude: (pid: number) => boolean = () => false): HostSnapshot {
  return {
    processes: processes(exclude),
    mounts: readFileSync('/proc/mounts', 'utf8').split('\n').filter(Boolean).sort(),
    interfaces: readdirSync('/sys/class/net').sort(),
    netns: existsSync('/run/netns') ? readdirSync('/run/netns').sort() : [],
    cgroups: cgroups(),
    iptables: Object.fromEntries(IPTABLES_SAVE.map((s) => [s, iptablesRules(s)])),
    sysctls: readSysctls(),
  };
}
