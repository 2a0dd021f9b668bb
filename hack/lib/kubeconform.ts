// kubeconform (github.com/yannh/kubeconform, built once by hack/go-tool.sh from
// hack/kubeconform's pinned module graph) against schemas made offline: the built-in kinds'
// from a kube-apiserver's OpenAPI v3 (`kubectl get --raw /openapi/v3/...`; the test control
// plane is Kubernetes 1.34), Weft's from its CRDs (crds/*.yaml). One standalone JSON Schema per
// kind, named <kind>_<group>_<version>.json (the core group is "v1"), objects closed
// (additionalProperties: false) so a misspelt field is an error, as kubeconform's -strict
// schemas make it.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as yaml from 'js-yaml';
import { repoRoot } from './cluster.ts';
import { ensureBinaries } from './control-plane.ts';
import { goTool } from './go-tool.ts';

type Json = Record<string, unknown>;

/** kubeconform's -schema-location template for the files writeSchemas writes into dir. */
export const schemaLocation = (dir: string) =>
  join(dir, '{{ .ResourceKind }}_{{ .Group }}_{{ .ResourceAPIVersion }}.json');
const fileOf = (kind: string, group: string, version: string) =>
  `${kind.toLowerCase()}_${group || version}_${version}.json`;

let binary: string | undefined;
export function kubeconformBinary(): string {
  binary ??= goTool(
    'kubeconform',
    'github.com/yannh/kubeconform/cmd/kubeconform',
    join(repoRoot, 'hack', 'kubeconform'),
  );
  return binary;
}

/** OpenAPI v3 (structural) → JSON Schema: refs into `definitions`, nullable as a type, closed objects. */
function convert(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(convert);
  if (node === null || typeof node !== 'object') return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node as Json)) {
    if (k === '$ref' && typeof v === 'string')
      out.$ref = v.replace('#/components/schemas/', '#/definitions/');
    else if (k === 'properties' || k === 'definitions')
      out[k] = Object.fromEntries(Object.entries(v as Json).map(([p, s]) => [p, convert(s)]));
    else if (k !== 'nullable') out[k] = convert(v);
  }
  const o = node as Json;
  if (o.nullable === true && typeof o.type === 'string') out.type = [o.type, 'null'];
  if (o.properties && o.additionalProperties === undefined && !o['x-kubernetes-preserve-unknown-fields'])
    out.additionalProperties = false;
  return out;
}

/** The names of the component schemas `node` refers to, transitively. */
function refsOf(node: unknown, all: Json, seen = new Set<string>()): Set<string> {
  if (Array.isArray(node)) for (const x of node) refsOf(x, all, seen);
  else if (node && typeof node === 'object')
    for (const [k, v] of Object.entries(node as Json)) {
      if (k === '$ref' && typeof v === 'string') {
        const name = v.replace('#/components/schemas/', '');
        if (!seen.has(name)) {
          seen.add(name);
          refsOf(all[name], all, seen);
        }
      } else refsOf(v, all, seen);
    }
  return seen;
}

/**
 * Writes a schema per kind the apiserver serves (every group-version of /openapi/v3) and per
 * CRD file given; returns how many.
 */
export function writeSchemas(kubeconfigPath: string, crdFiles: string[], dir: string): number {
  const kubectl = (...args: string[]) =>
    execFileSync(join(ensureBinaries(), 'kubectl'), ['--kubeconfig', kubeconfigPath, ...args], {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
    });
  let n = 0;
  const index = JSON.parse(kubectl('get', '--raw', '/openapi/v3')) as { paths: Record<string, unknown> };
  for (const path of Object.keys(index.paths)) {
    if (!/^(api\/v1|apis\/[^/]+\/[^/]+)$/.test(path)) continue;
    const doc = JSON.parse(kubectl('get', '--raw', `/openapi/v3/${path}`)) as {
      components?: { schemas?: Json };
    };
    const all = doc.components?.schemas ?? {};
    for (const [name, schema] of Object.entries(all)) {
      const gvks = (schema as Json)['x-kubernetes-group-version-kind'] as
        | { group: string; version: string; kind: string }[]
        | undefined;
      if (!gvks || !(schema as Json).properties) continue;
      const definitions = Object.fromEntries([...refsOf(schema, all)].map((r) => [r, all[r]]));
      // Only the kinds of this group-version (DeleteOptions, for one, names every group).
      for (const g of gvks.filter(
        (x) => path === (x.group ? `apis/${x.group}/${x.version}` : `api/${x.version}`),
      )) {
        writeFileSync(
          join(dir, fileOf(g.kind, g.group, g.version)),
          JSON.stringify(convert({ ...(schema as Json), definitions, title: name })),
        );
        n++;
      }
    }
  }
  for (const file of crdFiles) {
    const crd = yaml.load(readFileSync(file, 'utf8')) as {
      spec: {
        group: string;
        names: { kind: string };
        versions: { name: string; schema: { openAPIV3Schema: Json } }[];
      };
    };
    for (const v of crd.spec.versions) {
      const s = v.schema.openAPIV3Schema;
      const props = { ...(s.properties as Json) };
      props.apiVersion = { type: 'string', enum: [`${crd.spec.group}/${v.name}`] };
      props.kind = { type: 'string', enum: [crd.spec.names.kind] };
      // The CRD says only `type: object`; the apiserver checks metadata as ObjectMeta.
      props.metadata = { type: 'object' };
      writeFileSync(
        join(dir, fileOf(crd.spec.names.kind, crd.spec.group, v.name)),
        JSON.stringify(convert({ ...s, properties: props })),
      );
      n++;
    }
  }
  return n;
}

export interface Conformance {
  ok: boolean;
  /** kubeconform's JSON report: each resource with its status and message. */
  resources: { filename: string; kind: string; name: string; version: string; status: string; msg: string }[];
  summary: { valid: number; invalid: number; errors: number; skipped: number };
}

/** Validates the manifests (YAML documents) against the schemas in dir; nothing is skipped. */
export function kubeconform(dir: string, manifests: string): Conformance {
  const args = ['-schema-location', schemaLocation(dir), '-output', 'json', '-summary', '-verbose', '-'];
  let out: string;
  let ok = true;
  try {
    out = execFileSync(kubeconformBinary(), args, { input: manifests, encoding: 'utf8' });
  } catch (err) {
    ok = false;
    out = (err as { stdout?: string }).stdout ?? '';
    if (!out) throw err;
  }
  const report = JSON.parse(out) as Omit<Conformance, 'ok'>;
  // An empty document (a template the values switch off renders only its comment) is listed with
  // no kind and no status: it is no object to validate.
  const resources = (report.resources ?? []).filter((r) => r.kind !== '' || r.status !== '');
  return { ok, ...report, resources };
}
