// The weights the proxies apply for a TrafficSplit with a progression: spec plus status. The
// canary gets status.progression.canaryWeight percent (0 until the operator started the run),
// the other backends share the rest in the ratio of their spec weights. The operator never
// writes spec: this is how its decisions reach the compiler.
import type { Backend, TrafficSplitSpec, TrafficSplitStatus } from '../../api/index.ts';

export function backendsInEffect(spec: TrafficSplitSpec, status: TrafficSplitStatus | undefined): Backend[] {
  const p = spec.progression;
  if (!p) return spec.backends;
  const canary = Math.min(100, Math.max(0, status?.progression?.canaryWeight ?? 0));
  const stable = spec.backends.reduce((n, b) => n + (b.service === p.canary ? 0 : b.weight), 0);
  // Refused by the CRD's rule (and by the compiler for objects stored before it): spec as is.
  if (stable === 0) return spec.backends;
  // Integers in the same ratio: canary/stable = canary% / (100 - canary%).
  return spec.backends.map((b) => ({
    ...b,
    weight: b.service === p.canary ? canary * stable : b.weight * (100 - canary),
  }));
}
