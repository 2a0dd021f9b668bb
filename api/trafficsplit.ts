// TrafficSplit: SMI-shaped weighted routing of a root Service to backend Services, with
// HTTP matches for A/B routing and the per-route resilience policies.
import { Type } from '@sinclair/typebox';
import {
  Duration,
  type KindDefinition,
  MAX_DURATION,
  ObjectName,
  Percentage,
  Port,
  type Resource,
  type Static,
  statusOf,
} from './common.ts';
import { Retries } from './mesh.ts';

export const HTTP_METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
] as const;
export const HttpMethod = Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)));

export const Backend = Type.Object({
  service: ObjectName('Backend Service in the same namespace.'),
  weight: Type.Integer({
    minimum: 0,
    maximum: 1000000,
    description: 'Relative share of traffic (0 sends none).',
  }),
  port: Type.Optional(Port('Backend Service port; default: the port the client called.')),
});
export type Backend = Static<typeof Backend>;

/** Longest RegularExpression value (RE2 syntax, matched in linear time: docs/proxy.md). */
export const MAX_REGEX_LENGTH = 1024;

export const PathMatch = Type.Object({
  type: Type.Union([Type.Literal('Exact'), Type.Literal('PathPrefix'), Type.Literal('RegularExpression')], {
    default: 'PathPrefix',
  }),
  value: Type.String({
    minLength: 1,
    maxLength: MAX_REGEX_LENGTH,
    description: 'A path; with RegularExpression, an RE2 expression matched against the whole path.',
  }),
});

export const HeaderMatch = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 256, pattern: "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$" }),
    type: Type.Optional(
      Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression'), Type.Literal('Present')], {
        default: 'Exact',
      }),
    ),
    value: Type.Optional(
      Type.String({
        maxLength: 4096,
        description: `With RegularExpression, an RE2 expression of at most ${MAX_REGEX_LENGTH} characters.`,
      }),
    ),
  },
  {
    'x-kubernetes-validations': [
      {
        rule: `!has(self.type) || self.type != 'RegularExpression' || !has(self.value) || self.value.size() <= ${MAX_REGEX_LENGTH}`,
        message: `matches[].headers[].value: a RegularExpression is at most ${MAX_REGEX_LENGTH} characters`,
        fieldPath: '.value',
      },
    ],
  },
);

export const HttpMatch = Type.Object(
  {
    path: Type.Optional(PathMatch),
    headers: Type.Optional(Type.Array(HeaderMatch, { maxItems: 16 })),
    method: Type.Optional(HttpMethod),
  },
  {
    'x-kubernetes-validations': [
      {
        rule: '!has(self.path) || self.path.type != "PathPrefix" && self.path.type != "Exact" || self.path.value.startsWith("/")',
        message: 'matches[].path.value must start with "/" for Exact and PathPrefix matches',
        fieldPath: '.path.value',
      },
      {
        rule: '!has(self.headers) || self.headers.all(h, (has(h.type) && h.type == "Present") || has(h.value))',
        message: 'matches[].headers[].value is required unless type is Present',
        fieldPath: '.headers',
      },
    ],
  },
);
export type HttpMatch = Static<typeof HttpMatch>;

export const FaultInjection = Type.Object(
  {
    delay: Type.Optional(
      Type.Object({
        fixedDelay: Duration('Delay added before forwarding.', {
          field: 'faultInjection.delay.fixedDelay',
          max: MAX_DURATION.faultDelay,
        }),
        percentage: Percentage('Share of requests delayed.'),
      }),
    ),
    abort: Type.Optional(
      Type.Object({
        httpStatus: Type.Integer({
          minimum: 200,
          maximum: 599,
          description: 'Status returned to the caller.',
        }),
        percentage: Percentage('Share of requests aborted.'),
      }),
    ),
  },
  {
    'x-kubernetes-validations': [
      { rule: 'has(self.delay) || has(self.abort)', message: 'faultInjection needs delay, abort or both' },
    ],
  },
);

export const LB_TYPES = ['P2C_EWMA', 'ROUND_ROBIN', 'CONSISTENT_HASH'] as const;
export const LoadBalancer = Type.Object(
  {
    type: Type.Union(
      LB_TYPES.map((t) => Type.Literal(t)),
      { default: 'P2C_EWMA' },
    ),
    hashHeader: Type.Optional(
      Type.String({ minLength: 1, maxLength: 256, description: 'Header hashed by CONSISTENT_HASH.' }),
    ),
  },
  {
    'x-kubernetes-validations': [
      {
        rule: '(self.type == "CONSISTENT_HASH") == has(self.hashHeader)',
        message: 'loadBalancer.hashHeader is required with type CONSISTENT_HASH and only allowed with it',
        fieldPath: '.hashHeader',
      },
    ],
  },
);

