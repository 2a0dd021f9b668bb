// hack/check-cycles.ts on small trees written to a temp directory: a cycle through a type-only,
// a multi-line and a re-export statement is reported as a path of files (and fails the command);
// a tree without one passes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { findCycles, forbiddenImports, importGraph, importSpecifiers } from './check-cycles.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'weft-cycles-'));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const script = join(import.meta.dirname, 'check-cycles.ts');

test('the specifiers of import, import type, multi-line, side-effect and export-from statements', () => {
  const src = [
    "import { a } from './a.ts';",
    "import type { B } from '../b.ts';",
    'import {',
    '  c,',
    '  type D,',
    "} from './c.ts';",
    "import 'reflect-metadata';",
    "export { e } from './e.ts';",
    "export * from './f.ts';",
    'const s = \'import x from "./not-a-statement.ts"\';',
    "const later = await import('./dynamic.ts');",
  ].join('\n');
  assert.deepEqual(importSpecifiers(src), [
    './a.ts',
    '../b.ts',
    './c.ts',
    'reflect-metadata',
    './e.ts',
    './f.ts',
  ]);
});

test('a cycle across folders is reported as a path of files, and the command fails naming it', () => {
  const root = tree({
    'proxy/a.ts': "import type { B } from '../cli/b.ts';\nexport const a = 1;\n",
    'cli/b.ts': "import {\n  c,\n} from './c.ts';\nexport type B = number;\n",
    'cli/c.ts': "export { a } from '../proxy/a.ts';\nexport const c = 2;\n",
    'kube/d.ts': "import { a } from '../proxy/a.ts';\nimport 'node:fs';\n",
    'kube/self.ts': "import { x } from './self.ts';\nexport const x = 1;\n",
  });
  assert.deepEqual(findCycles(importGraph(root)), [
    ['cli/b.ts', 'cli/c.ts', 'proxy/a.ts', 'cli/b.ts'],
    ['kube/self.ts', 'kube/self.ts'],
  ]);
  const r = spawnSync(process.execPath, [script, root], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /import cycle: cli\/b\.ts → cli\/c\.ts → proxy\/a\.ts → cli\/b\.ts/);
  assert.match(r.stderr, /2 import cycle\(s\) among 5 files/);
});

test('a tree without a cycle passes', () => {
  const root = tree({
    'a.ts': "import { b } from './lib/b.ts';\nexport const a = b;\n",
    'lib/b.ts': "import { c } from './c.ts';\nexport const b = c;\n",
    'lib/c.ts': 'export const c = 1;\n',
  });
  assert.deepEqual(findCycles(importGraph(root)), []);
  const r = spawnSync(process.execPath, [script, root], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /no import cycle and no forbidden import among 3 files/);
});

test('hack/ importing test/ (or bench/ importing it) is reported and fails the command', () => {
  const root = tree({
    'test/support/lock.ts': "export * from '../../hack/lib/lock.ts';\n",
    'hack/lib/lock.ts': 'export const lock = 1;\n',
    'hack/cluster.ts': "import { lock } from '../test/support/lock.ts';\n",
    'bench/proxy.ts':
      "import { lock } from '../test/support/lock.ts';\nimport { x } from '../test/netns/x.ts';\n",
    'test/netns/x.ts': 'export const x = 1;\n',
  });
  assert.deepEqual(forbiddenImports(importGraph(root)), [
    'bench/proxy.ts → test/netns/x.ts',
    'bench/proxy.ts → test/support/lock.ts',
    'hack/cluster.ts → test/support/lock.ts',
  ]);
  assert.deepEqual(findCycles(importGraph(root)), []);
  const r = spawnSync(process.execPath, [script, root], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /forbidden import: hack\/cluster\.ts → test\/support\/lock\.ts/);
});
