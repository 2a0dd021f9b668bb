// How the reconcilers report: the status writer (conditions merged by type, server-side apply
// on the status subresource, only when something changed) and the Event recorder (a Warning
// Event when a resource starts failing). Both count what they write (OperatorHandle.stats).
import { randomBytes } from 'node:crypto';
import { type Condition, describeLaggingProxy } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../kube/client.ts';
import { type ConditionInput, mergeConditions, sameConditions } from '../kube/conditions.ts';
import type { Logger } from '../kube/log.ts';
import type { KeyReconciler } from '../kube/manager.ts';
import type { ResourceResult } from './compiler.ts';
import { CONDITION, EVENT_REASON, REASON } from './conditions.ts';
import { IDENTITY_REASON } from './identity/model.ts';
import { PROGRESSION_CONDITION_TYPES } from './progression/conditions.ts';
import type { Lagging } from './propagation.ts';

export interface WriteStats {
  configMapWrites: number;
  configMapDeletes: number;
  statusWrites: number;
  events: number;
}

export type WithStatus = KubeObject & { status?: { conditions?: Condition[]; observedGeneration?: number } };

export interface StatusWriter {
  /** Applies conditions (and extra status fields) when they say something new; true if written. */
  write(
    type: ResourceType,
    obj: WithStatus,
    wanted: ConditionInput[],
    extra?: Record<string, unknown>,
  ): Promise<boolean>;
}

export interface EventRecorder {
  /** Records a Warning Event on obj; a failure to record is logged, never thrown. */
  warn(obj: KubeObject, type: ResourceType, reason: string, message: string): Promise<void>;
  /** Records a Normal Event (a progression's steps and promotion), likewise. */
  normal(obj: KubeObject, type: ResourceType, reason: string, message: string): Promise<void>;
}

export function statusWriter(client: KubeClient, stats: WriteStats): StatusWriter {
  return {
    async write(type, obj, wanted, extra = {}) {
      const gen = obj.metadata.generation;
      const current = obj.status?.conditions;
      const conditions = mergeConditions(current, wanted, gen);
      const extraSame = Object.entries(extra).every(
        ([k, v]) =>
          JSON.stringify((obj.status as Record<string, unknown> | undefined)?.[k]) === JSON.stringify(v),
      );
      // The progression's conditions have their own writer (operator/progression/conditions.ts).
      const own = current?.filter((c) => !PROGRESSION_CONDITION_TYPES.has(c.type));
      if (sameConditions(own, conditions) && obj.status?.observedGeneration === gen && extraSame)
        return false;
      const meta: KubeObject['metadata'] = { name: obj.metadata.name };
      if (obj.metadata.namespace) meta.namespace = obj.metadata.namespace;
      await client.apply(
        type,
        { metadata: meta, status: { observedGeneration: gen, conditions, ...extra } },
        { subresource: 'status' },
      );
      stats.statusWrites++;
      return true;
    },
  };
}

export function eventRecorder(
  client: KubeClient,
  o: { instance: string; log: Logger; stats: WriteStats },
): EventRecorder {
  const record =
    (eventType: 'Warning' | 'Normal') =>
    async (obj: KubeObject, type: ResourceType, reason: string, message: string) => {
      const now = new Date().toISOString();
      const namespace = obj.metadata.namespace ?? 'default';
      try {
        await client.create(RESOURCES.events, {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: {
            name: `${obj.metadata.name}.${Date.now().toString(16)}${randomBytes(2).toString('hex')}`,
            namespace,
          },
          involvedObject: {
            apiVersion: type.group ? `${type.group}/${type.version}` : type.version,
            kind: type.kind,
            name: obj.metadata.name,
            namespace: obj.metadata.namespace,
            uid: obj.metadata.uid,
            resourceVersion: obj.metadata.resourceVersion,
          },
          reason,
          message,
          type: eventType,
          source: { component: 'weft-operator' },
          reportingComponent: 'weft.dev/operator',
          reportingInstance: o.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        });
        o.stats.events++;
      } catch (err) {
        o.log.warn({ err, reason }, 'could not record an Event');
      }
    };
  return { warn: record('Warning'), normal: record('Normal') };
}

