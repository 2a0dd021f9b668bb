// The demo: brings the mesh up and shows it working.
//
// Without a kubeconfig it builds the Weft images (npm run image) and starts the embedded real
// one-node cluster (npm run cluster:up: control plane, containerd, kubelet, kube-proxy,
// CoreDNS; docs/real-node.md), which imports them. With one (KUBECONFIG or --kubeconfig, e.g.
// kind after `kind load image-archive`) it uses that cluster. Either way Weft is installed as
// users do, with `helm install` from charts/weft; then it deploys a "reviews" service in two
// versions behind a canary TrafficSplit and a client calling http://reviews:9080 by name, makes
// the Mesh STRICT and shows where the traffic went, plaintext refused, and a caller of another
// identity denied with the reason. Everything keeps running for you to explore until
// `npm run cluster:down`.
//
// With --progressive it then runs a built-in canary progression (docs/progressive-delivery.md):
// reviews-v2 from 0 to 100 % in steps of 20 and 50 %, 10 s each, gated by what the reviews
// pods' proxies observed, shown live with `weftctl split status`.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Command } from 'commander';
import { up } from './cluster.ts';
import { buildImages, CALL_REVIEWS_BY_NAME, installWeft, setCanaryProgression } from './install.ts';
import { ensureBinaries } from './lib/control-plane.ts';
import { eventually } from './lib/eventually.ts';
import { importIntoNode } from './node/index.ts';

const root = join(import.meta.dirname, '..');
const node = join(root, 'node_modules', '.bin', 'node');
const NS = 'weft-demo';
const DEMO_IMAGE = 'ghcr.io/weft-mesh/weft-demo:0.1.0';
let TOTAL = 8;
let n = 0;
const t0 = Date.now();
const step = (what: string) =>
  process.stderr.write(`[demo ${++n}/${TOTAL} +${((Date.now() - t0) / 1000).toFixed(0)}s] ${what}\n`);
const info = (what: string) => process.stderr.write(`  ${what}\n`);
const indent = (text: string) => text.trimEnd().split('\n').join('\n  ');

const program = new Command('demo')
  .description('Bring Weft up with its demo')
  .option('--kubeconfig <path>', 'use this cluster instead of the embedded real node', process.env.KUBECONFIG)
  .option('--progressive', 'then take reviews-v2 to 100 % with a built-in canary progression')
  .parse();
const opts = program.opts<{ kubeconfig?: string; progressive?: boolean }>();
if (opts.progressive) TOTAL++;
const embedded = !opts.kubeconfig;

