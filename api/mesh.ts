// Mesh: the cluster-scoped, mesh-wide settings (normally one object named "default").
import { Type } from '@sinclair/typebox';
import {
  Duration,
  type KindDefinition,
  LabelSelector,
  MAX_DURATION,
  ObjectName,
  Percentage,
  Port,
  type Resource,
  type Static,
  statusOf,
} from './common.ts';

export const MTLS_MODES = ['STRICT', 'PERMISSIVE', 'DISABLE'] as const;
export const MtlsMode = Type.Union(
  MTLS_MODES.map((m) => Type.Literal(m)),
  {
    description:
      'STRICT: sidecars accept only mutual TLS. PERMISSIVE: mutual TLS and plaintext both accepted. DISABLE: plaintext only.',
  },
);
export type MtlsMode = (typeof MTLS_MODES)[number];

const MtlsPortOverride = Type.Object({
  port: Port('Container port the override applies to.'),
  mode: MtlsMode,
});

const MtlsNamespaceOverride = Type.Object({
  namespace: ObjectName('Namespace the override applies to.'),
  mode: MtlsMode,
  ports: Type.Optional(
    Type.Array(MtlsPortOverride, {
      maxItems: 32,
      description: 'Per-port modes inside this namespace (for example a plaintext metrics port).',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['port'],
    }),
  ),
});

const Mtls = Type.Object(
  {
    mode: Type.Optional({ ...MtlsMode, default: 'PERMISSIVE' }),
    namespaces: Type.Optional(
      Type.Array(MtlsNamespaceOverride, {
        maxItems: 256,
        description: 'Per-namespace modes that override the mesh-wide mode.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['namespace'],
      }),
    ),
  },
  { description: 'Mutual TLS between sidecars.', default: {} },
);

const IssuerRef = Type.Object({
  name: Type.String({
    minLength: 1,
    maxLength: 253,
    description: 'Name of the cert-manager Issuer or ClusterIssuer.',
  }),
  kind: Type.Optional(
    Type.Union([Type.Literal('Issuer'), Type.Literal('ClusterIssuer')], { default: 'ClusterIssuer' }),
  ),
  group: Type.Optional(Type.String({ default: 'cert-manager.io', maxLength: 253 })),
});

const CA = Type.Object(
  {
    builtIn: Type.Optional(
      Type.Object(
        {
          rootSecretName: Type.Optional(
            Type.String({
              maxLength: 253,
              description:
                "A Secret in Weft's namespace holding a user-supplied root or intermediate (tls.crt, tls.key, ca.crt). Empty: the operator generates a root.",
            }),
          ),
          rootLifetime: Type.Optional(
            Duration(
              'Lifetime of a generated root.',
              { field: 'ca.builtIn.rootLifetime', max: MAX_DURATION.rootLifetime },
              { default: '87600h' },
            ),
          ),
        },
        { description: "The operator's own CA signs workload certificates." },
      ),
    ),
    certManager: Type.Optional(
      Type.Object(
        { issuerRef: IssuerRef },
        { description: 'cert-manager issues workload certificates through Certificate resources.' },
      ),
    ),
    workloadCertLifetime: Type.Optional(
      Duration(
        'Lifetime of workload certificates.',
        { field: 'ca.workloadCertLifetime', max: MAX_DURATION.certLifetime },
        { default: '24h' },
      ),
    ),
    renewBefore: Type.Optional(
      Duration(
        'How long before expiry a workload certificate is renewed. Absent: a third of the lifetime (renewal at two thirds).',
        { field: 'ca.renewBefore', max: MAX_DURATION.certLifetime },
      ),
    ),
  },
  {
    description: 'Where workload identities come from.',
    default: {},
    'x-kubernetes-validations': [
      {
        rule: '!(has(self.builtIn) && has(self.certManager))',
        message: 'ca.builtIn and ca.certManager are exclusive: choose one certificate authority',
        fieldPath: '.certManager',
      },
      {
        rule: '!has(self.renewBefore) || !has(self.workloadCertLifetime) || duration(self.renewBefore) < duration(self.workloadCertLifetime)',
        message:
          'ca.renewBefore must be shorter than ca.workloadCertLifetime so certificates rotate before they expire',
        fieldPath: '.renewBefore',
      },
      {
        rule: '!has(self.workloadCertLifetime) || duration(self.workloadCertLifetime) >= duration("10m")',
        message: 'ca.workloadCertLifetime must be at least 10m',
        fieldPath: '.workloadCertLifetime',
      },
    ],
  },
);

