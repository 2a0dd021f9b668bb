// TrafficSplit progression (key: ns/name): runs the state machine (progression/machine.ts) on the
// split's status, the annotation command and the figures the backends' proxies report
// (progression/sampler.ts), then writes status.progression and the Progressing, Promoted and
// RolledBack conditions under its own field manager, and an Event per decision. It never writes
// spec: the compiler reads the weights in effect from status (progression/weights.ts). While a
// progression runs, the key is requeued every pollMs (sooner when the step ends).
import { PROGRESSION_ANNOTATION, type TrafficSplit } from '../../api/index.ts';
import { type KubeClient, RESOURCES } from '../../kube/client.ts';
import { mergeConditions, sameConditions } from '../../kube/conditions.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import type { ResourceResult } from '../compiler.ts';
import {
  PROGRESSION_CONDITION_TYPES,
  PROGRESSION_FIELD_MANAGER,
  progressionConditions,
} from '../progression/conditions.ts';
import { advance, type DecisionKind, progressionHash } from '../progression/machine.ts';
import type { SampledPod, WindowSampler } from '../progression/sampler.ts';
import type { EventRecorder, WriteStats } from '../status.ts';

export interface ProgressionDeps {
  splits: { get(key: string): Obj<TrafficSplit> | undefined };
  resultOf: (key: string) => ResourceResult | undefined;
  /** The pods behind a Service (ns, name), with their proxies' health addresses. */
  podsOf: (namespace: string, service: string) => SampledPod[];
  sampler: Pick<WindowSampler, 'sample' | 'forget'>;
  client: KubeClient;
  events: EventRecorder;
  stats: WriteStats;
  now: () => number;
  /** Longest time between two readings of a running progression; default 5 s. */
  pollMs?: number;
}

/** Event reasons, one per decision. */
export const PROGRESSION_EVENT: Record<DecisionKind, string> = {
  Started: 'ProgressionStarted',
  Step: 'ProgressionStep',
  Promoted: 'ProgressionPromoted',
  RolledBack: 'ProgressionRolledBack',
  Paused: 'ProgressionPaused',
  Resumed: 'ProgressionResumed',
  Ignored: 'ProgressionCommandIgnored',
};

/** The status without the time of its last reading: a reading that changes nothing is not written. */
const comparable = (s: unknown) => JSON.stringify(s, (k, v: unknown) => (k === 'at' ? undefined : v));

export function progressionReconciler(d: ProgressionDeps): KeyReconciler {
  const pollMs = d.pollMs ?? 5000;
  // At the cached resourceVersion: a decision taken on a status older than the last one written
  // (the cache not caught up yet) is refused with a conflict and retried, never written back.
  const write = async (split: Obj<TrafficSplit>, status: Record<string, unknown>) => {
    const { name, namespace, resourceVersion } = split.metadata;
    await d.client.apply(
      RESOURCES.trafficSplits,
      { metadata: { name, namespace, resourceVersion }, status },
      { subresource: 'status', fieldManager: PROGRESSION_FIELD_MANAGER },
    );
    d.stats.statusWrites++;
  };
  return async (key) => {
    const split = d.splits.get(key);
    if (!split) {
      d.sampler.forget(key);
      return undefined;
    }
    const spec = split.spec;
    const p = spec.progression;
    const mine = (split.status?.conditions ?? []).filter((c) => PROGRESSION_CONDITION_TYPES.has(c.type));
    if (!p) {
      // The progression was removed: this manager's fields go (an empty apply drops them).
      d.sampler.forget(key);
      if (split.status?.progression || mine.length > 0) await write(split, {});
      return undefined;
    }
    // Invalid or unresolved: the trafficsplit reconciler says why; nothing runs until it is fixed.
    if (d.resultOf(key)?.programmed !== 'current') return undefined;
    const prev = split.status?.progression;
    const specHash = progressionHash(spec);
    const ns = split.metadata.namespace ?? '';
    const pods = () => ({
      canary: d.podsOf(ns, p.canary),
      stable: spec.backends.filter((b) => b.service !== p.canary).flatMap((b) => d.podsOf(ns, b.service)),
    });
    const percentile = p.gates?.maxLatency?.percentile ?? 99;
    const running = prev?.specHash === specHash && prev.phase === 'Progressing';
    const observed = running
      ? await d.sampler.sample(key, prev.stepStartedAt, pods(), percentile)
      : undefined;
    const out = advance(p, prev, {
      now: d.now(),
      specHash,
      command: split.metadata.annotations?.[PROGRESSION_ANNOTATION],
      observed,
    });
    const s = out.status;
    // A new window (a step entered, started, resumed): its baseline is read now.
    if (s.phase === 'Progressing' && s.stepStartedAt !== prev?.stepStartedAt)
      await d.sampler.sample(key, s.stepStartedAt, pods(), percentile);
    if (s.phase !== 'Progressing') d.sampler.forget(key);

    const gen = split.metadata.generation;
    const conditions = mergeConditions(mine, progressionConditions(s), gen);
    if (comparable(prev) !== comparable(s) || !sameConditions(mine, conditions))
      await write(split, { progression: s, conditions });
    for (const dec of out.decisions)
      await (dec.warning ? d.events.warn : d.events.normal)(
        split,
        RESOURCES.trafficSplits,
        PROGRESSION_EVENT[dec.kind],
        dec.message,
      );
    if (s.phase !== 'Progressing') return undefined;
    return { requeueAfterMs: Math.max(100, Math.min(pollMs, out.dueInMs ?? pollMs)) };
  };
}
