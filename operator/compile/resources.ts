// TrafficSplits and AuthorizationPolicies → ProxyConfig routes and policies, with the verdict
// per resource that the status reconcilers report.
import type { AuthorizationPolicy, TrafficSplit } from '../../api/index.ts';
import {
  AuthorizationPolicySpec,
  durationMs,
  METHOD_MESSAGE,
  METHOD_PATTERN,
  TrafficSplitSpec,
} from '../../api/index.ts';
import type { AuthzPolicy, Route } from '../../api/proxyconfig.ts';
import { matchRegexErrors } from '../../api/regex.ts';
import { check } from '../../api/validate.ts';
import { REASON, type Reason } from '../conditions.ts';
import type { ServiceObj } from '../objects.ts';
import { backendsInEffect } from '../progression/weights.ts';
import { byKey, cmp, keyOf, retryPolicy, sortKeys } from './util.ts';

export interface ResourceResult {
  /** "<namespace>/<name>" */
  key: string;
  generation?: number;
  accepted: { ok: true } | { ok: false; reason: Reason; message: string };
  resolvedRefs?: { ok: true } | { ok: false; reason: Reason; message: string };
  /**
   * TrafficSplits only: the Gateway API routes attached to the same Service, which take
   * precedence; with `namespaces`, only there (consumer routes), else everywhere.
   */
  overriddenBy?: { routes: string[]; namespaces?: string[] };
  /** What is in the config for it now: the current spec, a last good version, or nothing. */
  programmed: 'current' | 'lastGood' | 'none';
}

function invalid(what: string, errors: { field: string; message: string }[]) {
  return {
    ok: false as const,
    reason: REASON.Invalid,
    message: `${what} is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`,
  };
}

export function compileSplit(
  split: TrafficSplit,
  services: Map<string, ServiceObj>,
): { route?: Route; result: ResourceResult } {
  const ns = split.metadata.namespace ?? '';
  const key = `${ns}/${split.metadata.name}`;
  const base = { key, generation: split.metadata.generation };
  const errors = check(TrafficSplitSpec, split.spec, 'spec');
  // Not RE2 (backreferences, lookaround): admitted while the webhook was down, never programmed.
  if (errors.length === 0) errors.push(...matchRegexErrors(split.spec.matches ?? [], 'spec.matches'));
  // The CRD's CEL rules on progression; ajv does not run CEL, and objects stored before them exist.
  if (errors.length === 0) errors.push(...progressionErrors(split.spec));
  if (errors.length > 0)
    return { result: { ...base, accepted: invalid('TrafficSplit', errors), programmed: 'none' } };
  const s = split.spec;
  const missing: string[] = [];
  const missingPorts: string[] = [];
  const need = (name: string, port?: number) => {
    const svc = services.get(`${ns}/${name}`);
    if (!svc) missing.push(name);
    else if (port !== undefined && !(svc.spec?.ports ?? []).some((p) => p.port === port))
      missingPorts.push(`${name}:${port}`);
  };
  need(s.service, s.port);
  for (const b of s.backends) need(b.service, b.port);
  if (s.mirror) need(s.mirror.service);
  const uniq = (l: string[]) => [...new Set(l)].sort(cmp);
  if (missing.length > 0 || missingPorts.length > 0) {
    const message =
      missing.length > 0
        ? `Service(s) not found in namespace ${ns}: ${uniq(missing).join(', ')}`
        : `port(s) not found: ${uniq(missingPorts).join(', ')}`;
    return {
      result: {
        ...base,
        accepted: { ok: true },
        resolvedRefs: {
          ok: false,
          reason: missing.length > 0 ? REASON.ServiceNotFound : REASON.PortNotFound,
          message,
        },
        programmed: 'none',
      },
    };
  }
  const id = (n: string) => `${ns}/${n}`;
  const route: Route = {
    backends: backendsInEffect(s, split.status)
      .sort(byKey((b) => b.service))
      .map((b) => sortKeys({ port: b.port, service: id(b.service), weight: b.weight })),
    matches: sortKeys(s.matches ?? []),
    name: key,
    service: id(s.service),
  };
  if (s.port !== undefined) route.port = s.port;
  if (s.timeout !== undefined) route.timeoutMs = durationMs(s.timeout);
  if (s.retries) route.retries = retryPolicy(s.retries);
  if (s.faultInjection) {
    const f: NonNullable<Route['faultInjection']> = {};
    if (s.faultInjection.delay)
      f.delay = {
        fixedDelayMs: durationMs(s.faultInjection.delay.fixedDelay),
        percentage: s.faultInjection.delay.percentage,
      };
    if (s.faultInjection.abort) f.abort = { ...s.faultInjection.abort };
    route.faultInjection = f;
  }
  if (s.mirror) route.mirror = { percentage: s.mirror.percentage ?? 100, service: id(s.mirror.service) };
  if (s.loadBalancer)
    route.loadBalancer = { type: s.loadBalancer.type, hashHeader: s.loadBalancer.hashHeader };
  if (s.circuitBreaker) {
    const c = s.circuitBreaker;
    route.circuitBreaker = {
      baseEjectionTimeMs: durationMs(c.baseEjectionTime ?? '30s'),
      consecutive5xxErrors: c.consecutive5xxErrors ?? 5,
      consecutiveConnectFailures: c.consecutiveConnectFailures ?? 5,
      maxConnections: c.maxConnections,
      maxEjectionPercent: c.maxEjectionPercent ?? 50,
      maxPendingRequests: c.maxPendingRequests,
      maxRequests: c.maxRequests,
    };
  }
  if (s.rateLimit)
    route.rateLimit = {
      burst: s.rateLimit.burst ?? Math.max(1, Math.ceil(s.rateLimit.requestsPerSecond)),
      requestsPerSecond: s.rateLimit.requestsPerSecond,
    };
  return {
    route: sortKeys(route),
    result: { ...base, accepted: { ok: true }, resolvedRefs: { ok: true }, programmed: 'current' },
  };
}

