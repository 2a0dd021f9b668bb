// metav1.Condition helpers: conditions are keyed by type, and lastTransitionTime changes only
// when the status flips (a new reason or message alone keeps the old time).
import type { Condition } from '../api/common.ts';

export type ConditionStatus = Condition['status'];

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/** Merges wanted conditions into existing ones, keeping lastTransitionTime unless the status flips. */
export function mergeConditions(
  existing: readonly Condition[] | undefined,
  wanted: readonly ConditionInput[],
  observedGeneration: number | undefined,
  now: () => Date = () => new Date(),
): Condition[] {
  const byType = new Map((existing ?? []).map((c) => [c.type, c]));
  const out: Condition[] = [];
  for (const w of wanted) {
    const prev = byType.get(w.type);
    const lastTransitionTime =
      prev && prev.status === w.status
        ? prev.lastTransitionTime
        : now()
            .toISOString()
            .replace(/\.\d{3}Z$/, 'Z');
    const c: Condition = {
      type: w.type,
      status: w.status,
      reason: w.reason,
      message: w.message,
      lastTransitionTime,
    };
    if (observedGeneration !== undefined) c.observedGeneration = observedGeneration;
    out.push(c);
  }
  return out.sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}

/** Whether two condition lists say the same thing (ignoring lastTransitionTime). */
export function sameConditions(
  a: readonly Condition[] | undefined,
  b: readonly Condition[] | undefined,
): boolean {
  const key = (l: readonly Condition[] | undefined) =>
    JSON.stringify(
      [...(l ?? [])]
        .map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration ?? null])
        .sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
    );
  return key(a) === key(b);
}

export function findCondition(list: readonly Condition[] | undefined, type: string): Condition | undefined {
  return list?.find((c) => c.type === type);
}
