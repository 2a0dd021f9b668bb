// TrafficSplit status (key: ns/name): Accepted, ResolvedRefs (the Services and ports it names),
// Ready (programmed, its last good version, or not at all). A Warning Event when it starts failing.
import type { TrafficSplit } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { ConditionInput } from '../../kube/conditions.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import type { ResourceResult } from '../compiler.ts';
import { CONDITION, EVENT_REASON, REASON } from '../conditions.ts';
import {
  acceptedOf,
  type CompiledResourceDeps,
  compiledResource,
  failedBefore,
  programmedOf,
  readyOf,
} from '../status.ts';

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
  return async (key) => {
    const found = compiledResource(d, key);
    if (!found) return undefined;
    const { obj: split, r } = found;
    const wanted: ConditionInput[] = [acceptedOf(r)];
    let why = r.accepted.ok ? '' : r.accepted.message;
    if (r.resolvedRefs?.ok)
      wanted.push({
        type: CONDITION.ResolvedRefs,
        status: 'True',
        reason: REASON.ResolvedRefs,
        message: 'All Services exist',
      });
    else if (r.resolvedRefs) {
      why = r.resolvedRefs.message;
      wanted.push({
        type: CONDITION.ResolvedRefs,
        status: 'False',
        reason: r.resolvedRefs.reason,
        message: r.resolvedRefs.message,
      });
    }
    const over = overriddenOf(r);
    if (over) {
      wanted.push(over);
      if (!r.overriddenBy?.namespaces) why = over.message;
    }
    wanted.push(readyOf(r, why), ...programmedOf(d, key, r, split));
    const wasFailing =
      (!r.accepted.ok && failedBefore(split, CONDITION.Accepted, r.accepted.reason)) ||
      (r.resolvedRefs &&
        !r.resolvedRefs.ok &&
        failedBefore(split, CONDITION.ResolvedRefs, r.resolvedRefs.reason));
    const changed = await d.status.write(RESOURCES.trafficSplits, split, wanted);
    if (changed && !wasFailing) {
      if (!r.accepted.ok)
        await d.events.warn(split, RESOURCES.trafficSplits, EVENT_REASON.InvalidSpec, r.accepted.message);
      else if (r.resolvedRefs && !r.resolvedRefs.ok)
        await d.events.warn(split, RESOURCES.trafficSplits, EVENT_REASON.RefNotFound, r.resolvedRefs.message);
    }
    return undefined;
  };
}
