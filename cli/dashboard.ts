// `weftctl dashboard`: a local web page of the mesh, served by weftctl on a loopback port; every
// figure comes through the apiserver with the credentials of the kubeconfig, as the other
// commands read them (nothing is installed in the cluster):
// - the service graph: workloads as `stat` sees them, edges as `edges` sees them (success rate,
//   rps, latency percentiles of one window between two scrapes of the sidecars' /metrics);
// - each TrafficSplit: the weights its spec configures next to the share of the window's
//   requests the callers' sidecars sent to each backend Service;
// - authorization decisions: each sidecar's weft_authz_decisions_total since it started, by
//   decision, policy, rule and reason (a no-allow-match denial names the ALLOW policies that
//   select the workload and did not match);
// - each resource's status, as `weftctl status` reports it.
// The page (cli/dashboard/: plain HTML, JS and CSS, no build step) reads /api/dashboard, a
// stream of JSON lines: progress lines while the scrapes run, then the data.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import type { AuthorizationPolicy, MeshSpec } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import { selects } from '../proxy/authz/matcher.ts';
import { toAuthzPolicy } from './explain.ts';
import { meshedPods, workloadOfPod } from './pods.ts';
import { computeStats, increases, type Scrape, type StatRow, scrape } from './stats.ts';
import { collectStatus, type StatusRow } from './status.ts';

interface SplitObj {
  metadata: { name: string; namespace?: string };
  spec: { service: string; backends: { service: string; weight: number }[] };
}

export interface SplitView {
  namespace: string;
  name: string;
  service: string;
  backends: {
    service: string;
    weight: number;
    /** Configured share, 0..1. */
    configured: number;
    /** Share of the window's requests sent to this backend, 0..1; undefined without requests. */
    observed: number | undefined;
    requests: number;
  }[];
  status?: StatusRow;
}

export interface AuthzView {
  /** "ns/workload" of the sidecars that decided. */
  workload: string;
  decision: string;
  policy: string;
  rule: string;
  reason: string;
  count: number;
  /** A no-allow-match denial: the ALLOW policies that select the workload (none of their rules matched). */
  allowPolicies?: string[];
}

export interface DashboardData {
  windowSec: number;
  workloads: StatRow[];
  edges: StatRow[];
  trafficSplits: SplitView[];
  authz: AuthzView[];
  status: StatusRow[];
  /** Pods whose metrics could not be read, with why. */
  errors: string[];
}

export interface DashboardInput {
  before: Scrape[];
  after: Scrape[];
  windowSec: number;
  pods: V1Pod[];
  trustDomain: string;
  splits: SplitObj[];
  policies: AuthorizationPolicy[];
  status: StatusRow[];
  errors: string[];
}

const share = (n: number, total: number) => Math.round((n / total) * 10000) / 10000;

/** The page's data from two scrapes and the resources (pure: the golden tests call it). */
export function buildDashboard(i: DashboardInput): DashboardData {
  const podKey = (p: V1Pod) => `${p.metadata?.namespace}/${p.metadata?.name}`;
  const beforeOf = new Map(i.before.map((s) => [podKey(s.pod), s.samples]));
  // Requests the callers sent to each Service ("name.namespace") in the window.
  const sentTo = new Map<string, number>();
  for (const s of i.after) {
    const prev = beforeOf.get(podKey(s.pod));
    if (!prev) continue;
    for (const x of increases(prev, s.samples))
      if (
        x.name === 'weft_requests_total' &&
        x.labels.direction === 'outbound' &&
        x.labels.destination_service
      )
        sentTo.set(x.labels.destination_service, (sentTo.get(x.labels.destination_service) ?? 0) + x.value);
  }
  const statusOf = (kind: string, ns: string, name: string) =>
    i.status.find((r) => r.kind === kind && r.namespace === ns && r.name === name);
  const trafficSplits = i.splits
    .map((t): SplitView => {
      const ns = t.metadata.namespace ?? 'default';
      const weights = t.spec.backends.reduce((a, b) => a + b.weight, 0);
      const sent = t.spec.backends.map((b) => sentTo.get(`${b.service}.${ns}`) ?? 0);
      const total = sent.reduce((a, b) => a + b, 0);
      const status = statusOf('TrafficSplit', ns, t.metadata.name);
      return {
        namespace: ns,
        name: t.metadata.name,
        service: t.spec.service,
        backends: t.spec.backends.map((b, k) => ({
          service: b.service,
          weight: b.weight,
          configured: weights > 0 ? share(b.weight, weights) : 0,
          observed: total > 0 ? share(sent[k]!, total) : undefined,
          requests: sent[k]!,
        })),
        ...(status ? { status } : {}),
      };
    })
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  // Authorization decisions: each sidecar's totals since it started, summed per workload.
  const labelsOf = new Map(i.pods.map((p) => [podKey(p), p.metadata?.labels ?? {}]));
  const authz = new Map<string, AuthzView>();
  for (const s of i.after) {
    const ns = s.pod.metadata?.namespace ?? 'default';
    const workload = `${ns}/${workloadOfPod(s.pod)}`;
    for (const x of s.samples) {
      if (x.name !== 'weft_authz_decisions_total' || x.value <= 0) continue;
      const l = x.labels;
      const key = [workload, l.decision, l.policy, l.rule, l.reason].join('|');
      let v = authz.get(key);
      if (!v) {
        v = {
          workload,
          decision: l.decision ?? '',
          policy: l.policy ?? '',
          rule: l.rule ?? '',
          reason: l.reason ?? '',
          count: 0,
        };
        if (l.reason === 'no-allow-match') {
          const labels = labelsOf.get(podKey(s.pod)) ?? s.pod.metadata?.labels ?? {};
          v.allowPolicies = i.policies
            .filter((p) => (p.metadata.namespace ?? 'default') === ns)
            .map(toAuthzPolicy)
            .filter((p) => p.action === 'ALLOW' && selects(p, labels))
            .map((p) => p.name)
            .sort();
        }
        authz.set(key, v);
      }
      v.count += x.value;
    }
  }
  return {
    windowSec: i.windowSec,
    workloads: computeStats(i.before, i.after, i.windowSec, 'workload', i.pods, i.trustDomain),
    edges: computeStats(i.before, i.after, i.windowSec, 'edge', i.pods, i.trustDomain),
    trafficSplits,
    authz: [...authz.values()].sort(
      (a, b) =>
        (a.decision === b.decision ? 0 : a.decision === 'deny' ? -1 : 1) ||
        b.count - a.count ||
        `${a.workload}|${a.policy}|${a.rule}`.localeCompare(`${b.workload}|${b.policy}|${b.rule}`),
    ),
    status: i.status,
    errors: i.errors,
  };
}

