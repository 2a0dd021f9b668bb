// TrafficSplit status (key: ns/name): Accepted, ResolvedRefs (the Services and ports it names),
// Ready (programmed, its last good version, or not at all). A Warning Event when it starts failing.
import type { TrafficSplit } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import { CONDITION, EVENT_REASON, REASON } from '../conditions.ts';
import { type CompiledResourceDeps, compiledStatusReconciler } from '../status.ts';

export type TrafficSplitDeps = CompiledResourceDeps<Obj<TrafficSplit>>;

export function trafficSplitReconciler(d: TrafficSplitDeps): KeyReconciler {
  return compiledStatusReconciler(d, RESOURCES.trafficSplits, (r) => ({
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
  }));
}
