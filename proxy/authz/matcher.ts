// The authorization matcher: a pure function from (the policies that select a workload, a
// request) to a decision that names the policy and rule that made it. The proxy calls it on
// every inbound request or connection; weftctl reuses it to explain a decision offline.
//
// Semantics are Istio's, so users can bring what they know:
//   1. any matching DENY policy denies;
//   2. AUDIT policies are recorded when they match and never change the decision;
//   3. if no ALLOW policy selects the workload, the mesh default decides (ALLOW unless the
//      Mesh is default-deny);
//   4. a matching ALLOW policy allows; otherwise the request is denied.
// Within a rule: every from[] entry is an alternative (any), every to[] too, every when[]
// must hold (all); inside a source or operation every field present must match (all), a
// field matches when any of its values matches, a not* field when none does.
// HTTP-only fields (methods, paths, hosts, request.headers) on a TCP connection, as Istio: a rule
// of an ALLOW policy that uses them never matches (fewer connections allowed); in a DENY or
// AUDIT policy they are ignored, so the rest of the rule still applies (more connections denied
// or audited).
// Strings match as Istio's: "value" exactly, "prefix*", "*suffix", and "*" any non-empty value
// (for request.headers: any present header), case-sensitive except hosts. Methods are compared
// as sent (the CRD refuses lower-case ones). Paths are matched on the path the proxy normalized
// (proxy/pathnorm.ts), without the query. Hosts match the Host or :authority lower-cased and
// without a trailing dot; a pattern without a port matches the authority with or without its
// port ("web.shop" matches "web.shop:8080": restrict ports with `ports`), a pattern with a port
// only that port.
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { AuthzPolicy, ProxyConfig, Rule } from '../../api/index.ts';

export interface AuthzRequest {
  /** Caller's SPIFFE identity without "spiffe://" (e.g. cluster.local/ns/shop/sa/web); absent for plaintext. */
  principal?: string;
  /** Caller's IP address. */
  sourceIp: string;
  /** Destination (workload) port. */
  port: number;
  /** Present for HTTP requests, absent for opaque TCP connections. */
  http?: {
    method: string;
    path: string;
    host: string;
    /** Header names in lower case. */
    headers: Record<string, string | string[] | undefined>;
  };
}

export interface RuleRef {
  /** "<namespace>/<name>" of the policy. */
  policy: string;
  /** Index of the rule inside the policy's rules. */
  rule: number;
}

export interface AuthzDecision {
  allowed: boolean;
  /** Stable reason code: denied-by-policy, allowed-by-policy, no-allow-match, default-allow, default-deny. */
  reason: 'denied-by-policy' | 'allowed-by-policy' | 'no-allow-match' | 'default-allow' | 'default-deny';
  /** The policy and rule that decided, when one did. */
  decidedBy?: RuleRef;
  /** AUDIT rules that matched. */
  audited: RuleRef[];
  /** One sentence for logs, 403 bodies and weftctl. */
  explanation: string;
}

export interface AuthzOptions {
  /** What applies when no ALLOW policy selects the workload (the Mesh's defaults.authorization). */
  defaultAction: 'ALLOW' | 'DENY';
  /** Namespace of the workload: "serviceAccounts: [name]" means this namespace. */
  namespace: string;
}

/** Whether a policy selects a workload with these labels (absent selector: every workload). */
export function selects(policy: Pick<AuthzPolicy, 'selector'>, labels: Record<string, string>): boolean {
  const want = policy.selector?.matchLabels;
  if (!want) return true;
  return Object.entries(want).every(([k, v]) => labels[k] === v);
}

/** Istio-style string match: exact, "prefix*", "*suffix", or "*" alone: any non-empty value. */
export function wildcardMatch(pattern: string, value: string): boolean {
  if (pattern === '*') return value !== '';
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

function cidrList(blocks: string[]): BlockList {
  const list = new BlockList();
  for (const b of blocks) {
    const [addr, bits] = b.split('/');
    const type = isIPv6(addr!) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr!, type);
    else list.addSubnet(addr!, Number(bits), type);
  }
  return list;
}

function ipIn(list: BlockList, ip: string): boolean {
  const plain = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
  return list.check(plain, isIPv6(plain) ? 'ipv6' : 'ipv4');
}

