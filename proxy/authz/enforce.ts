// Authorization at the inbound listener: the namespace's AuthorizationPolicies from the
// ProxyConfig, the pod's labels (downward-API file) and the mesh default, compiled with
// compileAuthorizer once per (config, labels) and asked for every inbound request or TCP
// connection. Every decision is counted in weft_authz_decisions_total with bounded labels
// (policy names come from the config, rule indexes from the policies, five reasons).
import type { ProxyConfig } from '../../api/index.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { type Authorize, type Authorizer, type AuthzVerdict, compileAuthorizer } from './matcher.ts';

export class PolicyEnforcer {
  #config: ProxyConfig | undefined;
  #labels: Record<string, string> | undefined;
  #authorizer: Authorizer | undefined;
  readonly #labelsOf: () => Record<string, string>;
  readonly #metrics: ProxyMetrics | undefined;
  readonly #counters = new Map<string, { inc(): void }>();

  /** `labels` is asked on every decision; return the same object until the labels change. */
  constructor(labels: () => Record<string, string>, metrics?: ProxyMetrics) {
    this.#labelsOf = labels;
    this.#metrics = metrics;
  }

  /** The compiled authorizer for this config and the current labels (recompiled when either changed). */
  authorizer(config: ProxyConfig): Authorizer {
    const labels = this.#labelsOf();
    if (!this.#authorizer || config !== this.#config || labels !== this.#labels) {
      this.#authorizer = compileAuthorizer(config.authorizationPolicies, labels, {
        defaultAction: config.mesh.defaultAuthorization,
        namespace: config.namespace,
      });
      this.#config = config;
      this.#labels = labels;
    }
    return this.#authorizer;
  }

  readonly authorize: Authorize = (req, config): AuthzVerdict => {
    const d = this.authorizer(config).decide(req);
    const policy = d.decidedBy?.policy ?? '';
    const rule = d.decidedBy ? String(d.decidedBy.rule) : '';
    const decision = d.allowed ? 'allow' : 'deny';
    if (this.#metrics) {
      const key = `${decision}|${policy}|${rule}|${d.reason}`;
      let c = this.#counters.get(key);
      if (!c) {
        if (this.#counters.size > 1000) this.#counters.clear();
        c = this.#metrics.authzDecisions.labels({ decision, policy, rule, reason: d.reason });
        this.#counters.set(key, c);
      }
      c.inc();
    }
    return {
      allow: d.allowed,
      policy: d.decidedBy?.policy,
      rule: d.decidedBy?.rule,
      reason: d.reason,
      explanation: d.explanation,
    };
  };
}

/** The body of a 403 for a denied request: names the policy and rule, then the explanation. */
export function denialMessage(v: AuthzVerdict): string {
  const by = v.policy !== undefined ? ` by ${v.policy} rule ${v.rule ?? 0}` : '';
  return `RBAC: access denied${by}${v.explanation ? ` (${v.explanation})` : ''}`;
}
