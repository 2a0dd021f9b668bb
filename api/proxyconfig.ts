// ProxyConfig: the document the operator compiles per meshed namespace and every sidecar in
// that namespace applies. The operator writes it, the proxy validates it with ajv against
// this schema before swapping it in, so both sides share this one definition.
//
// Durations are integers in milliseconds here (the CRDs use strings like "15s"; the compiler
// converts), so the proxy never parses text on its hot path. Lists are sorted by name so the
// document is deterministic, and `version` is the content hash of everything else.
import { Type } from '@sinclair/typebox';
import { AUTHZ_ACTIONS, Rule } from './authorizationpolicy.ts';
import type { Static } from './common.ts';
import { MAX_TIMER_MS, PROXY_CONFIG_API_VERSION } from './constants.ts';
import { MTLS_MODES, PathNormalizationMode, RETRY_ON } from './mesh.ts';
import { HttpMatch, LB_TYPES } from './trafficsplit.ts';

export {
  CONFIG_DISTRIBUTION,
  INJECT_LABEL,
  MAX_TIMER_MS,
  PROXY,
  PROXY_CONFIG_API_VERSION,
  PROXY_ENV,
  PROXY_NODE_FLAGS,
  SIDECAR_HEADERS,
} from './constants.ts';

export const ConfigManifest = Type.Object({
  apiVersion: Type.Literal(PROXY_CONFIG_API_VERSION),
  version: Type.String({ minLength: 1 }),
  /**
   * Written by the operator, one more than the namespace's previous manifest: the order of
   * versions (which are content hashes). A proxy never applies a lower generation than the one
   * it runs. Absent from manifests of older operators.
   */
  generation: Type.Optional(Type.Integer({ minimum: 1 })),
  encoding: Type.Literal('gzip'),
  /** Uncompressed JSON size in bytes. */
  size: Type.Integer({ minimum: 0 }),
  parts: Type.Array(Type.Object({ key: Type.String(), configMap: Type.String(), sha256: Type.String() }), {
    minItems: 1,
  }),
});
export type ConfigManifest = Static<typeof ConfigManifest>;

// Each becomes a timer: a longer one would fire at once (504 in 1 ms), so the proxy refuses it.
const Ms = (description: string) => Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, description });
const MtlsMode = Type.Union(MTLS_MODES.map((m) => Type.Literal(m)));

export const ServicePort = Type.Object({
  name: Type.String(),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  protocol: Type.Union([Type.Literal('TCP'), Type.Literal('UDP'), Type.Literal('SCTP')]),
  /** Service appProtocol (http, http2, grpc, tcp, tls, kubernetes.io/h2c, …); overrides detection. */
  appProtocol: Type.Optional(Type.String()),
});
export type ServicePort = Static<typeof ServicePort>;

export const Endpoint = Type.Object({
  address: Type.String(),
  /** Target port by service port name ("" for an unnamed port). */
  ports: Type.Record(Type.String(), Type.Integer({ minimum: 1, maximum: 65535 })),
  ready: Type.Boolean(),
  serving: Type.Boolean(),
  terminating: Type.Boolean(),
  /** SPIFFE ID the endpoint must present under mTLS; absent for pods outside the mesh. */
  identity: Type.Optional(Type.String()),
  /** Whether a Weft sidecar runs beside the endpoint (so mTLS and HTTP/2 upgrade are possible). */
  meshed: Type.Boolean(),
  zone: Type.Optional(Type.String()),
  pod: Type.Optional(Type.String()),
});
export type Endpoint = Static<typeof Endpoint>;

export const Service = Type.Object({
  /** "<namespace>/<name>" */
  id: Type.String(),
  name: Type.String(),
  namespace: Type.String(),
  clusterIPs: Type.Array(Type.String()),
  /** Names a client may use: name.ns.svc.<domain>, name.ns.svc, name.ns (and name within ns). */
  hostnames: Type.Array(Type.String()),
  ports: Type.Array(ServicePort),
  endpoints: Type.Array(Endpoint),
});
export type Service = Static<typeof Service>;

