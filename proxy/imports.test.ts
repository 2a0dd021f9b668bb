// The proxy's modules import each other without a cycle (issue 12): policy modules never import
// a transport, transports never import proxy.ts. Type-only imports count too.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.dirname(new URL(import.meta.url).pathname);

/** Every non-test .ts file below `dir`, with the relative .ts files it imports or re-exports. */
function importGraph(dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'build' && e.name !== 'node_modules') walk(p);
      } else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.endsWith('.d.ts')) {
        const src = fs.readFileSync(p, 'utf8');
        const deps = [...src.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'(\.{1,2}\/[^']+\.ts)'/gms)]
          .map((m) => path.resolve(path.dirname(p), m[1]!))
          .filter((t) => t.startsWith(dir + path.sep));
        graph.set(p, deps);
      }
    }
  };
  walk(dir);
  return graph;
}

/** The cycles found by a depth-first walk, each as the file names around it. */
function cyclesOf(graph: Map<string, string[]>, base: string): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[] = [];
  const visit = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (state.get(d) === 'open')
        found.push([...stack.slice(stack.indexOf(d)), d].map((f) => path.relative(base, f)).join(' -> '));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return found;
}

test('the walk finds a cycle when there is one', () => {
  const g = new Map([
    ['/p/a.ts', ['/p/b.ts']],
    ['/p/b.ts', ['/p/c.ts']],
    ['/p/c.ts', ['/p/a.ts']],
    ['/p/d.ts', ['/p/a.ts']],
  ]);
  assert.deepEqual(cyclesOf(g, '/p'), ['a.ts -> b.ts -> c.ts -> a.ts']);
});

test('proxy/ has no import cycle', () => {
  const graph = importGraph(ROOT);
  assert.ok(graph.size > 40, `read ${graph.size} files of proxy/`);
  assert.ok(
    [...graph.values()].some((d) => d.includes(path.join(ROOT, 'context.ts'))),
    'imports are read (context.ts is imported)',
  );
  assert.deepEqual(cyclesOf(graph, ROOT), []);
});
