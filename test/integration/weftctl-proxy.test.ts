// weftctl's data-plane commands against a real kube-apiserver and a real sidecar: the pod
// objects point at a sidecar running in this process (its health port on this host's own
// address, which the apiserver's pods/proxy dials as it dials a pod; loopback is refused), so
// proxy-config, stat, edges, top, check --proxy and authz explain --from/--to go through
// the same path as on a cluster.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pino from 'pino';
import { CONFIG_DISTRIBUTION, PROXY } from '../../api/index.ts';
import { runWeftctl } from '../../cli/main.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../../kube/client.ts';
import { SimpleKubeConfig } from '../../kube/kubeconfig.ts';
import { encodeConfig } from '../../proxy/configdir.ts';
import { type Sidecar, startSidecar } from '../../proxy/sidecar.ts';
import { endpoint, proxyConfig, route, service } from '../../proxy/testdata.ts';
import { DEFAULT_PROXY_IMAGE, INJECTOR_VERSION } from '../../webhook/index.ts';
import { HOUR, newCa, spiffe, writeIdentity } from '../netns/mtlsfixture.ts';
import { installCrds, startTestCluster, type TestCluster } from '../support/cluster.ts';

const NS = 'shop';
const run = promisify(execFile);
/** An address of this host that is not loopback: the apiserver refuses to proxy to loopback. */
const hostIP = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

