// Route matching as the Gateway API defines it (HTTPRouteMatch; TrafficSplit matches are the
// same shape): path (Exact, PathPrefix by whole path elements, RegularExpression), headers,
// query parameters and method, all ANDed. A route matches when any of its matches does; the
// routing table tries routes in the order the compiler wrote them and takes the first.
import type { Matcher } from '../../api/regex.ts';

export interface RequestFacts {
  method: string;
  /** The request target as forwarded (normalized path, with its query string). */
  path: string;
  header(name: string): string | undefined;
}

export interface RouteMatch {
  path?: { type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
  headers?: ReadonlyArray<{ name: string; type?: 'Exact' | 'RegularExpression' | 'Present'; value?: string }>;
  queryParams?: ReadonlyArray<{ name: string; type?: 'Exact' | 'RegularExpression'; value: string }>;
  method?: string;
}

/** The path of a request target, without its query string. */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/** The query string of a request target, with its `?` ("" when none). */
export function queryOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? '' : target.slice(q);
}

/**
 * Whether `path` is under `prefix` by whole path elements; a trailing `/` of the prefix is
 * ignored: `/abc` matches `/abc`, `/abc/` and `/abc/def`, not `/abcd`.
 */
export function underPrefix(path: string, prefix: string): boolean {
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (p === '') return path.startsWith('/');
  return path.startsWith(p) && (path.length === p.length || path[p.length] === '/');
}

/** The first value of query parameter `name` (case-sensitive), percent-decoded (`+` stays `+`). */
export function queryParam(target: string, name: string): string | undefined {
  const query = queryOf(target);
  if (query === '') return undefined;
  for (const pair of query.slice(1).split('&')) {
    const eq = pair.indexOf('=');
    const key = decode(eq < 0 ? pair : pair.slice(0, eq));
    if (key === name) return eq < 0 ? '' : decode(pair.slice(eq + 1));
  }
  return undefined;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // a malformed escape is compared as it was sent
  }
}

/** Whether `req` satisfies every condition of `m`; `regex` compiles (and caches) a pattern. */
export function matches(m: RouteMatch, req: RequestFacts, regex: (src: string) => Matcher): boolean {
  if (m.method && m.method !== req.method) return false;
  if (m.path) {
    const path = pathOf(req.path);
    const v = m.path.value;
    switch (m.path.type ?? 'PathPrefix') {
      case 'Exact':
        if (path !== v) return false;
        break;
      case 'PathPrefix':
        if (!underPrefix(path, v)) return false;
        break;
      case 'RegularExpression':
        if (!regex(v).test(path)) return false;
        break;
    }
  }
  // Of entries naming the same header or parameter, only the first counts (Gateway API).
  if (m.headers) {
    const seen = new Set<string>();
    for (const h of m.headers) {
      const name = h.name.toLowerCase();
      if (seen.has(name)) continue;
      seen.add(name);
      const got = req.header(name);
      if (got === undefined) return false;
      const type = h.type ?? 'Exact';
      if (type === 'Exact' && got !== h.value) return false;
      if (type === 'RegularExpression' && !regex(h.value ?? '').test(got)) return false;
    }
  }
  if (m.queryParams) {
    const seen = new Set<string>();
    for (const q of m.queryParams) {
      if (seen.has(q.name)) continue;
      seen.add(q.name);
      const got = queryParam(req.path, q.name);
      if (got === undefined) return false;
      if ((q.type ?? 'Exact') === 'Exact' ? got !== q.value : !regex(q.value).test(got)) return false;
    }
  }
  return true;
}
