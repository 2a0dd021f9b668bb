// `weftctl stat`, `edges` and `top`: golden signals from the proxies' own metrics, scraped
// twice a window apart through the apiserver (pods/proxy to each sidecar's /metrics): request
// rate and success rate from weft_requests_total, latency percentiles from the
// weft_request_duration_seconds histogram, as Prometheus' rate() and histogram_quantile() would
// compute them over that window.
//
// - stat: per workload, from what its own sidecars served (direction="inbound");
// - edges: per caller → destination, from what the callers' sidecars sent (direction="outbound"),
//   with the SPIFFE identities of both ends taken from their pods' ServiceAccounts;
// - routes: per route (the TrafficSplit, HTTPRoute or GRPCRoute that decided: the `route` label),
//   from what the callers' sidecars sent, with the backend Services it picked.
import type { V1Pod } from '@kubernetes/client-node';
import type { KubeClient } from '../kube/client.ts';
import { ERROR_CODES, WeftError } from '../kube/errors.ts';
import { spiffeId } from '../operator/compile/services.ts';
import { proxyGet, workloadOfPod } from './pods.ts';
import { renderTable } from './table.ts';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (what prom-client writes): one sample per line. */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (let l = re.exec(m[3] ?? ''); l; l = re.exec(m[3] ?? ''))
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

export interface Scrape {
  pod: V1Pod;
  samples: Sample[];
}

export interface StatRow {
  /** "ns/workload" (stat), "ns/src -> ns/dst" (edges) or "<Kind>/<ns>/<name>" (routes). */
  name: string;
  source?: { workload: string; namespace: string; identity?: string };
  destination?: { workload: string; namespace: string; service?: string; identity?: string };
  /** Meshed pods of the workload (stat). */
  pods?: number;
  requests: number;
  rps: number;
  /** 0..1; undefined without requests. */
  successRate: number | undefined;
  latencyMs: { p50: number | undefined; p95: number | undefined; p99: number | undefined };
}

const REQUESTS = 'weft_requests_total';
const BUCKETS = 'weft_request_duration_seconds_bucket';

const seriesKey = (s: Sample) =>
  `${s.name}{${Object.entries(s.labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',')}}`;

/** Per series, the increase between two scrapes of the same pod (a restart resets counters). */
export function increases(before: Sample[], after: Sample[]): Sample[] {
  const old = new Map(before.map((s) => [seriesKey(s), s.value]));
  return after
    .filter((s) => s.name === REQUESTS || s.name === BUCKETS)
    .map((s) => {
      const prev = old.get(seriesKey(s)) ?? 0;
      return { ...s, value: s.value >= prev ? s.value - prev : s.value };
    });
}

/** histogram_quantile over cumulative buckets {le → count}: linear within the bucket, in ms. */
export function quantileMs(q: number, buckets: Map<number, number>): number | undefined {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Number.POSITIVE_INFINITY) ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const le of les) {
    const count = buckets.get(le)!;
    if (count >= rank) {
      if (le === Number.POSITIVE_INFINITY) return prevLe * 1000;
      const inBucket = count - prevCount;
      const frac = inBucket > 0 ? (rank - prevCount) / inBucket : 1;
      return Math.round((prevLe + (le - prevLe) * frac) * 1000 * 100) / 100;
    }
    prevLe = le;
    prevCount = count;
  }
  return undefined;
}

interface Acc {
  requests: number;
  ok: number;
  buckets: Map<number, number>;
}

export type GroupBy = 'workload' | 'edge' | 'route';

/**
 * The rows of one window: `before` and `after` scrapes of the same pods, `windowSec` apart.
 * `pods` are all the meshed pods (stat lists workloads without traffic too) and give the
 * identities (`trustDomain`).
 */
