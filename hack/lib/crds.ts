// Waiting for CustomResourceDefinitions to be Established. kubectl reads each CRD once before it
// waits; a CRD read before the apiserver gave it any condition makes it fail at once
// (".status.conditions accessor error: <nil> is of the type <nil>, expected []interface{}")
// instead of waiting, a race of a `kubectl wait` right after the CRDs were applied (it failed a
// `.ci/run` once). The wait is run again then.

const ACCESSOR_RACE = /status\.conditions accessor error/;

/**
 * `kubectl wait --for=condition=Established --timeout=60s <what…>`, again (up to 5 times, 0.5 s
 * apart) when kubectl hit the race above. `kubectl(...args)` runs kubectl and throws its error
 * with `stderr` on failure (as execFileSync does).
 */
export function waitEstablished(kubectl: (...args: string[]) => unknown, ...what: string[]): void {
  for (let attempt = 1; ; attempt++) {
    try {
      kubectl('wait', '--for=condition=Established', '--timeout=60s', ...what);
      return;
    } catch (err) {
      const text = `${(err as { stderr?: unknown }).stderr ?? ''} ${(err as Error).message}`;
      if (attempt >= 5 || !ACCESSOR_RACE.test(text)) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
}
