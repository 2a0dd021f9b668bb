// A Gateway of Weft's GatewayClass (controllerName weft.dev/gateway) → the routing table its
// proxy serves, the Gateway's status, and a verdict per route parentRef that names it. Pure.
// HTTPRoutes attached to a Gateway compile with the same compiler as the mesh routes
// (gateway.ts bindRoute/ordered): one entry per match, sorted by the Gateway API precedence,
// closed by a 404 catch-all, grouped by listener port and hostname (docs/ingress.md).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { hostnameCovers } from '../../api/hostname.ts';
import type { GatewayConfig, Route } from '../../api/proxyconfig.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import type { ServiceObj } from '../types.ts';
import { bindRoute, type Entry, ordered, type ParentResult, summarize, type Verdict } from './gateway.ts';
import { type Problem, type RefContext, ROUTE_REASON, referenceGranted } from './gatewayrules.ts';
import {
  GATEWAY_CONTROLLER_NAME,
  GATEWAY_GROUP,
  type GatewayClassObj,
  type GatewayListenerSpec,
  type GatewayObj,
  type HTTPRouteObj,
  type ParentRef,
  type ReferenceGrantObj,
} from './gatewaytypes.ts';
import { cmp } from './util.ts';

export const isWeftClass = (c: GatewayClassObj | undefined): c is GatewayClassObj =>
  c?.spec.controllerName === GATEWAY_CONTROLLER_NAME;

export function gatewayClassConditions(c: GatewayClassObj): ConditionInput[] {
  if (c.spec.parametersRef !== undefined)
    return [
      {
        type: 'Accepted',
        status: 'False',
        reason: 'InvalidParameters',
        message: `spec.parametersRef: Weft's GatewayClass takes no parameters; remove it`,
      },
    ];
  return [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: `Gateways of this class run the Weft proxy in gateway mode (${GATEWAY_CONTROLLER_NAME})`,
    },
  ];
}

/** What the gateway proxy serves (the proxy validates it with the same schema). */
export type GatewayProxyConfig = GatewayConfig;

/** The port the proxy binds for a listener port: it runs as non-root, so below 1024 moves up. */
export const bindPort = (port: number) => (port < 1024 ? 15_000 + port : port);

export interface ListenerResult {
  name: string;
  port: number;
  /** Whether routes attach to the listener (accepted, not conflicted). */
  ok: boolean;
  /** Whether its references resolve (an HTTPS listener's certificate): served only then. */
  resolved: boolean;
  attachedRoutes: number;
  supportedKinds: { group: string; kind: string }[];
  conditions: ConditionInput[];
}

export interface IngressInput {
  gateway: GatewayObj;
  httpRoutes?: readonly HTTPRouteObj[];
  referenceGrants?: readonly ReferenceGrantObj[];
  services: Map<string, ServiceObj>;
  /** A namespace's labels (allowedRoutes.namespaces.from: Selector). */
  namespaceLabels?: (ns: string) => Record<string, string> | undefined;
  /** A Secret of type kubernetes.io/tls (HTTPS listeners' certificateRefs), undefined when absent. */
  secrets?: (namespace: string, name: string) => TlsSecret | undefined;
}

export interface TlsSecret {
  type?: string;
  /** Base64, as the apiserver serves it. */
  data?: Record<string, string>;
}

/** A listener's certificate and key (PEM), checked to parse and to belong together. */
export interface ListenerCertificate {
  cert: string;
  key: string;
}

export interface IngressCompiled {
  /**
   * The Gateway's Accepted verdict (its listeners' are in `listeners`); `partly`: accepted with
   * some listeners invalid (reason ListenersNotValid, as the Gateway API says).
   */
  accepted: Verdict & { partly?: boolean };
  listeners: ListenerResult[];
  config: GatewayProxyConfig;
  /**
   * The certificates the proxy serves, by file name in its certificate directory (`config`
   * names them per HTTPS listener): `<listener>.crt`, `<listener>.key`. Never in `config`.
   */
  certificates: Map<string, string>;
  /** One verdict per parentRef naming this Gateway, by "HTTPRoute/<namespace>/<name>". */
  routeParents: Map<string, ParentResult[]>;
}

const HTTPROUTE_KIND = { group: GATEWAY_GROUP, kind: 'HTTPRoute' };