const Quantity = Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$', maxLength: 32 });
const ResourceList = Type.Object({ cpu: Type.Optional(Quantity), memory: Type.Optional(Quantity) });

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
/**
 * The one Weft image (operator, webhook, proxy, init), tagged with package.json's version, which
 * hack/image/build.ts checks: a versioned tag is pulled only if not present (`:latest` would be
 * pulled always), so an image imported into the node's containerd is used as it is.
 */
export const WEFT_IMAGE = 'ghcr.io/weft-mesh/weft:0.1.0';
const ProxySettings = Type.Object(
  {
    image: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        default: WEFT_IMAGE,
        description: 'Sidecar image.',
      }),
    ),
    logLevel: Type.Optional(
      Type.Union(
        LOG_LEVELS.map((l) => Type.Literal(l)),
        { default: 'info' },
      ),
    ),
    resources: Type.Optional(
      Type.Object(
        { requests: Type.Optional(ResourceList), limits: Type.Optional(ResourceList) },
        { description: 'Sidecar container resources.' },
      ),
    ),
    drainTimeout: Type.Optional(
      Duration(
        'How long a stopping proxy lets in-flight requests finish.',
        { field: 'proxy.drainTimeout', max: MAX_DURATION.drainTimeout },
        { default: '10s' },
      ),
    ),
  },
  { default: {} },
);

const Injection = Type.Object(
  {
    namespaceSelector: Type.Optional(
      LabelSelector('Namespaces whose pods are injected. Default: the label weft.dev/inject=enabled.'),
    ),
  },
  { default: {} },
);

export const RETRY_ON = [
  '5xx',
  'gateway-error',
  'connect-failure',
  'reset',
  'retriable-4xx',
  'refused-stream',
  'unavailable',
  'cancelled',
  'deadline-exceeded',
  'resource-exhausted',
] as const;
export const RetryOn = Type.Array(Type.Union(RETRY_ON.map((r) => Type.Literal(r))), {
  maxItems: RETRY_ON.length,
  'x-kubernetes-list-type': 'set',
  description: 'Conditions that trigger a retry.',
});

export const Retries = Type.Object(
  {
    attempts: Type.Integer({
      minimum: 0,
      maximum: 10,
      description: 'Retries after the first try (0 disables).',
    }),
    perTryTimeout: Type.Optional(
      Duration('Timeout of each try.', { field: 'retries.perTryTimeout', max: MAX_DURATION.requestTimeout }),
    ),
    retryOn: Type.Optional(RetryOn),
    budget: Type.Optional(
      Type.Object({
        percent: Percentage('Retries allowed as a share of requests (default 20).', { default: 20 }),
        minRetriesPerSecond: Type.Optional(
          Type.Integer({
            minimum: 0,
            maximum: 10000,
            default: 10,
            description: 'Retries always allowed per second.',
          }),
        ),
      }),
    ),
  },
  { description: 'Retry policy.' },
);

const Defaults = Type.Object(
  {
    timeout: Type.Optional(
      Duration(
        'Default request timeout; "0s" means none.',
        { field: 'defaults.timeout', max: MAX_DURATION.requestTimeout },
        { default: '15s' },
      ),
    ),
    retries: Type.Optional(Retries),
    authorization: Type.Optional(
      Type.Union([Type.Literal('ALLOW'), Type.Literal('DENY')], {
        default: 'ALLOW',
        description:
          'What happens to a workload no ALLOW policy selects: ALLOW (default) or DENY (default-deny mesh).',
      }),
    ),
  },
  { default: {} },
);

const Telemetry = Type.Object(
  {
    metrics: Type.Optional(Type.Object({ enabled: Type.Boolean({ default: true }) })),
    tracing: Type.Optional(
      Type.Object({
        endpoint: Type.String({
          pattern: '^https?://',
          maxLength: 1024,
          description:
            'OTLP/HTTP traces endpoint, for example http://otel-collector.observability:4318/v1/traces.',
        }),
        samplingPercent: Type.Optional(Percentage('Share of new traces sampled.', { default: 1 })),
      }),
    ),
    accessLogs: Type.Optional(
      Type.Object({
        enabled: Type.Boolean({ default: false, description: 'JSON access logs on the proxy stdout.' }),
      }),
    ),
  },
  { default: {} },
);

export const PATH_NORMALIZATIONS = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];
export const PathNormalizationMode = Type.Union(
  PATH_NORMALIZATIONS.map((m) => Type.Literal(m)),
  {
    description:
      'How sidecars normalize request paths before authorization and routing; the app receives the normalized path. NONE: as received. BASE (default): RFC 3986 (dot segments removed, unreserved escapes decoded, backslashes as slashes). MERGE_SLASHES: BASE, then repeated slashes merged. DECODE_AND_MERGE_SLASHES: %2F and %5C decoded, then MERGE_SLASHES. Every mode but NONE refuses paths with ";" parameters (400).',
  },
);

