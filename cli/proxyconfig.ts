// `weftctl proxy-config <pod>`: the configuration a pod's proxy has applied, read from its
// health port's /config/applied through the apiserver (proxy/admin.ts), and how it differs
// from what the operator wrote (the namespace's weft-proxy-config ConfigMaps).
import type { V1Pod } from '@kubernetes/client-node';
import { CONFIG_DISTRIBUTION, type ProxyConfig } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import { type ConfigMapLike, configFromConfigMaps } from '../proxy/configdir.ts';
import type { CertificateSummary } from '../proxy/identity/tls.ts';
import type { ConfigStatus } from '../proxy/watcher.ts';
import { proxyGet } from './pods.ts';
import { renderTable } from './table.ts';

export interface AppliedConfig {
  status: ConfigStatus;
  certificate: CertificateSummary | null;
  config: ProxyConfig | null;
}

export async function fetchApplied(client: KubeClient, pod: V1Pod): Promise<AppliedConfig> {
  return JSON.parse(await proxyGet(client, pod, '/config/applied')) as AppliedConfig;
}

/** What the operator wrote for the namespace: the ConfigMaps reassembled as a proxy does. */
export async function operatorConfig(
  client: KubeClient,
  namespace: string,
): Promise<{ config: ProxyConfig; generation: number | undefined }> {
  const get = (name: string) => client.get<KubeObject & ConfigMapLike>(RESOURCES.configMaps, name, namespace);
  return configFromConfigMaps(await get(CONFIG_DISTRIBUTION.configMapName), get);
}

export interface DiffLine {
  /** JSON path, e.g. routes[reviews].backends[0].weight */
  path: string;
  /** In the operator's config only (+), in the proxy's only (-), or changed (~). */
  op: '+' | '-' | '~';
  applied?: unknown;
  written?: unknown;
}

/** Array elements are matched by their name (id, name, address) when they have one, else by index. */
function keyOf(v: unknown, i: number): string {
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    for (const k of ['id', 'name', 'address', 'service']) if (typeof o[k] === 'string') return o[k] as string;
  }
  return String(i);
}

/** The differences between the applied config and the one the operator wrote, by path. */
export function diffConfigs(applied: unknown, written: unknown, path = ''): DiffLine[] {
  if (JSON.stringify(applied) === JSON.stringify(written)) return [];
  const isObj = (v: unknown) => v !== null && typeof v === 'object';
  if (Array.isArray(applied) && Array.isArray(written)) {
    // By name only when names are unique on both sides (two backends of one Service: by index).
    const named = (l: unknown[]) => new Set(l.map(keyOf)).size === l.length;
    const byName = named(applied) && named(written);
    const a = new Map(applied.map((v, i) => [byName ? keyOf(v, i) : String(i), v]));
    const w = new Map(written.map((v, i) => [byName ? keyOf(v, i) : String(i), v]));
    const out: DiffLine[] = [];
    for (const k of new Set([...a.keys(), ...w.keys()]))
      out.push(...diffConfigs(a.get(k), w.get(k), `${path}[${k}]`));
    return out;
  }
  if (isObj(applied) && isObj(written) && !Array.isArray(applied) && !Array.isArray(written)) {
    const a = applied as Record<string, unknown>;
    const w = written as Record<string, unknown>;
    const out: DiffLine[] = [];
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(w)])].sort())
      out.push(...diffConfigs(a[k], w[k], path ? `${path}.${k}` : k));
    return out;
  }
  if (applied === undefined) return [{ path, op: '+', written }];
  if (written === undefined) return [{ path, op: '-', applied }];
  return [{ path, op: '~', applied, written }];
}

const short = (v: unknown) => {
  const s = JSON.stringify(v);
  return s.length > 100 ? `${s.slice(0, 97)}...` : s;
};

export function renderDiff(lines: DiffLine[], appliedVersion: string, writtenVersion: string): string {
  if (lines.length === 0) return `the proxy runs what the operator wrote (version ${writtenVersion})\n`;
  const out = [
    `--- applied by the proxy (version ${appliedVersion})`,
    `+++ written by the operator (version ${writtenVersion})`,
  ];
  for (const l of lines) {
    if (l.op === '+') out.push(`+ ${l.path}: ${short(l.written)}`);
    else if (l.op === '-') out.push(`- ${l.path}: ${short(l.applied)}`);
    else out.push(`~ ${l.path}: ${short(l.applied)} -> ${short(l.written)}`);
  }
  return `${out.join('\n')}\n`;
}

