// The demo: brings the mesh up and shows it working.
//
// Without a kubeconfig it uses the embedded local cluster: the control plane built from
// source (npm run cluster:up), the local node that runs pods as processes in network
// namespaces, and Weft's operator and webhook as local processes. It deploys a "reviews"
// service in two versions behind a canary TrafficSplit and a client calling it, then shows
// where the traffic went. Everything keeps running for you to explore until
// `npm run cluster:down`.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { ensureBinaries } from '../test/support/control-plane.ts';
import { eventually } from '../test/support/eventually.ts';
import { WEBHOOK_NAMES, webhookConfigurations } from '../webhook/manifests.ts';
import { STATE_DIR, startBeside, up } from './cluster.ts';

const root = join(import.meta.dirname, '..');
const node = join(root, 'node_modules', '.bin', 'node');
const TOTAL = 7;
let n = 0;
const step = (what: string) => process.stderr.write(`[demo ${++n}/${TOTAL}] ${what}\n`);
const info = (what: string) => process.stderr.write(`  ${what}\n`);

const program = new Command('demo')
  .description('Bring Weft up with its demo')
  .option('--kubeconfig <path>', 'use this cluster instead of the embedded local one', process.env.KUBECONFIG)
  .parse();
const opts = program.opts<{ kubeconfig?: string }>();
const embedded = !opts.kubeconfig;

step(
  embedded
    ? 'starting the embedded local cluster (etcd, kube-apiserver, kube-controller-manager)'
    : `using the cluster in ${opts.kubeconfig}`,
);
let kubeconfig: string;
let kubectlBin: string;
if (embedded) {
  const s = await up((l) => info(l));
  kubeconfig = s.kubeconfigPath;
  kubectlBin = s.kubectl;
} else {
  kubeconfig = opts.kubeconfig!;
  kubectlBin = join(ensureBinaries(), 'kubectl');
}
function kubectl(...args: (string | { input: string })[]): string {
  const input = args.find((a): a is { input: string } => typeof a === 'object');
  const argv = args.filter((a): a is string => typeof a === 'string');
  return execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...argv], {
    encoding: 'utf8',
    ...(input ? { input: input.input } : {}),
    stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
}

/** Polls `probe` (which may throw while the thing is not there yet) every 500 ms. */
const until = <T>(what: string, timeoutMs: number, probe: () => T | undefined) =>
  eventually(what, probe, { timeoutMs, intervalMs: 500 });

step('installing the Weft CRDs and the demo Mesh');
kubectl('apply', '--server-side', '--field-manager=weft', '-k', join(root, 'crds'));
kubectl(
  'wait',
  '--for=condition=Established',
  '--timeout=60s',
  'crd',
  '-l',
  'app.kubernetes.io/part-of=weft',
);
kubectl('apply', '--server-side', '--field-manager=weft', '-f', join(root, 'config', 'demo', 'mesh.yaml'));

