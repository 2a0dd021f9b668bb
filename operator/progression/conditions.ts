// The conditions a progression writes on its TrafficSplit, beside the ones of
// reconcilers/trafficsplit.ts and under its own field manager: Progressing, Promoted, RolledBack.
// Each is always present while spec.progression is, True or False, so `kubectl wait
// --for=condition=Promoted` and GitOps health checks read them (docs/progressive-delivery.md).
import type { ProgressionStatus } from '../../api/index.ts';
import type { ConditionInput } from '../../kube/conditions.ts';

export const PROGRESSION_CONDITION = {
  Progressing: 'Progressing',
  Promoted: 'Promoted',
  RolledBack: 'RolledBack',
} as const;

/** Types written by the progression's field manager: the TrafficSplit status writer leaves them alone. */
export const PROGRESSION_CONDITION_TYPES: ReadonlySet<string> = new Set(Object.values(PROGRESSION_CONDITION));

/** The field manager of status.progression and these conditions. */
export const PROGRESSION_FIELD_MANAGER = 'weft-operator-progression';

export const PROGRESSION_REASON = {
  StepInProgress: 'StepInProgress',
  Paused: 'Paused',
  Promoted: 'Promoted',
  RolledBack: 'RolledBack',
  NotPromoted: 'NotPromoted',
  NotRolledBack: 'NotRolledBack',
} as const;

const PHASE_REASON = {
  Progressing: PROGRESSION_REASON.StepInProgress,
  Paused: PROGRESSION_REASON.Paused,
  Promoted: PROGRESSION_REASON.Promoted,
  RolledBack: PROGRESSION_REASON.RolledBack,
} as const;

export function progressionConditions(s: ProgressionStatus): ConditionInput[] {
  const msg = s.message ?? '';
  const running = s.phase === 'Progressing';
  return [
    {
      type: PROGRESSION_CONDITION.Progressing,
      status: running ? 'True' : 'False',
      reason: PHASE_REASON[s.phase],
      message: msg,
    },
    s.phase === 'Promoted'
      ? {
          type: PROGRESSION_CONDITION.Promoted,
          status: 'True',
          reason: PROGRESSION_REASON.Promoted,
          message: msg,
        }
      : {
          type: PROGRESSION_CONDITION.Promoted,
          status: 'False',
          reason: PROGRESSION_REASON.NotPromoted,
          message: `canary at ${s.canaryWeight} %`,
        },
    s.phase === 'RolledBack'
      ? {
          type: PROGRESSION_CONDITION.RolledBack,
          status: 'True',
          reason: PROGRESSION_REASON.RolledBack,
          message: msg,
        }
      : {
          type: PROGRESSION_CONDITION.RolledBack,
          status: 'False',
          reason: PROGRESSION_REASON.NotRolledBack,
          message: 'no gate failed',
        },
  ];
}
