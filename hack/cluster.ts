// npm run cluster:up — start a local control plane (etcd, kube-apiserver,
// kube-controller-manager) with the Weft CRDs installed, and print its kubeconfig.
// npm run cluster:down — stop it and remove its directory.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControlPlane } from '../test/support/control-plane.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Where the running cluster's state lives; WEFT_CLUSTER_DIR moves it (tests use their own). */
export const STATE_DIR = process.env.WEFT_CLUSTER_DIR ?? join(root, '.cluster');
const STATE = join(STATE_DIR, 'state.json');

interface State {
  pids: number[];
  dir: string;
  kubeconfigPath: string;
  server: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function readState(): State | undefined {
  if (!existsSync(STATE)) return undefined;
  const s = JSON.parse(readFileSync(STATE, 'utf8')) as State;
  return s.pids.some(alive) ? s : undefined;
}

export async function up(
  log = (l: string) => process.stderr.write(`${l}\n`),
): Promise<State & { kubectl: string }> {
  const existing = readState();
  if (existing) {
    log(`[cluster] already running at ${existing.server}`);
    return {
      ...existing,
      kubectl: join(
        execFileSync('bash', [join(root, 'hack/build-control-plane.sh'), '--print'], {
          encoding: 'utf8',
        }).trim(),
        'kubectl',
      ),
    };
  }
  mkdirSync(STATE_DIR, { recursive: true });
  const dir = join(STATE_DIR, 'control-plane');
  rmSync(dir, { recursive: true, force: true });
  const cp = await startControlPlane({ controllerManager: true, detached: true, dir, log });
  const state: State = { pids: cp.pids, dir: cp.dir, kubeconfigPath: cp.kubeconfigPath, server: cp.server };
  writeFileSync(STATE, JSON.stringify(state, null, 2));
  log('[cluster] installing the Weft CRDs');
  execFileSync(
    cp.kubectl,
    [
      '--kubeconfig',
      cp.kubeconfigPath,
      'apply',
      '--server-side',
      '--field-manager=weft',
      '-k',
      join(root, 'crds'),
    ],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  execFileSync(
    cp.kubectl,
    [
      '--kubeconfig',
      cp.kubeconfigPath,
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd',
      '-l',
      'app.kubernetes.io/part-of=weft',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return { ...state, kubectl: cp.kubectl };
}

export async function down(log = (l: string) => process.stderr.write(`${l}\n`)): Promise<void> {
  if (!existsSync(STATE)) {
    log('[cluster] nothing is running');
    return;
  }
  const s = JSON.parse(readFileSync(STATE, 'utf8')) as State;
  for (const pid of [...s.pids].reverse()) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (s.pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of s.pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(STATE_DIR, { recursive: true, force: true });
  log(`[cluster] stopped ${s.pids.length} processes and removed ${s.dir}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cmd = process.argv[2];
  if (cmd === 'up') {
    const s = await up();
    console.log(s.kubeconfigPath);
    process.stderr.write(`[cluster] ready. Try: ${s.kubectl} --kubeconfig ${s.kubeconfigPath} get crds\n`);
  } else if (cmd === 'down') {
    await down();
  } else {
    console.error('usage: node hack/cluster.ts up|down');
    process.exit(2);
  }
}
