// One Gateway API rule's parts → ProxyConfig: matches (GRPCRoute methods become path matches),
// filters, backends, and the precedence rank of each match (docs/gateway-api.md). Pure; every
// problem is returned with the field it is about, never thrown.
import type { RouteBackend, RouteFilter, RouteMatch } from '../../api/proxyconfig.ts';
import { regexError } from '../../api/regex.ts';
import type { ServiceObj } from '../objects.ts';
import {
  type BackendRef,
  GATEWAY_GROUP,
  type GatewayFilter,
  type GRPCRouteMatchSpec,
  type HeaderMatchSpec,
  type HTTPRouteMatchSpec,
  type PathModifierSpec,
  type ReferenceGrantObj,
  type RouteKind,
} from './gatewaytypes.ts';
import { sortKeys } from './util.ts';

/** Reasons of the Gateway API route conditions Weft writes (status.parents[].conditions). */
export const ROUTE_REASON = {
  Accepted: 'Accepted',
  NoMatchingParent: 'NoMatchingParent',
  NotAllowedByListeners: 'NotAllowedByListeners',
  UnsupportedValue: 'UnsupportedValue',
  ResolvedRefs: 'ResolvedRefs',
  BackendNotFound: 'BackendNotFound',
  InvalidKind: 'InvalidKind',
  RefNotPermitted: 'RefNotPermitted',
} as const;

export interface Problem {
  field: string;
  reason: string;
  message: string;
}

/** Sort key of one match: compared element by element, smaller first. */
export type Rank = (number | string)[];

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The first entry of each name (case-insensitive for headers), as the Gateway API says. */
function firstOfEach(list: HeaderMatchSpec[] | undefined, fold: boolean) {
  const seen = new Set<string>();
  const out: { name: string; type: 'Exact' | 'RegularExpression'; value: string }[] = [];
  for (const h of list ?? []) {
    const k = fold ? h.name.toLowerCase() : h.name;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({ name: h.name, type: h.type ?? 'Exact', value: h.value });
  }
  return out;
}

function regexProblems(m: RouteMatch, field: string): Problem[] {
  const out: Problem[] = [];
  const test = (v: string | undefined, f: string) => {
    const e = v === undefined ? undefined : regexError(v);
    if (e) out.push({ field: f, reason: ROUTE_REASON.UnsupportedValue, message: `${f}: ${e}` });
  };
  if (m.path?.type === 'RegularExpression') test(m.path.value, `${field}.path.value`);
  for (const [key, list] of [
    ['headers', m.headers],
    ['queryParams', m.queryParams],
  ] as const)
    for (const [i, h] of (list ?? []).entries())
      if (h.type === 'RegularExpression') test(h.value, `${field}.${key}[${i}].value`);
  return out;
}

/** An HTTPRoute match and its rank: Exact path, RegularExpression, longer PathPrefix; method; headers; query. */
export function httpMatch(
  m: HTTPRouteMatchSpec,
  field: string,
): { match: RouteMatch; rank: Rank; problems: Problem[] } {
  const type = m.path?.type ?? 'PathPrefix';
  const value = m.path?.value ?? '/';
  const match: RouteMatch = { path: { type, value } };
  const headers = firstOfEach(m.headers, true);
  const query = firstOfEach(m.queryParams, false);
  if (headers.length) match.headers = headers;
  if (query.length) match.queryParams = query;
  const problems: Problem[] = [];
  if (m.method) {
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
    if (methods.includes(m.method)) match.method = m.method as RouteMatch['method'];
    else
      problems.push({
        field: `${field}.method`,
        reason: ROUTE_REASON.UnsupportedValue,
        message: `"${m.method}" is not one of ${methods.join(', ')}`,
      });
  }
  problems.push(...regexProblems(match, field));
  const pathClass = type === 'Exact' ? 0 : type === 'RegularExpression' ? 1 : 2;
  const rank: Rank = [pathClass, -value.length, m.method ? 0 : 1, -headers.length, -query.length];
  return { match: sortKeys(match), rank, problems };
}

/**
 * A GRPCRoute match as a path match (gRPC calls POST /<service>/<method>) and its rank: Exact
 * service and method first, then longer service, longer method, more headers.
 */
