// The cluster of an end-to-end test file (test/e2e): a real one-node cluster of its own (the
// lock first, images built, hack/node started on the file's ranges and bridge), or, with
// WEFT_TEST_KUBECONFIG, that cluster (kind: test/kind/run.sh); Weft installed by Helm either way.
// On an external cluster stop() uninstalls the release and removes the Gateway API CRDs when the
// install applied them; the file deletes what else it made there first.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeGatewayApiCrds } from '../../hack/gateway-api.ts';
import { buildImages, helmBinary, installWeft, WEFT_NAMESPACE } from '../../hack/install.ts';
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
  /**
   * Stops the real node (if this file started one), or on an external cluster uninstalls Weft
   * (and the Gateway API CRDs the install applied); removes `dir`, releases the lock.
   */
  stop(): Promise<void>;
}

export async function startE2eCluster(o: E2eClusterOptions): Promise<E2eCluster> {
  const external = process.env.WEFT_TEST_KUBECONFIG;
  const sync = process.env.WEFT_NODE_SYNC_FREQUENCY;
  let release: (() => void) | undefined;
  let node: RealNode | undefined;
  let installed: { gatewayApiApplied: boolean } | undefined;
  const dir = mkdtempSync(join(tmpdir(), `weft-${o.name}-`));
  let kubeconfig = '';
  let kubectlBin = '';
  const kubectl = (...args: string[]) =>
    execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const stop = async () => {
    try {
      if (external && installed) {
        execFileSync(helmBinary(), ['--kubeconfig', kubeconfig, 'uninstall', 'weft', '-n', WEFT_NAMESPACE]);
        if (installed.gatewayApiApplied) removeGatewayApiCrds(kubectl);
      }
      if (node) {
        const report = await node.stop();
        if (report.nftTablesLeft.length) o.log(`[e2e] nf_tables left: ${report.nftTablesLeft.join(', ')}`);
      }
      rmSync(dir, { recursive: true, force: true });
    } finally {
      release?.();
    }
  };
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
    installed = await installWeft({ kubeconfig, kubectl: kubectlBin, log: o.log });
  } catch (err) {
    await stop();
    throw err;
  }
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
