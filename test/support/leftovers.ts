// What a real cluster (hack/node) left on the host: the difference of two snapshots
// (hack/node/host.ts) restricted to what belongs to that cluster. The files that start one
// (test/node/real-node.test.ts, test/e2e/conformance.test.ts) assert it equals EMPTY_LEFTOVERS.
import { readFileSync, readlinkSync } from 'node:fs';
import type { HostSnapshot } from '../../hack/node/host.ts';

/** '' when the process is gone. */
function procOf(read: () => string): string {
  try {
    return read();
  } catch {
    return '';
  }
}

export interface ClusterMarks {
  /** The cluster's directory (or a prefix of it): its processes name it or run in it. */
  dir: string;
  /** Its bridge (the cgroup root is weft-<bridge>). */
  bridge: string;
  /** Its pod and Service ranges as a pattern of iptables rules, e.g. /10\.125\.|10\.126\./. */
  ranges: RegExp;
}

/** What of `after` is new since `before` and belongs to the cluster (its dir, bridge, veths, KUBE/CNI chains…). */
export function leftovers(
  before: HostSnapshot,
  after: HostSnapshot,
  m: ClusterMarks,
): Record<string, unknown> {
  const { dir, bridge } = m;
  const added = (a: string[], b: string[]) => b.filter((x) => !a.includes(x));
  const beforePids = new Set(before.processes.map((p) => p.split(' ')[0]));
  const ours = (p: string) => {
    const id = p.split(' ')[0]!;
    if (beforePids.has(id)) return false;
    // The cluster's own processes name its directory; containers live in its cgroup root.
    return (
      p.includes(dir) ||
      procOf(() => readlinkSync(`/proc/${id}/cwd`)).startsWith(dir) ||
      procOf(() => readFileSync(`/proc/${id}/cgroup`, 'utf8')).includes(`/weft-${bridge}/`)
    );
  };
  // Rules and chains naming the cluster's chains, bridge or ranges: the local node and other tests
  // may add (and remove) rules of their own meanwhile, and leave empty tables: that stop deletes
  // the tables it created is its report's nftTablesLeft.
  const relevant = (rules: string) =>
    rules.split('\n').filter((l) => /KUBE-|CNI-/.test(l) || m.ranges.test(l) || l.includes(bridge));
  const iptables: Record<string, string[]> = {};
  const removedIptables: Record<string, string[]> = {};
  for (const tool of new Set([...Object.keys(before.iptables), ...Object.keys(after.iptables)])) {
    const b = relevant(before.iptables[tool] ?? '');
    const a = relevant(after.iptables[tool] ?? '');
    if (added(b, a).length) iptables[tool] = added(b, a);
    if (added(a, b).length) removedIptables[tool] = added(a, b);
  }
  const sysctls = Object.fromEntries(
    Object.entries(after.sysctls).filter(([k, v]) => before.sysctls[k] !== v),
  );
  return {
    processes: after.processes.filter(ours),
    mounts: added(before.mounts, after.mounts).filter(
      (x) =>
        x.includes(dir) || x.includes('/run/netns/cni-') || x.includes('containerd') || x.includes('kubelet'),
    ),
    interfaces: added(before.interfaces, after.interfaces).filter(
      (i) => i === bridge || /^veth[0-9a-f]{8}$/.test(i),
    ),
    netns: added(before.netns, after.netns).filter((n) => n.startsWith('cni-')),
    cgroups: added(before.cgroups, after.cgroups).filter(
      (c) => c.includes(`weft-${bridge}`) || c.includes('kubepods'),
    ),
    iptables,
    removedIptables,
    sysctls,
  };
}

export const EMPTY_LEFTOVERS = {
  processes: [],
  mounts: [],
  interfaces: [],
  netns: [],
  cgroups: [],
  iptables: {},
  removedIptables: {},
  sysctls: {},
};