/** The hostnames a route serves on a listener (Gateway API intersection); empty: none. */
export function effectiveHostnames(
  listener: string | undefined,
  route: readonly string[] | undefined,
): string[] {
  if (!route?.length) return [listener ?? '*'];
  if (listener === undefined) return [...new Set(route)];
  const out = new Set<string>();
  for (const h of route) {
    if (hostnameCovers(listener, h)) out.add(h);
    else if (hostnameCovers(h, listener)) out.add(listener);
  }
  return [...out];
}

/** Exact hostnames before wildcards, longer before shorter, "*" last. */
export function hostOrder(a: string, b: string): number {
  const rank = (h: string) => (h === '*' ? 2 : h.startsWith('*.') ? 1 : 0);
  return rank(a) - rank(b) || b.length - a.length || cmp(a, b);
}

function matchLabels(selector: unknown, labels: Record<string, string> | undefined): boolean | undefined {
  const s = selector as { matchLabels?: Record<string, string>; matchExpressions?: unknown[] } | undefined;
  if (s?.matchExpressions?.length) return undefined;
  return Object.entries(s?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);
}

/** A PEM certificate chain and key from a kubernetes.io/tls Secret, or why it cannot be served. */
export function tlsSecretCertificate(secret: TlsSecret): ListenerCertificate | string {
  const pem = (k: string) => Buffer.from(secret.data?.[k] ?? '', 'base64').toString('utf8');
  if (secret.type !== undefined && secret.type !== 'kubernetes.io/tls')
    return `is of type ${secret.type}; a certificate is a Secret of type kubernetes.io/tls`;
  const cert = pem('tls.crt');
  const key = pem('tls.key');
  if (!cert || !key) return 'has no tls.crt or no tls.key';
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    return 'tls.crt is not a PEM certificate';
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key)))
      return 'tls.key is not the key of the tls.crt certificate';
  } catch {
    return 'tls.key is not a PEM private key';
  }
  return { cert, key };
}

interface CertificateRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
}

/** An HTTPS listener's certificate (the first of `certificateRefs`), or its ResolvedRefs problem. */
function listenerCertificate(
  gw: GatewayObj,
  l: GatewayListenerSpec,
  field: string,
  input: IngressInput,
): ListenerCertificate | { reason: string; message: string } {
  const tls = (l.tls ?? {}) as { mode?: string; certificateRefs?: CertificateRef[] };
  const refs = tls.certificateRefs ?? [];
  if (refs.length === 0)
    return {
      reason: 'InvalidCertificateRef',
      message: `${field}.tls.certificateRefs: an HTTPS listener needs a certificate; name a Secret of type kubernetes.io/tls`,
    };
  const gwNs = gw.metadata.namespace ?? '';
  let first: ListenerCertificate | undefined;
  for (const [j, ref] of refs.entries()) {
    const f = `${field}.tls.certificateRefs[${j}]`;
    const ns = ref.namespace ?? gwNs;
    if ((ref.group ?? '') !== '' || (ref.kind ?? 'Secret') !== 'Secret')
      return {
        reason: 'InvalidCertificateRef',
        message: `${f}: ${ref.group || 'core'}/${ref.kind} is not supported; a certificate is a Secret (group "", kind Secret)`,
      };
    if (
      ns !== gwNs &&
      !referenceGranted(
        input.referenceGrants ?? [],
        { kind: 'Gateway', namespace: gwNs },
        { namespace: ns, kind: 'Secret', name: ref.name },
      )
    )
      return {
        reason: 'RefNotPermitted',
        message: `${f}: Secret ${ns}/${ref.name} is in another namespace: it needs a ReferenceGrant in ${ns} from Gateways in ${gwNs} to Secrets`,
      };
    const secret = input.secrets?.(ns, ref.name);
    if (!secret)
      return {
        reason: 'InvalidCertificateRef',
        message: `${f}: Secret ${ns}/${ref.name} not found (a Secret of type kubernetes.io/tls)`,
      };
    const got = tlsSecretCertificate(secret);
    if (typeof got === 'string')
      return { reason: 'InvalidCertificateRef', message: `${f}: Secret ${ns}/${ref.name} ${got}` };
    first ??= got;
  }
  return first!;
}