export function grpcMatch(
  m: GRPCRouteMatchSpec,
  field: string,
): { match: RouteMatch; rank: Rank; problems: Problem[] } {
  const svc = m.method?.service;
  const meth = m.method?.method;
  const exact = (m.method?.type ?? 'Exact') === 'Exact';
  let path: RouteMatch['path'];
  if (!svc && !meth) path = { type: 'PathPrefix', value: '/' };
  else if (exact && svc && meth) path = { type: 'Exact', value: `/${svc}/${meth}` };
  else if (exact && svc) path = { type: 'PathPrefix', value: `/${svc}` };
  else if (exact) path = { type: 'RegularExpression', value: `/[^/]+/${escapeRe(meth!)}` };
  else path = { type: 'RegularExpression', value: `/${svc ?? '[^/]+'}/${meth ?? '[^/]+'}` };
  const match: RouteMatch = { path };
  const headers = firstOfEach(m.headers, true);
  if (headers.length) match.headers = headers;
  // A path regex is the method's: name the field the user wrote.
  const problems = regexProblems(match, field).map((p) =>
    p.field.endsWith('.path.value')
      ? {
          ...p,
          field: `${field}.method`,
          message: p.message.replace(`${field}.path.value`, `${field}.method`),
        }
      : p,
  );
  const rank: Rank = [
    exact && svc && meth ? 0 : 1,
    -(svc?.length ?? 0),
    -(meth?.length ?? 0),
    -headers.length,
  ];
  return { match: sortKeys(match), rank, problems };
}

/** What resolving a reference needs: the Services, the grants, who refers and on whose behalf. */
export interface RefContext {
  services: Map<string, ServiceObj>;
  referenceGrants: readonly ReferenceGrantObj[];
  kind: RouteKind;
  /** The route's namespace. */
  namespace: string;
  /**
   * A consumer route (its parent Service is in another namespace) changes only its own
   * namespace's requests: it may send them anywhere without a ReferenceGrant. A producer route
   * changes every client's requests, so a backend in another namespace needs a ReferenceGrant
   * there (GEP-1294: required when routes reach further than clients could themselves).
   */
  consumer: boolean;
}

/** Whether a ReferenceGrant in `to.namespace` lets a `from.kind` (Gateway API group) of `from.namespace` refer to the core object. */
export function referenceGranted(
  grants: readonly ReferenceGrantObj[],
  from: { kind: string; namespace: string },
  to: { namespace: string; kind: string; name: string },
): boolean {
  return grants.some(
    (g) =>
      g.metadata.namespace === to.namespace &&
      g.spec.from.some(
        (f) => f.group === GATEWAY_GROUP && f.kind === from.kind && f.namespace === from.namespace,
      ) &&
      g.spec.to.some((t) => (t.group ?? '') === '' && t.kind === to.kind && (!t.name || t.name === to.name)),
  );
}

const granted = (c: RefContext, toNs: string, toName: string) =>
  referenceGranted(
    c.referenceGrants,
    { kind: c.kind, namespace: c.namespace },
    { namespace: toNs, kind: 'Service', name: toName },
  );

/** A backendRef (or a mirror's) → the Service id and port, or why not. */
export function resolveRef(ref: BackendRef, c: RefContext, field: string): { id: string; problem?: Problem } {
  const ns = ref.namespace ?? c.namespace;
  const id = `${ns}/${ref.name}`;
  const group = ref.group ?? '';
  const kind = ref.kind ?? 'Service';
  if ((group !== '' && group !== 'core') || kind !== 'Service')
    return {
      id,
      problem: {
        field,
        reason: ROUTE_REASON.InvalidKind,
        message: `${field}: ${group || 'core'}/${kind} is not supported; a backend is a Service (group "", kind Service)`,
      },
    };
  if (ns !== c.namespace && !c.consumer && !granted(c, ns, ref.name))
    return {
      id,
      problem: {
        field,
        reason: ROUTE_REASON.RefNotPermitted,
        message: `${field}: Service ${id} is in another namespace: a producer route needs a ReferenceGrant in ${ns} from ${c.kind} in ${c.namespace} to Services`,
      },
    };
  const svc = c.services.get(id);
  const notFound = (why: string) => ({
    id,
    problem: { field, reason: ROUTE_REASON.BackendNotFound, message: `${field}: ${why}` },
  });
  if (!svc) return notFound(`Service ${id} not found`);
  if (svc.spec?.type === 'ExternalName')
    return notFound(`Service ${id} is an ExternalName Service (not supported)`);
  if (ref.port !== undefined && !(svc.spec?.ports ?? []).some((p) => p.port === ref.port))
    return notFound(`Service ${id} has no port ${ref.port}`);
  return { id };
}

const HEADER_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier']);
const SUPPORTED: Record<RouteKind, Set<string>> = {
  HTTPRoute: new Set([...HEADER_FILTERS, 'RequestRedirect', 'URLRewrite', 'RequestMirror']),
  GRPCRoute: new Set([...HEADER_FILTERS, 'RequestMirror']),
};

