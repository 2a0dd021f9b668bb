// The demo: brings the mesh up and shows it. With --kubeconfig (or KUBECONFIG) it uses that
// cluster; otherwise it starts the embedded local cluster (npm run cluster:up) and leaves
// it running for you to explore; `npm run cluster:down` stops it.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Command } from 'commander';
import { ensureBinaries } from '../test/support/control-plane.ts';
import { up } from './cluster.ts';

const root = join(import.meta.dirname, '..');
const step = (n: number, total: number, what: string) =>
  process.stderr.write(`[demo ${n}/${total}] ${what}\n`);

const program = new Command('demo')
  .description('Bring Weft up with its demo')
  .option('--kubeconfig <path>', 'use this cluster instead of the embedded local one', process.env.KUBECONFIG)
  .parse();
const opts = program.opts<{ kubeconfig?: string }>();

const TOTAL = 3;
step(
  1,
  TOTAL,
  opts.kubeconfig ? `using the cluster in ${opts.kubeconfig}` : 'starting the embedded local cluster',
);
let kubeconfig: string;
let kubectlBin: string;
if (opts.kubeconfig) {
  kubeconfig = opts.kubeconfig;
  kubectlBin = join(ensureBinaries(), 'kubectl');
} else {
  const s = await up((l) => process.stderr.write(`  ${l}\n`));
  kubeconfig = s.kubeconfigPath;
  kubectlBin = s.kubectl;
}
const kubectl = (...args: string[]) =>
  execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });

step(2, TOTAL, 'installing the Weft CRDs');
kubectl('apply', '--server-side', '--field-manager=weft', '-k', join(root, 'crds'));
kubectl(
  'wait',
  '--for=condition=Established',
  '--timeout=60s',
  'crd',
  '-l',
  'app.kubernetes.io/part-of=weft',
);

step(3, TOTAL, 'applying the samples (a Mesh, a canary TrafficSplit, AuthorizationPolicies)');
kubectl('apply', '--server-side', '--field-manager=weft', '-k', join(root, 'config', 'samples'));

process.stdout.write(`
Weft is up.
${kubectl('get', 'weft', '-A')}
Explore it:
  export KUBECONFIG=${kubeconfig}
  ${kubectlBin} get weft -A
  ${kubectlBin} explain trafficsplit.spec
Stop the embedded cluster with: npm run cluster:down
`);
