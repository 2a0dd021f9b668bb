// `npm run cluster:up -- --node none` (WEFT_NODE=none) starts a control plane with the Weft CRDs
// and prints its kubeconfig; `npm run cluster:down` stops it and leaves no process or directory
// behind. (Without it cluster:up starts the real node: the demo's cluster, one per machine;
// test/node/real-node.test.ts tests that node.)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { alive } from '../../hack/cluster.ts';
import { repoRoot } from '../support/cluster.ts';

const stateDir = mkdtempSync(join(tmpdir(), 'weft-cluster-cli-'));
const env = { ...process.env, WEFT_CLUSTER_DIR: stateDir, WEFT_NODE: 'none' };
const npm = (script: string) =>
  execFileSync('npm', ['run', '-s', script], {
    cwd: repoRoot,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });

after(() => {
  try {
    npm('cluster:down');
  } catch {}
  rmSync(stateDir, { recursive: true, force: true });
});

test('cluster:up prints a working kubeconfig with the Weft CRDs; cluster:down leaves nothing running', () => {
  const kubeconfig = npm('cluster:up').trim();
  assert.ok(existsSync(kubeconfig), `cluster:up printed ${kubeconfig}, which does not exist`);
  const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as {
    pids: number[];
    dir: string;
  };
  assert.equal(state.pids.length, 3, 'etcd, kube-apiserver and kube-controller-manager');
  assert.ok(state.pids.every(alive));
  const kubectl = join(
    execFileSync('bash', [join(repoRoot, 'hack/build-control-plane.sh'), '--print'], {
      encoding: 'utf8',
    }).trim(),
    'kubectl',
  );
  const crds = execFileSync(kubectl, ['--kubeconfig', kubeconfig, 'get', 'crds', '-o', 'name'], {
    encoding: 'utf8',
  });
  assert.match(crds, /trafficsplits\.weft\.dev/);
  assert.match(crds, /authorizationpolicies\.weft\.dev/);
  assert.match(crds, /meshes\.weft\.dev/);

  npm('cluster:down');
  assert.deepEqual(state.pids.filter(alive), [], 'processes still running after cluster:down');
  assert.ok(!existsSync(state.dir), `${state.dir} still exists`);
});