export const CircuitBreaker = Type.Object({
  maxConnections: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1000000, description: 'Connections per endpoint.' }),
  ),
  maxPendingRequests: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 1000000, description: 'Requests queued for a connection.' }),
  ),
  maxRequests: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1000000, description: 'Concurrent requests per endpoint.' }),
  ),
  consecutive5xxErrors: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, default: 5 })),
  consecutiveConnectFailures: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, default: 5 })),
  baseEjectionTime: Type.Optional(
    Duration(
      'First ejection time; doubles on each repeat.',
      { field: 'circuitBreaker.baseEjectionTime', max: MAX_DURATION.ejectionTime },
      { default: '30s' },
    ),
  ),
  maxEjectionPercent: Type.Optional(Percentage('Most endpoints ejected at once.', { default: 50 })),
});

export const RateLimit = Type.Object(
  {
    requestsPerSecond: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1000000,
      description: 'Token refill rate.',
    }),
    burst: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1000000,
        description: 'Bucket size (default: one second of requests).',
      }),
    ),
  },
  { description: 'Local token-bucket rate limit at each server sidecar; excess requests get 429.' },
);

export const Mirror = Type.Object({
  service: ObjectName('Service that receives a copy of the traffic; its answers are discarded.'),
  percentage: Percentage('Share of requests mirrored.', { default: 100 }),
});

/** The annotation that drives a progression on demand (weftctl split promote|abort|pause|resume). */
export const PROGRESSION_ANNOTATION = 'weft.dev/progression';
export const PROGRESSION_COMMANDS = ['promote', 'abort', 'pause', 'resume'] as const;
export type ProgressionCommand = (typeof PROGRESSION_COMMANDS)[number];
/** Latency percentiles a gate may name (the proxy's histogram answers them). */
export const GATE_PERCENTILES = [50, 75, 90, 95, 99] as const;

export const Progression = Type.Object(
  {
    canary: ObjectName('The backend (one of spec.backends) taken from 0 to 100 %, step by step.'),
    stepWeights: Type.Optional(
      Type.Array(Type.Integer({ minimum: 1, maximum: 100 }), {
        minItems: 1,
        maxItems: 20,
        'x-kubernetes-list-type': 'set',
        description: "The canary's share (percent) at each step, increasing; 100 % follows the last.",
        'x-kubernetes-validations': [
          {
            rule: 'self.isSorted()',
            message: 'progression.stepWeights must increase (e.g. [10, 25, 50])',
          },
        ],
      }),
    ),
    stepWeightRange: Type.Optional(
      Type.Object(
        {
          start: Type.Integer({ minimum: 1, maximum: 100, description: 'First step, percent.' }),
          increment: Type.Integer({ minimum: 1, maximum: 100, description: 'Added at each step.' }),
          max: Type.Integer({ minimum: 1, maximum: 100, description: 'Last step (at most), percent.' }),
        },
        {
          'x-kubernetes-validations': [
            {
              rule: 'self.start <= self.max',
              message: 'progression.stepWeightRange.start must not exceed max',
              fieldPath: '.start',
            },
          ],
        },
      ),
    ),
    interval: Type.Optional(
      Duration(
        'How long each step lasts before its gates decide.',
        { field: 'progression.interval', max: '24h' },
        { default: '1m' },
      ),
    ),
    gates: Type.Optional(
      Type.Object({
        minSuccessRate: Type.Optional(
          Percentage("Lowest share of the canary's requests answered without a 5xx, percent."),
        ),
        maxLatency: Type.Optional(
          Type.Object({
            percentile: Type.Union(
              GATE_PERCENTILES.map((p) => Type.Literal(p)),
              { default: 99, description: 'Which percentile of the canary latency is compared.' },
            ),
            threshold: Duration('Highest latency allowed at that percentile.', {
              field: 'progression.gates.maxLatency.threshold',
              max: '1h',
            }),
          }),
        ),
        minRequests: Type.Optional(
          Type.Integer({
            minimum: 1,
            maximum: 1000000,
            default: 10,
            description:
              'Requests the canary must serve in a step before it may pass: a quiet service does not promote on no data.',
          }),
        ),
      }),
    ),
    onFailure: Type.Optional(
      Type.Union([Type.Literal('Rollback'), Type.Literal('Pause')], {
        default: 'Rollback',
        description:
          'Rollback: the canary back to 0 % and stop. Pause: hold the current weight until resumed.',
      }),
    ),
  },
  {
    description:
      'Canary progression run by the operator: weights in effect and decisions are in status.progression, never written to spec.',
    'x-kubernetes-validations': [
      {
        rule: 'has(self.stepWeights) != has(self.stepWeightRange)',
        message: 'progression: set exactly one of stepWeights or stepWeightRange',
      },
    ],
  },
);
export type Progression = Static<typeof Progression>;