step(
  embedded
    ? 'starting the local node (pods run as processes in network namespaces; needs root)'
    : 'skipping the local node: the cluster has its own nodes',
);
if (embedded) {
  if (process.getuid?.() !== 0)
    throw new Error('the embedded demo needs root for network namespaces and iptables: run it with sudo');
  const nodeState = join(STATE_DIR, 'node');
  const { log } = startBeside('local-node', node, [
    join(root, 'hack', 'local-node', 'main.ts'),
    '--kubeconfig',
    kubeconfig,
    '--state-dir',
    nodeState,
  ]);
  await until(`the local node to be Ready (log: ${log})`, 60_000, () =>
    kubectl('get', 'node', 'weft-local', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') ===
    'True'
      ? true
      : undefined,
  );
  info('Node weft-local is Ready');
}

step('starting the Weft operator and webhook');
const weft = join(root, 'cmd', 'weft.ts');
const WEBHOOK_PORT = 9443;
kubectl('apply', '--server-side', '--field-manager=weft', '-f', '-', {
  input: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-system}\n',
});
if (embedded) {
  // Out of cluster, the apiserver reaches the webhook by URL on loopback; the webhook writes
  // the caBundle of its own CA into these configurations once it has bootstrapped.
  const { mutating, validating } = webhookConfigurations({
    namespace: 'weft-system',
    clientConfig: (path) => ({ url: `https://127.0.0.1:${WEBHOOK_PORT}${path}` }),
  });
  for (const obj of [mutating, validating]) {
    const full = {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: obj === mutating ? 'MutatingWebhookConfiguration' : 'ValidatingWebhookConfiguration',
      ...obj,
    };
    kubectl('apply', '--server-side', '--force-conflicts', '--field-manager=weft-demo', '-f', '-', {
      input: JSON.stringify(full),
    });
  }
  const wh = startBeside('webhook', node, [
    weft,
    'webhook',
    '--kubeconfig',
    kubeconfig,
    '--namespace',
    'weft-system',
    '--host',
    '127.0.0.1',
    '--port',
    String(WEBHOOK_PORT),
  ]);
  await until(`the webhook to publish its CA (log: ${wh.log})`, 60_000, () =>
    kubectl(
      'get',
      'mutatingwebhookconfiguration',
      WEBHOOK_NAMES.mutatingConfiguration,
      '-o',
      'jsonpath={.webhooks[0].clientConfig.caBundle}',
    )
      ? true
      : undefined,
  );
  info(`webhook: https://127.0.0.1:${WEBHOOK_PORT} (injection and validation), log ${wh.log}`);
}
const op = startBeside('operator', node, [
  weft,
  'operator',
  '--kubeconfig',
  kubeconfig,
  '--namespace',
  'weft-system',
  '--no-leader-elect',
  '--metrics-bind-address',
  '127.0.0.1:18080',
  '--health-probe-bind-address',
  '127.0.0.1:18081',
]);
await until(`the operator to report the Mesh Ready (log: ${op.log})`, 60_000, () =>
  kubectl('get', 'mesh', 'default', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') ===
  'True'
    ? true
    : undefined,
);
info(`operator: metrics on 127.0.0.1:18080, log ${op.log}`);

step('deploying the demo: reviews v1 and v2 behind a canary TrafficSplit (80/20), and a client');
kubectl('apply', '--server-side', '--field-manager=weft', '-k', join(root, 'config', 'demo'));
for (const d of ['reviews-v1', 'reviews-v2', 'frontend']) {
  await until(`deployment ${d} to be available`, 120_000, () =>
    kubectl('get', 'deployment', d, '-n', 'weft-demo', '-o', 'jsonpath={.status.availableReplicas}') === '1'
      ? true
      : undefined,
  );
}
info(kubectl('get', 'pods', '-n', 'weft-demo', '-o', 'wide').trimEnd().split('\n').join('\n  '));

step('watching where the client traffic goes');
function clientLines(): string[] {
  const pods = join(STATE_DIR, 'node', 'pods');
  if (!existsSync(pods)) return [];
  const dir = readdirSync(pods).find((d) => d.startsWith('weft-demo_frontend-'));
  const file = dir && join(pods, dir, 'logs', 'client.log');
  return file && existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : [];
}
if (embedded) {
  // Count once both versions have answered: before that a backend was still starting.
  const lines = await until('100 answers from the client', 90_000, () => {
    const l = clientLines();
    const seen = new Set<string>();
    const both = l.findIndex((x) => {
      const [, status, , version] = x.split(' ');
      if (status === '200') seen.add(version!);
      return seen.has('v1') && seen.has('v2');
    });
    return both >= 0 && l.length - both - 1 >= 100 ? l.slice(both + 1, both + 101) : undefined;
  });
  const tally = new Map<string, number>();
  for (const l of lines) {
    const [, status, , version] = l.split(' ');
    const key = status === '200' ? `reviews ${version}` : `status ${status}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
  }
  for (const [k, v] of [...tally].sort()) info(`${k}: ${v} of 100 calls`);
  info(`last answer: ${lines.at(-1)}`);
}

step('what Weft reports');
try {
  info(
    execFileSync(
      node,
      [join(root, 'cli', 'main.ts'), '--kubeconfig', kubeconfig, 'status', '-n', 'weft-demo'],
      { encoding: 'utf8' },
    )
      .trimEnd()
      .split('\n')
      .join('\n  '),
  );
} catch (err) {
  info(`weftctl status failed: ${(err as Error).message}`);
}

process.stdout.write(`
Weft is up with its demo.
  export KUBECONFIG=${kubeconfig}
  ${kubectlBin} get weft -A                       # the mesh's resources and their status
  ${kubectlBin} -n weft-demo get pods,svc,ts      # the demo
  npm run -s weftctl -- check                     # is the mesh healthy? (weftctl on Node 24)
  npm run -s weftctl -- authz explain -n weft-demo --labels app=reviews --port 8080 --method GET \\
      --principal cluster.local/ns/weft-demo/sa/frontend
Edit the canary: ${kubectlBin} -n weft-demo edit ts reviews-canary
Stop everything: npm run cluster:down
`);
