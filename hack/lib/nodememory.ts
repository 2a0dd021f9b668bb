// Memory figures of processes and of a node, from what Linux and the kubelet report:
// /proc/<pid>/smaps_rollup, /proc/meminfo and the kubelet's /stats/summary. Pure functions (text
// or JSON in, MiB out), shared by bench/density.ts and bench/propagation.ts, tested beside.

/** KiB → MiB, one decimal. */
const mb = (kb: number) => Math.round(kb / 102.4) / 10;
/** Bytes → MiB, one decimal. */
const bytesMB = (b: number) => Math.round(b / 104857.6) / 10;

/** One process's memory from `/proc/<pid>/smaps_rollup`, MiB. */
export interface ProcessMemory {
  /** Resident pages, shared ones included (VmRSS). */
  rssMB: number;
  /** Resident pages, each shared page divided among the processes that map it. */
  pssMB: number;
  /** Anonymous pages: heap, malloc, stacks (the process's own memory). */
  anonymousMB: number;
  /** Pages no other process maps (Private_Clean + Private_Dirty): what the process alone costs. */
  privateMB: number;
}

/** Parses `/proc/<pid>/smaps_rollup`; throws naming the field when one is missing. */
export function parseSmapsRollup(text: string): ProcessMemory {
  const kb = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`smaps_rollup: no ${k} line (a kernel before 4.14 has no smaps_rollup)`);
    return Number(m[1]);
  };
  return {
    rssMB: mb(kb('Rss')),
    pssMB: mb(kb('Pss')),
    anonymousMB: mb(kb('Anonymous')),
    privateMB: mb(kb('Private_Clean') + kb('Private_Dirty')),
  };
}

/** The host's used memory from `/proc/meminfo`: MemTotal − MemAvailable, MiB. */
export function memInfoUsedMB(text: string): number {
  const kb = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`meminfo: no ${k} line`);
    return Number(m[1]);
  };
  return mb(kb('MemTotal') - kb('MemAvailable'));
}

interface SummaryMemoryStats {
  workingSetBytes?: number;
}
/** The part of the kubelet's /stats/summary (stats/v1alpha1) read here. */
export interface KubeletSummary {
  node: {
    memory?: SummaryMemoryStats;
    systemContainers?: { name: string; memory?: SummaryMemoryStats }[];
  };
  pods?: {
    podRef: { name: string; namespace: string };
    memory?: SummaryMemoryStats;
    containers?: { name: string; memory?: SummaryMemoryStats }[];
  }[];
}

export interface SummaryMemory {
  /** node.memory.workingSetBytes: the whole machine's (cAdvisor's root cgroup). */
  nodeWorkingSetMB: number;
  /** The system container "pods" (the kubepods cgroup, every pod on the node); null if absent. */
  podsWorkingSetMB: number | null;
  /** Each pod's working set. */
  pods: { namespace: string; pod: string; workingSetMB: number }[];
  /** Each container's working set. */
  containers: { namespace: string; pod: string; container: string; workingSetMB: number }[];
}

/** The memory figures of the kubelet's /stats/summary, MiB; throws when the node has none. */
export function summaryMemory(s: KubeletSummary): SummaryMemory {
  const node = s.node?.memory?.workingSetBytes;
  if (node === undefined) throw new Error('stats/summary: node.memory.workingSetBytes missing');
  const pods = s.node.systemContainers?.find((c) => c.name === 'pods')?.memory?.workingSetBytes;
  return {
    nodeWorkingSetMB: bytesMB(node),
    podsWorkingSetMB: pods === undefined ? null : bytesMB(pods),
    pods: (s.pods ?? [])
      .filter((p) => p.memory?.workingSetBytes !== undefined)
      .map((p) => ({
        namespace: p.podRef.namespace,
        pod: p.podRef.name,
        workingSetMB: bytesMB(p.memory!.workingSetBytes!),
      })),
    containers: (s.pods ?? []).flatMap((p) =>
      (p.containers ?? [])
        .filter((c) => c.memory?.workingSetBytes !== undefined)
        .map((c) => ({
          namespace: p.podRef.namespace,
          pod: p.podRef.name,
          container: c.name,
          workingSetMB: bytesMB(c.memory!.workingSetBytes!),
        })),
    ),
  };
}

/** The nearest-rank percentile `p` (0–100) of `xs`; throws on an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of no values');
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** How a set of samples spreads: count, min, p50, max. */
export function distribution(xs: readonly number[]): { n: number; min: number; p50: number; max: number } {
  return { n: xs.length, min: Math.min(...xs), p50: percentile(xs, 50), max: Math.max(...xs) };
}

/**
 * What one pod adds to a node's used memory, from three readings of the same run: no app pods,
 * `pods` unmeshed pods, then `pods` meshed pods beside them. The sidecar's share is a meshed
 * pod's cost less an unmeshed pod's (the same app without the sidecar), MiB, one decimal.
 */
export function perPodMemory(
  used: { none: number; unmeshed: number; both: number },
  pods: number,
): { unmeshedPodMB: number; meshedPodMB: number; perSidecarMB: number } {
  if (!(pods > 0)) throw new Error(`pods: ${pods}; at least one pod of each kind is needed`);
  const r = (x: number) => Math.round(x * 10) / 10;
  const unmeshed = (used.unmeshed - used.none) / pods;
  const meshed = (used.both - used.unmeshed) / pods;
  return { unmeshedPodMB: r(unmeshed), meshedPodMB: r(meshed), perSidecarMB: r(meshed - unmeshed) };
}