describe('weftctl data-plane commands through the apiserver', {
  skip: hostIP ? false : 'no non-loopback IPv4 address',
}, () => {
  let cluster: TestCluster;
  let client: KubeClient;
  let dir: string;
  let web: Sidecar;
  let frontend: Sidecar;
  let traffic: NodeJS.Timeout | undefined;
  const applied = proxyConfig(
    NS,
    [service('web', NS, '10.96.0.10', 80, [endpoint('10.244.0.7', 8080, { identity: spiffe('web') })])],
    [route()],
    { logLevel: 'warn' },
  );

  const weftctl = (...args: string[]) => runWeftctl(['--kubeconfig', cluster.kubeconfigPath, ...args]);

  /** The operator's ConfigMap for the namespace. */
  async function writeOperatorConfig(config: typeof applied, generation: number) {
    const files = encodeConfig(config, generation);
    const cm = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: CONFIG_DISTRIBUTION.configMapName, namespace: NS },
      data: {
        [CONFIG_DISTRIBUTION.manifestKey]: files.get(CONFIG_DISTRIBUTION.manifestKey)!.toString('utf8'),
      },
      binaryData: Object.fromEntries(
        [...files]
          .filter(([k]) => k !== CONFIG_DISTRIBUTION.manifestKey)
          .map(([k, v]) => [k, v.toString('base64')]),
      ),
    };
    await client.apply(RESOURCES.configMaps, cm as never, { fieldManager: 'weft-test' });
  }

  async function pod(
    name: string,
    sa: string,
    labels: Record<string, string>,
    sidecar?: Pick<Sidecar, 'ports'>,
    owner?: { kind: string; name: string; uid: string },
    at: { namespace: string; ip: string } = { namespace: NS, ip: hostIP! },
  ) {
    await client.create(RESOURCES.pods, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: at.namespace,
        ...(owner ? { ownerReferences: [{ apiVersion: 'apps/v1', ...owner, controller: true }] } : {}),
        labels: { ...labels, ...(sidecar ? { 'weft.dev/meshed': 'true' } : {}) },
        ...(sidecar ? { annotations: { 'weft.dev/injected': INJECTOR_VERSION } } : {}),
      },
      spec: {
        nodeName: 'node-1',
        serviceAccountName: sa,
        automountServiceAccountToken: false,
        ...(sidecar
          ? {
              initContainers: [
                {
                  name: PROXY.containerName,
                  image: DEFAULT_PROXY_IMAGE,
                  restartPolicy: 'Always',
                  ports: [{ name: 'weft-health', containerPort: sidecar.ports.health }],
                },
              ],
            }
          : {}),
        containers: [{ name: 'app', image: 'app', ports: [{ name: 'http', containerPort: 8080 }] }],
      },
    } as never);
    await client.apply(
      RESOURCES.pods,
      {
        metadata: { name, namespace: at.namespace },
        status: { phase: 'Running', podIP: at.ip, podIPs: [{ ip: at.ip }] },
      } as never,
      { subresource: 'status', fieldManager: 'weft-test' },
    );
  }

  async function sidecar(name: string, sa: string): Promise<Sidecar> {
    const ids = join(dir, `${name}-id`);
    const cfg = join(dir, `${name}-config`);
    await mkdir(ids);
    await mkdir(cfg);
    await writeIdentity(ids, await ca, sa, { lifetimeMs: 3 * HOUR });
    await writeFile(join(cfg, 'proxyconfig.json'), JSON.stringify(applied));
    return startSidecar({
      configDir: cfg,
      identityDir: ids,
      namespace: NS,
      podName: name,
      ports: { outbound: 0, inbound: 0, admin: 0, health: 0 },
      host: hostIP!,
      adminHost: '127.0.0.1',
      logger: pino({ level: 'warn' }), // raised by the config's logLevel too
    });
  }
  const ca = newCa();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weftctl-proxy-'));
    cluster = await startTestCluster();
    client = new KubeClient(SimpleKubeConfig.load(cluster.kubeconfigPath, {}, {}), 'weft-test');
    await installCrds(cluster);
    cluster.kubectl('create', 'namespace', NS);
    cluster.kubectl('label', 'namespace', NS, 'weft.dev/inject=enabled');
    web = await sidecar('web-1', 'web');
    frontend = await sidecar('frontend-1', 'frontend');
    await pod('web-1', 'web', { app: 'web' }, web);
    await pod('frontend-1', 'frontend', { app: 'frontend' }, frontend);
    // Created before injection was turned on: no sidecar.
    await pod('legacy-1', 'legacy', { app: 'legacy' });
    // And one of a Deployment (its ReplicaSet made by hand: no controllers run here).
    const oldSpec = {
      selector: { matchLabels: { app: 'old' } },
      template: {
        metadata: { labels: { app: 'old' } },
        spec: { containers: [{ name: 'app', image: 'app' }] },
      },
    };
    const dep = await client.create<KubeObject>(RESOURCES.deployments, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'old', namespace: NS },
      spec: oldSpec,
    } as never);
    const rs = await client.create<KubeObject>(RESOURCES.replicaSets, {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: 'old-5d4f8',
        namespace: NS,
        ownerReferences: [
          {
            apiVersion: 'apps/v1',
            kind: 'Deployment',
            name: 'old',
            uid: dep.metadata.uid!,
            controller: true,
          },
        ],
      },
      spec: oldSpec,
    } as never);
    await pod('old-5d4f8-x2x9z', 'default', { app: 'old' }, undefined, {
      kind: 'ReplicaSet',
      name: 'old-5d4f8',
      uid: rs.metadata.uid!,
    });
    await client.create(RESOURCES.services, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: NS },
      spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    } as never);
    await writeOperatorConfig(applied, 1);
  });

  after(async () => {
    clearInterval(traffic);
    await web?.close();
    await frontend?.close();
    client?.close();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('proxy-config shows the applied routes, endpoints and certificate, and never a key', async () => {
    const json = await weftctl('proxy-config', 'web-1', '-n', NS, '-o', 'json');
    assert.equal(json.code, 0);
    const a = JSON.parse(json.out);
    assert.equal(a.config.version, applied.version);
    assert.equal(a.status.version, applied.version);
    assert.equal(a.certificate.spiffeId, spiffe('web'));
    assert.ok(Date.parse(a.certificate.notAfter) > Date.now());
    assert.doesNotMatch(json.out, /PRIVATE KEY|BEGIN/);
    const text = await weftctl('proxy-config', 'web-1', '-n', NS);
    assert.match(
      text.out,
      /CERTIFICATE\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web, expires .* \(in 2h\)/,
    );
    assert.match(
      text.out,
      /ROUTES\nNAME\s+SERVICE\s+PORT\s+MATCH\s+BACKENDS\nshop\/web\s+shop\/web\s+\*\s+\*\s+shop\/web=1/,
    );
    assert.match(
      text.out,
      /shop\/web\s+80\/TCP\s+10\.244\.0\.7\s+ready\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/,
    );
    const yaml = await weftctl('proxy-config', 'web-1', '-n', NS, '-o', 'yaml');
    assert.match(yaml.out, /^status:\n/);
  });

  test('proxy-config --diff: none while the proxy runs what the operator wrote; the missing route once the operator writes more', async () => {
    const same = await weftctl('proxy-config', 'web-1', '-n', NS, '--diff');
    assert.equal(same.code, 0);
    assert.match(same.out, /the proxy runs what the operator wrote/);
    const newer = proxyConfig(
      NS,
      applied.services,
      [
        route(),
        route({ name: 'shop/web-admin', matches: [{ path: { type: 'PathPrefix', value: '/admin' } }] }),
      ],
      applied.mesh,
    );
    await writeOperatorConfig(newer, 2);
    const diff = await weftctl('proxy-config', 'web-1', '-n', NS, '--diff');
    assert.equal(diff.code, 3);
    assert.match(diff.out, new RegExp(`--- applied by the proxy \\(version ${applied.version}\\)`));
    assert.match(diff.out, /\+ routes\[shop\/web-admin\]: \{"name":"shop\/web-admin"/);
    const json = JSON.parse((await weftctl('proxy-config', 'web-1', '-n', NS, '--diff', '-o', 'json')).out);
    assert.equal(json.written, newer.version);
  });

  test('check --proxy names the proxies behind, the pod without a sidecar with the command that restarts it, and near expiry', async () => {
    const r = await weftctl('check', '--proxy', '-o', 'json');
    const results = JSON.parse(r.out).results as { name: string; ok: boolean; message?: string }[];
    const by = (n: RegExp) => results.find((x) => n.test(x.name))!;
    assert.equal(by(/sidecar the Mesh names/).ok, true, by(/sidecar the Mesh names/).message);
    const cfg = by(/configuration the operator last wrote/);
    assert.equal(cfg.ok, false);
    assert.match(
      cfg.message!,
      new RegExp(
        `shop/web-1 runs ${applied.version} \\(generation -\\), the operator wrote \\w+ \\(generation 2\\)`,
      ),
    );
    const legacy = by(/every pod of a meshed namespace has its sidecar/);
    assert.equal(legacy.ok, false);
    assert.match(legacy.message!, /shop\/legacy-1 has no sidecar: kubectl delete pod legacy-1 -n shop/);
    assert.match(
      legacy.message!,
      /shop\/old-5d4f8-x2x9z has no sidecar: kubectl rollout restart deployment\/old -n shop/,
    );
    assert.equal(by(/certificate/).ok, true, by(/certificate/).message);
    // Certificates live three hours here: warning four hours ahead fails the check, and the exit code says so.
    const soon = await weftctl('check', '--proxy', '--cert-warn', '4h', '-o', 'json');
    const cert = (JSON.parse(soon.out).results as { name: string; ok: boolean; message?: string }[]).find(
      (x) => /certificate/.test(x.name),
    )!;
    assert.equal(cert.ok, false);
    assert.match(
      cert.message!,
      /shop\/web-1's certificate spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web expires .* \(in 2h\)/,
    );
    assert.equal(soon.code, 1);
  });

  test('stat, edges, routes and top: rates, success and latency from two scrapes of the real proxies', async () => {
    // Three answered and one failed request per tick, from frontend to web, seen on both sides.
    const labels = (direction: string, status: string) => ({
      direction,
      source_workload: 'frontend',
      source_namespace: NS,
      destination_workload: 'web',
      destination_namespace: NS,
      destination_service: 'web',
      route: direction === 'outbound' ? 'TrafficSplit/shop/web' : '',
      route_rule: '',
      status_code: status,
      grpc_status: '',
    });
    traffic = setInterval(() => {
      for (const [s, dir] of [
        [web, 'inbound'],
        [frontend, 'outbound'],
      ] as const)
        for (const status of ['200', '200', '200', '503']) {
          s.metrics.requests.inc(labels(dir, status));
          s.metrics.duration.observe(labels(dir, status), status === '503' ? 0.2 : 0.004);
        }
    }, 20);
    const stat = await weftctl('stat', '-n', NS, '--window', '1s', '-o', 'json');
    const rows = JSON.parse(stat.out) as {
      name: string;
      rps: number;
      successRate: number;
      pods: number;
      latencyMs: { p50: number; p99: number };
    }[];
    const w = rows.find((x) => x.name === 'shop/web')!;
    assert.ok(w.rps > 0, stat.out);
    assert.equal(w.successRate, 0.75);
    assert.equal(w.pods, 1);
    assert.ok(
      w.latencyMs.p50 > 2.5 && w.latencyMs.p50 <= 5,
      `p50 in the 2.5-5 ms bucket: ${w.latencyMs.p50}`,
    );
    assert.ok(
      w.latencyMs.p99 > 100 && w.latencyMs.p99 <= 250,
      `p99 in the 100-250 ms bucket: ${w.latencyMs.p99}`,
    );
    assert.ok(
      rows.some((x) => x.name === 'shop/frontend'),
      'a workload without traffic is listed too',
    );
    const edges = JSON.parse((await weftctl('edges', '-n', NS, '--window', '1s', '-o', 'json')).out) as {
      name: string;
      successRate: number;
      source: { identity: string };
      destination: { identity: string };
    }[];
    assert.deepEqual(
      edges.map((e) => [e.name, e.successRate, e.source.identity, e.destination.identity]),
      [['shop/frontend -> shop/web', 0.75, spiffe('frontend'), spiffe('web')]],
    );
    const routes = JSON.parse((await weftctl('routes', '-n', NS, '--window', '1s', '-o', 'json')).out) as {
      name: string;
      successRate: number;
      destination: { service: string };
    }[];
    assert.deepEqual(
      routes.map((r) => [r.name, r.successRate, r.destination.service]),
      [['TrafficSplit/shop/web', 0.75, 'web']],
    );
    const top = await weftctl('top', '-n', NS, '--window', '1s', '--once');
    assert.match(
      top.out,
      /^SOURCE\s+DESTINATION\s+SERVICE\s+SUCCESS\s+RPS\s+P50\s+P95\s+P99\s+IDENTITIES\nshop\/frontend\s+shop\/web\s+web\s+75\.00%/,
    );
    clearInterval(traffic);
  });

  test('stat gives up on a sidecar whose network is gone after a few seconds, naming the pod', {
    skip: process.getuid?.() === 0 ? false : 'needs root (a network namespace that drops every packet)',
  }, async () => {
    // The pod's address lives in a network namespace of this test that drops everything it gets:
    // the apiserver's pods/proxy dial hangs until its own dial timeout, as for a node gone dark.
    const netns = `wft-${process.pid}-bh`;
    const link = `wbh${process.pid}`.slice(0, 15);
    const a = (process.pid >> 6) & 0xff;
    const b = (process.pid & 0x3f) << 2;
    const [hostSide, podSide] = [`198.18.${a}.${b + 1}`, `198.18.${a}.${b + 2}`];
    const inNs = (...args: string[]) => run('ip', ['netns', 'exec', netns, ...args]);
    try {
      await run('ip', ['netns', 'add', netns]);
      await run('ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
      await run('ip', ['addr', 'add', `${hostSide}/30`, 'dev', link]);
      await run('ip', ['link', 'set', link, 'up']);
      await inNs('ip', 'addr', 'add', `${podSide}/30`, 'dev', 'eth0');
      await inNs('ip', 'link', 'set', 'eth0', 'up');
      await inNs('iptables', '-A', 'INPUT', '-j', 'DROP');
      cluster.kubectl('create', 'namespace', 'gone');
      await pod('gone-1', 'default', { app: 'gone' }, { ports: { ...web.ports, health: 15020 } }, undefined, {
        namespace: 'gone',
        ip: podSide,
      });
      // stat, edges, routes and top read through the same two scrapes (main.ts window()).
      const r = await weftctl('stat', '-n', 'gone', '--window', '0s', '-o', 'json');
      assert.match(
        r.err,
        /gone-1: metrics not read: no answer within 3s through the apiserver \(is the pod's network up\?\)/,
        r.err,
      );
      assert.deepEqual(
        (JSON.parse(r.out) as { name: string; requests: number }[]).map((x) => [x.name, x.requests]),
        [['gone/gone', 0]],
      );
    } finally {
      await run('ip', ['netns', 'del', netns]).catch(() => {});
    }
  });

  test('authz explain --from/--to takes identity, labels and port from the live pods and names the policy and rule', async () => {
    await client.create(RESOURCES.authorizationPolicies, {
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'web-readers', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        rules: [
          {
            from: [{ source: { serviceAccounts: ['frontend'] } }],
            to: [{ operation: { methods: ['GET'], ports: [8080] } }],
          },
        ],
      },
    } as never);
    const ok = await weftctl(
      'authz',
      'explain',
      '-n',
      NS,
      '--from',
      'frontend-1',
      '--to',
      'svc/web',
      '--method',
      'GET',
      '--path',
      '/api',
      '-o',
      'json',
    );
    assert.equal(ok.code, 0, ok.out);
    const e = JSON.parse(ok.out);
    assert.equal(e.from.principal, 'cluster.local/ns/shop/sa/frontend');
    assert.equal(e.to.port, 8080, "the Service's target port, resolved by name on the pod");
    assert.deepEqual(e.to.labels, { app: 'web', 'weft.dev/meshed': 'true' });
    assert.match(e.decision.explanation, /shop\/web-readers rule 0/);
    const denied = await weftctl(
      'authz',
      'explain',
      '-n',
      NS,
      '--from',
      'legacy-1',
      '--to',
      'web-1',
      '--method',
      'GET',
    );
    assert.equal(denied.code, 3);
    assert.match(denied.out, /^from: shop\/legacy-1 \(no sidecar: plaintext, no principal\)/);
    assert.match(denied.out, /DENY: /);
    assert.match(denied.out, /shop\/web-readers ALLOW selects this workload/);
  });
});
