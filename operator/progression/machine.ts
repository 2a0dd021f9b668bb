// The progression state machine: a pure function of (spec.progression, status.progression, now,
// the annotation command, the canary's figures over the step's window) → the next status and the
// decisions taken. No clock, no I/O: the reconciler (reconcilers/progression.ts) passes them in.
//
//   Progressing ──gates pass at the end of the step──▶ next step … ──after the last──▶ Promoted
//        │  └──gate fails (as soon as minRequests are in)──▶ RolledBack (or Paused: onFailure)
//        └──pause──▶ Paused ──resume──▶ Progressing (the step's window starts again)
//   promote / abort (annotation) from any other phase: Promoted (100 %) / RolledBack (0 %).
//   A change of spec.progression or spec.backends starts again at step 1.
import {
  contentVersion,
  durationMs,
  PROGRESSION_COMMANDS,
  type Progression,
  type ProgressionCommand,
  type ProgressionFigures,
  type ProgressionStatus,
  type TrafficSplitSpec,
} from '../../api/index.ts';

/** What the proxies observed of one backend over the step's window. */
export interface Window {
  requests: number;
  /** 5xx answers (and requests the proxy failed itself). */
  errors: number;
  /** Latency at the gate's percentile, ms (upper bound of the histogram bucket). */
  latencyMs?: number;
}

export interface Input {
  now: number;
  /** progressionHash(spec) of the current spec. */
  specHash: string;
  /** The annotation's value (weft.dev/progression), if any. */
  command?: string;
  /** Figures over the current step's window; undefined when they could not be read. */
  observed?: { canary: Window; stable: Window };
}

export type DecisionKind = 'Started' | 'Step' | 'Promoted' | 'RolledBack' | 'Paused' | 'Resumed' | 'Ignored';

export interface Decision {
  kind: DecisionKind;
  message: string;
  /** A failure (Warning Event): a gate failed, or a command could not be used. */
  warning: boolean;
}

export interface Outcome {
  status: ProgressionStatus;
  decisions: Decision[];
  /** When the current step's time is up (ms from now); undefined once the progression stopped. */
  dueInMs?: number;
}

export const DEFAULT_MIN_REQUESTS = 10;
export const DEFAULT_INTERVAL = '1m';
const MAX_HISTORY = 20;

/** The canary's weight at each step, percent. */
export function stepWeights(p: Progression): number[] {
  if (p.stepWeights) return [...p.stepWeights];
  const r = p.stepWeightRange;
  if (!r) return [];
  const out: number[] = [];
  for (let w = r.start; w <= r.max && out.length < 100; w += r.increment) out.push(w);
  return out;
}

/** What a run is for: a change of the progression or of the backends starts it again. */
export const progressionHash = (spec: TrafficSplitSpec): string =>
  contentVersion({ backends: spec.backends, progression: spec.progression });

/** The verb of an annotation value: "pause", or "pause@<anything>" (weftctl adds a time). */
export function commandVerb(value: string): ProgressionCommand | undefined {
  const verb = value.split('@', 1)[0]!.trim();
  return (PROGRESSION_COMMANDS as readonly string[]).includes(verb)
    ? (verb as ProgressionCommand)
    : undefined;
}

type Verdict = { ok: true } | { ok: false; message: string } | { ok: 'pending'; message: string };

const pct = (n: number) => `${(Math.floor(n * 10) / 10).toFixed(1)} %`;

/** The canary's figures against the gates. */
export function gateVerdict(p: Progression, w: Window | undefined): Verdict {
  const min = p.gates?.minRequests ?? DEFAULT_MIN_REQUESTS;
  if (!w || w.requests < min)
    return { ok: 'pending', message: `waiting for requests: ${w?.requests ?? 0}/${min} in this step` };
  const rate = successRate(w);
  const g = p.gates;
  if (g?.minSuccessRate !== undefined && rate < g.minSuccessRate)
    return {
      ok: false,
      message: `success rate ${pct(rate)} (${w.errors} errors in ${w.requests} requests) is below the gate ${g.minSuccessRate} %`,
    };
  if (g?.maxLatency) {
    const max = durationMs(g.maxLatency.threshold);
    const p99 = g.maxLatency.percentile ?? 99;
    if (w.latencyMs === undefined || w.latencyMs > max)
      return {
        ok: false,
        message: `latency p${p99} ${w.latencyMs === undefined ? 'above the largest bucket' : `up to ${w.latencyMs} ms`} exceeds the gate ${g.maxLatency.threshold}`,
      };
  }
  return { ok: true };
}

export const successRate = (w: Window) =>
  w.requests === 0 ? 100 : (100 * (w.requests - w.errors)) / w.requests;

