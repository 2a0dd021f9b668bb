// Another commit's build beside this tree's, for a benchmark that compares both in one run
// (bench/proxy.ts --baseline <ref>): the ref checked out into a temporary git worktree with
// this tree's node_modules linked in, the SO_ORIGINAL_DST addon copied when proxy/native/ is
// the same in both (built with the baseline's own build.sh otherwise), and the baseline's own
// dist/ built by its hack/build-dist.ts. remove() deletes the worktree and proves it is gone.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ADDON = 'proxy/native/build/Release/original_dst.node';

export interface Baseline {
  /** The ref as given, and the commit it named. */
  ref: string;
  commit: string;
  /** The worktree. */
  dir: string;
  /** `node <entry> proxy …` runs the baseline's sidecar. */
  entry: string;
  /** Removes the worktree; true once neither the directory nor git's record of it is left. */
  remove(): Promise<boolean>;
}

export async function prepareBaseline(
  root: string,
  ref: string,
  log: (line: string) => void = () => {},
): Promise<Baseline> {
  const git = async (...a: string[]) =>
    (await run('git', ['-C', root, ...a], { maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
  let commit: string;
  try {
    commit = await git('rev-parse', '--verify', '--end-of-options', `${ref}^{commit}`);
  } catch {
    throw new Error(`--baseline ${ref}: not a commit of this repository (try a branch, tag or e.g. main~5)`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'weft-baseline-'));
  // mkdtemp makes it 0700: the sidecars run as UID 1337 and must read the bundle.
  await chmod(dir, 0o755);
  const remove = async (): Promise<boolean> => {
    await git('worktree', 'remove', '--force', dir).catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await git('worktree', 'prune');
    const listed = (await git('worktree', 'list', '--porcelain'))
      .split('\n')
      .some((l) => l === `worktree ${dir}`);
    return !existsSync(dir) && !listed;
  };
  try {
    log(`baseline ${ref} (${commit.slice(0, 12)}): git worktree at ${dir}`);
    await git('worktree', 'add', '--detach', dir, commit);
    await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
    const sameAddon = await git('diff', '--quiet', commit, '--', 'proxy/native').then(
      () => true,
      () => false,
    );
    if (sameAddon && existsSync(join(root, ADDON))) {
      await mkdir(join(dir, 'proxy/native/build/Release'), { recursive: true });
      await copyFile(join(root, ADDON), join(dir, ADDON));
      log('baseline: proxy/native unchanged, addon copied');
    } else {
      log('baseline: proxy/native differs, building its addon');
      await run('bash', [join(dir, 'proxy/native/build.sh')], { maxBuffer: 16 * 1024 * 1024 });
    }
    if (!existsSync(join(dir, 'hack/build-dist.ts')))
      throw new Error(
        `--baseline ${ref}: it has no hack/build-dist.ts to build its proxy; pick a later commit`,
      );
    await run(process.execPath, [join(dir, 'hack/build-dist.ts'), '--outdir', join(dir, 'dist')], {
      cwd: dir,
      maxBuffer: 16 * 1024 * 1024,
    });
    log('baseline: dist built');
    return { ref, commit, dir, entry: join(dir, 'dist', 'weft.js'), remove };
  } catch (err) {
    await remove();
    throw err;
  }
}
