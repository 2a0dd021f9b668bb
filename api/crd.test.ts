import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderCrds } from '../hack/gen-crds.ts';
import { generateCrd, MeshKind, TrafficSplitKind, toStructural } from './index.ts';

const root = join(import.meta.dirname, '..');

test('committed crds/ and the precompiled proxy validators are exactly what `npm run crds` generates from api/', () => {
  const files = renderCrds();
  assert.equal(files.size, 9, '3 CRDs twice, the kustomization, validators.js and its .d.ts');
  for (const [rel, text] of files) {
    assert.equal(readFileSync(join(root, rel), 'utf8'), text, `${rel} is stale: run npm run crds and commit`);
  }
});

test('unions of literals become enums, records become additionalProperties, exclusive bounds become booleans', () => {
  const s = toStructural({
    type: 'object',
    properties: {
      mode: {
        anyOf: [
          { const: 'A', type: 'string' },
          { const: 'B', type: 'string' },
        ],
        default: 'A',
      },
      labels: { type: 'object', patternProperties: { '^(.*)$': { type: 'string' } } },
      rate: { type: 'number', exclusiveMinimum: 0 },
    },
    required: [],
  });
  assert.deepEqual(s, {
    type: 'object',
    properties: {
      mode: { type: 'string', enum: ['A', 'B'], default: 'A' },
      labels: { type: 'object', additionalProperties: { type: 'string' } },
      rate: { type: 'number', minimum: 0, exclusiveMinimum: true },
    },
  });
});

test('every CRD is structural: no anyOf, const or patternProperties left anywhere', () => {
  for (const def of [MeshKind, TrafficSplitKind]) {
    const text = JSON.stringify(generateCrd(def));
    for (const bad of ['"anyOf"', '"const"', '"patternProperties"', '"$id"'])
      assert.ok(!text.includes(bad), `${def.kind}: ${bad}`);
  }
});

test('CRDs carry a status subresource, short names and the weft category', () => {
  const crd = generateCrd(TrafficSplitKind) as {
    spec: { names: { shortNames: string[]; categories: string[] }; versions: { subresources: unknown }[] };
  };
  assert.deepEqual(crd.spec.names.categories, ['weft']);
  assert.deepEqual(crd.spec.names.shortNames, ['ts', 'split']);
  assert.deepEqual(crd.spec.versions[0]!.subresources, { status: {} });
});