export type Progress = (message: string, done: number, total: number) => void;

/** Reads everything the page shows: resources, then two scrapes `windowMs` apart, reporting progress. */
export async function collectDashboard(
  client: KubeClient,
  opts: { namespace?: string; windowMs: number; progress?: Progress },
): Promise<DashboardData> {
  const progress = opts.progress ?? (() => {});
  const ns = opts.namespace;
  progress('reading resources and their status', 0, 4);
  const status = await collectStatus(client, ns);
  const splits = (await client.list<KubeObject & SplitObj>(RESOURCES.trafficSplits, { namespace: ns })).items;
  const policies = (
    await client.list<KubeObject & AuthorizationPolicy>(RESOURCES.authorizationPolicies, { namespace: ns })
  ).items;
  const trustDomain =
    (await client.find<KubeObject & { spec?: MeshSpec }>(RESOURCES.meshes, 'default'))?.spec?.trustDomain ??
    'cluster.local';
  const pods = await meshedPods(client, ns);
  const errors: string[] = [];
  const warn = (p: V1Pod, e: Error) => errors.push(`${podKeyOf(p)}: metrics not read: ${e.message}`);
  progress(`scraping ${pods.length} sidecars`, 1, 4);
  // A pod the apiserver cannot reach (its network gone) gets a few seconds (scrape's timeout),
  // then it is listed as not read.
  const before = await scrape(client, pods, warn);
  const t0 = Date.now();
  progress(`waiting ${opts.windowMs / 1000}s for the second scrape`, 2, 4);
  await new Promise((r) => setTimeout(r, opts.windowMs));
  progress(`scraping ${pods.length} sidecars again`, 3, 4);
  const after = await scrape(client, pods, warn);
  const windowSec = (Date.now() - t0) / 1000;
  return buildDashboard({
    ...{ before, after, windowSec, pods, trustDomain, splits, policies, status },
    errors: [...new Set(errors)],
  });
}

const podKeyOf = (p: V1Pod) => `${p.metadata?.namespace}/${p.metadata?.name}`;

const STATIC: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
};
const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/**
 * Serves the page on `address:port` (port 0: any free one). Only GET, only with a Host of the
 * loopback address it listens on (a page of another site cannot reach it by DNS rebinding).
 */
export async function serveDashboard(
  client: KubeClient,
  opts: { address: string; port: number; namespace?: string; windowMs: number },
): Promise<{ server: Server; url: string }> {
  const host = opts.address.includes(':') ? `[${opts.address}]` : opts.address;
  const server = createServer((req, res) => {
    const port = (server.address() as AddressInfo).port;
    const hosts = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${host}:${port}`];
    if (req.method !== 'GET' || !hosts.includes(req.headers.host ?? '')) {
      res.writeHead(req.method !== 'GET' ? 405 : 403, { 'content-type': 'text/plain' });
      res.end(req.method !== 'GET' ? 'only GET\n' : 'the dashboard answers only on its loopback address\n');
      return;
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = STATIC[path];
    const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (file) {
      res.writeHead(200, { ...headers, 'content-type': TYPES[file.split('.').at(-1)!]! });
      res.end(readFileSync(new URL(`./dashboard/${file}`, import.meta.url)));
      return;
    }
    if (path !== '/api/dashboard') {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    // JSON lines: {"progress":{...}} while it loads, then {"data":{...}} or {"error":"..."}.
    res.writeHead(200, { ...headers, 'content-type': 'application/x-ndjson' });
    const line = (v: unknown) => res.write(`${JSON.stringify(v)}\n`);
    collectDashboard(client, {
      ...(opts.namespace ? { namespace: opts.namespace } : {}),
      windowMs: opts.windowMs,
      progress: (message, done, total) => line({ progress: { message, done, total } }),
    })
      .then((data) => line({ data }))
      .catch((e: Error) => line({ error: e.message }))
      .finally(() => res.end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://${host}:${port}/` };
}
