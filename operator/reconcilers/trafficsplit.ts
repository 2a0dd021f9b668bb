// TrafficSplit status (key: ns/name): Accepted, ResolvedRefs (the Services and ports it names),
// Ready (programmed, its last good version, or not at all). A Warning Event when it starts failing.
import type { TrafficSplit } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import type { ResourceResult } from '../compiler.ts';
import { CONDITION, EVENT_REASON, REASON } from '../conditions.ts';
import { type CompiledResourceDeps, compiledStatusReconciler } from '../status.ts';

export type TrafficSplitDeps = CompiledResourceDeps<Obj<TrafficSplit>>;

/** Overridden (only while it is): the Gateway API routes that take precedence, and where. */
export function overriddenOf(r: ResourceResult): ConditionInput | undefined {
  const o = r.overriddenBy;
  if (!o) return undefined;
  const where = o.namespaces ? `for requests from namespace(s) ${o.namespaces.join(', ')}` : 'everywhere';
  return {
    type: CONDITION.Overridden,
    status: 'True',
    reason: REASON.RouteTakesPrecedence,
    message: `${o.routes.join(', ')} attached to the same Service take(s) precedence ${where}; this TrafficSplit is not applied there`,
  };
}

export function trafficSplitReconciler(d: TrafficSplitDeps): KeyReconciler {
  return compiledStatusReconciler(d, RESOURCES.trafficSplits, (r) => {
    const over = overriddenOf(r);
    return {
      verdicts: r.resolvedRefs
        ? [
            {
              type: CONDITION.ResolvedRefs,
              verdict: r.resolvedRefs,
              ok: { reason: REASON.ResolvedRefs, message: 'All Services exist' },
              eventReason: EVENT_REASON.RefNotFound,
            },
          ]
        : [],
      // Overridden everywhere: that is why it is not Ready, whatever else fails.
      ...(over ? { conditions: [over], ...(r.overriddenBy?.namespaces ? {} : { why: over.message }) } : {}),
    };
  });
}