function listenerVerdicts(
  gw: GatewayObj,
  input: IngressInput,
  certificates: Map<string, ListenerCertificate>,
): ListenerResult[] {
  const listeners = gw.spec.listeners ?? [];
  const results = listeners.map((l, i): ListenerResult => {
    const field = `spec.listeners[${i}]`;
    const conditions: ConditionInput[] = [];
    const wanted = l.allowedRoutes?.kinds;
    const kinds = wanted
      ? wanted
          .filter((k) => (k.group ?? GATEWAY_GROUP) === GATEWAY_GROUP && k.kind === 'HTTPRoute')
          .map(() => HTTPROUTE_KIND)
      : [HTTPROUTE_KIND];
    const invalidKinds = (wanted ?? []).filter(
      (k) => !((k.group ?? GATEWAY_GROUP) === GATEWAY_GROUP && k.kind === 'HTTPRoute'),
    );
    const supportedKinds = l.protocol === 'HTTP' || l.protocol === 'HTTPS' ? kinds : [];
    let ok = true;
    const tlsMode = (l.tls as { mode?: string } | undefined)?.mode ?? 'Terminate';
    if (l.protocol !== 'HTTP' && l.protocol !== 'HTTPS') {
      ok = false;
      conditions.push({
        type: 'Accepted',
        status: 'False',
        reason: 'UnsupportedProtocol',
        message: `${field}.protocol: ${l.protocol} is not supported by Weft's gateway yet; use HTTP or HTTPS (docs/ingress.md)`,
      });
    } else if (l.protocol === 'HTTPS' && tlsMode !== 'Terminate') {
      ok = false;
      conditions.push({
        type: 'Accepted',
        status: 'False',
        reason: 'UnsupportedValue',
        message: `${field}.tls.mode: ${tlsMode} is not supported on an HTTPS listener; use Terminate`,
      });
    } else if (
      l.allowedRoutes?.namespaces?.from === 'Selector' &&
      matchLabels(l.allowedRoutes.namespaces.selector, {}) === undefined
    ) {
      ok = false;
      conditions.push({
        type: 'Accepted',
        status: 'False',
        reason: 'UnsupportedValue',
        message: `${field}.allowedRoutes.namespaces.selector: only matchLabels is supported; remove matchExpressions`,
      });
    } else
      conditions.push({ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Listener accepted' });
    const cert = l.protocol === 'HTTPS' && ok ? listenerCertificate(gw, l, field, input) : undefined;
    if (cert && 'cert' in cert) certificates.set(l.name, cert);
    conditions.push(
      invalidKinds.length > 0
        ? {
            type: 'ResolvedRefs',
            status: 'False',
            reason: 'InvalidRouteKinds',
            message: `${field}.allowedRoutes.kinds: Weft's gateway serves only HTTPRoute (not ${invalidKinds.map((k) => k.kind).join(', ')})`,
          }
        : cert && !('cert' in cert)
          ? { type: 'ResolvedRefs', status: 'False', ...cert }
          : { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'References resolved' },
    );
    const resolved = !cert || 'cert' in cert;
    return { name: l.name, port: l.port, ok, resolved, attachedRoutes: 0, supportedKinds, conditions };
  });
  // Two listeners on one port with the same hostname, or two ports bound to one pod port, conflict.
  const key = (l: GatewayListenerSpec) => `${l.port}/${l.hostname ?? '*'}`;
  listeners.forEach((l, i) => {
    const r = results[i]!;
    const twin = listeners.find((o, j) => j !== i && key(o) === key(l));
    const clash = listeners.find(
      (o, j) => j !== i && o.port !== l.port && bindPort(o.port) === bindPort(l.port),
    );
    const otherProtocol = listeners.find((o, j) => j !== i && o.port === l.port && o.protocol !== l.protocol);
    const conflicted = otherProtocol
      ? {
          reason: 'ProtocolConflict',
          message: `spec.listeners[${i}]: listener ${otherProtocol.name} serves ${otherProtocol.protocol} on the same port ${l.port}; one port serves one protocol`,
        }
      : twin
        ? {
            reason: 'HostnameConflict',
            message: `spec.listeners[${i}]: listener ${twin.name} has the same port ${l.port} and hostname ${l.hostname ?? '(any)'}; give one a different hostname or port`,
          }
        : clash
          ? {
              reason: 'PortUnavailable',
              message: `spec.listeners[${i}]: port ${l.port} is bound at ${bindPort(l.port)} in the gateway pod, as is listener ${clash.name}'s port ${clash.port}; change one of the ports`,
            }
          : undefined;
    if (conflicted) r.ok = false;
    r.conditions.push(
      conflicted
        ? { type: 'Conflicted', status: 'True', ...conflicted }
        : { type: 'Conflicted', status: 'False', reason: 'NoConflicts', message: 'No conflicts' },
    );
  });
  return results;
}

/**
 * One virtual host per hostname, each holding its own entries and those of every less specific
 * hostname that covers it (a request for a.example.com may match a route for *.example.com):
 * the Gateway API ranks the matching hostname first, then the usual route precedence.
 */
function virtualHosts(gwId: string, byHost: Map<string, Entry[]>): { hostname: string; routes: Route[] }[] {
  const names = [...byHost.keys()].sort(hostOrder);
  return names.map((hostname) => {
    const seen = new Set<Entry>();
    const entries: Entry[] = [];
    names.forEach((g, tier) => {
      if (!hostnameCovers(g, hostname)) return;
      for (const e of byHost.get(g) ?? [])
        if (!seen.has(e)) {
          seen.add(e);
          entries.push({ route: e.route, rank: [tier, ...e.rank] });
        }
    });
    return { hostname, routes: ordered(gwId, entries) };
  });
}

const namesGateway = (ref: ParentRef, routeNs: string, gw: GatewayObj) =>
  (ref.group ?? GATEWAY_GROUP) === GATEWAY_GROUP &&
  (ref.kind ?? 'Gateway') === 'Gateway' &&
  ref.name === gw.metadata.name &&
  (ref.namespace ?? routeNs) === gw.metadata.namespace;

/** The keys (`ns/name`) of the Gateways a route's parentRefs name: the only ones it can attach to. */
export function gatewayKeysOf(route: {
  metadata: { namespace?: string };
  spec?: { parentRefs?: ParentRef[] };
}) {
  const ns = route.metadata.namespace ?? '';
  return (route.spec?.parentRefs ?? [])
    .filter((r) => (r.group ?? GATEWAY_GROUP) === GATEWAY_GROUP && (r.kind ?? 'Gateway') === 'Gateway')
    .map((r) => `${r.namespace ?? ns}/${r.name}`);
}

export function compileIngress(input: IngressInput): IngressCompiled {
  const gw = input.gateway;
  const gwNs = gw.metadata.namespace ?? '';
  const gwId = `Gateway/${gwNs}/${gw.metadata.name}`;
  const certs = new Map<string, ListenerCertificate>();
  const listeners = listenerVerdicts(gw, input, certs);
  const served = (i: number) => listeners[i]!.ok && listeners[i]!.resolved;
  const specs = gw.spec.listeners ?? [];
  const hosts = new Map<number, Map<string, Entry[]>>();
  const routeParents = new Map<string, ParentResult[]>();

  for (const route of [...(input.httpRoutes ?? [])].sort((a, b) =>
    cmp(`${a.metadata.namespace}/${a.metadata.name}`, `${b.metadata.namespace}/${b.metadata.name}`),
  )) {
    const ns = route.metadata.namespace ?? '';
    const parents: ParentResult[] = [];
    for (const ref of route.spec.parentRefs ?? []) {
      if (!namesGateway(ref, ns, gw)) continue;
      const why: { reason: string; message: string }[] = [];
      const attached: number[] = [];
      for (const [i, l] of specs.entries()) {
        if (ref.sectionName !== undefined && ref.sectionName !== l.name) continue;
        if (ref.port !== undefined && ref.port !== l.port) continue;
        const r = listeners[i]!;
        if (!r.ok) {
          why.push({ reason: 'NoMatchingParent', message: `listener ${l.name} is not accepted` });
          continue;
        }
        if (r.supportedKinds.length === 0) {
          why.push({
            reason: 'NotAllowedByListeners',
            message: `listener ${l.name} does not allow HTTPRoutes`,
          });
          continue;
        }
        const from = l.allowedRoutes?.namespaces?.from ?? 'Same';
        const allowed =
          from === 'All' ||
          (from === 'Same' && ns === gwNs) ||
          (from === 'Selector' &&
            matchLabels(l.allowedRoutes?.namespaces?.selector, input.namespaceLabels?.(ns)) === true);
        if (!allowed) {
          why.push({
            reason: 'NotAllowedByListeners',
            message: `listener ${l.name} does not allow routes from namespace ${ns} (allowedRoutes.namespaces.from: ${from})`,
          });
          continue;
        }
        if (effectiveHostnames(l.hostname, route.spec.hostnames).length === 0) {
          why.push({
            reason: 'NoMatchingListenerHostname',
            message: `spec.hostnames: none matches listener ${l.name}'s hostname ${l.hostname}`,
          });
          continue;
        }
        attached.push(i);
      }
      if (attached.length === 0) {
        const first = why[0] ?? {
          reason: 'NoMatchingParent',
          message:
            ref.sectionName !== undefined
              ? `Gateway ${gwNs}/${gw.metadata.name} has no listener named "${ref.sectionName}"${ref.port !== undefined ? ` on port ${ref.port}` : ''}`
              : `Gateway ${gwNs}/${gw.metadata.name} has no listener on port ${ref.port}`,
        };
        parents.push({
          parentRef: ref,
          accepted: {
            ok: false,
            reason: first.reason,
            message: why.map((w) => w.message).join('; ') || first.message,
          },
          resolvedRefs: { ok: true, message: 'All references resolved' },
        });
        continue;
      }
      const c: RefContext = {
        services: input.services,
        referenceGrants: input.referenceGrants ?? [],
        kind: 'HTTPRoute',
        namespace: ns,
        consumer: false,
      };
      const { entries, problems } = bindRoute(route, 'HTTPRoute', gwId, undefined, c);
      const unsupported: Problem[] = problems.filter((x) => x.reason === ROUTE_REASON.UnsupportedValue);
      const refs = problems.filter((x) => x.reason !== ROUTE_REASON.UnsupportedValue);
      const names = attached.map((i) => specs[i]!.name).join(', ');
      const accepted = summarize(
        unsupported,
        `Attached to Gateway ${gwNs}/${gw.metadata.name} listener(s) ${names}`,
      );
      parents.push({ parentRef: ref, accepted, resolvedRefs: summarize(refs, 'All references resolved') });
      if (!accepted.ok) continue;
      for (const i of attached) {
        const l = specs[i]!;
        listeners[i]!.attachedRoutes++;
        // Attached (counted) but not served while its certificate does not resolve.
        if (!listeners[i]!.resolved) continue;
        if (!hosts.has(l.port)) hosts.set(l.port, new Map());
        const byHost = hosts.get(l.port)!;
        for (const h of effectiveHostnames(l.hostname, route.spec.hostnames)) {
          const list = byHost.get(h) ?? [];
          // A route attached to two listeners of one port with the same hostname counts once.
          for (const e of entries) if (!list.includes(e)) list.push(e);
          byHost.set(h, list);
        }
      }
    }
    if (parents.length > 0) routeParents.set(`HTTPRoute/${ns}/${route.metadata.name}`, parents);
  }

  const config: GatewayProxyConfig = {
    gateway: `${gwNs}/${gw.metadata.name}`,
    ports: [...new Set(specs.filter((_, i) => served(i)).map((l) => l.port))]
      .sort((a, b) => a - b)
      .map((port) => {
        const tls = specs
          .filter((l, i) => l.port === port && served(i) && certs.has(l.name))
          .map((l) => ({ hostname: l.hostname ?? '*', cert: `${l.name}.crt`, key: `${l.name}.key` }))
          .sort((a, b) => hostOrder(a.hostname, b.hostname));
        return {
          port,
          bind: bindPort(port),
          hosts: virtualHosts(gwId, hosts.get(port) ?? new Map()),
          ...(tls.length > 0 ? { tls } : {}),
        };
      }),
  };
  const certificates = new Map<string, string>();
  for (const p of config.ports)
    for (const t of p.tls ?? []) {
      const name = t.cert.slice(0, -'.crt'.length);
      certificates.set(t.cert, certs.get(name)!.cert);
      certificates.set(t.key, certs.get(name)!.key);
    }
  for (const r of listeners)
    r.conditions.push(
      r.ok && r.resolved
        ? { type: 'Programmed', status: 'True', reason: 'Programmed', message: `Served on port ${r.port}` }
        : {
            type: 'Programmed',
            status: 'False',
            reason: 'Invalid',
            message: r.ok
              ? 'The listener’s certificate does not resolve: see ResolvedRefs'
              : 'The listener is not accepted or conflicts',
          },
    );
  const valid = listeners.filter((l) => l.ok).length;
  const accepted: IngressCompiled['accepted'] = gw.spec.addresses?.length
    ? {
        ok: false,
        reason: 'UnsupportedAddress',
        message: `spec.addresses: Weft's gateway takes its address from its Service; remove spec.addresses`,
      }
    : valid === 0
      ? { ok: false, reason: 'ListenersNotValid', message: 'No listener is valid: see status.listeners' }
      : {
          ok: true,
          partly: valid < listeners.length,
          message:
            valid < listeners.length
              ? `Accepted; ${listeners.length - valid} listener(s) invalid: see status.listeners`
              : 'Accepted',
        };
  return { accepted, listeners, config, certificates, routeParents };
}