export function computeStats(
  before: Scrape[],
  after: Scrape[],
  windowSec: number,
  by: GroupBy,
  pods: V1Pod[],
  trustDomain: string,
): StatRow[] {
  const beforeOf = new Map(
    before.map((s) => [`${s.pod.metadata?.namespace}/${s.pod.metadata?.name}`, s.samples]),
  );
  const acc = new Map<
    string,
    Acc & { row: Omit<StatRow, 'requests' | 'rps' | 'successRate' | 'latencyMs'> }
  >();
  const idOf = new Map<string, string>();
  const podCount = new Map<string, number>();
  for (const p of pods) {
    const key = `${p.metadata?.namespace}/${workloadOfPod(p)}`;
    idOf.set(
      key,
      spiffeId(trustDomain, p.metadata?.namespace ?? '', p.spec?.serviceAccountName || 'default'),
    );
    podCount.set(key, (podCount.get(key) ?? 0) + 1);
  }
  const entry = (key: string, row: () => Omit<StatRow, 'requests' | 'rps' | 'successRate' | 'latencyMs'>) => {
    const known = acc.get(key);
    if (known) return known;
    const a = { requests: 0, ok: 0, buckets: new Map<number, number>(), row: row() };
    acc.set(key, a);
    return a;
  };
  if (by === 'workload') for (const [key, n] of podCount) entry(key, () => ({ name: key, pods: n }));
  const direction = by === 'workload' ? 'inbound' : 'outbound';
  const moved = after.flatMap((s) => {
    const prev = beforeOf.get(`${s.pod.metadata?.namespace}/${s.pod.metadata?.name}`);
    return prev ? increases(prev, s.samples).filter((x) => x.labels.direction === direction) : [];
  });
  // Requests first: only series with requests in the window make a row (not old peers);
  // then every bucket of the rows made, empty ones too (they bound the interpolation).
  for (const x of [
    ...moved.filter((m) => m.name === REQUESTS),
    ...moved.filter((m) => m.name !== REQUESTS),
  ]) {
    const l = x.labels;
    if (x.name === REQUESTS && x.value === 0) continue;
    const dst = `${l.destination_namespace}/${l.destination_workload || l.destination_service}`;
    const src = `${l.source_namespace}/${l.source_workload}`;
    const key = by === 'workload' ? dst : by === 'route' ? (l.route ?? '') : `${src} -> ${dst}`;
    // Requests no route decided (route ""), and proxies older than the label, make no route row.
    if ((x.name !== REQUESTS && !acc.has(key)) || key === '') continue;
    const a =
      by === 'workload'
        ? entry(dst, () => ({ name: dst, pods: podCount.get(dst) ?? 0 }))
        : by === 'route'
          ? entry(key, () => ({ name: key, destination: { workload: '', namespace: '' } }))
          : entry(`${src} -> ${dst}`, () => ({
              name: `${src} -> ${dst}`,
              source: {
                workload: l.source_workload ?? '',
                namespace: l.source_namespace ?? '',
                ...(idOf.has(src) ? { identity: idOf.get(src)! } : {}),
              },
              destination: {
                workload: l.destination_workload ?? '',
                namespace: l.destination_namespace ?? '',
                ...(idOf.has(dst) ? { identity: idOf.get(dst)! } : {}),
              },
            }));
    // The Services the caller addressed on this edge or route (a split's backends), each once.
    const svc = l.destination_service;
    if (by !== 'workload' && svc && a.row.destination) {
      const known = a.row.destination.service?.split(',') ?? [];
      if (!known.includes(svc)) a.row.destination.service = [...known, svc].sort().join(',');
    }
    if (x.name === REQUESTS) {
      a.requests += x.value;
      const code = Number(l.status_code);
      if (code < 500 && (!l.grpc_status || l.grpc_status === '0')) a.ok += x.value;
    } else {
      const le = l.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(l.le);
      a.buckets.set(le, (a.buckets.get(le) ?? 0) + x.value);
    }
  }
  return [...acc.values()]
    .map((a) => ({
      ...a.row,
      requests: a.requests,
      rps: Math.round((a.requests / windowSec) * 100) / 100,
      successRate: a.requests > 0 ? Math.round((a.ok / a.requests) * 10000) / 10000 : undefined,
      latencyMs: {
        p50: quantileMs(0.5, a.buckets),
        p95: quantileMs(0.95, a.buckets),
        p99: quantileMs(0.99, a.buckets),
      },
    }))
    .sort((x, y) => y.rps - x.rps || x.name.localeCompare(y.name));
}

const pct = (v: number | undefined) => (v === undefined ? '-' : `${(v * 100).toFixed(2)}%`);
const ms = (v: number | undefined) => (v === undefined ? '-' : `${v}ms`);
/** SUCCESS, RPS, P50, P95, P99 of a row. */
const SIGNALS = ['SUCCESS', 'RPS', 'P50', 'P95', 'P99'];
const signals = (r: StatRow) => [
  pct(r.successRate),
  String(r.rps),
  ms(r.latencyMs.p50),
  ms(r.latencyMs.p95),
  ms(r.latencyMs.p99),
];

export function renderStats(rows: StatRow[], by: GroupBy): string {
  if (by === 'workload')
    return renderTable(
      ['WORKLOAD', 'MESHED', ...SIGNALS],
      rows.map((r) => [r.name, String(r.pods ?? 0), ...signals(r)]),
    );
  if (by === 'route')
    return renderTable(
      ['ROUTE', 'SERVICE', ...SIGNALS],
      rows.map((r) => [r.name, r.destination?.service ?? '-', ...signals(r)]),
    );
  return renderTable(
    ['SOURCE', 'DESTINATION', 'SERVICE', ...SIGNALS, 'IDENTITIES'],
    rows.map((r) => [
      `${r.source?.namespace}/${r.source?.workload}`,
      `${r.destination?.namespace}/${r.destination?.workload || '-'}`,
      r.destination?.service ?? '-',
      ...signals(r),
      `${r.source?.identity ?? '-'} -> ${r.destination?.identity ?? '-'}`,
    ]),
  );
}

/**
 * How long one sidecar's /metrics may take through the apiserver. A pod whose network is gone
 * would otherwise hold every command for the apiserver's own dial timeout (30 s) per scrape.
 */
export const SCRAPE_TIMEOUT_MS = 3000;

/**
 * Every pod's /metrics through the apiserver, a few at a time; pods that do not answer within
 * `timeoutMs` are left out, `onError` told why (the timeout in words the user can act on).
 */
export async function scrape(
  client: KubeClient,
  pods: V1Pod[],
  onError: (pod: V1Pod, err: Error) => void = () => {},
  timeoutMs = SCRAPE_TIMEOUT_MS,
): Promise<Scrape[]> {
  const out: Scrape[] = [];
  const queue = [...pods];
  const worker = async () => {
    for (let p = queue.shift(); p; p = queue.shift()) {
      const signal = AbortSignal.timeout(timeoutMs);
      try {
        out.push({ pod: p, samples: parsePrometheus(await proxyGet(client, p, '/metrics', signal)) });
      } catch (err) {
        onError(
          p,
          signal.aborted
            ? new WeftError(
                ERROR_CODES.TRANSPORT,
                `no answer within ${timeoutMs / 1000}s through the apiserver (is the pod's network up?)`,
                { cause: err },
              )
            : (err as Error),
        );
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, pods.length) }, worker));
  return out;
}
