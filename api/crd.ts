// Generates CustomResourceDefinitions from the API's schemas. The schemas are plain JSON
// Schema (draft-07 style, as ajv reads them); Kubernetes wants a structural OpenAPI v3
// subset, so this translates the few constructs that differ: unions of literals become
// enums, records become additionalProperties, numeric exclusive bounds become booleans.
import { API_VERSION, GROUP, type KindDefinition, VERSION } from './common.ts';

type Json = Record<string, unknown>;

// maxDuration is ajv's keyword (api/validate.ts); the CRD says the same with a CEL rule.
const DROP = new Set(['$id', '$schema', 'examples', 'title', 'maxDuration']);

/** Translates one JSON Schema node into its structural OpenAPI v3 form. */
export function toStructural(node: unknown): Json {
  const schema = { ...(node as Json) };
  for (const k of Object.keys(schema)) if (DROP.has(k)) delete schema[k];

  if (Array.isArray(schema.anyOf)) {
    const alts = schema.anyOf as Json[];
    if (alts.every((a) => 'const' in a)) {
      const rest = { ...schema };
      delete rest.anyOf;
      return { type: typeof alts[0]!.const, enum: alts.map((a) => a.const), ...rest };
    }
    throw new Error(`unsupported anyOf in CRD schema: ${JSON.stringify(schema)}`);
  }
  if ('const' in schema) {
    const { const: c, ...rest } = schema;
    return { type: typeof c, enum: [c], ...rest };
  }
  if (typeof schema.exclusiveMinimum === 'number') {
    schema.minimum = schema.exclusiveMinimum;
    schema.exclusiveMinimum = true;
  }
  if (typeof schema.exclusiveMaximum === 'number') {
    schema.maximum = schema.exclusiveMaximum;
    schema.exclusiveMaximum = true;
  }
  if (schema.patternProperties) {
    const values = Object.values(schema.patternProperties as Json);
    delete schema.patternProperties;
    schema.additionalProperties = toStructural(values[0]);
  }
  if (schema.properties) {
    const props: Json = {};
    for (const [k, v] of Object.entries(schema.properties as Json)) props[k] = toStructural(v);
    schema.properties = props;
  }
  if (schema.items) schema.items = toStructural(schema.items);
  if (schema.additionalProperties === false) delete schema.additionalProperties;
  if (Array.isArray(schema.required) && schema.required.length === 0) delete schema.required;
  return schema;
}

export function crdName(def: KindDefinition): string {
  return `${def.plural}.${GROUP}`;
}

/** The CustomResourceDefinition object of one kind. */
export function generateCrd(def: KindDefinition): Json {
  const rootRules =
    def.kind === 'Mesh'
      ? {
          'x-kubernetes-validations': [
            {
              rule: "self.metadata.name == 'default'",
              message: 'a Mesh must be named "default": Weft reads exactly one Mesh per cluster',
            },
          ],
        }
      : {};
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: crdName(def),
      labels: { 'app.kubernetes.io/name': 'weft', 'app.kubernetes.io/part-of': 'weft' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: ['weft'],
      },
      scope: def.scope,
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: def.printerColumns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: def.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: `Always ${API_VERSION}.` },
                kind: { type: 'string', description: `Always ${def.kind}.` },
                metadata: { type: 'object' },
                spec: toStructural(def.spec),
                // observedGeneration 0 until the operator first writes the status: kstatus (Flux)
                // reads a new object as InProgress, not Current, before Weft has looked at it.
                status: { ...toStructural(def.status), default: { observedGeneration: 0 } },
              },
              ...rootRules,
            },
          },
        },
      ],
    },
  };
}
