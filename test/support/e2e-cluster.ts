// The cluster of an end-to-end test file (test/e2e): a real one-node cluster of its own (the
// lock first, images built, hack/node started on the file's ranges and bridge), or, with
// WEFT_TEST_KUBECONFIG, that cluster (kind: test/kind/run.sh); Weft installed by Helm either way.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImages, installWeft } from '../../hack/install.ts';
import { type RealNode, startRealNode } from '../../hack/node/index.ts';
import { ensureBinaries } from './control-plane.ts';
import { lockRealCluster } from './real-cluster-lock.ts';

export interface E2eClusterOptions {
  /** Prefix of the temporary directory. */
  name: string;
  podCIDR: string;
  serviceCIDR: string;
  bridge: string;
  log: (line: string) => void;
}

export interface E2eCluster {
  /** WEFT_TEST_KUBECONFIG's cluster (the file cleans up what it made there) or undefined. */
  external: string | undefined;
  /** The real node's working directory (a temporary one on an external cluster): removed by stop(). */
  dir: string;
  node: RealNode | undefined;
  kubeconfig: string;
  kubectlBin: string;
  kubectl(...args: string[]): string;
  json(...args: string[]): ReturnType<typeof JSON.parse>;
  /** Server-side apply of the objects (field manager weft-test). */
  apply(...objs: object[]): string;
  /** Stops the real node (if this file started one), removes `dir`, releases the lock. */
  stop(): Promise<void>;
}

export async function startE2eCluster(o: E2eClusterOptions): Promise<E2eCluster> {
  const external = process.env.WEFT_TEST_KUBECONFIG;
  const sync = process.env.WEFT_NODE_SYNC_FREQUENCY;
  let release: (() => void) | undefined;
  let node: RealNode | undefined;
  const dir = mkdtempSync(join(tmpdir(), `weft-${o.name}-`));
  const stop = async () => {
    try {
      if (node) {
        const report = await node.stop();
        if (report.nftTablesLeft.length) o.log(`[e2e] nf_tables left: ${report.nftTablesLeft.join(', ')}`);
      }
      rmSync(dir, { recursive: true, force: true });
    } finally {
      release?.();
    }
  };
  let kubeconfig: string;
  let kubectlBin: string;
  try {
    if (external) {
      kubeconfig = external;
      kubectlBin = join(ensureBinaries(), 'kubectl');
    } else {
      release = await lockRealCluster(o.log);
      buildImages();
      node = await startRealNode({
        dir,
        bridge: o.bridge,
        podCIDR: o.podCIDR,
        serviceCIDR: o.serviceCIDR,
        log: o.log,
        ...(sync ? { syncFrequency: sync } : {}),
      });
      kubeconfig = node.kubeconfigPath;
      kubectlBin = node.kubectl;
    }
    await installWeft({ kubeconfig, kubectl: kubectlBin, log: o.log });
  } catch (err) {
    await stop();
    throw err;
  }
  const kubectl = (...args: string[]) =>
    execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  return {
    external,
    dir,
    node,
    kubeconfig,
    kubectlBin,
    kubectl,
    json: (...args) => JSON.parse(kubectl(...args, '-o', 'json')),
    apply: (...objs) =>
      execFileSync(
        kubectlBin,
        ['--kubeconfig', kubeconfig, 'apply', '--server-side', '--field-manager=weft-test', '-f', '-'],
        { input: objs.map((obj) => JSON.stringify(obj)).join('\n'), encoding: 'utf8' },
      ),
    stop,
  };
}
