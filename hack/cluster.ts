// npm run cluster:up — start the real one-node cluster (hack/node: control plane, containerd,
// kubelet, kube-proxy, CoreDNS; docs/real-node.md) with the Weft CRDs installed, and print its
// kubeconfig. `--node none` (or WEFT_NODE=none) starts only the control plane (etcd,
// kube-apiserver, kube-controller-manager): API work without pods, and beside a real cluster
// that already runs (one per machine: docs/real-node.md).
// npm run cluster:down — stop it and remove its directory (and, for the real node, everything
// it changed on the host).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControlPlane } from './lib/control-plane.ts';
import { waitEstablished } from './lib/crds.ts';
import { alive } from './lib/processes.ts';
import {
  handOverRealClusterLock,
  lockRealCluster,
  noteRealClusterDir,
  releaseRealClusterLock,
} from './lib/real-cluster-lock.ts';
import { importIntoNode, startRealNode, stopRealNode } from './node/index.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Where the running cluster's state lives; WEFT_CLUSTER_DIR moves it (tests use their own). */
export const STATE_DIR = process.env.WEFT_CLUSTER_DIR ?? join(root, '.cluster');
const STATE = join(STATE_DIR, 'state.json');

interface State {
  pids: number[];
  dir: string;
  kubeconfigPath: string;
  server: string;
  /** The real node's directory (hack/node), when `--node real` started the cluster. */
  realNode?: string;
}

export type NodeKind = 'real' | 'none';

/** `--node real|none`, else WEFT_NODE, else real; anything else is an error naming both. */
export function nodeKind(argv: string[], env: NodeJS.ProcessEnv = process.env): NodeKind {
  const i = argv.indexOf('--node');
  const v = i >= 0 ? argv[i + 1] : env.WEFT_NODE || 'real';
  if (v !== 'real' && v !== 'none') {
    throw new Error(
      `--node (or WEFT_NODE): "${v}" is not a node kind; use real or none (control plane only)`,
    );
  }
  return v;
}

export { alive };

export function readState(): State | undefined {
  if (!existsSync(STATE)) return undefined;
  const s = JSON.parse(readFileSync(STATE, 'utf8')) as State;
  return s.pids.some(alive) ? s : undefined;
}

export async function up(
  log = (l: string) => process.stderr.write(`${l}\n`),
  node: NodeKind = 'real',
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
  let cp: { pids: number[]; dir: string; kubeconfigPath: string; server: string; kubectl: string };
  let state: State;
  if (node === 'real') {
    const dir = join(STATE_DIR, 'node');
    await stopRealNode(dir, log); // what a crashed earlier run left
    // One real cluster per machine: wait for a test's to stop; the lock then stays with this
    // cluster (its etcd) until cluster:down.
    const release = await lockRealCluster(log);
    noteRealClusterDir(dir);
    try {
      cp = await startRealNode({
        dir,
        detached: true,
        log,
        ...(process.env.WEFT_NODE_SYNC_FREQUENCY
          ? { syncFrequency: process.env.WEFT_NODE_SYNC_FREQUENCY }
          : {}),
      });
    } catch (err) {
      release();
      throw err;
    }
    handOverRealClusterLock(process.pid, cp.pids[0]!);
    state = { pids: cp.pids, dir, kubeconfigPath: cp.kubeconfigPath, server: cp.server, realNode: dir };
  } else {
    const dir = join(STATE_DIR, 'control-plane');
    rmSync(dir, { recursive: true, force: true });
    cp = await startControlPlane({ controllerManager: true, detached: true, dir, log });
    state = { pids: cp.pids, dir: cp.dir, kubeconfigPath: cp.kubeconfigPath, server: cp.server };
  }
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
  waitEstablished(
    (...args) =>
      execFileSync(cp.kubectl, ['--kubeconfig', cp.kubeconfigPath, ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
        encoding: 'utf8',
      }),
    'crd',
    '-l',
    'app.kubernetes.io/part-of=weft',
  );
  return { ...state, kubectl: cp.kubectl };
}

async function waitGone(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

export async function down(log = (l: string) => process.stderr.write(`${l}\n`)): Promise<void> {
  if (!existsSync(STATE)) {
    log('[cluster] nothing is running');
    return;
  }
  const s = JSON.parse(readFileSync(STATE, 'utf8')) as State;
  if (s.realNode) {
    await stopRealNode(s.realNode, log);
    releaseRealClusterLock(s.pids);
  }
  for (const pid of [...s.pids].reverse()) if (alive(pid)) process.kill(pid, 'SIGTERM');
  await waitGone(s.pids, 15_000);
  for (const pid of s.pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  // SIGKILL is not instant either: return only once every process is really gone.
  await waitGone(s.pids, 5_000);
  rmSync(STATE_DIR, { recursive: true, force: true });
  log(`[cluster] stopped ${s.pids.length} processes and removed ${s.dir}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cmd = process.argv[2];
  if (cmd === 'up') {
    const s = await up(undefined, nodeKind(process.argv.slice(3)));
    console.log(s.kubeconfigPath);
    process.stderr.write(`[cluster] ready. Try: ${s.kubectl} --kubeconfig ${s.kubeconfigPath} get crds\n`);
  } else if (cmd === 'down') {
    await down();
  } else if (cmd === 'import' && process.argv[3]) {
    const s = readState();
    if (!s?.realNode) {
      console.error('[cluster] import needs a running real node: npm run cluster:up -- --node real');
      process.exit(1);
    }
    importIntoNode(s.realNode, process.argv[3]);
    process.stderr.write(`[cluster] imported ${process.argv[3]}\n`);
  } else {
    console.error('usage: node hack/cluster.ts up [--node real|none] | down | import <image.oci.tar>');
    process.exit(2);
  }
}
