// Configuration in every proxy within a second on a real kubelet, and status that proves it
// (issue 13, docs/proxy-config.md): the real one-node cluster (hack/node) with the kubelet's
// syncFrequency at 10 minutes, so a ConfigMap volume is not refreshed during the test and only
// the fast path (each proxy's apiserver watch) can deliver a change in time. Weft is installed
// by Helm from the image, the demo (config/demo) runs with two frontend replicas, and every
// check is a real request from a meshed pod or the status the operator wrote:
// - a new DENY policy and a weight change in effect in every proxy, applied from the apiserver;
// - Programmed "N/N proxies applied generation G" and the Mesh's proxies in sync;
// - a paused sidecar (SIGSTOP) named as lagging in the Mesh status, Programmed, weftctl status
//   and weftctl check, then in sync again once resumed;
// - a sidecar killed while the apiserver is stopped comes back and serves from its volume;
// - the projected token is readable by the sidecar's UID 1337, with and without a pod fsGroup;
// - a rolling restart of a backend under steady traffic from a meshed client fails no request.
// It logs figures (`[e2e] figure: …`); it asserts none of their timings.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PROXY } from '../../api/constants.ts';
import { setCanaryWeights } from '../../hack/install.ts';
import { DEMO_IMAGE, rollingRestartUnderLoad } from '../../hack/lib/faults.ts';
import { startWeftNode, type WeftNode } from '../../hack/lib/weft-node.ts';
import type { RealNode } from '../../hack/node/index.ts';
import { repoRoot } from '../support/cluster.ts';
import { eventually as poll } from '../support/eventually.ts';

const isRoot = process.getuid?.() === 0;
const pid = process.pid;
const NS = 'weft-demo';
// Ranges and bridge of its own (mesh.test.ts: 10.121/16 and 10.122/16; the demo 10.123/16 and
// 10.124/16; test/node 10.125/16 and 10.126/16; bench/propagation.ts 10.115/16 and 10.116/16).
const POD_CIDR = '10.117.0.0/16';
const SERVICE_CIDR = '10.118.0.0/16';
const BRIDGE = `wp${pid % 100000}`;
/** Long enough that no ConfigMap volume is refreshed while the file runs. */
const SYNC = '10m';
const log = (l: string) => process.stderr.write(`${l}\n`);

const eventually = <T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 120_000) =>
  poll(what, fn, { timeoutMs, intervalMs: 500 });

interface PodJson {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status: {
    phase: string;
    podIP: string;
    initContainerStatuses?: { name: string; containerID?: string; restartCount: number }[];
  };
}
interface Condition {
  type: string;
  status: string;
  message: string;
}
interface Applied {
  version: string;
  generation: number;
  source: string;
}