/** Time until `iso` in words ("23h", "4d"), or "EXPIRED". */
export function expiresIn(iso: string, now: number): string {
  const ms = Date.parse(iso) - now;
  if (ms <= 0) return 'EXPIRED';
  const m = Math.floor(ms / 60_000);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h` : `${Math.floor(h / 24)}d`;
}

/** The tables people read: summary, routes, services and endpoints, policies. */
export function renderApplied(pod: string, a: AppliedConfig, now: number): string {
  const s = a.status;
  const out: string[] = [];
  const head: string[][] = [
    ['POD', pod],
    [
      'VERSION',
      s.version
        ? `${s.version} (generation ${s.generation ?? '-'}, from ${s.source ?? '-'}, applied ${s.appliedAt ?? '-'})`
        : 'none applied yet',
    ],
    [
      'CERTIFICATE',
      a.certificate
        ? `${a.certificate.spiffeId}, expires ${a.certificate.notAfter} (in ${expiresIn(a.certificate.notAfter, now)}), issuer ${a.certificate.issuer.replace(/\n/g, ', ')}`
        : 'none: the proxy talks plaintext to peers',
    ],
  ];
  if (s.lastError)
    head.push(['LAST ERROR', `${s.lastError.code}: ${s.lastError.message} (${s.lastError.at})`]);
  const c = a.config;
  if (c) head.push(['MTLS', c.mesh.mtls.mode], ['DEFAULT AUTHZ', c.mesh.defaultAuthorization]);
  out.push(head.map(([k, v]) => `${k!.padEnd(15)}${v}`).join('\n'));
  if (!c) return `${out.join('\n')}\n`;
  const match = (r: ProxyConfig['routes'][number]) =>
    r.matches
      .map((m) =>
        [
          m.method,
          m.path
            ? `${m.path.type === 'Exact' ? '' : `${m.path.type ?? 'PathPrefix'} `}${m.path.value}`
            : undefined,
          ...(m.headers ?? []).map((h) => `${h.name}${h.type === 'Present' ? '' : `=${h.value}`}`),
        ]
          .filter(Boolean)
          .join(' '),
      )
      .filter(Boolean)
      .join(' | ') || '*';
  out.push(
    '\nROUTES',
    renderTable(
      ['NAME', 'SERVICE', 'PORT', 'MATCH', 'BACKENDS'],
      c.routes.map((r) => [
        r.name,
        r.service,
        r.port ? String(r.port) : '*',
        match(r),
        r.directResponse
          ? `direct ${r.directResponse.status}`
          : r.backends.map((b) => `${b.service}${b.port ? `:${b.port}` : ''}=${b.weight}`).join(', '),
      ]),
    ).trimEnd(),
    '\nENDPOINTS',
    renderTable(
      ['SERVICE', 'PORTS', 'ADDRESS', 'STATE', 'IDENTITY'],
      c.services.flatMap((svc) => {
        const ports = svc.ports.map((p) => `${p.port}/${p.appProtocol ?? p.protocol}`).join(',');
        if (svc.endpoints.length === 0) return [[svc.id, ports, '-', 'no endpoints', '-']];
        return svc.endpoints.map((e) => [
          svc.id,
          ports,
          e.address,
          e.ready ? 'ready' : e.terminating ? 'terminating' : 'not ready',
          e.identity ?? (e.meshed ? '-' : 'not meshed'),
        ]);
      }),
    ).trimEnd(),
    '\nPOLICIES',
    c.authorizationPolicies.length === 0
      ? '(none)'
      : renderTable(
          ['NAME', 'ACTION', 'SELECTOR', 'RULES'],
          c.authorizationPolicies.map((p) => [
            p.name,
            p.action,
            Object.entries(p.selector?.matchLabels ?? {})
              .map(([k, v]) => `${k}=${v}`)
              .join(',') || '(namespace)',
            String(p.rules?.length ?? 0),
          ]),
        ).trimEnd(),
  );
  return `${out.join('\n')}\n`;
}