/** Status figures of a window (success rate in percent, one decimal). */
export function figuresOf(w: Window): ProgressionFigures {
  const f: ProgressionFigures = { requests: w.requests };
  if (w.requests > 0) f.successRate = Math.floor(successRate(w) * 10) / 10;
  if (w.latencyMs !== undefined) f.latencyMs = w.latencyMs;
  return f;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The next status of a progression, and the decisions taken on the way. */
export function advance(p: Progression, prev: ProgressionStatus | undefined, input: Input): Outcome {
  const steps = stepWeights(p);
  const intervalMs = durationMs(p.interval ?? DEFAULT_INTERVAL);
  const decisions: Decision[] = [];
  let s: ProgressionStatus;
  const decide = (kind: DecisionKind, message: string, warning = false) => {
    decisions.push({ kind, message, warning });
    s.history = [
      ...(s.history ?? []),
      { time: iso(input.now), decision: kind, step: s.step, canaryWeight: s.canaryWeight, message },
    ].slice(-MAX_HISTORY);
  };
  const at = (step: number) => `step ${step + 1}/${steps.length}: canary at ${steps[step]} %`;
  const enter = (step: number) => {
    s.step = step;
    s.canaryWeight = steps[step]!;
    s.stepStartedAt = iso(input.now);
  };
  const stop = (phase: 'Promoted' | 'RolledBack', why: string, warning: boolean) => {
    s.phase = phase;
    s.canaryWeight = phase === 'Promoted' ? 100 : 0;
    s.message = why;
    decide(phase, why, warning);
  };

  if (!prev || prev.specHash !== input.specHash) {
    s = {
      phase: 'Progressing',
      step: 0,
      canaryWeight: steps[0] ?? 0,
      stepStartedAt: iso(input.now),
      specHash: input.specHash,
      history: prev?.history,
    };
    // A command given before this run is not replayed on it.
    if (input.command !== undefined) s.command = input.command;
    s.message = at(0);
    decide('Started', `${prev ? 'spec changed, started again' : 'started'}: ${at(0)}`);
  } else {
    s = structuredClone(prev);
    if (input.command !== undefined && input.command !== prev.command) {
      s.command = input.command;
      const verb = commandVerb(input.command);
      if (!verb)
        decide(
          'Ignored',
          `annotation weft.dev/progression: "${input.command}" is not one of ${PROGRESSION_COMMANDS.join(', ')}`,
          true,
        );
      // promote and abort act in any other phase: a promoted canary can still be pulled back.
      else if (verb === 'promote' && s.phase !== 'Promoted')
        stop('Promoted', 'promoted on demand: canary at 100 %', false);
      else if (verb === 'abort' && s.phase !== 'RolledBack')
        stop('RolledBack', 'aborted on demand: canary back to 0 %', false);
      else if (verb === 'pause' && s.phase === 'Progressing') {
        s.phase = 'Paused';
        s.message = `paused on demand at ${at(s.step)}`;
        decide('Paused', s.message);
      } else if (verb === 'resume' && s.phase === 'Paused') {
        s.phase = 'Progressing';
        // The window starts again: figures from before the pause do not count.
        s.stepStartedAt = iso(input.now);
        s.message = at(s.step);
        decide('Resumed', `resumed: ${at(s.step)}`);
      } else decide('Ignored', `"${verb}" does nothing while the progression is ${s.phase}`);
    }
  }

  // A window just opened (started, resumed) has no figures yet: the input's are the old window's.
  const fresh = decisions.some((d) => d.kind === 'Started' || d.kind === 'Resumed');
  if (fresh) delete s.observed;
  else if (input.observed)
    s.observed = {
      at: iso(input.now),
      canary: figuresOf(input.observed.canary),
      stable: figuresOf(input.observed.stable),
    };
  if (s.phase !== 'Progressing') return { status: s, decisions };

  const elapsed = input.now - Date.parse(s.stepStartedAt);
  const v = fresh ? ({ ok: 'pending', message: '' } as Verdict) : gateVerdict(p, input.observed?.canary);
  if (v.ok === false) {
    if ((p.onFailure ?? 'Rollback') === 'Rollback')
      stop('RolledBack', `rolled back at ${at(s.step)}: ${v.message}`, true);
    else {
      s.phase = 'Paused';
      s.message = `paused at ${at(s.step)}: ${v.message}`;
      decide('Paused', s.message, true);
    }
    return { status: s, decisions };
  }
  if (elapsed >= intervalMs && v.ok === true) {
    if (s.step + 1 < steps.length) {
      enter(s.step + 1);
      // status.observed is the current step's window: the next one starts empty.
      delete s.observed;
      s.message = at(s.step);
      decide('Step', `gates passed: ${at(s.step)}`);
      return { status: s, decisions, dueInMs: intervalMs };
    }
    stop('Promoted', `gates passed at every step: canary at 100 %`, false);
    return { status: s, decisions };
  }
  if (!fresh) s.message = `${at(s.step)}${v.ok === 'pending' ? `; ${v.message}` : ''}`;
  return { status: s, decisions, dueInMs: Math.max(0, intervalMs - elapsed) };
}
