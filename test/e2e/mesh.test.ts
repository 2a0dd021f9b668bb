// The whole mesh, end to end, as users run it: a real one-node cluster (hack/node: kubelet,
// containerd, kube-proxy, CoreDNS), the Weft image of `npm run image` imported into it, and
// Weft installed by `helm install` from charts/weft: the operator and the webhook run as
// Deployments in weft-system (the operator with leader election, the webhook called by the
// apiserver through its Service). It deploys the demo (config/demo) under a STRICT Mesh and
// checks what a user would: sidecars injected, the client calling `http://reviews:9080` by
// name, the canary split honoured, mutual TLS between the sidecars, plaintext refused, a caller
// without the right identity denied by the policy, a weight change applied; ingress: the host
// calls reviews over HTTPS through a Weft Gateway (NodePort), which reaches the app over mutual
// TLS with its own identity, admitted by an AuthorizationPolicy naming it; a built-in canary
// progression (docs/progressive-delivery.md) that promotes a healthy v2, rolls back a failing one
// and a slow one, and keeps its place across leader restarts (paused, and mid-step); and the short
// fault suite (docs/reliability.md).
// The kubelet's syncFrequency is its default (1m) unless WEFT_NODE_SYNC_FREQUENCY says otherwise.
// With WEFT_TEST_KUBECONFIG it runs unchanged on that cluster instead (kind: test/kind/run.sh
// loads the images first): every check goes through the apiserver or from pods, not the host.
// It logs figures (pod start with and without the sidecar, the sidecar's working set as the
// kubelet reports it, how long a weight change took to apply); it asserts none of their values.
// Last, the short fault suite (hack/lib/faults.ts; the full one is npm run bench:faults): under a
// meshed client's steady traffic to a 2-replica backend (HTTP/1.1, gRPC over h2c and opaque TCP,
// a container each), the leader operator SIGKILLed, a backend's sidecar killed, a backend pod
// killed without grace and the kubelet restarted fail no request in any protocol.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WEFT_IMAGE } from '../../api/mesh.ts';
import { runWeftctl } from '../../cli/main.ts';
import { argoHealth, scriptOf } from '../../hack/argocd.ts';
import { removeGatewayApiCrds } from '../../hack/gateway-api.ts';
import {
  CALL_REVIEWS_BY_NAME,
  helmBinary,
  installWeft,
  setCanaryProgression,
  setCanaryWeights,
  WEFT_NAMESPACE,
} from '../../hack/install.ts';
import { Faults, protocolsFromEnv, type ScenarioResult } from '../../hack/lib/faults.ts';
import { kstatus, kstatusBinary } from '../../hack/lib/kstatus.ts';
import { startWeftNode, type WeftNode } from '../../hack/lib/weft-node.ts';
import { WEBHOOK_NAMES } from '../../webhook/manifests.ts';
import { issueServingCertificate } from '../../webhook/tls.ts';
import { repoRoot } from '../support/cluster.ts';
import { ensureBinaries } from '../support/control-plane.ts';
import { openDashboard } from '../support/dashboard.ts';
import { eventually as poll } from '../support/eventually.ts';

const external = process.env.WEFT_TEST_KUBECONFIG;
/** Whether the install applied the Gateway API CRDs (an external cluster gets them removed after). */
let gatewayApiApplied = false;
const isRoot = process.getuid?.() === 0;
const pid = process.pid;
const NS = 'weft-demo';
/** A namespace without the injection label: its pods have no sidecar. */
const OUTSIDE = 'weft-outside';
const DEMO_IMAGE = 'ghcr.io/weft-mesh/weft-demo:0.1.0';
// Ranges and bridge of its own: apart from the demo's (10.123/16, 10.124/16) and
// test/node/real-node.test.ts's (10.125/16, 10.126/16).
const POD_CIDR = '10.121.0.0/16';
const SERVICE_CIDR = '10.122.0.0/16';
const BRIDGE = `we${pid % 100000}`;
const SYNC = process.env.WEFT_NODE_SYNC_FREQUENCY;
const log = (l: string) => process.stderr.write(`${l}\n`);

const eventually = <T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 180_000) =>
  poll(what, fn, { timeoutMs, intervalMs: 500 });

/** Tally of client lines "<n> <status> <service> <version> <pod> <ms>ms". */
function versions(lines: string[]) {
  const t = { v1: 0, v2: 0, other: 0 };
  for (const l of lines) {
    const [, status, , version] = l.split(' ');
    if (status === '200' && version === 'v1') t.v1++;
    else if (status === '200' && version === 'v2') t.v2++;
    else t.other++;
  }
  return t;
}

