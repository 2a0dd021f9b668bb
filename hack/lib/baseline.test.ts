// prepareBaseline on this repository's own HEAD: a git worktree with node_modules linked, the
// addon and a built dist; remove() leaves neither the directory nor git's record of it. A ref
// that names no commit is refused with the flag's name, and leaves no worktree behind.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { prepareBaseline } from './baseline.ts';
import { repoRoot } from './cluster.ts';

const worktrees = () =>
  execFileSync('git', ['-C', repoRoot, 'worktree', 'list', '--porcelain'], { encoding: 'utf8' });

test('a baseline worktree of HEAD has its own dist and addon, and is removed without a trace', async () => {
  const b = await prepareBaseline(repoRoot, 'HEAD');
  let removed = false;
  try {
    assert.equal(
      b.commit,
      execFileSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(),
    );
    assert.ok(b.entry.startsWith(b.dir) && existsSync(b.entry), `${b.entry} was not built`);
    assert.ok(existsSync(join(b.dir, 'dist', 'original_dst.node')), 'the addon is beside the bundle');
    assert.ok(lstatSync(join(b.dir, 'node_modules')).isSymbolicLink());
    assert.equal(statSync(b.dir).mode & 0o755, 0o755, 'readable by the sidecars (UID 1337)');
    assert.match(worktrees(), new RegExp(`worktree ${b.dir}\\n`));
    removed = await b.remove();
    assert.equal(removed, true);
    assert.equal(existsSync(b.dir), false);
    assert.doesNotMatch(worktrees(), new RegExp(`worktree ${b.dir}\\n`));
  } finally {
    if (!removed) await b.remove();
  }
});

test('a ref that is no commit is refused, naming --baseline', async () => {
  const before = worktrees();
  await assert.rejects(
    prepareBaseline(repoRoot, 'no-such-ref-weft'),
    /--baseline no-such-ref-weft: not a commit/,
  );
  assert.equal(worktrees(), before);
});
