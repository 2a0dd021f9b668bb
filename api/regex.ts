// Regular expressions of the API (TrafficSplit RegularExpression matches) with RE2 semantics, as
// Envoy and the Gateway API use them: matching runs in time linear in the input, so no pattern
// can stall a sidecar (a backtracking engine took 11.8 s on ^/(a+)+$ and a 31-character path).
// RE2 has no backreferences or lookaround; a pattern that needs them is refused, at admission
// (webhook), by the operator's compiler (status Accepted=False) and by the proxy (config refused).
//
// The engine is the `re2` package's native addon. In the source tree it comes from node_modules;
// in dist/ (hack/build-dist.ts) the addon is copied next to the bundled code.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { CodedError } from './errors.ts';

/** What the proxy needs of a compiled expression. */
export interface Matcher {
  test(input: string): boolean;
}
type RE2Constructor = new (source: string, flags?: string) => Matcher;

const BESIDE_BUNDLE = new URL('./re2.node', import.meta.url).pathname;
let engine: RE2Constructor | undefined;

function re2(): RE2Constructor {
  if (engine) return engine;
  const load = createRequire(import.meta.url);
  try {
    engine = (existsSync(BESIDE_BUNDLE) ? load(BESIDE_BUNDLE) : load('re2')) as RE2Constructor;
  } catch (cause) {
    throw new CodedError(
      'WEFT_RE2_UNAVAILABLE',
      `the RE2 regular-expression engine (npm package re2, a native addon) cannot be loaded: ${(cause as Error).message}. ` +
        'Build it with `bash proxy/native/build.sh` (run by `npm install`).',
      { cause },
    );
  }
  return engine;
}

/** Compiles `source` to match a whole input (anchored at both ends); throws SyntaxError if not RE2. */
export function compileRegex(source: string): Matcher {
  const RE2 = re2();
  return new RE2(`^(?:${source})$`);
}

/** Why `source` is not an RE2 expression, or undefined when it is. */
export function regexError(source: string): string | undefined {
  try {
    compileRegex(source);
    return undefined;
  } catch (err) {
    if ((err as CodedError).code === 'WEFT_RE2_UNAVAILABLE') throw err;
    return `"${source}" is not an RE2 regular expression (no backreferences or lookaround): ${(err as Error).message}`;
  }
}

/** Every RegularExpression value in a list of matches that RE2 refuses, with its field path. */
export function matchRegexErrors(
  matches: readonly {
    path?: { type?: string; value: string };
    headers?: readonly { type?: string; value?: string }[];
  }[],
  root: string,
): { field: string; message: string }[] {
  const errors: { field: string; message: string }[] = [];
  matches.forEach((m, i) => {
    if (m.path?.type === 'RegularExpression') {
      const e = regexError(m.path.value);
      if (e) errors.push({ field: `${root}[${i}].path.value`, message: e });
    }
    (m.headers ?? []).forEach((h, j) => {
      if (h.type !== 'RegularExpression' || h.value === undefined) return;
      const e = regexError(h.value);
      if (e) errors.push({ field: `${root}[${i}].headers[${j}].value`, message: e });
    });
  });
  return errors;
}