export const TrafficSplitSpec = Type.Object(
  {
    service: ObjectName('The root Service clients call.'),
    port: Type.Optional(Port('Only traffic to this port of the root Service (default: all ports).')),
    backends: Type.Array(Backend, {
      minItems: 1,
      maxItems: 16,
      description: 'Services that receive the traffic, by weight.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['service'],
      'x-kubernetes-validations': [
        {
          rule: 'self.exists(b, b.weight > 0)',
          message: 'backends: at least one weight must be greater than 0',
        },
      ],
    }),
    matches: Type.Optional(
      Type.Array(HttpMatch, {
        maxItems: 8,
        description:
          'HTTP requests this split applies to (any match). Empty: all traffic to the root Service.',
      }),
    ),
    timeout: Type.Optional(
      Duration('Whole-request timeout, retries included; "0s" means none.', {
        field: 'timeout',
        max: MAX_DURATION.requestTimeout,
      }),
    ),
    retries: Type.Optional(Retries),
    faultInjection: Type.Optional(FaultInjection),
    mirror: Type.Optional(Mirror),
    loadBalancer: Type.Optional(LoadBalancer),
    circuitBreaker: Type.Optional(CircuitBreaker),
    rateLimit: Type.Optional(RateLimit),
    progression: Type.Optional(Progression),
  },
  {
    'x-kubernetes-validations': [
      {
        rule: '!has(self.retries) || !has(self.retries.perTryTimeout) || !has(self.timeout) || duration(self.timeout) == duration("0s") || duration(self.retries.perTryTimeout) <= duration(self.timeout)',
        message: 'retries.perTryTimeout must not exceed timeout',
        fieldPath: '.retries.perTryTimeout',
      },
      {
        rule: '!has(self.mirror) || self.backends.all(b, b.service != self.mirror.service)',
        message: 'mirror.service must not be one of the backends',
        fieldPath: '.mirror.service',
      },
      {
        rule: '!has(self.progression) || self.backends.exists(b, b.service == self.progression.canary)',
        message: 'progression.canary must be one of backends[].service',
        fieldPath: '.progression.canary',
      },
      {
        rule: '!has(self.progression) || self.backends.exists(b, b.service != self.progression.canary && b.weight > 0)',
        message:
          'backends: with a progression, a backend other than progression.canary (the stable version) needs a weight greater than 0',
        fieldPath: '.backends',
      },
    ],
  },
);
export type TrafficSplitSpec = Static<typeof TrafficSplitSpec>;

const Figures = Type.Object({
  requests: Type.Integer({ minimum: 0 }),
  successRate: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: 'Percent.' })),
  latencyMs: Type.Optional(
    Type.Number({ minimum: 0, description: "At the gate's percentile (bucket upper bound)." }),
  ),
});
export type ProgressionFigures = Static<typeof Figures>;

export const PROGRESSION_PHASES = ['Progressing', 'Paused', 'Promoted', 'RolledBack'] as const;
export type ProgressionPhase = (typeof PROGRESSION_PHASES)[number];

export const ProgressionStatus = Type.Object(
  {
    phase: Type.Union(PROGRESSION_PHASES.map((p) => Type.Literal(p))),
    step: Type.Integer({ minimum: 0, description: 'Index of the current step in the step weights.' }),
    canaryWeight: Type.Integer({
      minimum: 0,
      maximum: 100,
      description: "The canary's share in effect, percent.",
    }),
    stepStartedAt: Type.String({ format: 'date-time' }),
    specHash: Type.String({ maxLength: 64, description: 'The progression and backends this run is for.' }),
    command: Type.Optional(
      Type.String({ maxLength: 256, description: 'The last annotation command acted on.' }),
    ),
    message: Type.Optional(Type.String({ maxLength: 1024 })),
    observed: Type.Optional(
      Type.Object({
        at: Type.String({ format: 'date-time' }),
        canary: Figures,
        stable: Figures,
      }),
    ),
    history: Type.Optional(
      Type.Array(
        Type.Object({
          time: Type.String({ format: 'date-time' }),
          decision: Type.String({ maxLength: 64 }),
          step: Type.Integer({ minimum: 0 }),
          canaryWeight: Type.Integer({ minimum: 0, maximum: 100 }),
          message: Type.String({ maxLength: 1024 }),
        }),
        { maxItems: 20 },
      ),
    ),
  },
  { description: 'The progression as the operator runs it: the weights the proxies apply come from here.' },
);
export type ProgressionStatus = Static<typeof ProgressionStatus>;

export const TrafficSplitStatus = statusOf({ progression: Type.Optional(ProgressionStatus) });
export type TrafficSplitStatus = Static<typeof TrafficSplitStatus>;
export type TrafficSplit = Resource<TrafficSplitSpec, TrafficSplitStatus>;

export const TrafficSplitKind: KindDefinition = {
  kind: 'TrafficSplit',
  plural: 'trafficsplits',
  singular: 'trafficsplit',
  shortNames: ['ts', 'split'],
  scope: 'Namespaced',
  spec: TrafficSplitSpec,
  status: TrafficSplitStatus,
  description:
    'Weighted and matched routing of a root Service to backend Services, with per-route resilience.',
  printerColumns: [
    { name: 'Service', type: 'string', jsonPath: '.spec.service' },
    { name: 'Backends', type: 'string', jsonPath: '.spec.backends', priority: 1 },
    { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
    { name: 'Canary', type: 'integer', jsonPath: '.status.progression.canaryWeight', priority: 1 },
    { name: 'Progression', type: 'string', jsonPath: '.status.progression.phase', priority: 1 },
    {
      name: 'Reason',
      type: 'string',
      jsonPath: ".status.conditions[?(@.type=='Ready')].reason",
      priority: 1,
    },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};