const PathNormalizationSettings = Type.Object(
  { normalization: Type.Optional({ ...PathNormalizationMode, default: 'BASE' }) },
  { default: {}, description: "Istio's meshConfig.pathNormalization." },
);

export const MeshSpec = Type.Object({
  trustDomain: Type.Optional(
    Type.String({
      default: 'cluster.local',
      maxLength: 255,
      pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$',
      description:
        'SPIFFE trust domain: identities are spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>.',
      'x-kubernetes-validations': [
        {
          rule: 'self == oldSelf',
          message: 'trustDomain is immutable: changing it would invalidate every identity',
        },
      ],
    }),
  ),
  mtls: Type.Optional(Mtls),
  ca: Type.Optional(CA),
  proxy: Type.Optional(ProxySettings),
  injection: Type.Optional(Injection),
  defaults: Type.Optional(Defaults),
  outboundTrafficPolicy: Type.Optional(
    Type.Object(
      {
        mode: Type.Optional(
          Type.Union([Type.Literal('ALLOW_ANY'), Type.Literal('REGISTRY_ONLY')], {
            default: 'ALLOW_ANY',
            description:
              'ALLOW_ANY passes traffic to unknown destinations through; REGISTRY_ONLY refuses it.',
          }),
        ),
      },
      { default: {} },
    ),
  ),
  telemetry: Type.Optional(Telemetry),
  pathNormalization: Type.Optional(PathNormalizationSettings),
});
export type MeshSpec = Static<typeof MeshSpec>;

export const MeshStatus = statusOf({
  caExpiry: Type.Optional(
    Type.String({ format: 'date-time', description: 'When the current root expires.' }),
  ),
  meshedPods: Type.Optional(Type.Integer({ minimum: 0 })),
  proxiesInSync: Type.Optional(
    Type.Integer({
      minimum: 0,
      description: "Meshed pods whose proxy reports the namespace's latest configuration generation.",
    }),
  ),
  proxiesOutOfSync: Type.Optional(
    Type.Integer({
      minimum: 0,
      description: 'Meshed pods whose proxy runs an older generation, or does not answer the operator.',
    }),
  ),
  laggingProxies: Type.Optional(
    Type.Array(
      Type.Object({
        namespace: Type.String(),
        pod: Type.String(),
        version: Type.Optional(Type.String({ description: 'The config version the proxy last reported.' })),
        generation: Type.Optional(Type.Integer({ description: 'Its generation.' })),
        wantGeneration: Type.Integer({ description: "The namespace's latest generation." }),
        reason: Type.Optional(Type.String({ description: 'Why the proxy did not report, when it did not.' })),
      }),
      { maxItems: 20, description: 'The first 20 out-of-sync proxies, by namespace and pod name.' },
    ),
  ),
  meshedNamespaces: Type.Optional(Type.Integer({ minimum: 0 })),
  configVersion: Type.Optional(Type.String({ maxLength: 64 })),
});
export type MeshStatus = Static<typeof MeshStatus>;
/** A proxy behind its namespace's latest configuration generation (Mesh status). */
export type LaggingProxy = NonNullable<MeshStatus['laggingProxies']>[number];

/** "shop/web-2 runs generation 6 (version 1a2b…), wants 7: no answer …", for messages and weftctl. */
export const describeLaggingProxy = (l: LaggingProxy) =>
  `${l.namespace}/${l.pod} runs ${l.generation === undefined ? 'no known generation' : `generation ${l.generation}`}${l.version ? ` (version ${l.version})` : ''}, wants ${l.wantGeneration}${l.reason ? `: ${l.reason}` : ''}`;
export type Mesh = Resource<MeshSpec, MeshStatus>;

export const MeshKind: KindDefinition = {
  kind: 'Mesh',
  plural: 'meshes',
  singular: 'mesh',
  shortNames: ['wm'],
  scope: 'Cluster',
  spec: MeshSpec,
  status: MeshStatus,
  description:
    'Mesh-wide settings of Weft: trust domain, mutual TLS, certificate authority, proxy, defaults and telemetry.',
  printerColumns: [
    { name: 'Trust Domain', type: 'string', jsonPath: '.spec.trustDomain' },
    { name: 'mTLS', type: 'string', jsonPath: '.spec.mtls.mode' },
    { name: 'Meshed Pods', type: 'integer', jsonPath: '.status.meshedPods' },
    { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};