function pathModifier(p: PathModifierSpec, match: RouteMatch, field: string) {
  if (p.type === 'ReplaceFullPath')
    return { mod: { type: p.type, value: p.replaceFullPath ?? '/' } as const };
  if (match.path?.type !== 'PathPrefix')
    return {
      problem: {
        field,
        reason: ROUTE_REASON.UnsupportedValue,
        message: `${field}: ReplacePrefixMatch needs a PathPrefix match (this one is ${match.path?.type})`,
      },
    };
  return { mod: { type: p.type, value: p.replacePrefixMatch ?? '/', prefix: match.path.value } as const };
}

/**
 * Filters → ProxyConfig filters, in order. `backend`: a backendRef's own (header modifiers
 * only). A mirror whose backend does not resolve is left out and reported.
 */
export function compileFilters(
  filters: GatewayFilter[] | undefined,
  match: RouteMatch,
  c: RefContext,
  field: string,
  backend = false,
): { filters: RouteFilter[]; problems: Problem[] } {
  const out: RouteFilter[] = [];
  const problems: Problem[] = [];
  for (const [i, f] of (filters ?? []).entries()) {
    const at = `${field}[${i}]`;
    const allowed = backend ? HEADER_FILTERS : SUPPORTED[c.kind];
    if (!allowed.has(f.type)) {
      problems.push({
        field: `${at}.type`,
        reason: ROUTE_REASON.UnsupportedValue,
        message: `${at}.type: ${f.type} is not supported by Weft ${backend ? 'on a backendRef' : `in ${c.kind}s`} (supported: ${[...allowed].join(', ')})`,
      });
      continue;
    }
    if (f.type === 'RequestHeaderModifier' || f.type === 'ResponseHeaderModifier') {
      const m =
        (f.type === 'RequestHeaderModifier' ? f.requestHeaderModifier : f.responseHeaderModifier) ?? {};
      out.push(sortKeys({ type: f.type, set: m.set, add: m.add, remove: m.remove }) as RouteFilter);
    } else if (f.type === 'RequestRedirect') {
      const r = f.requestRedirect ?? {};
      const path = r.path && pathModifier(r.path, match, `${at}.requestRedirect.path`);
      if (path?.problem) {
        problems.push(path.problem);
        continue;
      }
      const scheme = r.scheme === undefined ? undefined : r.scheme.toLowerCase();
      if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
        problems.push({
          field: `${at}.requestRedirect.scheme`,
          reason: ROUTE_REASON.UnsupportedValue,
          message: `${at}.requestRedirect.scheme: "${r.scheme}" is not http or https`,
        });
        continue;
      }
      const statusCode = (r.statusCode ?? 302) as 301 | 302 | 303 | 307 | 308;
      out.push(
        sortKeys({
          type: 'RequestRedirect',
          scheme: scheme as 'http' | 'https' | undefined,
          hostname: r.hostname,
          path: path?.mod,
          port: r.port,
          statusCode,
        }),
      );
    } else if (f.type === 'URLRewrite') {
      const r = f.urlRewrite ?? {};
      const path = r.path && pathModifier(r.path, match, `${at}.urlRewrite.path`);
      if (path?.problem) {
        problems.push(path.problem);
        continue;
      }
      out.push(sortKeys({ type: 'URLRewrite', hostname: r.hostname, path: path?.mod }));
    } else {
      const m = f.requestMirror;
      if (!m?.backendRef) continue;
      const ref = resolveRef(m.backendRef, c, `${at}.requestMirror.backendRef`);
      if (ref.problem) {
        problems.push(ref.problem);
        continue;
      }
      const fr = m.fraction;
      const percentage =
        m.percent ?? (fr ? Math.min(100, (fr.numerator / (fr.denominator ?? 100)) * 100) : 100);
      out.push(sortKeys({ type: 'RequestMirror', service: ref.id, port: m.backendRef.port, percentage }));
    }
  }
  return { filters: out, problems };
}

/** backendRefs → weighted backends; an unresolved one stays, marked, so its share gets 500. */
export function compileBackends(
  refs: BackendRef[] | undefined,
  match: RouteMatch,
  c: RefContext,
  field: string,
): { backends: RouteBackend[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const backends = (refs ?? []).map((ref, i) => {
    const at = `${field}[${i}]`;
    const r = resolveRef(ref, c, at);
    const b: RouteBackend = { service: r.id, weight: ref.weight ?? 1 };
    if (ref.port !== undefined) b.port = ref.port;
    if (r.problem) {
      problems.push(r.problem);
      b.unresolved = r.problem.message;
    }
    if (ref.filters?.length) {
      const f = compileFilters(ref.filters, match, c, `${at}.filters`, true);
      problems.push(...f.problems);
      if (f.filters.length) b.filters = f.filters;
    }
    return sortKeys(b);
  });
  return { backends, problems };
}
