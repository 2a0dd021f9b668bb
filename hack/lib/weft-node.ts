// A real one-node cluster with Weft installed, as the e2e suites and bench/propagation.ts use
// it: the real-cluster lock first (one per host), the images built, the node started (they are
// imported at start), `helm install` from charts/weft. `stop()` stops the node, removes its
// directory and releases the lock.
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
  o: Omit<RealNodeOptions, 'dir' | 'log'> & { dirPrefix: string; log: (line: string) => void },
): Promise<WeftNode> {
  const { dirPrefix, ...options } = o;
  const release = await lockRealCluster(o.log);
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  noteRealClusterDir(dir);
  let node: RealNode | undefined;
  const stop = async () => {
    try {
      if (node) {
        const report = await node.stop();
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