describe('propagation on the real node: only the fast path can deliver (kubelet syncFrequency 10m)', {
  skip: isRoot ? false : 'needs root (containerd, kubelet, iptables)',
}, () => {
  let weft: WeftNode | undefined;
  let node: RealNode | undefined;
  let kubeconfig: string;
  /** The apiserver while it is stopped (SIGSTOP): resumed whatever happens. */
  let stoppedApiserver: number | undefined;
  const kubectl = (...args: string[]) =>
    execFileSync(node!.kubectl, ['--kubeconfig', kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const apply = (obj: object) =>
    execFileSync(node!.kubectl, ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
      input: JSON.stringify(obj),
      encoding: 'utf8',
    });
  const json = (...args: string[]) => JSON.parse(kubectl(...args, '-o', 'json'));
  const running = (selector: string): PodJson[] =>
    (json('get', 'pods', '-n', NS, '-l', selector).items as PodJson[]).filter(
      (p) => p.status.phase === 'Running' && !p.metadata.deletionTimestamp,
    );
  const logsOf = (pod: string, container = 'app'): string[] => {
    try {
      return kubectl('logs', '-n', NS, pod, '-c', container).trim().split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  /**
   * GET from a pod's health port (the host reaches pod IPs on the bridge), on a connection of
   * its own: a pooled one may be the one a restarted or paused sidecar left behind.
   */
  const healthGet = (p: PodJson, path: string) =>
    new Promise<string>((resolve, reject) => {
      const req = httpGet(
        { host: p.status.podIP, port: PROXY.healthPort, path, agent: false, timeout: 3000 },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () =>
            res.statusCode === 200 ? resolve(body) : reject(new Error(`${res.statusCode} ${body}`)),
          );
        },
      );
      req.on('timeout', () =>
        req.destroy(new Error(`no answer from ${p.metadata.name}:${PROXY.healthPort}${path}`)),
      );
      req.on('error', reject);
    });
  /** What a pod's sidecar applied. */
  const appliedBy = async (p: PodJson): Promise<Applied> => JSON.parse(await healthGet(p, '/config/version'));
  const configMapGeneration = () =>
    Number(
      JSON.parse(
        kubectl('get', 'configmap', 'weft-proxy-config', '-n', NS, '-o', 'jsonpath={.data.manifest\\.json}'),
      ).generation,
    );
  const condition = (kind: string, name: string, type: string): Condition | undefined =>
    json('get', kind, name, '-n', NS).status?.conditions?.find((c: Condition) => c.type === type);
  const mesh = () => json('get', 'mesh', 'default').status ?? {};
  /** Every meshed pod of the cluster the operator counts (all in weft-demo here). */
  const meshedPods = () =>
    (json('get', 'pods', '-n', NS).items as PodJson[]).filter(
      (p) =>
        p.status.phase === 'Running' &&
        !p.metadata.deletionTimestamp &&
        p.status.initContainerStatuses?.some((c) => c.name === PROXY.containerName),
    );
  const weftctl = (...args: string[]) => {
    try {
      return {
        code: 0,
        out: execFileSync(
          process.execPath,
          [join(repoRoot, 'cli', 'main.ts'), '--kubeconfig', kubeconfig, ...args],
          {
            encoding: 'utf8',
          },
        ),
      };
    } catch (e) {
      const err = e as { status: number; stdout: string };
      return { code: err.status, out: err.stdout };
    }
  };
  /** The host pid of a pod's weft-proxy container (containerd's task). */
  const sidecarPid = (p: PodJson): number => {
    const id = p.status.initContainerStatuses
      ?.find((c) => c.name === PROXY.containerName)
      ?.containerID?.replace(/^containerd:\/\//, '');
    assert.ok(id, `${p.metadata.name}: weft-proxy has a container ID`);
    const line = execFileSync('ctr', ['--address', node!.containerd, '-n', 'k8s.io', 'tasks', 'ls'], {
      encoding: 'utf8',
    })
      .split('\n')
      .find((l) => l.startsWith(id!));
    assert.ok(line, `containerd runs the task of ${p.metadata.name}'s weft-proxy (${id})`);
    return Number(line!.trim().split(/\s+/)[1]);
  };
  /**
   * After the change made at `since` (line counts per client pod), the first 30 answers in a
   * row of every frontend pod that all satisfy `ok`.
   */
  const everyClient = async (what: string, since: Map<string, number>, ok: (line: string) => boolean) => {
    const t0 = Date.now();
    const out = new Map<string, string[]>();
    for (const [pod, seen] of since) {
      out.set(
        pod,
        await eventually(`${pod}: ${what}, 30 answers in a row`, () => {
          const a = logsOf(pod).slice(seen);
          const i = a.findIndex((_, j) => a.slice(j, j + 30).length === 30 && a.slice(j, j + 30).every(ok));
          return i >= 0 ? a.slice(i, i + 30) : undefined;
        }),
      );
    }
    return { ms: Date.now() - t0, out };
  };
  const clientLines = () =>
    new Map(running('app=frontend').map((p) => [p.metadata.name, logsOf(p.metadata.name).length]));
  const setWeights = (v1: number, v2: number) => kubectl(...setCanaryWeights(v1, v2));
  /** Every meshed pod's sidecar applied at least `generation`, from the apiserver watch. */
  const allApplied = (generation: number) =>
    eventually(`every sidecar applied generation ${generation}`, async () => {
      const pods = meshedPods();
      const a = await Promise.all(pods.map(appliedBy));
      return a.every((x) => x.generation >= generation) ? a : undefined;
    });

  before(async () => {
    weft = await startWeftNode({
      dirPrefix: 'weft-e2e-prop-',
      bridge: BRIDGE,
      podCIDR: POD_CIDR,
      serviceCIDR: SERVICE_CIDR,
      syncFrequency: SYNC,
      log,
    });
    node = weft.node;
    kubeconfig = node.kubeconfigPath;
    for (const f of ['mesh.yaml', 'demo.yaml'])
      kubectl('apply', '--server-side', '--field-manager=weft-test', '-f', join(repoRoot, 'config/demo', f));
    kubectl('scale', 'deployment', 'frontend', '-n', NS, '--replicas=2');
    for (const d of ['reviews-v1', 'reviews-v2', 'frontend']) {
      await eventually(
        `deployment ${d} available`,
        () =>
          kubectl('rollout', 'status', `deployment/${d}`, '-n', NS, '--timeout=1s').includes('successfully')
            ? true
            : undefined,
        180_000,
      );
    }
  });

  after(async () => {
    if (stoppedApiserver) process.kill(stoppedApiserver, 'SIGCONT');
    await weft?.stop();
  });

  test('every client answers 200 from both versions once the endpoints reached its sidecar', async () => {
    const since = new Map(running('app=frontend').map((p) => [p.metadata.name, 0]));
    assert.equal(since.size, 2);
    for (const [pod] of since) {
      await eventually(`${pod}: answers from v1 and v2`, () => {
        const seen = new Set(logsOf(pod).map((l) => `${l.split(' ')[1]} ${l.split(' ')[3]}`));
        return seen.has('200 v1') && seen.has('200 v2') ? true : undefined;
      });
    }
  });

  test("the projected token is readable by the sidecar's UID 1337, with and without a pod fsGroup", async () => {
    // A pod whose app runs as another user with an fsGroup: the kubelet then writes projected
    // token files 0600, owned by the fsGroup (group-readable through the volume ownership).
    apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'fsgroup', namespace: NS, labels: { app: 'fsgroup' } },
      spec: {
        serviceAccountName: 'reviews',
        terminationGracePeriodSeconds: 1,
        securityContext: { runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000 },
        containers: [{ name: 'app', image: DEMO_IMAGE, command: ['node', 'hack/demo-apps/server.ts'] }],
      },
    });
    await eventually('pod fsgroup running', () => (running('app=fsgroup').length === 1 ? true : undefined));
    const read = [
      'const fs = require("node:fs");',
      `const f = "${PROXY.tokenDir}/token";`,
      'const s = fs.statSync(f);',
      'const t = fs.readFileSync(f, "utf8");',
      'console.log(JSON.stringify({ uid: process.getuid(), groups: process.getgroups(), mode: (s.mode & 0o777).toString(8), owner: s.uid, group: s.gid, jwt: t.split(".").length === 3 }));',
    ].join(' ');
    const seen: string[] = [];
    for (const pod of [running('app=frontend')[0]!.metadata.name, 'fsgroup']) {
      const out = JSON.parse(
        kubectl('exec', '-n', NS, pod, '-c', PROXY.containerName, '--', 'node', '-e', read),
      );
      assert.equal(out.uid, PROXY.uid, pod);
      assert.equal(out.jwt, true, `${pod}: the sidecar read a JWT from ${PROXY.tokenDir}/token`);
      seen.push(
        `${pod}: mode ${out.mode} owner ${out.owner}:${out.group}, sidecar groups ${out.groups.join(',')}`,
      );
    }
    log(`[e2e] figure: the projected token as the sidecar sees it: ${seen.join('; ')}`);
    // And the fast path works with it: the fsgroup pod's sidecar applies the next change from
    // the apiserver (below, every sidecar's source is checked).
  });

  test('a new DENY policy is in effect in every reviews sidecar, delivered by the fast path', async () => {
    const since = clientLines();
    const t0 = Date.now();
    apply({
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-frontend', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'reviews' } },
        action: 'DENY',
        rules: [{ from: [{ source: { serviceAccounts: ['frontend'] } }] }],
      },
    });
    // 30 in a row at 80/20 reach both versions (all on v1: 0.8^30 ≈ 0.1 %); each reviews
    // sidecar's own counter is checked below.
    const { ms } = await everyClient('403 naming deny-frontend', since, (l) =>
      /^\d+ 403 .*deny-frontend/.test(l),
    );
    log(
      `[e2e] figure: new DENY to 30 denials in a row from every client: ${Date.now() - t0} ms (${ms} ms waiting)`,
    );
    const g = configMapGeneration();
    const applied = await allApplied(g);
    assert.ok(
      applied.every((a) => a.source === 'apiserver'),
      `every sidecar applied it from the apiserver, not the volume: ${JSON.stringify(applied)}`,
    );
    for (const p of running('app=reviews')) {
      const metrics = await healthGet(p, '/metrics');
      const denied = metrics
        .split('\n')
        .filter((l) => l.startsWith('weft_authz_decisions_total{') && l.includes('decision="deny"'))
        .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
      assert.ok(denied > 0, `${p.metadata.name} denied: ${denied}`);
    }
    const c = await eventually('Programmed True on deny-frontend', () => {
      const x = condition('authorizationpolicy', 'deny-frontend', 'Programmed');
      return x?.status === 'True' ? x : undefined;
    });
    const gen = json('get', 'authorizationpolicy', 'deny-frontend', '-n', NS).metadata.generation;
    assert.equal(c.message, `2/2 proxies applied generation ${gen}`, 'the two reviews sidecars');
    const since2 = clientLines();
    kubectl('delete', 'authorizationpolicy', 'deny-frontend', '-n', NS);
    await everyClient('200 again', since2, (l) => / 200 /.test(l));
  });

  test('a weight change is in effect in every client sidecar, and Programmed counts every proxy', async () => {
    const since = clientLines();
    const t0 = Date.now();
    setWeights(0, 100);
    const { ms } = await everyClient('every call on v2', since, (l) => l.split(' ')[3] === 'v2');
    log(
      `[e2e] figure: weight change to 30 calls in a row on v2 from every client: ${Date.now() - t0} ms (${ms} ms waiting; the 30 calls take 6 s)`,
    );
    const applied = await allApplied(configMapGeneration());
    assert.ok(
      applied.every((a) => a.source === 'apiserver'),
      JSON.stringify(applied),
    );
    const n = meshedPods().length;
    const gen = json('get', 'trafficsplit', 'reviews-canary', '-n', NS).metadata.generation;
    const c = await eventually(`Programmed ${n}/${n}`, () => {
      const x = condition('trafficsplit', 'reviews-canary', 'Programmed');
      return x?.status === 'True' && x.message.startsWith(`${n}/${n} `) ? x : undefined;
    });
    assert.equal(c.message, `${n}/${n} proxies applied generation ${gen}`);
    const m = await eventually('Mesh: every proxy in sync', () => {
      const s = mesh();
      return s.proxiesInSync === n && s.proxiesOutOfSync === 0 ? s : undefined;
    });
    assert.deepEqual(m.laggingProxies ?? [], []);
  });

  test('a paused sidecar is named as lagging in the Mesh status, Programmed, weftctl status and check', async () => {
    const [v1] = running('app=reviews,version=v1');
    const name = v1!.metadata.name;
    const old = await appliedBy(v1!);
    const n = meshedPods().length;
    const proxyPid = sidecarPid(v1!);
    process.kill(proxyPid, 'SIGSTOP');
    try {
      setWeights(50, 50);
      const gen = json('get', 'trafficsplit', 'reviews-canary', '-n', NS).metadata.generation;
      const c = await eventually(`Programmed ${n - 1}/${n}`, () => {
        const x = condition('trafficsplit', 'reviews-canary', 'Programmed');
        return x?.message.startsWith(`${n - 1}/${n} `) ? x : undefined;
      });
      assert.equal(c.status, 'False');
      assert.match(
        c.message,
        new RegExp(
          `^${n - 1}/${n} proxies applied generation ${gen}; waiting for ${NS}/${name} runs generation ${old.generation} \\(version ${old.version}\\)`,
        ),
      );
      const m = await eventually('Mesh: one proxy out of sync', () => {
        const s = mesh();
        return s.proxiesOutOfSync === 1 ? s : undefined;
      });
      assert.equal(m.proxiesInSync, n - 1);
      assert.deepEqual(
        m.laggingProxies.map((l: { namespace: string; pod: string; generation: number; version: string }) => [
          l.namespace,
          l.pod,
          l.generation,
          l.version,
        ]),
        [[NS, name, old.generation, old.version]],
      );
      const status = weftctl('status');
      assert.match(
        status.out,
        new RegExp(`lagging: ${NS}/${name} runs generation ${old.generation} \\(version ${old.version}\\)`),
      );
      // A warning (‼), not a failure: a lagging proxy still serves its last good config.
      const check = weftctl('check');
      assert.match(
        check.out,
        new RegExp(
          `‼ \\[weft-data-plane\\] every proxy runs .*: 1 proxies out of sync: ${NS}/${name} runs generation ${old.generation}`,
        ),
      );
      log(`[e2e] figure: weftctl status while ${name}'s sidecar is paused:\n${status.out}`);
    } finally {
      process.kill(proxyPid, 'SIGCONT');
    }
    await eventually(`Programmed ${n}/${n} once resumed`, () =>
      condition('trafficsplit', 'reviews-canary', 'Programmed')?.status === 'True' ? true : undefined,
    );
    await eventually('Mesh: every proxy in sync again', () =>
      mesh().proxiesOutOfSync === 0 ? true : undefined,
    );
    const check = weftctl('check');
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, new RegExp(`√ \\[weft-data-plane\\] every proxy runs .*: ${n} proxies in sync`));
  });

  test('a sidecar killed while the apiserver is stopped comes back and serves from its volume', async () => {
    const [fe] = running('app=frontend');
    const before = await appliedBy(fe!);
    const restarts = fe!.status.initContainerStatuses!.find(
      (c) => c.name === PROXY.containerName,
    )!.restartCount;
    const proxyPid = sidecarPid(fe!);
    const apiserver = node!.pids.find((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[0]!.endsWith('kube-apiserver');
      } catch {
        return false;
      }
    });
    assert.ok(apiserver, 'the apiserver process');
    // The app's log file, read on the host while the apiserver cannot serve `kubectl logs`.
    const logDir = `/var/log/pods/${NS}_${fe!.metadata.name}_${json('get', 'pod', fe!.metadata.name, '-n', NS).metadata.uid}/app`;
    const appLines = () => {
      try {
        return readFileSync(join(logDir, '0.log'), 'utf8').trim().split('\n');
      } catch {
        return [];
      }
    };
    stoppedApiserver = apiserver;
    process.kill(apiserver, 'SIGSTOP');
    const t0 = Date.now();
    let again: Applied;
    try {
      process.kill(proxyPid, 'SIGKILL');
      // The kubelet restarts the native sidecar from what it has: the pod spec and the volumes.
      again = await eventually('the restarted sidecar answers', async () => {
        const a = await appliedBy(fe!).catch(() => undefined);
        return a && a.source === 'volume' ? a : undefined;
      });
      const seen = appLines().length;
      const served = await eventually('the client gets 200s through the restarted sidecar', () => {
        const l = appLines().slice(seen);
        return l.filter((x) => / 200 reviews /.test(x)).length >= 10 ? l : undefined;
      });
      log(
        `[e2e] figure: sidecar killed with the apiserver stopped: serving again from its volume after ${Date.now() - t0} ms (volume generation ${again.generation}, it ran ${before.generation} from the apiserver before)`,
      );
      assert.ok(served.length >= 10);
    } finally {
      process.kill(apiserver, 'SIGCONT');
      stoppedApiserver = undefined;
    }
    // Once the apiserver is back, the restarted sidecar's watch delivers the next change.
    setWeights(80, 20);
    const caught = await eventually(
      'the restarted sidecar applies the next change from the apiserver',
      async () => {
        const a = await appliedBy(fe!).catch(() => undefined);
        return a && a.source === 'apiserver' && a.generation >= configMapGeneration() ? a : undefined;
      },
    );
    assert.ok(caught.generation > again!.generation);
    const now = running('app=frontend').find((p) => p.metadata.name === fe!.metadata.name)!;
    assert.equal(
      now.status.initContainerStatuses!.find((c) => c.name === PROXY.containerName)!.restartCount,
      restarts + 1,
    );
  });

  test('a rolling restart of a backend under steady traffic from a meshed client fails no request', async () => {
    const r = await rollingRestartUnderLoad({
      kubectl: node!.kubectl,
      kubeconfig,
      namespace: NS,
      serviceAccount: 'frontend',
    });
    log(
      `[e2e] figure: rolling restart of 2 replicas (${r.rolloutMs} ms) under 20 requests/s: ${r.failed.length} of ${r.requests} requests failed${r.failed.length ? `: ${r.failed.slice(0, 5).join(' | ')}` : ''}`,
    );
    if (r.clientProxyWarnings.length)
      log(`[e2e] the client's sidecar warned:\n${r.clientProxyWarnings.join('\n')}`);
    assert.ok(r.servedBy.length >= 4, `old and new replicas answered: ${r.servedBy.join(', ')}`);
    assert.deepEqual(r.failed, [], `${r.failed.length} of ${r.requests} requests failed`);
  });
});