/** What the TrafficSplit and AuthorizationPolicy reconcilers read and write through. */
export interface CompiledResourceDeps<T> {
  /** The cached object by ns/name. */
  objects: { get(key: string): T | undefined };
  /** The compiler's verdict on it. */
  resultOf: (key: string) => ResourceResult | undefined;
  status: StatusWriter;
  events: EventRecorder;
  /**
   * How many of the proxies that must apply it run its generation; undefined while the proxies'
   * reports are not in yet (the current Programmed condition is kept). Absent: no Programmed.
   */
  applied?: (
    key: string,
    r: ResourceResult,
  ) => { applied: number; total: number; waiting: Lagging[] } | undefined;
}

/** The Programmed condition: True once every proxy that must apply the resource's generation has. */
export function programmedOf<T extends { status?: { conditions?: Condition[] } }>(
  d: CompiledResourceDeps<T>,
  key: string,
  r: ResourceResult,
  obj: T,
): ConditionInput[] {
  if (!d.applied) return [];
  if (r.programmed !== 'current')
    return [
      {
        type: CONDITION.Programmed,
        status: 'False',
        reason: REASON.NotProgrammed,
        message: 'The current generation is not in the proxy configuration (see Ready)',
      },
    ];
  const counted = d.applied(key, r);
  if (!counted) {
    const kept = obj.status?.conditions?.find((c) => c.type === CONDITION.Programmed);
    return kept ? [{ type: kept.type, status: kept.status, reason: kept.reason, message: kept.message }] : [];
  }
  const { applied, total, waiting } = counted;
  const counts = `${applied}/${total} proxies applied generation ${r.generation ?? 0}`;
  if (applied === total)
    return [{ type: CONDITION.Programmed, status: 'True', reason: REASON.Applied, message: counts }];
  // Without the reasons (the Mesh status has them): they change more often than the counts.
  const shown = waiting
    .slice(0, 5)
    .map((l) => describeLaggingProxy({ ...l, reason: undefined }))
    .join(', ');
  const more = waiting.length > 5 ? ` and ${waiting.length - 5} more` : '';
  return [
    {
      type: CONDITION.Programmed,
      status: 'False',
      reason: REASON.ApplyPending,
      message: `${counts}; waiting for ${shown}${more}`,
    },
  ];
}

/** A verdict reported as one condition, with the Warning Event recorded when it starts failing. */
export interface StatusVerdict {
  type: string;
  verdict: { ok: true } | { ok: false; reason: string; message: string };
  /** The condition when ok. */
  ok: { reason: string; message: string };
  /** The Event's reason when it fails. */
  eventReason: string;
}

/** What one kind adds to the skeleton of compiledStatusReconciler. */
export interface KindStatus {
  /** Verdicts after Accepted (e.g. ResolvedRefs): a condition each, an Event when one starts failing. */
  verdicts?: StatusVerdict[];
  /** Conditions after the verdicts that are no verdict (no Event), before Ready. */
  conditions?: ConditionInput[];
  /** Why Ready is not True, when it is not the last failing verdict's message. */
  why?: string;
}

/**
 * The status reconciler of a compiled resource (TrafficSplit, AuthorizationPolicy): lookup,
 * Accepted, the kind's own verdicts and conditions (`kind`, e.g. ResolvedRefs), Ready (with the
 * last failing verdict's message), Programmed; written when it says something new, with a
 * Warning Event for the first failing verdict when the resource starts failing.
 */
export function compiledStatusReconciler<T extends WithStatus>(
  d: CompiledResourceDeps<T>,
  type: ResourceType,
  kind: (r: ResourceResult) => KindStatus = () => ({}),
): KeyReconciler {
  return async (key) => {
    const found = compiledResource(d, key);
    if (!found) return undefined;
    const { obj, r } = found;
    const own = kind(r);
    const verdicts: StatusVerdict[] = [
      {
        type: CONDITION.Accepted,
        verdict: r.accepted,
        ok: { reason: REASON.Accepted, message: 'Valid' },
        eventReason: EVENT_REASON.InvalidSpec,
      },
      ...(own.verdicts ?? []),
    ];
    const failing = verdicts.flatMap((v) => (v.verdict.ok ? [] : [{ ...v, verdict: v.verdict }]));
    const wanted: ConditionInput[] = verdicts.map((v) =>
      v.verdict.ok
        ? { type: v.type, status: 'True', ...v.ok }
        : { type: v.type, status: 'False', reason: v.verdict.reason, message: v.verdict.message },
    );
    wanted.push(
      ...(own.conditions ?? []),
      readyOf(r, own.why ?? failing.at(-1)?.verdict.message ?? ''),
      ...programmedOf(d, key, r, obj),
    );
    wanted.push(...progressOf(wanted));
    const wasFailing = failing.some((v) => failedBefore(obj, v.type, v.verdict.reason));
    const changed = await d.status.write(type, obj, wanted);
    const first = failing[0];
    if (changed && !wasFailing && first)
      await d.events.warn(obj, type, first.eventReason, first.verdict.message);
    return undefined;
  };
}