/** namespace and service account from a principal "<td>/ns/<ns>/sa/<sa>". */
export function parsePrincipal(principal: string | undefined): {
  namespace?: string;
  serviceAccount?: string;
} {
  if (!principal) return {};
  const m = /^[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(principal);
  return m ? { namespace: m[1], serviceAccount: m[2] } : {};
}

type Pred = (r: AuthzRequest) => boolean;
/** A compiled rule: its predicate, and whether it needs HTTP attributes. */
interface CompiledRule {
  index: number;
  usesHttp: boolean;
  /** Matches, treating HTTP-only conditions as satisfied (used by DENY and AUDIT on TCP). */
  matchIgnoringHttp: Pred;
  match: Pred;
}

function header(r: AuthzRequest, name: string): string | undefined {
  const v = r.http?.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

/** A field "values any match / notValues none match" over the request's value(s). */
function field(
  values: string[] | undefined,
  notValues: string[] | undefined,
  get: (r: AuthzRequest) => string | undefined,
  eq: (pattern: string, value: string) => boolean = wildcardMatch,
): Pred[] {
  const preds: Pred[] = [];
  if (values) {
    preds.push((r) => {
      const v = get(r);
      return v !== undefined && values.some((p) => eq(p, v));
    });
  }
  if (notValues) {
    preds.push((r) => {
      const v = get(r);
      return v === undefined || !notValues.some((p) => eq(p, v));
    });
  }
  return preds;
}

const all =
  (preds: Pred[]): Pred =>
  (r) =>
    preds.every((p) => p(r));
const any =
  (preds: Pred[]): Pred =>
  (r) =>
    preds.some((p) => p(r));

/** Lower case, and no trailing dot on the host name ("Web.Shop.:80" → "web.shop:80"). */
function canonicalHost(authority: string): string {
  return authority.toLowerCase().replace(/\.(:\d+)?$/, '$1');
}

/** A host pattern against the authority: with its port, or (pattern without one) without it. */
function hostMatch(pattern: string, authority: string): boolean {
  const h = canonicalHost(authority);
  const p = canonicalHost(pattern);
  if (wildcardMatch(p, h)) return true;
  const noPort = h.replace(/:\d+$/, '');
  return noPort !== h && !/:\d+$/.test(p) && wildcardMatch(p, noPort);
}

/** request.headers: "*" means present (Istio's present match), even with an empty value. */
const headerMatch = (pattern: string, value: string) => pattern === '*' || wildcardMatch(pattern, value);

/**
 * A path pattern against the request's path, for DENY and AUDIT rules: the path as forwarded or
 * its slash-merged spelling. Under BASE normalization (the default) `//admin` is forwarded as
 * sent, and many apps resolve it to `/admin`; a DENY on `/admin*` still covers it, while ALLOW
 * rules keep matching the path exactly (a merged spelling never gains access).
 */
const denyPathMatch = (pattern: string, path: string) =>
  wildcardMatch(pattern, path) ||
  (path.includes('//') && wildcardMatch(pattern, path.replace(/\/{2,}/g, '/')));

function compileRule(
  rule: Rule,
  index: number,
  opts: AuthzOptions,
  action: AuthzPolicy['action'],
): CompiledRule {
  // Each condition is [predicate, isHttpOnly].
  const sourceAlts: Pred[] = [];
  for (const { source: s } of rule.from ?? []) {
    const preds: Pred[] = [
      ...field(s.principals, s.notPrincipals, (r) => r.principal),
      ...field(s.namespaces, s.notNamespaces, (r) => parsePrincipal(r.principal).namespace),
    ];
    const qualify = (sa: string) => (sa.includes('/') ? sa : `${opts.namespace}/${sa}`);
    const saOf = (r: AuthzRequest) => {
      const p = parsePrincipal(r.principal);
      return p.namespace ? `${p.namespace}/${p.serviceAccount}` : undefined;
    };
    preds.push(
      ...field(s.serviceAccounts?.map(qualify), s.notServiceAccounts?.map(qualify), saOf, (a, b) => a === b),
    );
    if (s.ipBlocks) {
      const list = cidrList(s.ipBlocks);
      preds.push((r) => ipIn(list, r.sourceIp));
    }
    if (s.notIpBlocks) {
      const list = cidrList(s.notIpBlocks);
      preds.push((r) => !ipIn(list, r.sourceIp));
    }
    sourceAlts.push(all(preds));
  }

  const opAlts: { tcp: Pred; http: Pred; usesHttp: boolean }[] = [];
  for (const { operation: o } of rule.to ?? []) {
    const tcp: Pred[] = [];
    if (o.ports) tcp.push((r) => o.ports!.includes(r.port));
    if (o.notPorts) tcp.push((r) => !o.notPorts!.includes(r.port));
    const http: Pred[] = [
      ...field(o.methods, o.notMethods, (r) => r.http?.method),
      ...field(
        o.paths,
        undefined,
        (r) => r.http?.path.split('?')[0],
        action === 'ALLOW' ? wildcardMatch : denyPathMatch,
      ),
      ...field(undefined, o.notPaths, (r) => r.http?.path.split('?')[0]),
      ...field(o.hosts, o.notHosts, (r) => r.http?.host, hostMatch),
    ];
    opAlts.push({ tcp: all(tcp), http: all([...tcp, ...http]), usesHttp: http.length > 0 });
  }

  const whenTcp: Pred[] = [];
  const whenHttp: Pred[] = [];
  for (const c of rule.when ?? []) {
    const hm = /^request\.headers\[(.+)\]$/.exec(c.key);
    if (hm) {
      whenHttp.push(...field(c.values, c.notValues, (r) => header(r, hm[1]!), headerMatch));
      continue;
    }
    if (c.key === 'source.ip') {
      const inAny = c.values ? cidrList(c.values) : undefined;
      const inNone = c.notValues ? cidrList(c.notValues) : undefined;
      whenTcp.push((r) => (!inAny || ipIn(inAny, r.sourceIp)) && (!inNone || !ipIn(inNone, r.sourceIp)));
    } else if (c.key === 'source.namespace') {
      whenTcp.push(...field(c.values, c.notValues, (r) => parsePrincipal(r.principal).namespace));
    } else if (c.key === 'source.principal') {
      whenTcp.push(...field(c.values, c.notValues, (r) => r.principal));
    } else if (c.key === 'destination.port') {
      whenTcp.push(
        ...field(
          c.values,
          c.notValues,
          (r) => String(r.port),
          (a, b) => a === b,
        ),
      );
    }
  }

  const usesHttp = opAlts.some((o) => o.usesHttp) || whenHttp.length > 0;
  const from: Pred = sourceAlts.length ? any(sourceAlts) : () => true;
  const toFull: Pred = opAlts.length ? any(opAlts.map((o) => o.http)) : () => true;
  const toTcp: Pred = opAlts.length ? any(opAlts.map((o) => o.tcp)) : () => true;
  const match = all([from, toFull, ...whenTcp, ...whenHttp]);
  const matchIgnoringHttp = all([from, toTcp, ...whenTcp]);
  return { index, usesHttp, match, matchIgnoringHttp };
}

interface CompiledPolicy {
  name: string;
  action: AuthzPolicy['action'];
  rules: CompiledRule[];
}

export interface Authorizer {
  /** Decide one request or connection. */
  decide(req: AuthzRequest): AuthzDecision;
  /** The policies that apply to this workload, by name. */
  readonly policies: string[];
}

function firstMatch(p: CompiledPolicy, req: AuthzRequest): number | undefined {
  const isTcp = !req.http;
  for (const rule of p.rules) {
    if (isTcp && rule.usesHttp) {
      if (p.action !== 'ALLOW' && rule.matchIgnoringHttp(req)) return rule.index;
      continue;
    }
    if (rule.match(req)) return rule.index;
  }
  return undefined;
}

/**
 * Compiles the policies that select a workload (by its labels) into an Authorizer. Policies
 * whose selector does not match the labels are left out, so the same list of a namespace's
 * policies serves every pod.
 */
export function compileAuthorizer(
  policies: AuthzPolicy[],
  labels: Record<string, string>,
  opts: AuthzOptions,
): Authorizer {
  const compiled: CompiledPolicy[] = policies
    .filter((p) => selects(p, labels))
    .map((p) => ({
      name: p.name,
      action: p.action,
      rules: (p.rules ?? []).map((r, i) => compileRule(r, i, opts, p.action)),
    }));
  const deny = compiled.filter((p) => p.action === 'DENY');
  const audit = compiled.filter((p) => p.action === 'AUDIT');
  const allow = compiled.filter((p) => p.action === 'ALLOW');

  return {
    policies: compiled.map((p) => p.name),
    decide(req) {
      const audited: RuleRef[] = [];
      for (const p of audit) {
        const rule = firstMatch(p, req);
        if (rule !== undefined) audited.push({ policy: p.name, rule });
      }
      for (const p of deny) {
        const rule = firstMatch(p, req);
        if (rule !== undefined) {
          return {
            allowed: false,
            reason: 'denied-by-policy',
            decidedBy: { policy: p.name, rule },
            audited,
            explanation: `denied by DENY policy ${p.name} rule ${rule}`,
          };
        }
      }
      if (allow.length === 0) {
        const allowed = opts.defaultAction === 'ALLOW';
        return {
          allowed,
          reason: allowed ? 'default-allow' : 'default-deny',
          audited,
          explanation: allowed
            ? 'allowed: no ALLOW policy selects this workload'
            : 'denied: the mesh is default-deny and no ALLOW policy selects this workload',
        };
      }
      for (const p of allow) {
        const rule = firstMatch(p, req);
        if (rule !== undefined) {
          return {
            allowed: true,
            reason: 'allowed-by-policy',
            decidedBy: { policy: p.name, rule },
            audited,
            explanation: `allowed by ALLOW policy ${p.name} rule ${rule}`,
          };
        }
      }
      return {
        allowed: false,
        reason: 'no-allow-match',
        audited,
        explanation: `denied: no rule of the ALLOW policies ${allow.map((p) => p.name).join(', ')} matches`,
      };
    },
  };
}

/** What a transport needs of a decision: allowed or not, and which policy and rule decided. */
export interface AuthzVerdict {
  allow: boolean;
  /** The policy and rule that decided, when one did. */
  policy?: string;
  rule?: number;
  /** Stable reason code (denied-by-policy, no-allow-match, default-deny, …). */
  reason?: string;
  explanation?: string;
}

/** The inbound authorization hook: proxy/authz/enforce.ts plugs the policies in here. */
export type Authorize = (req: AuthzRequest, config: ProxyConfig) => AuthzVerdict;

export const allowAll: Authorize = () => ({ allow: true });
