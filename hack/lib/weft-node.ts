// A real one-node cluster with Weft installed, as the e2e suites and bench/propagation.ts use
// it: the real-cluster lock first (one per host), the images built, the node started (they are
// imported at start), `helm install` from charts/weft. `stop()` stops the node, removes its
// directory and releases the lock.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImages, installWeft } from '../install.ts';
import { type RealNode, type RealNodeOptions, startRealNode } from '../node/index.ts';
import { lockRealCluster, noteRealClusterDir } from './real-cluster-lock.ts';

export interface WeftNode {
  node: RealNode;
  stop(): Promise<void>;
}

export async function startWeftNode(
  o: Omit<RealNodeOptions, 'dir' | 'log'> & {
    dirPrefix: string;
    log: (line: string) => void;
    /** How long to wait for the real-cluster lock; default 30 minutes. */
    lockTimeoutMs?: number;
  },
): Promise<WeftNode> {
  const { dirPrefix, lockTimeoutMs, ...options } = o;
  const release = await lockRealCluster(o.log, lockTimeoutMs);
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  noteRealClusterDir(dir);
  let node: RealNode | undefined;
  const stop = async () => {
    try {
      if (node) {
        // The cluster is thrown away: no graceful pod deletion (the conformance test proves this
        // stop leaves nothing behind with every pod of the suite still running).
        const report = await node.stop({ graceful: false });
        if (report.nftTablesLeft.length)
          o.log(`[real-node] nf_tables left: ${report.nftTablesLeft.join(', ')}`);
      }
      rmSync(dir, { recursive: true, force: true });
    } finally {
      release();
    }
  };
  try {
    buildImages();
    node = await startRealNode({ ...options, dir });
    await installWeft({ kubeconfig: node.kubeconfigPath, kubectl: node.kubectl, log: o.log });
    return { node, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The host pid of each running container of `node` (containerd's tasks), by container ID. */
export function containerPids(node: Pick<RealNode, 'containerd'>): Map<string, number> {
  return new Map(
    execFileSync('ctr', ['--address', node.containerd, '-n', 'k8s.io', 'tasks', 'ls'], { encoding: 'utf8' })
      .split('\n')
      .slice(1)
      .filter(Boolean)
      .map((l) => {
        const [id, pid] = l.trim().split(/\s+/);
        return [id!, Number(pid)] as const;
      }),
  );
}

/** The host pid of a container from its status's `containerID` (containerd://<id>); 0 when not running. */
export function pidOfContainer(pids: Map<string, number>, containerID: string | undefined): number {
  return pids.get((containerID ?? '').replace(/^containerd:\/\//, '')) ?? 0;
}