/** The cached object and the compiler's verdict on it; undefined when either is gone. */
export function compiledResource<T>(
  d: CompiledResourceDeps<T>,
  key: string,
): { obj: T; r: ResourceResult } | undefined {
  const obj = d.objects.get(key);
  const r = obj && d.resultOf(key);
  return obj && r ? { obj, r } : undefined;
}

/** Whether obj already reports this failure (so its Event was recorded when it started). */
export const failedBefore = (obj: { status?: { conditions?: Condition[] } }, type: string, reason: string) =>
  obj.status?.conditions?.some((c) => c.type === type && c.status === 'False' && c.reason === reason) ??
  false;

/** The Ready condition: programmed now, its last good version, or not at all (`why`). */
export const readyOf = (r: ResourceResult, why: string): ConditionInput =>
  r.programmed === 'current'
    ? {
        type: CONDITION.Ready,
        status: 'True',
        reason: REASON.Programmed,
        message: 'Programmed into the proxy configuration',
      }
    : r.programmed === 'lastGood'
      ? {
          type: CONDITION.Ready,
          status: 'False',
          reason: REASON.LastGoodProgrammed,
          message: `The previous version stays programmed: ${why}`,
        }
      : { type: CONDITION.Ready, status: 'False', reason: REASON.NotProgrammed, message: why };

/**
 * Reasons for a condition that no reconcile fixes until someone changes the resource or what
 * it names: kstatus' Stalled (Flux's health check fails at once instead of waiting out its
 * timeout). A Service applied later clears it: the operator re-reads the TrafficSplit then.
 */
const STALLED_REASONS: ReadonlySet<string> = new Set([
  REASON.Invalid,
  REASON.NotDefault,
  REASON.ServiceNotFound,
  REASON.PortNotFound,
  REASON.RouteTakesPrecedence,
  REASON.ConfigTooLarge,
  IDENTITY_REASON.SecretNotFound,
  IDENTITY_REASON.InvalidSecret,
  IDENTITY_REASON.CertManagerNotInstalled,
]);

/**
 * kstatus' abnormal-true conditions, derived from a resource's other conditions (the one home
 * of that logic, for every kind): Stalled=True when Ready is not True and a condition carries a
 * reason from STALLED_REASONS (the first one, in the order given: Accepted, ResolvedRefs, …);
 * else Reconciling=True while Ready or Programmed is not True. Neither when all is well (kstatus
 * reads an absent one as False). Ready itself is never both: kstatus reports Failed, InProgress
 * or Current from these, and `kubectl wait --for=condition=Ready` keeps reading Ready.
 */
export function progressOf(conds: readonly ConditionInput[]): ConditionInput[] {
  const ready = conds.find((c) => c.type === CONDITION.Ready);
  const notTrue = conds.filter(
    (c) => (c.type === CONDITION.Ready || c.type === CONDITION.Programmed) && c.status !== 'True',
  );
  if (ready && ready.status !== 'True') {
    const cause = conds.find((c) => STALLED_REASONS.has(c.reason));
    if (cause)
      return [{ type: CONDITION.Stalled, status: 'True', reason: cause.reason, message: cause.message }];
  }
  const busy = notTrue.find((c) => c.type === CONDITION.Programmed) ?? notTrue[0];
  return busy
    ? [{ type: CONDITION.Reconciling, status: 'True', reason: busy.reason, message: busy.message }]
    : [];
}
