// `weftctl authz explain`: the decision the proxy would make for a request, and why, from
// the AuthorizationPolicies (in the cluster or in files) and the Mesh's default.
import type { AuthorizationPolicy, AuthzPolicy, PathNormalization } from '../api/index.ts';
import { type AuthzDecision, type AuthzRequest, compileAuthorizer, selects } from '../proxy/authz/matcher.ts';
import { DEFAULT_PATH_NORMALIZATION, normalizeTarget } from '../proxy/pathnorm.ts';

/** The ProxyConfig form of an AuthorizationPolicy resource (what the operator compiles). */
export function toAuthzPolicy(p: AuthorizationPolicy): AuthzPolicy {
  const ns = p.metadata.namespace ?? 'default';
  return {
    name: `${ns}/${p.metadata.name}`,
    namespace: ns,
    action: p.spec.action ?? 'ALLOW',
    ...(p.spec.selector ? { selector: p.spec.selector } : {}),
    ...(p.spec.rules ? { rules: p.spec.rules } : {}),
  };
}

export interface ExplainInput {
  namespace: string;
  labels: Record<string, string>;
  request: AuthzRequest;
  policies: AuthorizationPolicy[];
  defaultAction: 'ALLOW' | 'DENY';
  /** The Mesh's pathNormalization: the path is judged as the proxy normalizes it (default BASE). */
  pathNormalization?: PathNormalization;
}

export interface Explanation {
  decision: AuthzDecision;
  /** The HTTP path as the proxy authorizes and forwards it, after normalization. */
  path?: string;
  /** Policies in the namespace, and whether each selects the workload. */
  considered: { policy: string; action: string; selects: boolean }[];
}

export function explain(input: ExplainInput): Explanation {
  const inNs = input.policies
    .filter((p) => (p.metadata.namespace ?? 'default') === input.namespace)
    .map(toAuthzPolicy);
  const authz = compileAuthorizer(inNs, input.labels, {
    defaultAction: input.defaultAction,
    namespace: input.namespace,
  });
  let request = input.request;
  if (request.http) {
    const n = normalizeTarget(
      request.http.path,
      input.pathNormalization ?? DEFAULT_PATH_NORMALIZATION,
      request.http.host,
    );
    if (!n.ok)
      throw new Error(`--path: the proxy answers 400 to ${JSON.stringify(request.http.path)}: ${n.reason}`);
    request = { ...request, http: { ...request.http, path: n.target } };
  }
  return {
    decision: authz.decide(request),
    ...(request.http ? { path: request.http.path } : {}),
    considered: inNs.map((p) => ({ policy: p.name, action: p.action, selects: selects(p, input.labels) })),
  };
}

export function renderExplanation(e: Explanation): string {
  const lines = [`${e.decision.allowed ? 'ALLOW' : 'DENY'}: ${e.decision.explanation}`];
  if (e.path !== undefined) lines.push(`  path as the proxy normalizes it: ${e.path}`);
  for (const a of e.decision.audited) lines.push(`  audited by ${a.policy} rule ${a.rule}`);
  lines.push('policies in the namespace:');
  if (e.considered.length === 0) lines.push('  (none)');
  for (const c of e.considered)
    lines.push(
      `  ${c.policy} ${c.action} ${c.selects ? 'selects this workload' : 'does not select this workload'}`,
    );
  return `${lines.join('\n')}\n`;
}

/** Parses "k=v,k2=v2". */
export function parseLabels(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (text ?? '').split(',').filter(Boolean)) {
    const i = pair.indexOf('=');
    if (i <= 0)
      throw new Error(`--labels: "${pair}" is not key=value (example: --labels app=reviews,version=v1)`);
    out[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return out;
}