export const RetryPolicy = Type.Object({
  attempts: Type.Integer({ minimum: 0, maximum: 10 }),
  perTryTimeoutMs: Type.Optional(Ms('Per-try timeout.')),
  retryOn: Type.Array(Type.Union(RETRY_ON.map((r) => Type.Literal(r)))),
  budgetPercent: Type.Number({ minimum: 0, maximum: 100 }),
  minRetriesPerSecond: Type.Integer({ minimum: 0 }),
});
export type RetryPolicy = Static<typeof RetryPolicy>;

// ---------------------------------------------------------------------------------------------
// Routes compiled from Gateway API HTTPRoute and GRPCRoute (docs/proxy-config.md#gateway-api-routes).
// Everything below is optional on a Route, so a TrafficSplit route and a config of an older
// operator stay valid as they were.

/** The kinds a route comes from; `source` names one for metrics, access logs and denials. */
export const ROUTE_SOURCE_KINDS = ['TrafficSplit', 'HTTPRoute', 'GRPCRoute'] as const;
export const RouteSource = Type.Object({
  kind: Type.Union(ROUTE_SOURCE_KINDS.map((k) => Type.Literal(k))),
  namespace: Type.String(),
  name: Type.String(),
  /** Index of the rule in spec.rules (HTTPRoute, GRPCRoute). */
  rule: Type.Optional(Type.Integer({ minimum: 0 })),
  /** The rule's `name`, when it has one. */
  ruleName: Type.Optional(Type.String()),
});
export type RouteSource = Static<typeof RouteSource>;

/** A query parameter match: the name is compared exactly (case-sensitive), against the first value. */
export const QueryParamMatch = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  type: Type.Optional(
    Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression')], { default: 'Exact' }),
  ),
  value: Type.String({ maxLength: 1024 }),
});
export type QueryParamMatch = Static<typeof QueryParamMatch>;

/** One match: every field given must hold (AND); a route matches when any of its matches does. */
export const RouteMatch = Type.Object({
  ...HttpMatch.properties,
  queryParams: Type.Optional(Type.Array(QueryParamMatch, { maxItems: 16 })),
});
export type RouteMatch = Static<typeof RouteMatch>;

export const HeaderValue = Type.Object({ name: Type.String({ minLength: 1 }), value: Type.String() });
/** Header edits, applied in this order: set (replace), add (append a value), remove. Names are case-insensitive. */
export const HeaderModifier = {
  set: Type.Optional(Type.Array(HeaderValue)),
  add: Type.Optional(Type.Array(HeaderValue)),
  remove: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
};
/**
 * How a redirect or a rewrite changes the path. ReplacePrefixMatch replaces `prefix` (the
 * PathPrefix value of the match that selected this route: the compiler writes it here) with
 * `value`, element-wise as PathPrefix matches.
 */
export const PathModifier = Type.Union([
  Type.Object({ type: Type.Literal('ReplaceFullPath'), value: Type.String() }),
  Type.Object({ type: Type.Literal('ReplacePrefixMatch'), value: Type.String(), prefix: Type.String() }),
]);
export type PathModifier = Static<typeof PathModifier>;

export const REDIRECT_STATUS_CODES = [301, 302, 303, 307, 308] as const;
export const RouteFilter = Type.Union([
  Type.Object({ type: Type.Literal('RequestHeaderModifier'), ...HeaderModifier }),
  Type.Object({ type: Type.Literal('ResponseHeaderModifier'), ...HeaderModifier }),
  /** Answered by the client's proxy: nothing is forwarded. Absent fields keep the request's own. */
  Type.Object({
    type: Type.Literal('RequestRedirect'),
    scheme: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('https')])),
    hostname: Type.Optional(Type.String()),
    path: Type.Optional(PathModifier),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    statusCode: Type.Union(REDIRECT_STATUS_CODES.map((c) => Type.Literal(c))),
  }),
  /** Rewrites before forwarding: `hostname` replaces Host/:authority. */
  Type.Object({
    type: Type.Literal('URLRewrite'),
    hostname: Type.Optional(Type.String()),
    path: Type.Optional(PathModifier),
  }),
  /** A copy of the request (answer discarded) to `service`, for `percentage` of requests. */
  Type.Object({
    type: Type.Literal('RequestMirror'),
    service: Type.String({ description: 'Service id.' }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    percentage: Type.Number({ minimum: 0, maximum: 100 }),
  }),
]);
export type RouteFilter = Static<typeof RouteFilter>;

