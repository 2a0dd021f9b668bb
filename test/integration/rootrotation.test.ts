// A root CA rotation that never breaks a handshake (issue 16, scenario 7; docs/identity.md
// "Rotation"). A real kube-apiserver, the operator in-process, and two real sidecars as local
// processes (`node proxy/main.ts`), one per ServiceAccount, whose identity directories the test
// writes from the identity Secrets as the kubelet does — one pod at a time, as two pods' Secret
// volumes are synced at different moments in a real cluster. After each pod's sync the two
// pods' files must still make a mutual TLS handshake, both ways: a pod holding a certificate
// from the new root while its peer does not trust that root yet is the failure (a sidecar
// refuses it with UNABLE_TO_VERIFY_LEAF_SIGNATURE).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import type { Mesh } from '../../api/index.ts';
import { replaceWeftCa } from '../../hack/lib/mtlsfixture.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { systemClock } from '../../kube/clock.ts';
import { isNotFound } from '../../kube/errors.ts';
import { type OperatorHandle, startOperator } from '../../operator/operator.ts';
import { writeProjected } from '../../proxy/configdir.ts';
import { createNamespaces, installCrds, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';
import { runningMeshedPod } from '../support/propagation.ts';
import { type ProxyProcess, spawnProxy } from '../support/proxyprocess.ts';

const NS = 'shop';
const TD = 'example.org';
const PODS = [
  { name: 'server-0', sa: 'server' },
  { name: 'client-0', sa: 'client' },
] as const;
type PodName = (typeof PODS)[number]['name'];
/** The operator's longest wait for the sidecars' confirmation (OperatorOptions.identity). */
const MAX_WAIT_MS = 20_000;
const step = (m: string) => process.env.WEFT_TEST_DEBUG && console.error(`[rootrotation] ${m}`);

type Secret = KubeObject & { data?: Record<string, string> };
interface Applied {
  certificate: { issuer: string; serialNumber: string } | null;
}
const text = (s: Secret | undefined, key: string) =>
  Buffer.from(s?.data?.[key] ?? '', 'base64').toString('utf8');
const pems = (t: string) =>
  t.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((p) => `${p}\n`) ?? [];
const leafOf = (files: Files) => new X509Certificate(pems(files['tls.crt'])[0]!);
const issuedBy = (files: Files, root: X509Certificate) => leafOf(files).verify(root.publicKey);
type Files = Record<'tls.crt' | 'tls.key' | 'ca.crt', string>;

/** A mutual TLS handshake between two pods' files, as their sidecars make it; the error or undefined. */
async function handshake(server: Files, client: Files): Promise<string | undefined> {
  const srv = tlsServer(
    {
      cert: server['tls.crt'],
      key: server['tls.key'],
      ca: server['ca.crt'],
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    },
    (s) => s.end('ok'),
  );
  let serverError: string | undefined;
  srv.on('tlsClientError', (e) => {
    serverError = `the server refused the client's certificate: ${e.message}`;
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    return await new Promise<string | undefined>((resolve) => {
      const c = tlsConnect({
        host: '127.0.0.1',
        port: (srv.address() as { port: number }).port,
        cert: client['tls.crt'],
        key: client['tls.key'],
        ca: client['ca.crt'],
        minVersion: 'TLSv1.3',
        checkServerIdentity: () => undefined,
      });
      let data = '';
      c.on('data', (d) => {
        data += d;
      });
      c.on('error', (e) =>
        resolve(serverError ?? `the client refused the server's certificate: ${e.message}`),
      );
      c.on('close', () => resolve(data === 'ok' ? undefined : (serverError ?? 'closed without an answer')));
    });
  } finally {
    srv.close();
  }
}

describe('a root CA rotation never breaks a handshake between pods synced at different moments', () => {
  let cluster: TestCluster;
  let client: KubeClient;
  let op: OperatorHandle | undefined;
  const skewMs = 0;
  const clock = { ...systemClock, now: () => Date.now() + skewMs };
  const work = mkdtempSync(join(tmpdir(), 'weft-rootrotation-'));
  const proxies = new Map<string, ProxyProcess>();
  /** What each pod's identity directory holds now (what "the kubelet" last wrote). */
  const mounted = new Map<PodName, Files>();

  const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000) =>
    eventually(what, probe, { timeoutMs, intervalMs: 100 });
  const secretOf = async (sa: string): Promise<Secret | undefined> => {
    try {
      return await client.get<Secret>(RESOURCES.secrets, `weft-identity-${sa}`, NS);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };
  const filesOf = (s: Secret | undefined): Files | undefined =>
    s?.data?.['tls.crt']
      ? { 'tls.crt': text(s, 'tls.crt'), 'tls.key': text(s, 'tls.key'), 'ca.crt': text(s, 'ca.crt') }
      : undefined;
  /** The kubelet's Secret volume sync of one pod: true when it changed something. */
  const sync = async (pod: (typeof PODS)[number]): Promise<boolean> => {
    const files = filesOf(await secretOf(pod.sa));
    if (!files || JSON.stringify(files) === JSON.stringify(mounted.get(pod.name))) return false;
    await writeProjected(join(work, pod.name, 'identity'), new Map(Object.entries(files)));
    mounted.set(pod.name, files);
    return true;
  };
  const applied = async (name: string): Promise<Applied> =>
    (await (
      await fetch(`http://127.0.0.1:${proxies.get(name)!.ports.health}/config/applied?config=false`, {
        signal: AbortSignal.timeout(5000),
      })
    ).json()) as Applied;
  const getMesh = () => client.get<KubeObject & Mesh>(RESOURCES.meshes, 'default');
  const rotation = async () => (await getMesh()).status?.conditions?.find((c) => c.type === 'CARotation');
  /** weft-ca replaced in place by a new root (as an admin rotating it would). */
  const replaceRoot = async () =>
    new X509Certificate(
      (await replaceWeftCa(cluster.kubectl, { trustDomain: TD, lifetimeMs: 1000 * 3_600_000 })).certPem,
    );
  /** Both directions between the pods' current files: what failed, naming who refused what. */
  const handshakes = async (when: string): Promise<string[]> => {
    const [s, c] = [mounted.get('server-0')!, mounted.get('client-0')!];
    const out: string[] = [];
    for (const [srv, cli, label] of [
      [s, c, 'client-0 → server-0'],
      [c, s, 'server-0 → client-0'],
    ] as const) {
      const err = await handshake(srv, cli);
      if (err)
        out.push(
          `${when}: mTLS ${label} failed: ${err} (server-0 holds a leaf from ${leafOf(s).issuer} and trusts ${pems(s['ca.crt']).length} root(s); client-0 holds a leaf from ${leafOf(c).issuer} and trusts ${pems(c['ca.crt']).length} root(s))`,
        );
    }
    return out;
  };

  const startOp = async () => {
    op = await startOperator({
      kubeConfig: cluster.kc,
      namespace: 'weft-system',
      identity: { clock, rootDistributionMaxWaitMs: MAX_WAIT_MS },
      proxyAddress: (pod) => {
        const p = proxies.get(pod.metadata.name);
        return p ? `http://127.0.0.1:${p.ports.health}` : undefined;
      },
      proxyReportWaitMs: 5000,
    });
    await op.leading();
  };

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    client = new KubeClient(cluster.kc, 'weft-test');
    await createNamespaces(client, { 'weft-system': {}, [NS]: { 'weft.dev/inject': 'enabled' } });
    await client.apply(
      RESOURCES.meshes,
      { metadata: { name: 'default' }, spec: { trustDomain: TD } } as KubeObject,
      { fieldManager: 'weft-test' },
    );
    for (const p of PODS) {
      await client.create(RESOURCES.serviceAccounts, {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: p.sa, namespace: NS },
      });
      await runningMeshedPod(client, {
        namespace: NS,
        name: p.name,
        serviceAccount: p.sa,
        labels: { app: p.sa },
      });
    }
    await startOp();
    // The pods start: their volumes hold the first identity, then their sidecars run.
    for (const p of PODS) {
      await waitFor(`the identity Secret of ${p.sa}`, () => sync(p));
      const proc = await spawnProxy([
        `--config-dir=${join(work, p.name, 'config')}`,
        `--identity-dir=${join(work, p.name, 'identity')}`,
        `--namespace=${NS}`,
        `--pod-name=${p.name}`,
        '--outbound-port=0',
        '--inbound-port=0',
        '--admin-port=0',
        '--health-port=0',
        '--poll-ms=200',
      ]);
      proxies.set(p.name, proc);
    }
    // Pod events tell the operator to poll the sidecars: touch the pods now that the ports are known.
    for (const p of PODS)
      await client.apply(
        RESOURCES.pods,
        { metadata: { name: p.name, namespace: NS, labels: { app: p.sa, started: 'yes' } } },
        { fieldManager: 'weft-test' },
      );
    for (const p of PODS)
      await waitFor(
        `${p.name}'s sidecar loaded its certificate`,
        async () => (await applied(p.name)).certificate,
      );
  });

  after(async () => {
    for (const p of proxies.values()) await p.stop();
    await op?.stop();
    client?.close();
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('weft-ca replaced: every pod trusts the new root before any pod holds a certificate from it', async () => {
    const oldRoot = new X509Certificate(pems(mounted.get('server-0')!['ca.crt'])[0]!);
    assert.deepEqual(await handshakes('before the rotation'), []);
    const newRoot = await replaceRoot();
    step('weft-ca replaced');
    const reasons = new Set<string>();
    const broken: string[] = [];
    // The kubelet: the server's volume first, the client's a moment later, for as long as it takes
    // both pods to hold certificates from the new root (and their sidecars to present them).
    await waitFor(
      'both pods hold certificates from the new root, their sidecars present them',
      async () => {
        const r = await rotation();
        if (r) reasons.add(r.reason);
        for (const p of PODS) {
          if (!(await sync(p))) continue;
          step(`${p.name} synced: leaf from ${leafOf(mounted.get(p.name)!).issuer}`);
          broken.push(...(await handshakes(`after ${p.name}'s identity volume was synced`)));
          if (broken.length > 0) return true;
        }
        if (!PODS.every((p) => issuedBy(mounted.get(p.name)!, newRoot))) return undefined;
        for (const p of PODS)
          if ((await applied(p.name)).certificate?.issuer !== newRoot.subject) return undefined;
        return true;
      },
      MAX_WAIT_MS * 4,
    );
    assert.deepEqual(broken, [], 'no handshake failed while the pods were synced one at a time');
    for (const p of PODS) {
      const roots = pems(mounted.get(p.name)!['ca.crt']).map((x) => new X509Certificate(x).fingerprint256);
      assert.ok(roots.includes(newRoot.fingerprint256), `${p.name} trusts the new root`);
      assert.ok(roots.includes(oldRoot.fingerprint256), `${p.name} still trusts the old root (overlap)`);
    }
    // The operator waited for the sidecars' confirmation, not for its fallback.
    assert.ok(reasons.has('DistributingRoot'), `CARotation went through DistributingRoot: ${[...reasons]}`);
    const done = await waitFor('CARotation Done', async () => {
      const r = await rotation();
      return r?.reason === 'Done' ? r : undefined;
    });
    assert.doesNotMatch(done.message, /without confirmation/);
  });

  test('a sidecar that never confirms holds the reissue for at most the maximum wait, and is named', async () => {
    const before = { ...mounted.get('client-0')! };
    const newRoot = await replaceRoot();
    step('weft-ca replaced again; client-0 is never synced');
    // Only the server's volume follows; the client's sidecar keeps trusting the previous roots.
    const waiting = await waitFor('CARotation names the sidecar that did not confirm', async () => {
      await sync(PODS[0]);
      const r = await rotation();
      return r?.reason === 'DistributingRoot' &&
        /1\/2 sidecars trust it \(waiting for shop\/client-0\)/.test(r.message)
        ? r
        : undefined;
    });
    const deadline = /at the latest at (\S+)$/.exec(waiting.message)?.[1];
    assert.ok(deadline, waiting.message);
    // A new leader (the operator restarted) continues the rotation where it was: same deadline,
    // still no certificate from the new root (it does not have the previous CA's key).
    await op!.stop();
    await startOp();
    await waitFor('the new leader reports the same phase and deadline', async () => {
      await sync(PODS[0]);
      const r = await rotation();
      return r?.reason === 'DistributingRoot' && r.message.endsWith(deadline) && r.message.includes('1/2')
        ? r
        : undefined;
    });
    assert.ok(!issuedBy(mounted.get('server-0')!, newRoot), 'no certificate from the new root yet');
    const reissued = await waitFor(
      'certificates reissued after the maximum wait',
      async () => {
        await sync(PODS[0]);
        const s = mounted.get('server-0')!;
        return issuedBy(s, newRoot) ? s : undefined;
      },
      MAX_WAIT_MS * 4,
    );
    assert.ok(pems(reissued['ca.crt']).length >= 2);
    const r = await rotation();
    assert.match(r?.message ?? '', new RegExp(`without confirmation from ${NS}/client-0`));
    assert.deepEqual(mounted.get('client-0'), before, 'the client pod was never synced');
  });
});
