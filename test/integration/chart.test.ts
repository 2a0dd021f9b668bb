// The Helm chart as platform teams check charts: `helm lint --strict` clean, values.schema.json
// refusing bad values with the field named, every rendered manifest valid for kubeconform
// against Kubernetes 1.34's schemas (from the test apiserver's OpenAPI v3, offline) and Weft's
// CRDs, and `helm upgrade` from the previous chart version keeping the CRs and the CA.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as yaml from 'js-yaml';
import { helmBinary } from '../../hack/install.ts';
import { waitEstablished } from '../../hack/lib/crds.ts';
import { kubeconform, writeSchemas } from '../../hack/lib/kubeconform.ts';
import { KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../../kube/client.ts';
import { DEFAULT_CA_SECRET } from '../../operator/identity/model.ts';
import { startOperator } from '../../operator/operator.ts';
import { createNamespaces, repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';
import { eventually } from '../support/eventually.ts';

const chart = join(repoRoot, 'charts', 'weft');
const NS = 'weft-system';
let cluster: TestCluster;
let client: KubeClient;
let tmp: string;
let schemas: string;

/** helm with the test cluster's kubeconfig; its error output in the thrown message. */
function helm(...args: string[]): string {
  try {
    return execFileSync(helmBinary(), ['--kubeconfig', cluster.kubeconfigPath, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`helm ${args[0]}: ${e.stderr}${e.stdout}`);
  }
}
/** What helm prints (stderr, then stdout: lint reports there) when it refuses; '' when it succeeds. */
function helmRefusal(...args: string[]): string {
  try {
    helm(...args);
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}
const template = (c = chart, ...args: string[]) =>
  helm('template', 'weft', c, '--kube-version', '1.34.4', ...args);
const crdFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.weft.dev.yaml'))
    .map((f) => join(dir, f));

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'weft-chart-'));
  schemas = join(tmp, 'schemas');
  execFileSync('mkdir', [schemas]);
  cluster = await startTestCluster();
  client = new KubeClient(cluster.kc, 'weft-test');
  writeSchemas(cluster.kubeconfigPath, crdFiles(join(repoRoot, 'crds')), schemas);
});
after(async () => {
  client?.close();
  await cluster?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the Helm chart', () => {
  test('helm lint --strict reports nothing, not even INFO', () => {
    const out = helm('lint', '--strict', chart, '--kube-version', '1.34.4');
    assert.doesNotMatch(out, /\[(INFO|WARNING|ERROR)\]/, out);
    assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('values.schema.json refuses a bad value with the field and what it wants', () => {
    for (const [set, want] of [
      ['operator.replicas=two', /at '\/operator\/replicas': got string, want integer/],
      ['webhook.replicas=0', /at '\/webhook\/replicas': minimum: got 0, want 1/],
      ['image.tag=v1:latest', /at '\/image\/tag': 'v1:latest' does not match pattern/],
      ['operater.replicas=2', /additional properties 'operater' not allowed/],
    ] as const) {
      assert.match(
        helmRefusal('template', 'weft', chart, '--kube-version', '1.34.4', '--set', set),
        want,
        set,
      );
      assert.match(
        helmRefusal('lint', chart, '--kube-version', '1.34.4', '--set', set),
        want,
        `helm lint --set ${set}`,
      );
    }
    template(
      chart,
      '--set',
      'image.repository=registry.example:5000/mesh/weft',
      '--set',
      'image.tag=v0.2.0-rc.1',
    );
  });

  test('kubeconform: every rendered manifest and sample is valid for Kubernetes 1.34 and the CRDs; a misspelt field is not', () => {
    const samples = ['samples', 'demo'].flatMap((d) =>
      readdirSync(join(repoRoot, 'config', d))
        .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
        .map((f) => readFileSync(join(repoRoot, 'config', d, f), 'utf8')),
    );
    const manifests = [template(chart, '--include-crds', '--namespace', NS), ...samples].join('\n---\n');
    const r = kubeconform(schemas, manifests);
    const bad = r.resources.filter((x) => x.status !== 'statusValid');
    assert.deepEqual(bad, [], 'every object valid, none skipped');
    assert.ok(r.ok);
    const kinds = new Set(r.resources.map((x) => x.kind));
    for (const k of [
      'Deployment',
      'CustomResourceDefinition',
      'ValidatingAdmissionPolicy',
      'TrafficSplit',
      'Mesh',
    ])
      assert.ok(kinds.has(k), `${k} validated`);
    assert.equal(r.summary.valid, r.resources.length);

    // The same schemas refuse what the apiserver would: a misspelt Deployment field, a bad CR.
    const wrong = kubeconform(
      schemas,
      [
        manifests.replace(/^( {2})replicas:/m, '$1replica:'),
        'apiVersion: weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {name: s, namespace: x}\nspec: {service: a, backends: [{service: b, weight: "ten"}]}',
      ].join('\n---\n'),
    );
    assert.equal(wrong.ok, false);
    const msgs = wrong.resources
      .filter((x) => x.status === 'statusInvalid')
      .map((x) => `${x.kind}: ${x.msg}`);
    assert.equal(msgs.length, 2, msgs.join('\n'));
    assert.match(msgs.join('\n'), /additional properties 'replica' not allowed/);
    assert.match(msgs.join('\n'), /\/spec\/backends\/0\/weight': got string, want integer/);
  });

  test('helm upgrade from the previous chart version keeps the CRs and the CA, and the operator goes on with that CA', async () => {
    // The previous version: the chart before the latest change to what it installs (its CRDs
    // and templates), by git archive (no worktree to clean up).
    const git = (...a: string[]) => execFileSync('git', ['-C', repoRoot, ...a], { encoding: 'utf8' }).trim();
    const last = git('log', '-n', '1', '--format=%H', '--', 'charts/weft/crds', 'charts/weft/templates');
    const prev = join(tmp, 'previous');
    execFileSync('mkdir', [prev]);
    execFileSync('bash', ['-c', `git -C "${repoRoot}" archive "${last}^" charts/weft | tar -x -C "${prev}"`]);
    const prevChart = join(prev, 'charts', 'weft');

    // As a GitOps tool does: the CRDs first, the Mesh and the users' CRs, then the release. The
    // operator runs in-process (no kubelet here): it generates the CA Secret and the statuses.
    cluster.kubectl('apply', '--server-side', '-f', join(prevChart, 'crds'));
    waitEstablished(cluster.kubectl, 'crd', '--all');
    await createNamespaces(client, { [NS]: {}, shop: { 'weft.dev/inject': 'enabled' } });
    const crs: [ResourceType, KubeObject][] = [
      [
        RESOURCES.meshes,
        { apiVersion: 'weft.dev/v1alpha1', kind: 'Mesh', metadata: { name: 'default' }, spec: {} },
      ],
      [
        RESOURCES.trafficSplits,
        {
          apiVersion: 'weft.dev/v1alpha1',
          kind: 'TrafficSplit',
          metadata: { name: 'canary', namespace: 'shop' },
          spec: { service: 'web', backends: [{ service: 'web-v1', weight: 100 }] },
        },
      ],
      [
        RESOURCES.authorizationPolicies,
        {
          apiVersion: 'weft.dev/v1alpha1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'readers', namespace: 'shop' },
          spec: { rules: [{ from: [{ source: { namespaces: ['web'] } }] }] },
        },
      ],
    ];
    for (const [type, obj] of crs) await client.create(type, obj);
    const caOf = async () => {
      const mesh = await client.get<
        KubeObject & { status?: { conditions?: { type: string; message: string }[] } }
      >(RESOURCES.meshes, 'default');
      return mesh.status?.conditions?.find((c) => c.type === 'CertificateAuthorityReady')?.message;
    };
    const runOperator = async () => {
      const op = await startOperator({
        kubeConfig: cluster.kc,
        namespace: NS,
        healthAddress: '127.0.0.1:0',
        metricsAddress: '127.0.0.1:0',
      });
      try {
        return await eventually('the Mesh reports its CA', caOf, { timeoutMs: 60_000, intervalMs: 200 });
      } finally {
        await op.stop();
      }
    };
    const caBefore = await runOperator();
    const secret = () =>
      client.get<KubeObject & { data?: Record<string, string> }>(RESOURCES.secrets, DEFAULT_CA_SECRET, NS);
    const secretBefore = await secret();
    const before = await Promise.all(
      crs.map(([t, o]) => client.get(t, o.metadata.name, o.metadata.namespace)),
    );

    helm('install', 'weft', prevChart, '--namespace', NS);
    // Helm installs crds/ but never upgrades them: the documented upgrade applies them first.
    cluster.kubectl('apply', '--server-side', '--force-conflicts', '-f', join(chart, 'crds'));
    helm('upgrade', 'weft', chart, '--namespace', NS);
    const history = JSON.parse(helm('history', 'weft', '--namespace', NS, '-o', 'json')) as {
      revision: number;
      status: string;
    }[];
    assert.deepEqual(
      history.map((h) => [h.revision, h.status]),
      [
        [1, 'superseded'],
        [2, 'deployed'],
      ],
    );

    for (const [i, [t, o]] of crs.entries()) {
      const now = await client.get<KubeObject & { spec?: unknown }>(t, o.metadata.name, o.metadata.namespace);
      assert.equal(now.metadata.uid, before[i]!.metadata.uid, `${o.kind} ${o.metadata.name} kept`);
      assert.deepEqual(now.spec, (before[i] as { spec?: unknown }).spec);
    }
    const secretAfter = await secret();
    assert.equal(secretAfter.metadata.uid, secretBefore.metadata.uid, 'the CA Secret is the same object');
    assert.deepEqual(secretAfter.data, secretBefore.data, 'with the same key and certificate');
    for (const file of crdFiles(join(chart, 'crds'))) {
      const want = yaml.load(readFileSync(file, 'utf8')) as {
        metadata: { name: string };
        spec: { versions: unknown[] };
      };
      const live = JSON.parse(cluster.kubectl('get', 'crd', want.metadata.name, '-o', 'json'));
      assert.deepEqual(live.spec.versions, want.spec.versions, `${want.metadata.name} is the new chart's`);
    }
    // The operator of the new version loads that CA: the same one, named and dated as before
    // (the Mesh's conditions cleared first, so the message is the new run's).
    cluster.kubectl(
      'patch',
      'mesh',
      'default',
      '--subresource=status',
      '--type=merge',
      '-p',
      '{"status":{"conditions":null}}',
    );
    assert.equal(await caOf(), undefined);
    assert.equal(await runOperator(), caBefore);
  });
});