export const RouteBackend = Type.Object({
  service: Type.String({ description: 'Service id.' }),
  weight: Type.Integer({ minimum: 0 }),
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  /** Filters applied only when this backend is chosen, after the route's (header modifiers only). */
  filters: Type.Optional(Type.Array(RouteFilter)),
  /**
   * Set when the reference could not be resolved (why, for logs): requests that pick this
   * backend by weight are answered 500, never sent elsewhere (Gateway API).
   */
  unresolved: Type.Optional(Type.String()),
});
export type RouteBackend = Static<typeof RouteBackend>;

export const Route = Type.Object({
  /**
   * "<namespace>/<TrafficSplit name>"; for Gateway API routes
   * "<Kind>/<namespace>/<name>/<rule index>" (one entry per match, so not unique).
   */
  name: Type.String(),
  /** What the route was compiled from. Absent in configs of older operators. */
  source: Type.Optional(RouteSource),
  /** Service id of the root Service. */
  service: Type.String(),
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  /** Any of them (OR); empty: every request. Gateway API routes carry exactly one. */
  matches: Type.Array(RouteMatch),
  /** Empty only with `directResponse` or a RequestRedirect filter (nothing is forwarded). */
  backends: Type.Array(RouteBackend),
  /** Applied in order before forwarding (or answering, for RequestRedirect). */
  filters: Type.Optional(Type.Array(RouteFilter)),
  /** Answer with this status and an empty body, forward nothing (no rule matched: 404; no valid backend: 500). */
  directResponse: Type.Optional(Type.Object({ status: Type.Integer({ minimum: 200, maximum: 599 }) })),
  timeoutMs: Type.Optional(Ms('Whole-request timeout; 0 means none.')),
  backendRequestTimeoutMs: Type.Optional(
    Ms('Timeout of each request to a backend (each try); 0 means none.'),
  ),
  retries: Type.Optional(RetryPolicy),
  faultInjection: Type.Optional(
    Type.Object({
      delay: Type.Optional(
        Type.Object({ fixedDelayMs: Ms('Delay.'), percentage: Type.Number({ minimum: 0, maximum: 100 }) }),
      ),
      abort: Type.Optional(
        Type.Object({
          httpStatus: Type.Integer({ minimum: 200, maximum: 599 }),
          percentage: Type.Number({ minimum: 0, maximum: 100 }),
        }),
      ),
    }),
  ),
  mirror: Type.Optional(
    Type.Object({ service: Type.String(), percentage: Type.Number({ minimum: 0, maximum: 100 }) }),
  ),
  loadBalancer: Type.Optional(
    Type.Object({
      type: Type.Union(LB_TYPES.map((t) => Type.Literal(t))),
      hashHeader: Type.Optional(Type.String()),
    }),
  ),
  circuitBreaker: Type.Optional(
    Type.Object({
      maxConnections: Type.Optional(Type.Integer({ minimum: 1 })),
      maxPendingRequests: Type.Optional(Type.Integer({ minimum: 0 })),
      maxRequests: Type.Optional(Type.Integer({ minimum: 1 })),
      consecutive5xxErrors: Type.Integer({ minimum: 0 }),
      consecutiveConnectFailures: Type.Integer({ minimum: 0 }),
      baseEjectionTimeMs: Ms('First ejection time; doubles on each repeat.'),
      maxEjectionPercent: Type.Number({ minimum: 0, maximum: 100 }),
    }),
  ),
  rateLimit: Type.Optional(
    Type.Object({
      requestsPerSecond: Type.Number({ exclusiveMinimum: 0 }),
      burst: Type.Integer({ minimum: 1 }),
    }),
  ),
});
export type Route = Static<typeof Route>;

export const AuthzPolicy = Type.Object({
  /** "<namespace>/<name>", the name denials and metrics report. */
  name: Type.String(),
  namespace: Type.String(),
  action: Type.Union(AUTHZ_ACTIONS.map((a) => Type.Literal(a))),
  /** Absent: every workload in the namespace. */
  selector: Type.Optional(
    Type.Object({ matchLabels: Type.Optional(Type.Record(Type.String(), Type.String())) }),
  ),
  /** Absent: an ALLOW policy allows nothing (Istio semantics). */
  rules: Type.Optional(Type.Array(Rule)),
});
export type AuthzPolicy = Static<typeof AuthzPolicy>;

