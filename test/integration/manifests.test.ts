// The install manifests: config/default (kustomize) and the Helm chart generated from it
// install the same objects, follow the release namespace and image, and pass a server-side
// dry run on a real kube-apiserver.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as yaml from 'js-yaml';
import { DEFAULT_NAMESPACE, kustomizeDefault, renderChart } from '../../hack/gen-chart.ts';
import { helmBinary } from '../../hack/install.ts';
import { repoRoot, startTestCluster, type TestCluster } from '../support/cluster.ts';

const helm = helmBinary();
const chart = join(repoRoot, 'charts', 'weft');
const helmTemplate = (...args: string[]) =>
  (
    yaml.loadAll(
      execFileSync(helm, ['template', 'weft', chart, '--kube-version', '1.34.4', ...args], {
        encoding: 'utf8',
      }),
    ) as {
      kind: string;
      metadata: { name: string };
    }[]
  ).filter(Boolean);
const key = (o: { kind: string; metadata: { name: string } }) => `${o.kind}/${o.metadata.name}`;

let cluster: TestCluster;
before(async () => {
  cluster = await startTestCluster();
});
after(async () => {
  await cluster?.stop();
});

test('the committed chart templates are what `npm run chart` generates from config/default', () => {
  for (const [file, text] of renderChart()) {
    assert.equal(
      readFileSync(join(chart, 'templates', file), 'utf8'),
      text,
      `charts/weft/templates/${file} is stale: run npm run chart`,
    );
  }
});

test('helm template renders exactly the objects of config/default (namespace and CRDs aside)', () => {
  const fromKustomize = kustomizeDefault().filter(
    (o) => o.kind !== 'Namespace' && o.kind !== 'CustomResourceDefinition',
  );
  const fromHelm = helmTemplate('--namespace', DEFAULT_NAMESPACE);
  assert.deepEqual(fromHelm.map(key).sort(), fromKustomize.map(key).sort());
  const byKey = new Map(fromKustomize.map((o) => [key(o), o]));
  for (const o of fromHelm) assert.deepEqual(o, byKey.get(key(o)), key(o));
});

test('the chart follows the release namespace, image and replicas', () => {
  const objs = helmTemplate(
    '--namespace',
    'mesh',
    '--set',
    'image.repository=registry.example/weft',
    '--set',
    'image.tag=v9',
    '--set',
    'webhook.replicas=3',
  );
  const text = JSON.stringify(objs);
  assert.ok(!text.includes(DEFAULT_NAMESPACE), 'no object still names weft-system');
  const deployments = objs.filter((o) => o.kind === 'Deployment') as unknown as {
    metadata: { name: string; namespace: string };
    spec: { replicas: number; template: { spec: { containers: { image: string }[] } } };
  }[];
  assert.equal(deployments.length, 2);
  for (const d of deployments) {
    assert.equal(d.metadata.namespace, 'mesh');
    assert.equal(d.spec.template.spec.containers[0]!.image, 'registry.example/weft:v9');
  }
  assert.equal(deployments.find((d) => d.metadata.name === 'weft-webhook')!.spec.replicas, 3);
});

test('config/default passes a server-side dry run on a real apiserver', () => {
  // A dry run creates nothing, so objects in weft-system need the namespace to exist.
  cluster.kubectl('create', 'namespace', DEFAULT_NAMESPACE);
  const out = cluster.kubectl(
    'apply',
    '--server-side',
    '--dry-run=server',
    '--field-manager=weft-test',
    '-k',
    join(repoRoot, 'config', 'default'),
  );
  assert.match(out, /deployment\.apps\/weft-operator serverside-applied \(server dry run\)/);
  assert.match(
    out,
    /mutatingwebhookconfiguration\.admissionregistration\.k8s\.io\/weft-injector serverside-applied \(server dry run\)/,
  );
  assert.match(
    out,
    /customresourcedefinition\.apiextensions\.k8s\.io\/trafficsplits\.weft\.dev serverside-applied \(server dry run\)/,
  );
});
