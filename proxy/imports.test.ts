// The proxy's modules import each other without a cycle (issue 12): policy modules never import
// a transport, transports never import proxy.ts. Type-only imports count too. The graph and the
// cycle search are hack/check-cycles.ts's (which checks the whole repository in hack/test.sh's
// static checks, and is tested on a tree with a cycle); this keeps proxy/'s own promise here.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { findCycles, importGraph } from '../hack/check-cycles.ts';

const ROOT = path.dirname(new URL(import.meta.url).pathname);

test('proxy/ has no import cycle', () => {
  const inProxy = (f: string) => f.startsWith('proxy/') && !f.endsWith('.test.ts');
  const graph = new Map(
    [...importGraph(path.join(ROOT, '..'))]
      .filter(([f]) => inProxy(f))
      .map(([f, deps]) => [f, deps.filter(inProxy)] as const),
  );
  assert.ok(graph.size > 40, `read ${graph.size} files of proxy/`);
  assert.ok(
    [...graph.values()].some((d) => d.includes('proxy/context.ts')),
    'imports are read (context.ts is imported)',
  );
  assert.deepEqual(findCycles(graph), []);
});