let kubeconfig: string;
let kubectlBin: string;
if (embedded) {
  if (process.getuid?.() !== 0)
    throw new Error('the embedded demo needs root (containerd, kubelet, iptables): run it with sudo');
  step('building the Weft images (npm run image: weft, weft-demo, pause as OCI archives)');
  buildImages();
  step('starting the embedded real node (control plane, containerd, kubelet, kube-proxy, CoreDNS)');
  const s = await up((l) => info(l), 'real');
  // A cluster already running imported older archives at its start: import the fresh ones.
  if (s.realNode)
    for (const image of ['weft', 'demo'])
      importIntoNode(s.realNode, join(root, 'dist', 'images', `${image}.oci.tar`));
  kubeconfig = s.kubeconfigPath;
  kubectlBin = s.kubectl;
} else {
  step(`using the cluster in ${opts.kubeconfig} (its node must have the images: docs/real-node.md, kind)`);
  kubeconfig = opts.kubeconfig!;
  kubectlBin = join(ensureBinaries(), 'kubectl');
  step('no cluster to start');
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

step('helm install weft charts/weft -n weft-system (operator and webhook Deployments, CRDs)');
await installWeft({ kubeconfig, kubectl: kubectlBin, log: info });
info(indent(kubectl('get', 'deployments,pods', '-n', 'weft-system', '-o', 'wide')));

step('deploying the demo: reviews v1 and v2 behind a canary TrafficSplit (80/20), and a client');
kubectl('apply', '--server-side', '--field-manager=weft', '-k', join(root, 'config', 'demo'));
await until(
  'the operator to report the Mesh Ready (kubectl -n weft-system logs deploy/weft-operator)',
  120_000,
  () =>
    kubectl('get', 'mesh', 'default', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') ===
    'True'
      ? true
      : undefined,
);
info('the Mesh is STRICT: sidecars accept mutual TLS only');
kubectl('patch', 'mesh', 'default', '--type=merge', '-p', '{"spec":{"mtls":{"mode":"STRICT"}}}');
for (const d of ['reviews-v1', 'reviews-v2', 'frontend']) {
  await until(`deployment ${d} to be available`, 300_000, () =>
    kubectl('get', 'deployment', d, '-n', NS, '-o', 'jsonpath={.status.availableReplicas}') === '1'
      ? true
      : undefined,
  );
}
info(indent(kubectl('get', 'pods', '-n', NS, '-o', 'wide')));

step('watching where the client traffic goes (kubectl -n weft-demo logs deploy/frontend -c app)');
const clientLines = (target = 'deploy/frontend'): string[] => {
  try {
    return kubectl('logs', '-n', NS, target, '-c', 'app').trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
};
// Count once both versions have answered: before that a backend's endpoint was still on its
// way to the client's sidecar (the kubelet projects the proxy configuration, up to its
// syncFrequency later).
const lines = await until('100 answers from the client after both versions answered', 300_000, () => {
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
const byName = kubectl(...CALL_REVIEWS_BY_NAME).trim();
info(`kubectl -n ${NS} exec deploy/frontend -c app -- … fetch("http://reviews:9080/"): ${byName}`);

step('STRICT mutual TLS: a plaintext call from the host, without a sidecar, is refused');
const v1ip = kubectl(
  'get',
  'pods',
  '-n',
  NS,
  '-l',
  'app=reviews,version=v1',
  '-o',
  'jsonpath={.items[0].status.podIP}',
);
if (embedded) {
  const res = await fetch(`http://${v1ip}:8080/`, { signal: AbortSignal.timeout(5000) });
  info(`GET http://${v1ip}:8080/ -> ${res.status} ${(await res.text()).trim()}`);
} else {
  info(`(from a host that reaches pod IPs: curl http://${v1ip}:8080/ answers 403, mutual TLS required)`);
}

step('a meshed caller with another identity (ServiceAccount intruder) is denied, and why');
kubectl('apply', '-f', '-', {
  input: JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'intruder', namespace: NS } },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'intruder', namespace: NS, labels: { app: 'intruder' } },
        spec: {
          serviceAccountName: 'intruder',
          restartPolicy: 'Never',
          containers: [
            {
              name: 'app',
              image: DEMO_IMAGE,
              command: ['node', 'hack/demo-apps/client.ts', 'http://reviews:9080/'],
              env: [
                { name: 'COUNT', value: '3' },
                { name: 'INTERVAL_MS', value: '500' },
              ],
            },
          ],
        },
      },
    ],
  }),
});
const denied = await until('3 answers to the intruder', 180_000, () => {
  const l = clientLines('intruder');
  return l.length >= 3 ? l : undefined;
});
info(`the intruder's calls: ${denied.join(' | ')}`);
const weftctl = (...args: string[]) =>
  execFileSync(node, [join(root, 'cli', 'main.ts'), '--kubeconfig', kubeconfig, ...args], {
    encoding: 'utf8',
  });
try {
  info(
    indent(
      weftctl(
        'authz',
        'explain',
        '-n',
        NS,
        '--labels',
        'app=reviews',
        '--port',
        '8080',
        '--method',
        'GET',
        '--principal',
        `cluster.local/ns/${NS}/sa/intruder`,
      ),
    ),
  );
} catch (err) {
  info(`weftctl authz explain: ${(err as { stdout?: string }).stdout ?? (err as Error).message}`);
}

step('what Weft reports (weftctl status)');
try {
  info(indent(weftctl('status', '-n', NS)));
} catch (err) {
  info(`weftctl status failed: ${(err as Error).message}`);
}

if (opts.progressive) {
  step('a canary progression: reviews-v2 0 → 20 → 50 → 100 %, gated by what the proxies observed');
  kubectl(
    ...setCanaryProgression({
      stepWeights: [20, 50],
      interval: '10s',
      gates: { minSuccessRate: 99, maxLatency: { percentile: 99, threshold: '500ms' }, minRequests: 10 },
    }),
  );
  let last = '';
  const done = await until('the progression to end', 180_000, () => {
    let shown = '';
    try {
      shown = weftctl('split', 'status', 'reviews-canary', '-n', NS);
    } catch {}
    const now = shown.split('\n').find((l) => l.includes('now:')) ?? '';
    if (now && now !== last) info(now.trim());
    last = now;
    return /phase: +(Promoted|RolledBack)/.test(shown) ? shown : undefined;
  });
  info(indent(done));
  info(`drive one yourself: npm run -s weftctl -- split pause|resume|promote|abort reviews-canary -n ${NS}`);
}

process.stdout.write(`
Weft is up with its demo (${((Date.now() - t0) / 1000).toFixed(0)} s).
  export KUBECONFIG=${kubeconfig}
  ${kubectlBin} get weft -A                       # the mesh's resources and their status
  ${kubectlBin} -n weft-demo get pods,svc,ts      # the demo
  ${kubectlBin} -n weft-demo exec deploy/frontend -c app -- node -e 'console.log(await (await fetch("http://reviews:9080")).text())'
  npm run -s weftctl -- check                     # is the mesh healthy? (weftctl on Node 24)
Edit the canary: ${kubectlBin} -n weft-demo edit ts reviews-canary
  (the proxies watch their configuration through the apiserver: about a second; else the kubelet
   projects it into their volume within its syncFrequency, about a minute)
Stop everything: npm run cluster:down
`);