/** What spec.progression needs of the rest of the spec (the CRD says it too, in CEL). */
export function progressionErrors(s: TrafficSplit['spec']): { field: string; message: string }[] {
  const p = s.progression;
  if (!p) return [];
  const errors: { field: string; message: string }[] = [];
  if (!s.backends.some((b) => b.service === p.canary))
    errors.push({ field: 'spec.progression.canary', message: 'must be one of backends[].service' });
  else if (!s.backends.some((b) => b.service !== p.canary && b.weight > 0))
    errors.push({
      field: 'spec.backends',
      message:
        'with a progression, a backend other than progression.canary (the stable version) needs a weight greater than 0',
    });
  if ((p.stepWeights === undefined) === (p.stepWeightRange === undefined))
    errors.push({ field: 'spec.progression', message: 'set exactly one of stepWeights or stepWeightRange' });
  const w = p.stepWeights ?? [];
  if (w.some((x, i) => i > 0 && x <= w[i - 1]!))
    errors.push({ field: 'spec.progression.stepWeights', message: 'must increase (e.g. [10, 25, 50])' });
  const r = p.stepWeightRange;
  if (r && r.start > r.max)
    errors.push({ field: 'spec.progression.stepWeightRange.start', message: 'must not exceed max' });
  return errors;
}

export function compilePolicy(p: AuthorizationPolicy): { policy?: AuthzPolicy; result: ResourceResult } {
  const ns = p.metadata.namespace ?? '';
  const key = `${ns}/${p.metadata.name}`;
  const base = { key, generation: p.metadata.generation };
  const errors = check(AuthorizationPolicySpec, p.spec, 'spec');
  const action = p.spec.action ?? 'ALLOW';
  // Semantic rules the schema cannot say.
  for (const [i, r] of (p.spec.rules ?? []).entries()) {
    for (const [j, f] of (r.from ?? []).entries()) {
      for (const sa of [...(f.source.serviceAccounts ?? []), ...(f.source.notServiceAccounts ?? [])])
        if (sa.split('/').length > 2 || sa.split('/').some((x) => x === ''))
          errors.push({
            field: `spec.rules[${i}].from[${j}].source.serviceAccounts`,
            message: `"${sa}" is not <namespace>/<name> or <name>`,
          });
      for (const pr of [...(f.source.principals ?? []), ...(f.source.notPrincipals ?? [])])
        if (pr.startsWith('spiffe://'))
          errors.push({
            field: `spec.rules[${i}].from[${j}].source.principals`,
            message: `"${pr}": write principals without the spiffe:// scheme`,
          });
    }
    // The CRD's CEL rule says the same; ajv does not run CEL, and objects stored before it exist.
    const method = new RegExp(METHOD_PATTERN);
    for (const [j, t] of (r.to ?? []).entries())
      for (const key of ['methods', 'notMethods'] as const)
        for (const m of t.operation[key] ?? [])
          if (!method.test(m))
            errors.push({
              field: `spec.rules[${i}].to[${j}].operation.${key}`,
              message: `"${m}": ${METHOD_MESSAGE}`,
            });
  }
  if (errors.length > 0)
    return { result: { ...base, accepted: invalid('AuthorizationPolicy', errors), programmed: 'none' } };
  const policy: AuthzPolicy = { action, name: key, namespace: ns };
  if (p.spec.selector) policy.selector = sortKeys(p.spec.selector);
  if (p.spec.rules) policy.rules = sortKeys(p.spec.rules);
  return { policy: sortKeys(policy), result: { ...base, accepted: { ok: true }, programmed: 'current' } };
}

/**
 * Compiles each resource in key order; one whose current spec cannot be programmed keeps its
 * last good output (`programmed: 'lastGood'`): an invalid CR never changes what is programmed.
 */
export function compileWithLastGood<I extends { metadata: { name: string; namespace?: string } }, O>(
  items: readonly I[],
  one: (item: I) => { out?: O; result: ResourceResult },
  lastGood: ReadonlyMap<string, O> | undefined,
): { results: ResourceResult[]; outputs: Map<string, O> } {
  const results: ResourceResult[] = [];
  const outputs = new Map<string, O>();
  for (const item of [...items].sort(byKey((x) => keyOf(x.metadata)))) {
    const { out, result } = one(item);
    const last = out ? undefined : lastGood?.get(result.key);
    if (out) outputs.set(result.key, out);
    else if (last) {
      outputs.set(result.key, last);
      result.programmed = 'lastGood';
    }
    results.push(result);
  }
  return { results, outputs };
}
