// Gateway API route filters as pure functions over a request head: RequestHeaderModifier and
// ResponseHeaderModifier (header edits), URLRewrite (Host and path), RequestRedirect (the
// Location and status of the answer). Compiled once per route (names lower-cased, duplicates
// dropped), applied per request by the plan; the transports only carry out the result, each
// through `editHeaders` on its own header map.
import type { PathModifier, RouteFilter } from '../../api/index.ts';
import { HOP_BY_HOP } from '../http1/codec.ts';
import { pathOf, queryOf, underPrefix } from './match.ts';

type Filter<T extends RouteFilter['type']> = Extract<RouteFilter, { type: T }>;
export type RedirectFilter = Filter<'RequestRedirect'>;
export type RewriteFilter = Filter<'URLRewrite'>;
type HeaderModifier = Pick<Filter<'RequestHeaderModifier'>, 'set' | 'add' | 'remove'>;

/** Header edits with lower-cased names; of entries naming one header, the first counts; none of a protected header. */
export interface HeaderEdits {
  set: ReadonlyArray<readonly [string, string]>;
  add: ReadonlyArray<readonly [string, string]>;
  remove: readonly string[];
}

/**
 * Headers a route may not edit: the framing (a `content-length: 0` on a POST would leave its
 * body on the pooled connection, read as the next request: smuggling), hop-by-hop headers, and
 * the sidecar's own (`weft-*`: caller and callee names, error codes). Host is changed by
 * URLRewrite, not here.
 */
export function protectedHeader(name: string): boolean {
  return (
    name === 'content-length' ||
    name === 'host' ||
    HOP_BY_HOP.has(name) ||
    name.startsWith('weft-') ||
    name.startsWith(':')
  );
}

export function compileHeaderModifier(m: HeaderModifier | undefined): HeaderEdits | undefined {
  if (!m) return undefined;
  const seen = new Set<string>();
  const first = (list: HeaderModifier['set']) => {
    const out: Array<readonly [string, string]> = [];
    for (const h of list ?? []) {
      const name = h.name.toLowerCase();
      if (seen.has(name) || protectedHeader(name)) continue;
      seen.add(name);
      out.push([name, h.value]);
    }
    return out;
  };
  const set = first(m.set);
  const add = first(m.add);
  const remove = (m.remove ?? [])
    .map((n) => n.toLowerCase())
    .filter((n) => !seen.has(n) && !protectedHeader(n));
  if (set.length + add.length + remove.length === 0) return undefined;
  return { set, add, remove };
}

/** A header map as node:http gives it (lower-case names). */
export type HeaderMap = Record<string, string | string[] | number | undefined>;

/**
 * Applies edits to `headers` in place: `set` replaces, `add` appends to an existing value
 * (`a,b`, as the Gateway API shows it; a separate line for set-cookie), `remove` deletes.
 */
export function editHeaders(headers: HeaderMap, edits: readonly HeaderEdits[]): void {
  for (const e of edits) {
    for (const [n, v] of e.set) headers[n] = v;
    for (const [n, v] of e.add) {
      const had = headers[n];
      if (had === undefined) headers[n] = v;
      else if (n === 'set-cookie') headers[n] = [...(Array.isArray(had) ? had : [String(had)]), v];
      else headers[n] = `${Array.isArray(had) ? had.join(',') : String(had)},${v}`;
    }
    for (const n of e.remove) delete headers[n];
  }
}

/**
 * The path after a path modifier. ReplacePrefixMatch replaces `prefix` (the PathPrefix that
 * matched; whole elements, trailing `/` of prefix and replacement ignored): `/foo/bar` with
 * prefix `/foo` and `/xyz` gives `/xyz/bar`, with `""` or `/` gives `/bar`; `/foo` gives `/xyz`
 * (or `/`). The query string is kept.
 */