describe('the mesh, end to end on the real node, installed by Helm', {
  skip: isRoot || external ? false : 'needs root (containerd, kubelet, iptables)',
}, () => {
  let weft: WeftNode | undefined;
  let kubectlBin: string;
  let kubeconfig: string;
  const kubectl = (...args: string[]) =>
    execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const apply = (obj: object) =>
    execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
      input: JSON.stringify(obj),
      encoding: 'utf8',
    });
  /** GET through the apiserver's pod proxy (plain HTTP from the apiserver to the pod). */
  const podGet = (pod: string, port: number, path: string) =>
    kubectl('get', '--raw', `/api/v1/namespaces/${NS}/pods/${pod}:${port}/proxy${path}`);
  /** A pod of the demo image running `args`; Ready once `ready` (an HTTP port) answers, if given. */
  const demoPod = (
    name: string,
    namespace: string,
    args: string[],
    opts: { sa?: string; env?: object[]; ready?: number } = {},
  ) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: name } },
    spec: {
      ...(opts.sa ? { serviceAccountName: opts.sa } : {}),
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'app',
          image: DEMO_IMAGE,
          command: ['node', ...args],
          env: opts.env ?? [],
          ...(opts.ready
            ? { readinessProbe: { httpGet: { path: '/healthz', port: opts.ready }, periodSeconds: 1 } }
            : {}),
        },
      ],
    },
  });
  const json = (...args: string[]) => JSON.parse(kubectl(...args, '-o', 'json'));
  const podsOf = (selector: string) =>
    json('get', 'pods', '-n', NS, '-l', selector).items as {
      metadata: { name: string; annotations: Record<string, string> };
      spec: { initContainers: { name: string; restartPolicy?: string }[] };
      status: { phase: string; podIP: string };
    }[];
  const logsOf = (target: string, container: string, namespace = NS): string[] => {
    try {
      return kubectl('logs', '-n', namespace, target, '-c', container).trim().split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  /**
   * The frontend client's answers once both versions have answered: before that, one backend's
   * endpoint may not have reached the client's proxy configuration yet (the operator writes it
   * after the EndpointSlice, the kubelet projects it into the volume after that).
   */
  const clientAnswers = (): string[] => {
    const lines = logsOf('deploy/frontend', 'app');
    const seen = new Set<string>();
    const both = lines.findIndex((l) => {
      const [, status, , version] = l.split(' ');
      if (status === '200') seen.add(version!);
      return seen.has('v1') && seen.has('v2');
    });
    return both < 0 ? [] : lines.slice(both + 1);
  };

  before(async () => {
    if (external) {
      kubeconfig = external;
      kubectlBin = join(ensureBinaries(), 'kubectl');
      gatewayApiApplied = (await installWeft({ kubeconfig, kubectl: kubectlBin, log })).gatewayApiApplied;
    } else {
      weft = await startWeftNode({
        dirPrefix: 'weft-e2e-',
        bridge: BRIDGE,
        podCIDR: POD_CIDR,
        serviceCIDR: SERVICE_CIDR,
        log,
        ...(SYNC ? { syncFrequency: SYNC } : {}),
      });
      kubeconfig = weft.node.kubeconfigPath;
      kubectlBin = weft.node.kubectl;
    }
    kubectl('create', 'namespace', OUTSIDE);
    // The demo under a STRICT Mesh: sidecars accept only mutual TLS.
    kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-f',
      join(repoRoot, 'config/demo/mesh.yaml'),
    );
    kubectl('patch', 'mesh', 'default', '--type=merge', '-p', '{"spec":{"mtls":{"mode":"STRICT"}}}');
    kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-f',
      join(repoRoot, 'config/demo/demo.yaml'),
    );
    for (const d of ['reviews-v1', 'reviews-v2', 'frontend']) {
      await eventually(`deployment ${d} available`, () =>
        kubectl('get', 'deployment', d, '-n', NS, '-o', 'jsonpath={.status.availableReplicas}') === '1'
          ? true
          : undefined,
      );
    }
  });

  after(async () => {
    if (external) {
      // Leave the cluster as it was: the demo, the Mesh and the release go.
      for (const args of [
        ['delete', 'namespace', NS, OUTSIDE, '--ignore-not-found', '--wait=true'],
        ['delete', 'mesh', 'default', '--ignore-not-found'],
      ])
        kubectl(...args);
      execFileSync(helmBinary(), ['--kubeconfig', kubeconfig, 'uninstall', 'weft', '-n', WEFT_NAMESPACE]);
      if (gatewayApiApplied) removeGatewayApiCrds(kubectl);
    }
    await weft?.stop();
  });

  test('Helm installed the operator (one leader of two) and the webhook, which the apiserver calls through its Service', () => {
    for (const d of ['weft-operator', 'weft-webhook']) {
      const dep = json('get', 'deployment', d, '-n', WEFT_NAMESPACE);
      assert.equal(dep.metadata.annotations['meta.helm.sh/release-name'], 'weft', d);
      assert.equal(dep.status.availableReplicas, dep.spec.replicas, d);
      assert.equal(dep.spec.template.spec.containers[0].image, WEFT_IMAGE, d);
    }
    const lease = json('get', 'lease', 'weft-operator', '-n', WEFT_NAMESPACE);
    const { matchLabels } = json('get', 'deployment', 'weft-operator', '-n', WEFT_NAMESPACE).spec.selector;
    const selector = Object.entries(matchLabels).map(([k, v]) => `${k}=${v}`);
    const operators = json('get', 'pods', '-n', WEFT_NAMESPACE, '-l', selector.join(',')).items.map(
      (p: { metadata: { name: string } }) => p.metadata.name,
    );
    assert.equal(operators.length, 2, operators.join(', '));
    assert.ok(
      operators.some((n: string) => lease.spec.holderIdentity.startsWith(n)),
      `the lease holder ${lease.spec.holderIdentity} is one of the operator pods ${operators.join(', ')}`,
    );
    const mutating = json('get', 'mutatingwebhookconfiguration', WEBHOOK_NAMES.mutatingConfiguration);
    for (const w of mutating.webhooks) {
      assert.equal(w.clientConfig.url, undefined);
      assert.equal(w.clientConfig.service.name, 'weft-webhook');
      assert.equal(w.clientConfig.service.namespace, WEFT_NAMESPACE);
    }
  });

  test('the apiserver called the webhook: every demo pod runs the injected native sidecar and init', () => {
    const pods = podsOf('app in (reviews, frontend)');
    assert.equal(pods.length, 3);
    for (const p of pods) {
      const inits = p.spec.initContainers.map((c) => `${c.name}:${c.restartPolicy ?? ''}`);
      assert.deepEqual(inits, ['weft-init:', 'weft-proxy:Always'], p.metadata.name);
      assert.equal(p.metadata.annotations['weft.dev/injected'], 'v1');
      assert.equal(p.status.phase, 'Running');
    }
  });

  test('the client reaches http://reviews:9080 by its DNS name through the sidecar', async () => {
    // STRICT: a plaintext call would be refused with 403, so a 200 went through both sidecars.
    // Until the backends' endpoints reach the client's sidecar (the kubelet projects its
    // configuration, up to syncFrequency later) the sidecar answers 503.
    const call = () => kubectl(...CALL_REVIEWS_BY_NAME).trim();
    const out = await eventually('a 200 answer by name', () => {
      const o = call();
      return o.startsWith('200 ') ? o : undefined;
    });
    assert.match(out, /"service":"reviews"/);
    assert.match(out, /"version":"v[12]"/);
  });

  test('the canary TrafficSplit sends about 80% of the calls to v1 and the rest to v2', async () => {
    // 100 calls (the demo client makes 5 a second): at p = 0.8 the standard deviation is 4 calls,
    // and the band below is ±3.75 of them (a false failure in about 5,000 runs).
    const lines = await eventually('100 answers from the client', () => {
      const a = clientAnswers();
      return a.length >= 100 ? a.slice(0, 100) : undefined;
    });
    const t = versions(lines);
    assert.equal(
      t.other,
      0,
      `every call answered 200: ${lines
        .filter((l) => l.split(' ')[1] !== '200')
        .slice(0, 3)
        .join(' | ')}`,
    );
    assert.ok(t.v1 >= 65 && t.v1 <= 95, `v1 got ${t.v1} of 100, v2 ${t.v2}`);
  });

  test('the sidecars talk mutual TLS 1.3 with the SPIFFE identities of the workloads', async () => {
    const [v1] = podsOf('app=reviews,version=v1');
    const line = podGet(v1!.metadata.name, 15020, '/metrics')
      .split('\n')
      .find(
        (l) =>
          l.startsWith('weft_mtls_connections_total{') &&
          l.includes('direction="inbound"') &&
          l.includes('peer="spiffe://cluster.local/ns/weft-demo/sa/frontend"'),
      );
    assert.ok(line, 'an inbound mTLS connection from the frontend identity was counted');
    assert.match(line!, /tls_version="TLSv1\.3"/);
    assert.ok(Number(line!.split(' ').at(-1)) > 0);
  });

  test('STRICT: a plaintext caller without a sidecar is refused', async () => {
    const [v1] = podsOf('app=reviews,version=v1');
    apply(
      demoPod('outsider', OUTSIDE, ['hack/demo-apps/client.ts', `http://${v1!.status.podIP}:8080/`], {
        env: [{ name: 'COUNT', value: '3' }],
      }),
    );
    const lines = await eventually('3 answers to the outsider', () => {
      const l = logsOf('outsider', 'app', OUTSIDE);
      return l.length >= 3 ? l : undefined;
    });
    for (const l of lines) {
      assert.match(l, /^\d+ 403 /, l);
      assert.match(l, /mutual TLS is required on port 8080 \(mTLS mode STRICT\): plaintext refused/, l);
    }
  });

  test('a meshed caller with another identity is denied by the AuthorizationPolicy, which the answer names', async () => {
    kubectl('create', 'serviceaccount', 'intruder', '-n', NS);
    apply(
      demoPod('intruder', NS, ['hack/demo-apps/client.ts', 'http://reviews:9080/'], {
        sa: 'intruder',
        env: [
          { name: 'COUNT', value: '5' },
          { name: 'INTERVAL_MS', value: '200' },
        ],
      }),
    );
    const lines = await eventually('5 answers to the intruder', () => {
      const l = logsOf('intruder', 'app');
      return l.length >= 5 ? l : undefined;
    });
    for (const l of lines) {
      assert.match(l, /^\d+ 403 /, l);
      assert.match(l, /weft-demo\/reviews-from-frontend/, l);
    }
    let denied = 0;
    for (const p of podsOf('app=reviews')) {
      for (const l of podGet(p.metadata.name, 15020, '/metrics').split('\n')) {
        if (l.startsWith('weft_authz_decisions_total{') && l.includes('decision="deny"'))
          denied += Number(l.split(' ').at(-1));
      }
    }
    assert.ok(denied >= 5, `denials counted: ${denied}`);
  });

  test('the kubelet reports the working set of every sidecar (figure: sidecar memory)', () => {
    const nodes = json('get', 'nodes').items.map((n: { metadata: { name: string } }) => n.metadata.name);
    const sets: string[] = [];
    for (const n of nodes) {
      const summary = JSON.parse(kubectl('get', '--raw', `/api/v1/nodes/${n}/proxy/stats/summary`));
      for (const p of summary.pods ?? []) {
        if (p.podRef.namespace !== NS || !/^(reviews|frontend)/.test(p.podRef.name)) continue;
        const c = p.containers.find((x: { name: string }) => x.name === 'weft-proxy');
        assert.ok(
          c?.memory?.workingSetBytes > 0,
          `${p.podRef.name}: weft-proxy working set ${JSON.stringify(c?.memory)}`,
        );
        const app = p.containers.find((x: { name: string }) => x.name !== 'weft-proxy');
        sets.push(
          `${p.podRef.name} weft-proxy ${(c.memory.workingSetBytes / 2 ** 20).toFixed(1)} MiB (app ${(
            (app?.memory?.workingSetBytes ?? 0) / 2 ** 20
          ).toFixed(1)} MiB)`,
        );
      }
    }
    assert.equal(sets.length, 3, sets.join('; '));
    log(`[e2e] figure: working set: ${sets.join('; ')}`);
  });

  test('a pod starts with and without the sidecar (figure: pod start)', async () => {
    const ready = (name: string, namespace: string) =>
      kubectl(
        'get',
        'pod',
        name,
        '-n',
        namespace,
        '-o',
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ) === 'True';
    const times: string[] = [];
    for (const [name, namespace] of [
      ['plain', OUTSIDE],
      ['meshed', NS],
    ] as const) {
      const t0 = Date.now();
      apply(
        demoPod(name, namespace, ['hack/demo-apps/server.ts'], {
          ready: 8080,
          sa: namespace === NS ? 'reviews' : undefined,
        }),
      );
      await eventually(`pod ${namespace}/${name} Ready`, () => (ready(name, namespace) ? true : undefined));
      times.push(`${name} ${Date.now() - t0} ms`);
    }
    const meshed = json('get', 'pod', 'meshed', '-n', NS);
    assert.equal(meshed.metadata.annotations['weft.dev/injected'], 'v1');
    assert.equal(
      json('get', 'pod', 'plain', '-n', OUTSIDE).metadata.annotations?.['weft.dev/injected'],
      undefined,
    );
    log(`[e2e] figure: pod created to Ready (readiness probe every 1 s): ${times.join(', ')}`);
  });

  test('a weight change reaches the proxies: 0/100 sends every call to v2', async () => {
    const seen = clientAnswers().length;
    const t0 = Date.now();
    kubectl(...setCanaryWeights(0, 100));
    // Once a call lands on v2 after the change, the next 30 must all go there. The proxy takes
    // the new config from its apiserver watch, or from the volume the kubelet projects up to
    // syncFrequency (default 1m) plus jitter after the change.
    const tail = await eventually('30 calls in a row to v2', () => {
      const a = clientAnswers().slice(seen);
      const first = a.findIndex(
        (_, i) =>
          a.slice(i, i + 30).length === 30 && a.slice(i, i + 30).every((l) => l.split(' ')[3] === 'v2'),
      );
      return first >= 0 ? a.slice(first, first + 30) : undefined;
    });
    const [fe] = podsOf('app=frontend');
    const applied = JSON.parse(podGet(fe!.metadata.name, 15020, '/config/version'));
    log(
      `[e2e] figure: weight change to 30 calls in a row on v2: ${Date.now() - t0} ms (syncFrequency ${SYNC ?? '1m'}; the client's sidecar applied generation ${applied.generation} from the ${applied.source})`,
    );
    assert.equal(versions(tail).v2, 30);
    const ts = json('get', 'trafficsplit', 'reviews-canary', '-n', NS);
    assert.equal(ts.status.observedGeneration, ts.metadata.generation);
    assert.equal(ts.status.conditions.find((c: { type: string }) => c.type === 'Ready').status, 'True');
  });

  test('weftctl against the demo: inject, proxy-config, stat, edges, top, authz explain from live pods, check --proxy (figure: weftctl time)', async () => {
    const t0 = Date.now();
    const weftctl = (...args: string[]) => runWeftctl(['--kubeconfig', kubeconfig, ...args]);
    // inject, offline with the live Mesh: the sidecar the webhook gave the running frontend pod.
    const inj = await weftctl('inject', '-f', join(repoRoot, 'config/demo/demo.yaml'));
    assert.equal(inj.code, 0, inj.err);
    const injected = (
      (await import('js-yaml')).loadAll(inj.out) as {
        kind: string;
        metadata: { name: string };
        spec: {
          template: { spec: { initContainers: { name: string; image: string; command: string[] }[] } };
        };
      }[]
    ).find((d) => d.kind === 'Deployment' && d.metadata.name === 'frontend')!;
    const [fe] = podsOf('app=frontend');
    const running = json('get', 'pod', fe!.metadata.name, '-n', NS).spec.initContainers as {
      name: string;
      image: string;
      command: string[];
    }[];
    assert.deepEqual(
      injected.spec.template.spec.initContainers.map((c) => [c.name, c.image, c.command]),
      running.map((c) => [c.name, c.image, c.command]),
    );
    // proxy-config: what the frontend's proxy applied, the certificate of its ServiceAccount,
    // and no difference from the operator's ConfigMap (retried: a change may be on its way).
    const pc = JSON.parse((await weftctl('proxy-config', 'deploy/frontend', '-n', NS, '-o', 'json')).out);
    assert.equal(pc.certificate.spiffeId, `spiffe://cluster.local/ns/${NS}/sa/frontend`);
    assert.ok(pc.config.routes.some((r: { service: string }) => r.service === `${NS}/reviews`));
    await eventually('proxy-config --diff finds no difference', async () =>
      (await weftctl('proxy-config', 'deploy/frontend', '-n', NS, '--diff')).code === 0 ? true : undefined,
    );
    // stat / edges / top: the client calls reviews every 200 ms.
    const stat = JSON.parse((await weftctl('stat', '-n', NS, '--window', '3s', '-o', 'json')).out) as {
      name: string;
      rps: number;
      successRate?: number;
    }[];
    const reviews = stat.find((r) => r.name === `${NS}/reviews`);
    assert.ok(reviews && reviews.rps > 0 && reviews.successRate! > 0, JSON.stringify(stat));
    const edges = JSON.parse((await weftctl('edges', '-n', NS, '--window', '3s', '-o', 'json')).out) as {
      name: string;
      source: { identity?: string };
      destination: { identity?: string };
    }[];
    const edge = edges.find((e) => e.name === `${NS}/frontend -> ${NS}/reviews`);
    assert.deepEqual(
      [edge?.source.identity, edge?.destination.identity],
      [`spiffe://cluster.local/ns/${NS}/sa/frontend`, `spiffe://cluster.local/ns/${NS}/sa/reviews`],
    );
    const top = await weftctl('top', '-n', NS, '--window', '2s', '--once');
    assert.match(top.out, new RegExp(`${NS}/frontend\\s+${NS}/reviews\\s+reviews(-v[12])?\\.${NS}`));
    // authz explain from the live pods: the frontend is allowed, the intruder denied by the rule
    // that denied it on the wire (the test above).
    const allow = await weftctl(
      'authz',
      'explain',
      '-n',
      NS,
      '--from',
      'deploy/frontend',
      '--to',
      'svc/reviews',
      '--method',
      'GET',
    );
    assert.equal(allow.code, 0, allow.out);
    assert.match(allow.out, /ALLOW: allowed by ALLOW policy weft-demo\/reviews-from-frontend rule 0/);
    const deny = await weftctl(
      'authz',
      'explain',
      '-n',
      NS,
      '--from',
      'intruder',
      '--to',
      'svc/reviews',
      '--method',
      'GET',
      '-o',
      'json',
    );
    assert.equal(deny.code, 3);
    assert.equal(JSON.parse(deny.out).from.principal, `cluster.local/ns/${NS}/sa/intruder`);
    // check --proxy: every demo sidecar current, of the Mesh's image, with a valid certificate.
    type Result = { category: string; name: string; ok: boolean; message?: string };
    let last: Result[] = [];
    const proxyResults = async () => {
      const r = JSON.parse((await weftctl('check', '--proxy', '-o', 'json')).out) as { results: Result[] };
      last = r.results.filter((x) => x.category === 'weft-proxies' && !/has its sidecar/.test(x.name));
      return last.length === 3 && last.every((x) => x.ok) ? last : undefined;
    };
    await eventually(
      'check --proxy: sidecars, configuration and certificates fine',
      proxyResults,
      30_000,
    ).catch(() => assert.fail(JSON.stringify(last, null, 2)));
    log(`[e2e] figure: the weftctl block took ${Date.now() - t0} ms`);
  });

  test('weftctl dashboard against the demo in headless Chromium: the frontend -> reviews edge with its success rate, the split weights, the denial naming the policy (figure: dashboard time; docs/images/dashboard.png)', async () => {
    const t0 = Date.now();
    const dash = await openDashboard(kubeconfig, ['-n', NS, '--window', '3s']);
    try {
      const { page } = dash;
      // The client calls reviews every 200 ms: the edge has a success rate (a refresh may redraw it).
      const edge = page.locator(`[data-edge="${NS}/frontend -> ${NS}/reviews"] text`).first();
      await eventually(
        'the frontend -> reviews edge with a success rate',
        async () =>
          /^\d+\.\d% · [\d.]+ rps · p50 /.test((await edge.textContent()) ?? '') ? true : undefined,
        60_000,
      );
      // The split: the weights its spec configures now, and some traffic observed per backend.
      const spec = json('get', 'trafficsplit', 'reviews-canary', '-n', NS).spec.backends as {
        service: string;
        weight: number;
      }[];
      const total = spec.reduce((a, b) => a + b.weight, 0);
      const split = page.locator(`[data-split="${NS}/reviews-canary"]`);
      for (const b of spec)
        assert.equal(
          await split.locator(`[data-backend="${b.service}"][data-kind="configured"]`).textContent(),
          `${((b.weight / total) * 100).toFixed(1)}% (w ${b.weight})`,
        );
      assert.match((await split.textContent()) ?? '', /observed\d+\.\d% \(\d+ req\)/);
      // The intruder's denials (the test above), naming the policy that did not let it in.
      const denial = (await page.locator('#authz tr[data-decision="deny"]').first().textContent()) ?? '';
      assert.match(denial, new RegExp(`${NS}/reviews.*DENY.*${NS}/reviews-from-frontend`));
      // The picture in docs/weftctl.md: rewritten only when asked (WEFT_DASHBOARD_SCREENSHOT=1).
      const png = await page.screenshot({
        fullPage: true,
        ...(process.env.WEFT_DASHBOARD_SCREENSHOT === '1'
          ? { path: join(repoRoot, 'docs', 'images', 'dashboard.png') }
          : {}),
      });
      assert.equal(png.subarray(1, 4).toString(), 'PNG');
    } finally {
      await dash.close();
    }
    log(`[e2e] figure: the dashboard block took ${Date.now() - t0} ms`);
  });

  test('GitOps: kstatus (Flux) and Argo CD read the live objects; a weight change is InProgress until the proxies applied it', async () => {
    kstatusBinary(); // built before the watch below starts
    const gitops = (kind: string, name: string, ns?: string) => {
      const text = kubectl('get', kind, name, ...(ns ? ['-n', ns] : []), '-o', 'json');
      const obj = JSON.parse(text);
      return { k: kstatus(text)[0]!, argo: argoHealth(scriptOf(`weft.dev_${obj.kind}`), obj) };
    };
    // Every version of the TrafficSplit the apiserver stores while 80/20 is applied back: kstatus
    // must pass through InProgress and say Current only once every proxy applied the generation.
    const before = json('get', 'trafficsplit', 'reviews-canary', '-n', NS).metadata;
    const rv = before.resourceVersion;
    const watch = spawn(kubectlBin, [
      '--kubeconfig',
      kubeconfig,
      'get',
      '--raw',
      `/apis/weft.dev/v1alpha1/namespaces/${NS}/trafficsplits?watch=1&fieldSelector=metadata.name%3Dreviews-canary&resourceVersion=${rv}&timeoutSeconds=120`,
    ]);
    const versions: { k: string; programmed?: string; generation: number }[] = [];
    let buffered = '';
    const current = new Promise<void>((resolve, reject) => {
      watch.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const event = JSON.parse(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
          if (event.type !== 'MODIFIED')
            return reject(new Error(`unexpected watch event: ${JSON.stringify(event)}`));
          const obj = event.object;
          // Status writes still arriving for the previous generation are not this change.
          if (obj.metadata.generation <= before.generation) continue;
          const k = kstatus(JSON.stringify(obj))[0]!.status;
          const programmed = obj.status?.conditions?.find((c: { type: string }) => c.type === 'Programmed');
          versions.push({ k, programmed: programmed?.status, generation: obj.metadata.generation });
          if (k === 'Current') resolve();
        }
      });
      watch.on('exit', () =>
        reject(new Error(`the watch ended before Current: ${JSON.stringify(versions)}`)),
      );
    });
    const t0 = Date.now();
    kubectl(...setCanaryWeights(80, 20));
    try {
      await current;
    } finally {
      watch.kill();
    }
    log(
      `[e2e] figure: weight change to kstatus Current: ${Date.now() - t0} ms (${versions.map((v) => v.k).join(' → ')})`,
    );
    assert.equal(versions[0]!.k, 'InProgress', 'the new generation starts InProgress');
    for (const v of versions.filter((x) => x.k === 'Current'))
      assert.equal(v.programmed, 'True', 'Current only once the proxies applied it');

    for (const [kind, name, ns] of [
      ['trafficsplit', 'reviews-canary', NS],
      ['authorizationpolicy', 'reviews-from-frontend', NS],
      ['mesh', 'default', undefined],
    ] as const) {
      kubectl('wait', '--for=condition=Ready', '--timeout=60s', `${kind}/${name}`, ...(ns ? ['-n', ns] : []));
      const h = gitops(kind, name, ns);
      assert.equal(h.k.status, 'Current', `${kind}/${name}: ${h.k.message}`);
      assert.equal(h.argo.status, 'Healthy', `${kind}/${name}: ${h.argo.message}`);
    }

    // A Service that does not exist: Failed at once (Flux stops waiting), Degraded for Argo CD.
    apply({
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'TrafficSplit',
      metadata: { name: 'reviews-missing', namespace: NS },
      // On reviews-v1: the webhook allows one split per Service and requests (reviews has one).
      spec: { service: 'reviews-v1', backends: [{ service: 'reviews-v9', weight: 100 }] },
    });
    try {
      const h = await eventually(
        'reviews-missing Failed',
        () => {
          const x = gitops('trafficsplit', 'reviews-missing', NS);
          return x.k.status === 'Failed' ? x : undefined;
        },
        30_000,
      );
      assert.match(h.k.message, /reviews-v9/);
      assert.equal(h.argo.status, 'Degraded');
    } finally {
      kubectl('delete', 'trafficsplit', 'reviews-missing', '-n', NS, '--wait=true');
    }
  });

  test('ingress: the host calls reviews through a Weft Gateway over HTTPS; the gateway reaches the app over mTLS with its own identity', async () => {
    const t0 = Date.now();
    const HOST = 'reviews.example.com';
    const cert = await issueServingCertificate({ dnsNames: [HOST], ipAddresses: [], now: new Date() });
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'reviews-tls', namespace: NS },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(cert.certPem), 'tls.key': b64(cert.keyPem) },
    });
    const gw = 'gateway.networking.k8s.io/v1';
    apply({
      apiVersion: gw,
      kind: 'GatewayClass',
      metadata: { name: 'weft' },
      spec: { controllerName: 'weft.dev/gateway' },
    });
    apply({
      apiVersion: gw,
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: NS },
      spec: {
        gatewayClassName: 'weft',
        listeners: [
          {
            name: 'https',
            port: 443,
            protocol: 'HTTPS',
            hostname: HOST,
            tls: { certificateRefs: [{ name: 'reviews-tls' }] },
          },
        ],
      },
    });
    apply({
      apiVersion: gw,
      kind: 'HTTPRoute',
      metadata: { name: 'reviews-edge', namespace: NS },
      spec: {
        parentRefs: [{ name: 'edge' }],
        hostnames: [HOST],
        rules: [{ backendRefs: [{ name: 'reviews', port: 9080 }] }],
      },
    });
    // Only the frontend may call reviews (reviews-from-frontend); admit the gateway by principal.
    apply({
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'reviews-from-gateway', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'reviews' } },
        action: 'ALLOW',
        rules: [{ from: [{ source: { serviceAccounts: ['edge-weft-gateway'] } }] }],
      },
    });
    await eventually('Gateway edge Programmed', () => {
      const g = json('get', 'gateway', 'edge', '-n', NS);
      const c = (g.status?.conditions ?? []).find((x: { type: string }) => x.type === 'Programmed');
      return c?.status === 'True' ? g : undefined;
    });
    const svc = json('get', 'service', 'edge-weft-gateway', '-n', NS);
    const nodePort = svc.spec.ports.find((p: { port: number }) => p.port === 443).nodePort as number;
    const nodeIp = kubectl(
      'get',
      'nodes',
      '-o',
      'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}',
    ).trim();
    // From the host, outside the cluster: the node address and port, TLS verified against the CA
    // for the name the listener serves. The route and the policy reach the proxies a little later.
    const call = () =>
      new Promise<{ status: number; body: string; subject?: string } | undefined>((resolve) => {
        const req = httpsRequest(
          {
            host: nodeIp,
            port: nodePort,
            servername: HOST,
            ca: cert.caPem,
            path: '/',
            headers: { host: HOST },
            timeout: 5_000,
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => {
              body += d;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('timeout', () => req.destroy());
        req.on('error', () => resolve(undefined));
        req.end();
      });
    let last: Awaited<ReturnType<typeof call>>;
    const ok = await eventually('200 from reviews through the gateway', async () => {
      last = await call();
      return last?.status === 200 ? last : undefined;
    }).catch((e) => {
      throw new Error(`${(e as Error).message}; last answer: ${JSON.stringify(last)}`);
    });
    assert.equal(JSON.parse(ok.body).service, 'reviews');
    // The app's sidecar (STRICT: plaintext refused) counted mutual TLS from the gateway's SPIFFE ID.
    const peer = `spiffe://cluster.local/ns/${NS}/sa/edge-weft-gateway`;
    let from = 0;
    for (const p of podsOf('app=reviews'))
      for (const l of podGet(p.metadata.name, 15020, '/metrics').split('\n'))
        if (
          l.startsWith('weft_mtls_connections_total{') &&
          l.includes('direction="inbound"') &&
          l.includes(`peer="${peer}"`)
        )
          from += Number(l.split(' ').at(-1));
    assert.ok(from >= 1, `reviews' sidecars saw mTLS from ${peer}: ${from}`);
    log(`[e2e] figure: Gateway created to the first HTTPS answer from the host: ${Date.now() - t0} ms`);
  });

  // The built-in canary progression (docs/progressive-delivery.md) on the demo: the operator reads
  // the reviews pods' proxies, moves the weights through status, and the client's traffic follows.
  // Short steps (5 to 8 s) and small minimums keep it to about two minutes.
  const progression = (stepWeights: number[], more: Record<string, unknown> = {}) =>
    setCanaryProgression({
      stepWeights,
      interval: '5s',
      gates: { minSuccessRate: 95, minRequests: 5 },
      ...more,
    });
  const splitNow = () => json('get', 'trafficsplit', 'reviews-canary', '-n', NS);
  /** weftctl, as a user runs it. */
  const weftctlSplit = (verb: string) =>
    execFileSync(process.execPath, [
      join(repoRoot, 'cli', 'main.ts'),
      '--kubeconfig',
      kubeconfig,
      'split',
      verb,
      'reviews-canary',
      '-n',
      NS,
    ]);
  /** Waits for `n` answers in a row from `version` among the client's answers after `seen`. */
  const inARow = (what: string, seen: number, version: string, n = 30) =>
    eventually(what, () => {
      const a = clientAnswers().slice(seen);
      const i = a.findIndex(
        (_, j) =>
          a.slice(j, j + n).length === n && a.slice(j, j + n).every((l) => l.split(' ')[3] === version),
      );
      return i >= 0 ? a.slice(i, i + n) : undefined;
    });

  test('progression: a healthy v2 is promoted step by step by the operator, from what the proxies observed', async () => {
    const t0 = Date.now();
    kubectl(...progression([50]));
    const ts = await eventually(
      'Promoted',
      () => {
        const s = splitNow();
        return s.status?.progression?.phase === 'Promoted' || s.status?.progression?.phase === 'RolledBack'
          ? s
          : undefined;
      },
      90_000,
    );
    const p = ts.status.progression;
    assert.equal(p.phase, 'Promoted', `${p.message} (history: ${JSON.stringify(p.history)})`);
    assert.equal(p.canaryWeight, 100);
    assert.deepEqual(
      p.history.map((h: { decision: string }) => h.decision),
      ['Started', 'Promoted'],
    );
    const promoted = ts.status.conditions.find((c: { type: string }) => c.type === 'Promoted');
    assert.equal(promoted.status, 'True');
    // The spec is the user's: the operator wrote only status.
    assert.deepEqual(
      ts.spec.backends.map((b: { weight: number }) => b.weight),
      [100, 0],
    );
    // The gate read real traffic: the client's calls to v2 as its proxy observed them.
    assert.ok(p.observed.canary.requests >= 5, JSON.stringify(p.observed));
    const seen = clientAnswers().length;
    await inARow('30 calls in a row to v2 after the promotion', seen, 'v2');
    const events = json(
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.name=reviews-canary',
    ).items.map((e: { reason: string }) => e.reason);
    assert.ok(events.includes('ProgressionPromoted'), events.join(', '));
    log(
      `[e2e] figure: progression of 1 step of 5 s to Promoted and 30 calls in a row on v2: ${Date.now() - t0} ms`,
    );
  });

  /**
   * reviews-v2 rolled out with `env` (a broken revision), then a new run (the progression
   * changed) of 20 % then 60 % to it: rolled back at the first step. Returns the split and how
   * many answers the client had given before the run.
   */
  const rolledBack = async (env: string, more: Record<string, unknown> = {}) => {
    kubectl('set', 'env', 'deployment/reviews-v2', '-n', NS, env);
    kubectl('rollout', 'status', 'deployment/reviews-v2', '-n', NS, '--timeout=90s');
    const seen = clientAnswers().length;
    // The run before may have ended Promoted too: only this run's decision counts.
    const before = splitNow().status?.progression?.specHash;
    kubectl(...progression([20, 60], more));
    const ts = await eventually(
      'the gate decided',
      () => {
        const s = splitNow();
        const p = s.status?.progression;
        if (!p || p.specHash === before) return undefined;
        return /^rolled back at/.test(p.message ?? '') || p.phase === 'Promoted' ? s : undefined;
      },
      90_000,
    );
    const p = ts.status.progression;
    assert.equal(p.phase, 'RolledBack', p.message);
    assert.equal(p.canaryWeight, 0);
    assert.equal(p.step, 0, 'rolled back at the first step, never sent 60 %');
    return { ts, seen };
  };

  test('progression: a v2 that answers 500 is rolled back within its step', async () => {
    const t0 = Date.now();
    // Back to v1 on demand first, as a user would (weftctl writes the annotation the operator reads).
    weftctlSplit('abort');
    await eventually(
      'aborted',
      () => (splitNow().status?.progression?.canaryWeight === 0 ? true : undefined),
      60_000,
    );
    const { ts, seen } = await rolledBack('STATUS=500');
    const p = ts.status.progression;
    assert.match(p.message, /success rate .* is below the gate 95 %/);
    const rolled = ts.status.conditions.find((c: { type: string }) => c.type === 'RolledBack');
    assert.equal(rolled.status, 'True');
    await inARow('30 calls in a row to v1 after the rollback', seen, 'v1');
    const after = clientAnswers().slice(seen);
    const failed = after.filter((l) => l.split(' ')[1] !== '200').length;
    log(
      `[e2e] figure: failing canary at 20 %: rolled back ${Date.now() - t0} ms after the change (rollout included); the client saw ${failed} failed calls of ${after.length}`,
    );
    // No more than the step's share of the calls made while the canary ran failed.
    assert.ok(failed <= Math.ceil(after.length * 0.2) + 5, `${failed} of ${after.length} failed`);
    // The demo as it was for whatever runs next (not waited for).
    kubectl('set', 'env', 'deployment/reviews-v2', '-n', NS, 'STATUS-');
  });

  /**
   * The leader operator's pod deleted: returns once another replica holds the Lease and has
   * reconciled the progression (its own weft_operator_reconcile_total), so whatever it would
   * change on taking over is in status.
   */
  const restartLeader = async () => {
    const faults = new Faults({
      kubectl: kubectlBin,
      kubeconfig,
      namespace: NS,
      serviceAccount: 'frontend',
      log,
    });
    const note = await faults.deleteOperatorLeader();
    const { pod } = faults.operatorLeader();
    await eventually(`${pod} reconciled the progression`, () =>
      kubectl('get', '--raw', `/api/v1/namespaces/${WEFT_NAMESPACE}/pods/${pod}:8080/proxy/metrics`)
        .split('\n')
        .some(
          (l) =>
            l.startsWith('weft_operator_reconcile_total{') &&
            l.includes('controller="progression"') &&
            l.includes('result="success"') &&
            Number(l.split(' ').at(-1)) >= 1,
        ),
    );
    log(`[e2e] ${note}`);
  };

  test('progression: paused, it stays paused across a leader restart; restarted mid-step, it resumes from status', async () => {
    const t0 = Date.now();
    kubectl('rollout', 'status', 'deployment/reviews-v2', '-n', NS, '--timeout=90s');
    const interval = 8000;
    kubectl(...progression([20, 50], { interval: `${interval / 1000}s` }));
    await eventually('step 1 at 20 %', () => {
      const p = splitNow().status?.progression;
      return p?.phase === 'Progressing' && p.canaryWeight === 20 && p.history.at(-1).decision === 'Started'
        ? true
        : undefined;
    });
    weftctlSplit('pause');
    const paused = (
      await eventually('Paused', () => {
        const s = splitNow();
        return s.status?.progression?.phase === 'Paused' ? s : undefined;
      })
    ).status.progression;
    await restartLeader();
    // The step's time is over while paused: a progression that lost its pause would step now.
    await eventually('the step time over', () =>
      Date.now() > Date.parse(paused.stepStartedAt) + interval + 2000 ? true : undefined,
    );
    let p = splitNow().status.progression;
    assert.equal(p.phase, 'Paused', p.message);
    assert.equal(p.canaryWeight, 20);
    assert.equal(p.stepStartedAt, paused.stepStartedAt);
    assert.deepEqual(p.history, paused.history, 'the new leader took no decision');

    // The new leader resumes the run it read from status: no new start.
    weftctlSplit('resume');
    p = (
      await eventually('step 2 at 50 %', () => {
        const s = splitNow();
        const x = s.status?.progression;
        return x?.canaryWeight === 50 || ['Promoted', 'RolledBack'].includes(x?.phase) ? s : undefined;
      })
    ).status.progression;
    assert.equal(p.step, 1, p.message);
    const step2 = p.stepStartedAt;
    // Mid-step: the next leader keeps the step and its start, and takes it once.
    await restartLeader();
    p = splitNow().status.progression;
    if (p.phase === 'Progressing') assert.equal(p.step, 1, p.message);
    p = (
      await eventually(
        'Promoted',
        () => {
          const s = splitNow();
          return ['Promoted', 'RolledBack'].includes(s.status?.progression?.phase) ? s : undefined;
        },
        90_000,
      )
    ).status.progression;
    assert.equal(p.phase, 'Promoted', p.message);
    assert.equal(p.stepStartedAt, step2, 'the step kept its start across the restart');
    // This run's decisions (the history keeps the earlier runs' before its start).
    const run: { decision: string; canaryWeight: number }[] = p.history.slice(
      p.history.findLastIndex((h: { decision: string }) => h.decision === 'Started'),
    );
    assert.deepEqual(
      run.map((h) => `${h.decision} ${h.canaryWeight}`),
      ['Started 20', 'Paused 20', 'Resumed 20', 'Step 50', 'Promoted 100'],
    );
    log(
      `[e2e] figure: progression paused and resumed across two leader restarts, to Promoted: ${Date.now() - t0} ms`,
    );
  });

  test('progression: a v2 that answers slowly is rolled back on the latency gate', async () => {
    const t0 = Date.now();
    const { ts } = await rolledBack('DELAY_MS=300', {
      gates: { minSuccessRate: 95, minRequests: 5, maxLatency: { percentile: 99, threshold: '100ms' } },
    });
    const p = ts.status.progression;
    // Every call answered (200): the latency gate, not the success rate, rolled it back.
    assert.match(p.message, /latency p99 up to \d+ ms exceeds the gate 100ms/);
    assert.ok(p.observed.canary.latencyMs >= 250, JSON.stringify(p.observed));
    log(
      `[e2e] figure: slow canary (300 ms) at 20 %: rolled back ${Date.now() - t0} ms after the change (rollout included)`,
    );
    kubectl('set', 'env', 'deployment/reviews-v2', '-n', NS, 'DELAY_MS-');
  });

  describe('faults under steady traffic (the short suite; npm run bench:faults runs them all)', () => {
    let faults: Faults;
    /**
     * No request failed in any protocol; but `known`, failures found and not fixed yet
     * (docs/reliability.md "Not fixed yet"): each logged, so the suite keeps asserting the rest.
     */
    const noFailure = (r: ScenarioResult) => {
      const protocols = protocolsFromEnv();
      const each = protocols.map((p) => `${p} ${r.byProtocol[p]?.failed} of ${r.byProtocol[p]?.requests}`);
      log(
        `[e2e] figure: ${r.name}: ${r.failed} of ${r.requests} requests failed (${each.join(', ')}; ${r.expectedFailed} the scenario must cause); ${r.notes}`,
      );
      for (const p of protocols)
        assert.ok(
          (r.byProtocol[p]?.requests ?? 0) > 0,
          `${r.name}: the ${p} client answered during the fault`,
        );
      // Only the failures the scenario's own rule counts as expected (hack/lib/faults.ts: for a
      // crash, the one call per protocol in flight through it, inFlightCut); any other fails.
      assert.equal(
        r.failed - r.expectedFailed,
        0,
        `${r.name}: ${r.failed} of ${r.requests} requests failed (${each.join(', ')}), ${r.expectedFailed} expected: ${r.failures.join(' | ')}`,
      );
    };
    before(async () => {
      faults = new Faults({
        kubectl: kubectlBin,
        kubeconfig,
        namespace: NS,
        serviceAccount: 'frontend',
        ...(weft ? { node: weft.node } : {}),
        log,
      });
      await faults.deployEcho(2);
      await faults.startClient('steady', 50, protocolsFromEnv());
    });
    after(() => faults?.stopClient());

    test(
      'the leader operator SIGKILLed: no request fails, a leader renews the Lease',
      { skip: !!external },
      async () => noFailure(await faults.operatorSigkill()),
    );
    test(
      "a backend's sidecar killed (the kubelet restarts it): no request fails but the one in flight on it",
      { skip: !!external },
      // A call whose stream or connection was open through the killed sidecar is cut: nothing
      // tells whether the app had it, so it is not sent again (docs/reliability.md, the failures
      // the scenario causes): a gRPC call reset (502 WEFT_UPSTREAM_RESET), a TCP connection closed
      // or reset before its echo. At most one per protocol, named; any other failure fails the test.
      async () => noFailure(await faults.sidecarCrash()),
    );
    test('a backend pod killed without grace (delete --grace-period=0 --force): no request fails', async () =>
      noFailure(await faults.podKilled()));
    test(
      "the node's kubelet restarted (it reports every pod not Ready until its next probe): no request fails",
      { skip: !!external },
      // Before the fix in Transport.retain, one or two gRPC calls of each run met the backend
      // sidecar's session to its app closed by a config change (502 WEFT_UPSTREAM_RESET …
      // ERR_HTTP2_GOAWAY_SESSION).
      async () => noFailure(await faults.nodeRestart('kubelet', { flip: true })),
    );
  });
});
