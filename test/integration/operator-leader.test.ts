// Two operator processes (`node cmd/weft.ts operator`) against a real control plane: one
// holds the Lease and reconciles, the other stands by with warm caches; when the leader is
// killed (SIGKILL: no release), the standby takes over within 20 s and reconciles.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { installCrds, repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

let cluster: TestCluster;
let client: KubeClient;
const procs = new Map<string, { proc: ChildProcess; metricsPort: Promise<number> }>();

function startReplica(identity: string) {
  const proc = spawn(
    process.execPath,
    [
      join(repoRoot, 'cmd', 'weft.ts'),
      'operator',
      '--kubeconfig',
      cluster.kubeconfigPath,
      '--namespace',
      'weft-system',
      '--metrics-bind-address',
      '127.0.0.1:0',
      '--health-probe-bind-address',
      '127.0.0.1:0',
      '--leader-elect-identity',
      identity,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const metricsPort = new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; metricsPort?: number };
        if (rec.msg === 'weft operator started') resolve(rec.metricsPort!);
      } catch {}
    });
    proc.once('exit', (code) => reject(new Error(`operator ${identity} exited with ${code}`)));
  });
  metricsPort.catch(() => {});
  procs.set(identity, { proc, metricsPort });
}

async function isLeaderMetric(identity: string): Promise<boolean> {
  const port = await procs.get(identity)!.metricsPort;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return /^weft_operator_is_leader 1$/m.test(text);
}

async function holder(): Promise<string | undefined> {
  try {
    const lease = await client.get<KubeObject & { spec?: { holderIdentity?: string } }>(
      RESOURCES.leases,
      'weft-operator',
      'weft-system',
    );
    return lease.spec?.holderIdentity || undefined;
  } catch {
    return undefined;
  }
}

const until = <T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>) =>
  eventually(what, probe, { timeoutMs: deadlineMs, intervalMs: 200 });

const hasConfig = async (ns: string) => {
  const l = await client.list(RESOURCES.configMaps, {
    namespace: ns,
    labelSelector: 'app.kubernetes.io/managed-by=weft',
  });
  return l.items.length > 0 ? true : undefined;
};

before(async () => {
  cluster = await startTestCluster({ controllerManager: false });
  await installCrds(cluster);
  client = new KubeClient(cluster.kc, 'weft-test');
  await client.create(RESOURCES.namespaces, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'weft-system' },
  });
});

after(async () => {
  for (const { proc } of procs.values())
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  await Promise.all(
    [...procs.values()].map(
      ({ proc }) =>
        new Promise((r) =>
          proc.exitCode !== null || proc.signalCode !== null ? r(null) : proc.once('exit', r),
        ),
    ),
  );
  client?.close();
  await cluster?.stop();
});

test('two replicas elect one leader; the other takes over within 20 s when the leader is killed', async () => {
  startReplica('replica-a');
  startReplica('replica-b');
  const first = await until('a leader', 30_000, holder);
  assert.ok(['replica-a', 'replica-b'].includes(first));
  const second = first === 'replica-a' ? 'replica-b' : 'replica-a';
  await until('the leader to report leadership', 15_000, async () =>
    (await isLeaderMetric(first)) ? true : undefined,
  );
  assert.equal(await isLeaderMetric(second), false, 'the standby runs no controllers');

  // The leader reconciles: a meshed namespace gets its ConfigMaps.
  await client.create(RESOURCES.namespaces, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'before', labels: { 'weft.dev/inject': 'enabled' } },
  });
  await until('ConfigMaps from the first leader', 15_000, () => hasConfig('before'));

  const killedAt = Date.now();
  procs.get(first)!.proc.kill('SIGKILL');
  await until(`${second} to hold the Lease`, 20_000, async () =>
    (await holder()) === second ? true : undefined,
  );
  await until(`${second} to run its controllers`, Math.max(1, 20_000 - (Date.now() - killedAt)), async () =>
    (await isLeaderMetric(second)) ? true : undefined,
  );
  const takeoverMs = Date.now() - killedAt;
  process.stdout.write(`# takeover after SIGKILL of the leader: ${takeoverMs} ms\n`);

  // The new leader reconciles.
  await client.create(RESOURCES.namespaces, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'after', labels: { 'weft.dev/inject': 'enabled' } },
  });
  await until('ConfigMaps from the new leader', 15_000, () => hasConfig('after'));

  // A clean stop (SIGTERM) releases the Lease and exits 0.
  const p = procs.get(second)!.proc;
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  p.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(await holder(), undefined, 'the Lease was released');
});
