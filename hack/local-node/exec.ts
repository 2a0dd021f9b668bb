// Running a container's command as a local process inside the pod: its network namespace
// (nsenter), a private mount namespace with the volumes bind-mounted at their mountPaths
// (unshare -m), and the container's UID/GID (setpriv).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container } from '@kubernetes/client-node';
import { LocalNodeError } from './errors.ts';

export const repoRoot = join(import.meta.dirname, '..', '..');

export interface Tools {
  nsenter: string;
  unshare: string;
  setpriv: string;
  sh: string;
  mount: string;
  mkdir: string;
  touch: string;
}

/** Absolute paths of the tools the launcher needs; throws WEFT_LN_TOOL_MISSING naming the package. */
export function findTools(): Tools {
  const need: Record<keyof Tools, string> = {
    nsenter: 'util-linux',
    unshare: 'util-linux',
    setpriv: 'util-linux',
    sh: 'dash',
    mount: 'mount',
    mkdir: 'coreutils',
    touch: 'coreutils',
  };
  const out: Partial<Tools> = {};
  for (const [tool, pkg] of Object.entries(need) as [keyof Tools, string][]) {
    try {
      out[tool] = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    } catch {
      throw new LocalNodeError(
        'WEFT_LN_TOOL_MISSING',
        `${tool} not found: install the Debian package ${pkg}`,
      );
    }
  }
  return out as Tools;
}

export interface CommandPaths {
  repoRoot: string;
  /** The project's Node 24 (node_modules/.bin/node). */
  nodeBin: string;
  /** cmd/weft.ts when it exists. */
  weftEntry: string | undefined;
}

export function commandPaths(root = repoRoot): CommandPaths {
  const local = join(root, 'node_modules', '.bin', 'node');
  const weft = join(root, 'cmd', 'weft.ts');
  return {
    repoRoot: root,
    nodeBin: existsSync(local) ? realpathSync(local) : process.execPath,
    weftEntry: existsSync(weft) ? weft : undefined,
  };
}

/**
 * The argv the local node runs for a container (images are ignored):
 *   weft <args>  → node cmd/weft.ts <args>  (before cmd/weft.ts exists: `weft proxy …` → node proxy/main.ts …)
 *   node <args>  → the project's Node 24
 *   anything else runs as given (PATH lookup in the container's environment).
 * A container without a command runs `weft <args>` when its image is a weft image.
 */
export function mapCommand(
  c: Pick<V1Container, 'name' | 'image' | 'command' | 'args'>,
  paths: CommandPaths,
  expandFn: (s: string) => string = (s) => s,
): string[] {
  let argv = [...(c.command ?? []), ...(c.args ?? [])].map(expandFn);
  if (!c.command?.length) {
    const image = (c.image ?? '').split('/').pop() ?? '';
    if (!/^weft([:@-]|$)/.test(image)) {
      throw new LocalNodeError(
        'WEFT_LN_NO_COMMAND',
        `container ${c.name} has no command; the local node ignores images, so give the command to run`,
      );
    }
    argv = ['weft', ...argv];
  }
  const [cmd, ...rest] = argv as [string, ...string[]];
  if (cmd === 'weft') {
    if (paths.weftEntry) return [paths.nodeBin, paths.weftEntry, ...rest];
    if (rest[0] === 'proxy')
      return [paths.nodeBin, join(paths.repoRoot, 'proxy', 'main.ts'), ...rest.slice(1)];
    throw new LocalNodeError(
      'WEFT_LN_COMMAND',
      `container ${c.name}: cmd/weft.ts does not exist yet, so \`weft ${rest[0] ?? ''}\` cannot run (only \`weft proxy\` falls back to proxy/main.ts)`,
    );
  }
  if (cmd === 'node') return [paths.nodeBin, ...rest];
  return argv;
}

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
  /** The source is a file (subPath of a file): the target is a file too. */
  file: boolean;
}

export interface LaunchSpec {
  netnsPath: string;
  mounts: Mount[];
  uid: number | undefined;
  gid: number | undefined;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Append stdout and stderr here. */
  logFile: string;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The sh script run inside the new mount namespace before exec'ing the container. */
export function launchScript(
  t: Tools,
  s: Omit<LaunchSpec, 'argv' | 'env' | 'logFile' | 'netnsPath'>,
): string {
  const lines = ['set -e'];
  for (const m of s.mounts) {
    if (m.file) {
      lines.push(
        `[ -e ${q(m.target)} ] || { ${t.mkdir} -p "$(dirname ${q(m.target)})"; ${t.touch} ${q(m.target)}; }`,
      );
    } else lines.push(`${t.mkdir} -p ${q(m.target)}`);
    lines.push(`${t.mount} --bind ${q(m.source)} ${q(m.target)}`);
    if (m.readOnly) lines.push(`${t.mount} -o remount,bind,ro ${q(m.target)}`);
  }
  lines.push(`cd ${q(s.cwd)}`);
  if (s.uid !== undefined || s.gid !== undefined) {
    lines.push(`exec ${t.setpriv} --reuid=${s.uid ?? 0} --regid=${s.gid ?? 0} --clear-groups -- "$@"`);
  } else lines.push('exec "$@"');
  return lines.join('\n');
}

/** nsenter's arguments: the pod's network namespace, a private mount namespace, the launch script. */
function containerArgv(t: Tools, s: Omit<LaunchSpec, 'logFile'>): string[] {
  return [
    `--net=${s.netnsPath}`,
    '--',
    t.unshare,
    '--mount',
    '--propagation',
    'private',
    '--',
    t.sh,
    '-c',
    launchScript(t, s),
    'sh',
    ...s.argv,
  ];
}

/** Starts the container process in its own process group; kill it with killGroup. */
export function launch(t: Tools, s: LaunchSpec): ChildProcess {
  const fd = openSync(s.logFile, 'a');
  try {
    return spawn(t.nsenter, containerArgv(t, s), { env: s.env, stdio: ['ignore', fd, fd], detached: true });
  } finally {
    closeSync(fd);
  }
}

/** Runs a command in the container's namespaces to completion (exec probes); resolves its exit code. */
export function execIn(t: Tools, s: Omit<LaunchSpec, 'logFile'>, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn(t.nsenter, containerArgv(t, s), { env: s.env, stdio: 'ignore', detached: true });
    const timer = setTimeout(() => killGroup(p, 'SIGKILL'), timeoutMs);
    p.on('error', () => {
      clearTimeout(timer);
      resolve(-1);
    });
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
}

export function killGroup(p: ChildProcess, sig: NodeJS.Signals): void {
  if (!p.pid) return;
  try {
    process.kill(-p.pid, sig);
  } catch {
    try {
      p.kill(sig);
    } catch {}
  }
}
