// Carrying out the route filters of an outbound plan: the one place each transport goes through
// to rewrite the request head, answer a redirect and edit the response head (issue 12: no
// per-transport copies). Header maps are node:http's (lower-case names); the raw HTTP/1.1 fast
// path hands routes with filters to node:http rather than keep a second copy.
import { http } from '../builtins.ts';
import { editHeaders, type HeaderMap } from './filters.ts';
import type { OutboundPlan } from './plan.ts';

type Forward = Extract<OutboundPlan, { kind: 'forward' }>;
type Redirect = Extract<OutboundPlan, { kind: 'redirect' }>;

/**
 * The request head to forward: `headers` edited in place (the rule's header modifier, then the
 * backend's), and the target and Host / :authority to send (after a URLRewrite).
 */
export function forwardHead(
  plan: Forward,
  headers: HeaderMap,
): { path: string; authority: string | undefined } {
  if (plan.requestHeaders.length > 0) editHeaders(headers, plan.requestHeaders);
  return { path: plan.path, authority: plan.authority };
}

/** The response head after the route's ResponseHeaderModifier (edited in place). */
export function responseHead(plan: Forward, headers: HeaderMap): void {
  if (plan.responseHeaders.length > 0) editHeaders(headers, plan.responseHeaders);
}

/** A redirect answer: status line, headers (no body). */
export function redirectAnswer(plan: Redirect): { status: number; headers: Record<string, string> } {
  return { status: plan.status, headers: { location: plan.location, 'content-length': '0' } };
}

/** The same redirect as a raw HTTP/1.1 response that closes the connection (upgrades). */
export function redirectRaw(plan: Redirect): string {
  const a = redirectAnswer(plan);
  const lines = Object.entries(a.headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return `HTTP/1.1 ${a.status} ${http.STATUS_CODES[a.status]}\r\n${lines.join('')}connection: close\r\n\r\n`;
}

/**
 * Header lines ("name: value") for a head forwarded from raw headers (an upgrade, the raw
 * HTTP/1.1 paths): as received without filters, else through `forwardHead` with Host set to the
 * plan's authority. Repeated headers stay separate lines.
 */
export function rawHeaderLines(raw: readonly string[], plan: Forward | undefined): string[] {
  const lines: string[] = [];
  if (!plan || (plan.requestHeaders.length === 0 && !plan.rewritten)) {
    for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`);
    return lines;
  }
  const map: HeaderMap = {};
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!.toLowerCase();
    const had = map[n];
    map[n] = had === undefined ? raw[i + 1] : [...(Array.isArray(had) ? had : [String(had)]), raw[i + 1]!];
  }
  const { authority } = forwardHead(plan, map);
  if (authority !== undefined) map.host = authority;
  for (const [n, v] of Object.entries(map)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) lines.push(`${n}: ${one}`);
  }
  return lines;
}
