// Schema building blocks shared by every Weft resource. Each schema here is plain JSON
// Schema (TypeBox only builds it and derives the TypeScript type from it), so the same
// object feeds the CRD generator, ajv at run time, and the compiler's types.
import { type Static, type TObject, type TProperties, type TSchema, Type } from '@sinclair/typebox';

export const GROUP = 'weft.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** A Go-style duration as CEL's duration() and the proxy both parse it: "250ms", "15s", "1h30m". */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

/**
 * Upper bounds of the API's durations (docs/architecture.md lists them). Every one that becomes a proxy
 * timer stays far below MAX_TIMER_MS (about 596 h), past which Node fires a timer at once.
 */
export const MAX_DURATION = {
  /** Request timeouts and per-try timeouts. */
  requestTimeout: '24h',
  faultDelay: '1h',
  ejectionTime: '1h',
  drainTimeout: '1h',
  /** Workload certificate lifetime and renewBefore: one year. */
  certLifetime: '8760h',
  /** A generated root: a hundred years. */
  rootLifetime: '876000h',
} as const;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** "1h30m", "250ms", "1.5s" → milliseconds (rounded). */
export function durationMs(d: string): number {
  let total = 0;
  for (const m of d.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)) total += Number(m[1]) * UNIT_MS[m[2]!]!;
  return Math.round(total);
}

/**
 * A duration field with an upper bound, checked by the apiserver (a CEL rule whose message names
 * the field) and by ajv at run time (the `maxDuration` keyword of api/validate.ts; the CRD
 * generator drops that keyword). `field` is the field's path inside its object, as users write it.
 */
export const Duration = (
  description: string,
  bound: { field: string; max: string },
  extra: Record<string, unknown> = {},
) =>
  Type.String({
    pattern: DURATION_PATTERN,
    maxLength: 32,
    description: `${description} At most ${bound.max}.`,
    maxDuration: bound.max,
    'x-kubernetes-validations': [
      {
        rule: `duration(self) <= duration('${bound.max}')`,
        message: `${bound.field} must be at most ${bound.max}`,
      },
    ],
    ...extra,
  });

/** A DNS-1123 label, as Kubernetes requires of Service and namespace names. */
export const DNS_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const ObjectName = (description: string) =>
  Type.String({ minLength: 1, maxLength: 63, pattern: DNS_LABEL_PATTERN, description });

export const Port = (description: string) => Type.Integer({ minimum: 1, maximum: 65535, description });
export const Percentage = (description: string, extra: Record<string, unknown> = {}) =>
  Type.Number({ minimum: 0, maximum: 100, description, ...extra });

export const StringMap = (description: string) =>
  Type.Record(Type.String(), Type.String({ maxLength: 63 }), { description, maxProperties: 64 });

export const LabelSelectorRequirement = Type.Object({
  key: Type.String({ minLength: 1, maxLength: 317 }),
  operator: Type.Union([
    Type.Literal('In'),
    Type.Literal('NotIn'),
    Type.Literal('Exists'),
    Type.Literal('DoesNotExist'),
  ]),
  values: Type.Optional(Type.Array(Type.String({ maxLength: 63 }), { maxItems: 64 })),
});
export const LabelSelector = (description: string) =>
  Type.Object(
    {
      matchLabels: Type.Optional(StringMap('Labels that must all match.')),
      matchExpressions: Type.Optional(Type.Array(LabelSelectorRequirement, { maxItems: 16 })),
    },
    { description, 'x-kubernetes-map-type': 'atomic' },
  );
export type LabelSelector = Static<ReturnType<typeof LabelSelector>>;

/** metav1.Condition, as kstatus, `kubectl wait` and GitOps health checks read it. */
export const Condition = Type.Object({
  type: Type.String({
    maxLength: 316,
    pattern:
      '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
  }),
  status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')]),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  lastTransitionTime: Type.String({ format: 'date-time' }),
  reason: Type.String({ minLength: 1, maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' }),
  message: Type.String({ maxLength: 32768 }),
});
export type Condition = Static<typeof Condition>;

export const Conditions = Type.Array(Condition, {
  maxItems: 16,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  description:
    'Latest observations of the resource: Ready, plus Accepted, ResolvedRefs, Programmed where they apply; Reconciling and Stalled (kstatus) only while True.',
});

/** The status every Weft resource carries. */
export const statusOf = <P extends TProperties>(extra: P) =>
  Type.Object({
    observedGeneration: Type.Optional(
      Type.Integer({ minimum: 0, description: 'The metadata.generation the operator last reconciled.' }),
    ),
    conditions: Type.Optional(Conditions),
    ...extra,
  });

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  deletionTimestamp?: string;
}

/** A Kubernetes object of a Weft kind, typed from its spec and status schemas. */
export interface Resource<Spec, Status> {
  apiVersion: typeof API_VERSION;
  kind: string;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

/** How one CRD is described: the generator turns this into crds/<plural>.yaml. */
export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: 'Namespaced' | 'Cluster';
  spec: TObject;
  status: TObject;
  /** CEL rules on the whole spec. */
  printerColumns: { name: string; type: string; jsonPath: string; description?: string; priority?: number }[];
  description: string;
}

export type { Static, TSchema };
