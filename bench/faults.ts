// npm run bench:faults — the fault suite on the real one-node cluster (hack/node, needs root and
// takes the real-cluster lock; docs/reliability.md): Weft installed by Helm from the image, the
// demo Mesh set to STRICT, a 2-replica backend `echo` and a meshed client pod calling it every
// 50 ms over HTTP/1.1, gRPC (h2c) and opaque TCP, a container each (hack/lib/faults.ts), then
// every scenario in turn under that traffic:
// operator SIGKILL and leader failover, a backend's sidecar and app container crashing, a
// rolling restart, a pod killed without grace, scale to zero and back, kube-apiserver and etcd
// paused 20 s and restarted, kubelet and containerd restarted, the webhook down while pods are
// created, the webhook's certificate rotated, the workload certificates and the root CA rotated, `helm upgrade` from the previous
// commit's chart and image, a connection flood and a soak.
// WEFT_FAULTS picks scenarios by name (comma-separated substrings; default all): the others keep
// their results from the previous file. WEFT_FAULTS_PROTOCOLS (default http,grpc,tcp) picks the
// steady clients.
// Writes bench/results/faults.json: per scenario {name, requests, failed, expectedFailed,
// failuresByReason, maxRecoverySeconds, byProtocol, durationSeconds, notes, failures} (requests
// and failed: the three protocols' sums; byProtocol: each one's requests, failed and
// maxRecoverySeconds), the load average before and after, and the date.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { type Baseline, prepareBaseline } from '../hack/lib/baseline.ts';
import { repoRoot } from '../hack/lib/cluster.ts';
import { baselineImage, Faults, protocolsFromEnv, type ScenarioResult } from '../hack/lib/faults.ts';
import { startWeftNode } from '../hack/lib/weft-node.ts';

const NS = 'weft-demo';
const OUTSIDE = 'weft-outside';
const log = (m: string) => process.stderr.write(`${m}\n`);
// Ranges and bridge of its own (see test/e2e/*.test.ts and bench/propagation.ts for theirs).
const POD_CIDR = '10.113.0.0/16';
const SERVICE_CIDR = '10.114.0.0/16';