export const ProxyConfig = Type.Object({
  apiVersion: Type.Literal(PROXY_CONFIG_API_VERSION),
  /** Content hash (sha256, hex, first 16 characters) of the document without this field. */
  version: Type.String({ minLength: 1 }),
  namespace: Type.String(),
  mesh: Type.Object({
    trustDomain: Type.String(),
    clusterDomain: Type.String(),
    /** mTLS mode for workloads in this namespace, after the Mesh's namespace override. */
    mtls: Type.Object({
      mode: MtlsMode,
      ports: Type.Array(Type.Object({ port: Type.Integer({ minimum: 1, maximum: 65535 }), mode: MtlsMode })),
    }),
    outboundTrafficPolicy: Type.Union([Type.Literal('ALLOW_ANY'), Type.Literal('REGISTRY_ONLY')]),
    defaultAuthorization: Type.Union([Type.Literal('ALLOW'), Type.Literal('DENY')]),
    /** Absent (a config from an older operator): BASE. */
    pathNormalization: Type.Optional(PathNormalizationMode),
    defaultTimeoutMs: Ms('Request timeout when no route sets one; 0 means none.'),
    defaultRetries: Type.Optional(RetryPolicy),
    drainTimeoutMs: Ms('How long a stopping proxy lets in-flight requests finish.'),
    logLevel: Type.String(),
    telemetry: Type.Object({
      metrics: Type.Boolean(),
      accessLogs: Type.Boolean(),
      tracing: Type.Optional(
        Type.Object({ endpoint: Type.String(), samplingPercent: Type.Number({ minimum: 0, maximum: 100 }) }),
      ),
    }),
  }),
  /** PEM roots trusted for peer certificates (more than one during a CA rotation). */
  trustBundle: Type.Array(Type.String()),
  services: Type.Array(Service),
  routes: Type.Array(Route),
  authorizationPolicies: Type.Array(AuthzPolicy),
});
export type ProxyConfig = Static<typeof ProxyConfig>;

/**
 * What a Weft gateway proxy (`weft proxy --gateway`) serves, beside its namespace's ProxyConfig:
 * per listener port, virtual hosts tried in order (docs/ingress.md). Written by the operator in
 * the ConfigMap `<gateway>-weft-gateway`, key `gateway.json`.
 */
export const GatewayConfig = Type.Object({
  /** "<namespace>/<name>" of the Gateway. */
  gateway: Type.String({ minLength: 1 }),
  /**
   * The order the gateway applies tables in, from its volume and the apiserver watch: never a
   * lower (or the same) one than applied. Bumped by the operator when the content changes.
   */
  generation: Type.Optional(Type.Integer({ minimum: 1 })),
  ports: Type.Array(
    Type.Object({
      /** The listener port (the Service's port). */
      port: Type.Integer({ minimum: 1, maximum: 65535 }),
      /** The port the proxy binds in its pod (ports below 1024 move up: the proxy is not root). */
      bind: Type.Integer({ minimum: 1, maximum: 65535 }),
      /** Exact hostnames first (longest first), then wildcards (longest first), then "*". */
      hosts: Type.Array(Type.Object({ hostname: Type.String({ minLength: 1 }), routes: Type.Array(Route) })),
      /**
       * HTTPS: the port terminates TLS, one certificate per listener, picked by SNI (exact
       * hostname, then the longest wildcard, then "*"). Files (PEM) in the gateway's certificate
       * directory, never the keys themselves (docs/ingress.md).
       */
      tls: Type.Optional(
        Type.Array(
          Type.Object({
            hostname: Type.String({ minLength: 1 }),
            cert: Type.String({ pattern: '^[-._a-zA-Z0-9]+$' }),
            key: Type.String({ pattern: '^[-._a-zA-Z0-9]+$' }),
          }),
        ),
      ),
    }),
  ),
});
export type GatewayConfig = Static<typeof GatewayConfig>;
