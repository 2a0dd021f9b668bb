// The import graph has no cycle: every relative import or re-export of every *.ts file in the
// repository (type-only ones too: a type cycle still ties two modules' designs together;
// dynamic import() is left out, it is how cmd/weft.ts loads one component on demand), then the
// strongly connected components of that graph. Prints each cycle as a path of files and exits
// 1 when there is one. No dependency: specifiers are read with a regular expression anchored
// at the start of a statement, which is enough for this code base's formatted imports.
// Also the import directions docs/architecture.md promises (FORBIDDEN): development scripts
// (hack/) import nothing from the tests or benchmarks, benchmarks nothing from the tests.
// Run by hack/test.sh's static checks: node hack/check-cycles.ts [root]
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SKIP = new Set(['node_modules', 'build', 'dist', '.git', '.cluster']);

/** Folder → folders its files must not import (what they share lives in hack/lib/). */
export const FORBIDDEN: Record<string, string[]> = {
  'hack/': ['test/', 'bench/'],
  'bench/': ['test/'],
};

/** Every import that crosses a forbidden direction, as "from → to". */
export function forbiddenImports(
  graph: Map<string, string[]>,
  rules: Record<string, string[]> = FORBIDDEN,
): string[] {
  const out: string[] = [];
  for (const [file, deps] of graph)
    for (const [from, tos] of Object.entries(rules))
      if (file.startsWith(from))
        for (const d of deps) if (tos.some((t) => d.startsWith(t))) out.push(`${file} → ${d}`);
  return out.sort();
}

/** The module specifiers a file's static import and export-from statements name. */
export function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  const re = /^[ \t]*(?:import|export)\b(?:[^'";]*?\bfrom)?\s*['"]([^'"\n]+)['"]/gm;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push(m[1]!);
  return out;
}

function tsFiles(root: string, dir = root, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP.has(e.name) || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) tsFiles(root, p, out);
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** file → the repository files it imports (relative paths from root, sorted). */
export function importGraph(rootDir: string): Map<string, string[]> {
  const root = resolve(rootDir);
  const files = tsFiles(root);
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const deps = new Set<string>();
    for (const spec of importSpecifiers(readFileSync(f, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(f), spec);
      if (known.has(target)) deps.add(relative(root, target));
    }
    graph.set(relative(root, f), [...deps].sort());
  }
  return graph;
}

/**
 * Every cycle as a path of files (first file repeated at the end), one per strongly connected
 * component of more than one file or a file importing itself (Tarjan's algorithm).
 */
export function findCycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(c);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return components.map((c) => cyclePath(graph, new Set(c))).sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** One cycle through the component's first file (breadth-first back to it). */
function cyclePath(graph: Map<string, string[]>, members: Set<string>): string[] {
  const start = [...members].sort()[0]!;
  const from = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = from.get(u)!) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!from.has(w)) {
        from.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const graph = importGraph(root);
  const cycles = findCycles(graph);
  for (const c of cycles) process.stderr.write(`import cycle: ${c.join(' → ')}\n`);
  if (cycles.length)
    process.stderr.write(
      `${cycles.length} import cycle(s) among ${graph.size} files: move what both sides need into a module that imports neither\n`,
    );
  const forbidden = forbiddenImports(graph);
  for (const f of forbidden) process.stderr.write(`forbidden import: ${f}\n`);
  if (forbidden.length)
    process.stderr.write(
      `${forbidden.length} forbidden import(s): hack/ must not import test/ or bench/, bench/ not test/; move what they share to hack/lib/\n`,
    );
  if (cycles.length || forbidden.length) process.exit(1);
  process.stdout.write(`no import cycle and no forbidden import among ${graph.size} files\n`);
}