export function modifyPath(target: string, m: PathModifier): string {
  const path = pathOf(target);
  const query = queryOf(target);
  if (m.type === 'ReplaceFullPath') return `${m.value}${query}`;
  // A path not under the prefix (the compiler pairs the two, so only a bad config) is kept.
  if (!underPrefix(path, m.prefix)) return target;
  const strip = (s: string) => (s.endsWith('/') ? s.slice(0, -1) : s);
  const out = `${strip(m.value)}${path.slice(strip(m.prefix).length)}`;
  return `${out === '' ? '/' : out}${query}`;
}

/** Host and port of an authority (`[v6]:port` aware); port undefined when absent. */
export function splitAuthority(authority: string): { host: string; port: number | undefined } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
  if (!m) return { host: authority, port: undefined };
  return { host: m[1]!, port: m[2] ? Number(m[2]) : undefined };
}

const WELL_KNOWN: Record<string, number> = { http: 80, https: 443 };

/** The request as the client sent it, and the port it called (the Service port). */
export interface RequestHead {
  scheme: 'http' | 'https';
  authority: string | undefined;
  /** Request target: path and query. */
  path: string;
  port: number;
}

/**
 * The Location of a RequestRedirect: each part from the filter, else from the request. The port:
 * the filter's, else the well-known port of the filter's scheme, else the port called; left out
 * when it is the scheme's default (http 80, https 443).
 */
export function redirectLocation(r: RedirectFilter, head: RequestHead): string {
  const scheme = r.scheme ?? head.scheme;
  const host = r.hostname ?? splitAuthority(head.authority ?? '').host;
  const port = r.port ?? (r.scheme ? WELL_KNOWN[r.scheme]! : head.port);
  const target = r.path ? modifyPath(head.path, r.path) : head.path;
  const showPort = port !== WELL_KNOWN[scheme];
  return `${scheme}://${host}${showPort ? `:${port}` : ''}${target}`;
}

/** What a route's URL filters make of one request. */
export type UrlOutcome =
  | { kind: 'redirect'; status: number; location: string }
  | {
      kind: 'forward';
      /** The Host / :authority to send (rewritten, or as received). */
      authority: string | undefined;
      /** The request target to send (rewritten, or as received). */
      path: string;
      /** Whether authority or path changed. */
      rewritten: boolean;
    };

/**
 * RequestRedirect or URLRewrite for `head` (a rule holds one or the other, never both: the
 * compiler refuses it). A redirect ends the request.
 */
export function applyUrlFilters(
  head: RequestHead,
  redirect: RedirectFilter | undefined,
  rewrite: RewriteFilter | undefined,
): UrlOutcome {
  if (redirect)
    return { kind: 'redirect', status: redirect.statusCode, location: redirectLocation(redirect, head) };
  if (!rewrite) return { kind: 'forward', authority: head.authority, path: head.path, rewritten: false };
  return {
    kind: 'forward',
    authority: rewrite.hostname ?? head.authority,
    path: rewrite.path ? modifyPath(head.path, rewrite.path) : head.path,
    rewritten: rewrite.hostname !== undefined || rewrite.path !== undefined,
  };
}

/** A rule's or backend's filters, compiled once: what the plan applies per request. */
export interface CompiledFilters {
  request: HeaderEdits[];
  response: HeaderEdits[];
  redirect: RedirectFilter | undefined;
  rewrite: RewriteFilter | undefined;
  mirrors: Array<Filter<'RequestMirror'>>;
}

export function compileFilters(list: readonly RouteFilter[] | undefined): CompiledFilters | undefined {
  if (!list || list.length === 0) return undefined;
  const c: CompiledFilters = {
    request: [],
    response: [],
    redirect: undefined,
    rewrite: undefined,
    mirrors: [],
  };
  for (const f of list) {
    switch (f.type) {
      case 'RequestHeaderModifier':
      case 'ResponseHeaderModifier': {
        const e = compileHeaderModifier(f);
        if (e) (f.type === 'RequestHeaderModifier' ? c.request : c.response).push(e);
        break;
      }
      case 'RequestRedirect':
        c.redirect ??= f;
        break;
      case 'URLRewrite':
        c.rewrite ??= f;
        break;
      case 'RequestMirror':
        c.mirrors.push(f);
        break;
    }
  }
  return c;
}