const pick = process.env.WEFT_FAULTS?.split(',').filter(Boolean);
const picked = (name: string) => !pick || pick.some((p) => name.includes(p));
// The helm upgrade's baseline tree and image, built before the cluster (and its lock) is taken.
let baseline: Baseline | undefined;
if (picked('helm upgrade')) {
  baseline = await prepareBaseline(repoRoot, process.env.WEFT_FAULTS_BASELINE ?? 'main~1', log);
  baselineImage(baseline, true);
}
const loadBefore = loadavg().map((l) => Math.round(l * 10) / 10);
const weft = await startWeftNode({
  dirPrefix: 'weft-bench-faults-',
  bridge: `wf${process.pid % 100000}`,
  podCIDR: POD_CIDR,
  serviceCIDR: SERVICE_CIDR,
  log,
});
const results: ScenarioResult[] = [];
let error: string | undefined;
try {
  const { node } = weft;
  const kubectl = (...args: string[]) =>
    execFileSync(node.kubectl, ['--kubeconfig', node.kubeconfigPath, ...args], { encoding: 'utf8' });
  for (const f of ['mesh.yaml', 'demo.yaml'])
    kubectl('apply', '--server-side', '--field-manager=weft-bench', '-f', join(repoRoot, 'config/demo', f));
  kubectl('patch', 'mesh', 'default', '--type=merge', '-p', '{"spec":{"mtls":{"mode":"STRICT"}}}');
  kubectl('create', 'namespace', OUTSIDE);
  const faults = new Faults({
    kubectl: node.kubectl,
    kubeconfig: node.kubeconfigPath,
    namespace: NS,
    serviceAccount: 'frontend',
    node,
    log,
  });
  await faults.deployEcho(2);
  await faults.startClient('steady', 50, protocolsFromEnv());
  const scenarios: [string, () => Promise<ScenarioResult>][] = [
    ['operator SIGKILL', faults.operatorSigkill],
    ['operator leader failover', faults.operatorFailover],
    ['sidecar crash', faults.sidecarCrash],
    ['app container crash', faults.appCrash],
    ['rolling restart', faults.rollingRestart],
    ['pod killed without grace', faults.podKilled],
    ['scale to zero and back', () => faults.scaleToZero(5000)],
    ['kube-apiserver paused', () => faults.paused('kube-apiserver', 20_000)],
    ['etcd paused', () => faults.paused('etcd', 20_000)],
    ['kube-apiserver restarted', () => faults.controlPlaneRestart('kube-apiserver')],
    ['etcd restarted', () => faults.controlPlaneRestart('etcd')],
    ['kubelet restarted', () => faults.nodeRestart('kubelet', { flip: true, settleMs: 10_000 })],
    ['containerd restarted', () => faults.nodeRestart('containerd')],
    ['webhook down', () => faults.webhookDown(OUTSIDE)],
    ['webhook certificate rotated', faults.webhookCertRotation],
    ['workload certificates rotated', faults.workloadCertRotation],
    ['mesh root CA rotated', faults.rootCaRotation],
    ['connection flood', () => faults.flood(2000, 20_000)],
    // WEFT_FAULTS_BASELINE (default main~1): the commit whose chart and image are upgraded from.
    ['helm upgrade', () => faults.helmUpgrade(baseline!)],
    // WEFT_SOAK_MINUTES (default 30, the soak): the memory figures land in the scenario.
    ['soak', () => faults.soak(Number(process.env.WEFT_SOAK_MINUTES ?? 30))],
  ];
  for (const [name, run] of scenarios) {
    if (!picked(name)) continue;
    try {
      results.push(await run());
    } catch (err) {
      const message = (err as Error).message;
      log(`[faults] ${name}: the scenario failed: ${message}`);
      results.push({
        name,
        requests: 0,
        failed: 0,
        expectedFailed: 0,
        failures: [],
        failuresByReason: {},
        maxRecoverySeconds: 0,
        byProtocol: {},
        durationSeconds: 0,
        servedBy: [],
        notes: `the scenario did not complete: ${message}`,
      });
    }
  }
  faults.stopClient();
} catch (err) {
  error = (err as Error).message;
  log(`[faults] ${error}`);
} finally {
  await weft.stop();
  await baseline?.remove();
}
const file = join(repoRoot, 'bench', 'results', 'faults.json');
let previous: { scenarios?: { name: string }[] } = {};
try {
  previous = JSON.parse(readFileSync(file, 'utf8'));
} catch {}
// The first 20 failures name them (failuresByReason counts them all): a broken scenario can
// fail thousands of requests.
const fresh = results.map(({ servedBy: _, ...r }) => ({
  ...r,
  failures:
    r.failures.length > 20
      ? [...r.failures.slice(0, 20), `… and ${r.failures.length - 20} more`]
      : r.failures,
  date: new Date().toISOString(),
  loadAverageBefore: loadBefore,
}));
const scenarios = (previous.scenarios ?? []).map((s) => fresh.find((r) => r.name === s.name) ?? s);
for (const r of fresh) if (!scenarios.some((s) => s.name === r.name)) scenarios.push(r);
writeFileSync(
  file,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      traffic:
        'one meshed client pod, three containers each making a call every 50 ms after the previous answer (2 s timeout) to a 2-replica backend under STRICT mTLS: HTTP/1.1 GET (keep-alive), unary gRPC on one long-lived h2c connection, and opaque TCP (a connection per call, one line each way); requests and failed are their sums, byProtocol each one',
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadavg().map((l) => Math.round(l * 10) / 10),
      cpus: cpus().length,
      ...(error ? { error } : {}),
      scenarios,
    },
    null,
    2,
  )}\n`,
);
log(`wrote bench/results/faults.json`);
process.exit(error ? 1 : 0);
