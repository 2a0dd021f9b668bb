// Condition types and reasons Weft writes on its resources: constants in one place, so code,
// docs and users' `kubectl wait --for=condition=...` agree.

export const CONDITION = {
  /** The resource is fully in effect. */
  Ready: 'Ready',
  /** The spec is valid and Weft will act on it. */
  Accepted: 'Accepted',
  /** Every object the spec names (Services) exists. */
  ResolvedRefs: 'ResolvedRefs',
  /**
   * The proxies that must apply the resource's generation have applied it (they report their
   * config generation to the operator): "12/12 proxies applied generation 7".
   */
  Programmed: 'Programmed',
  /**
   * TrafficSplit only, present only while True: HTTPRoutes or GRPCRoutes attached to its
   * Service take precedence (everywhere, or in the consumer routes' namespaces).
   */
  Overridden: 'Overridden',
  /**
   * kstatus (Flux's health checks), present only while True: the operator or the proxies are
   * still at work on the current generation (the proxies applying it, a write to retry).
   */
  Reconciling: 'Reconciling',
  /**
   * kstatus, present only while True: the current generation cannot be put in effect until
   * someone changes it or what it names (invalid, a Service missing, overridden by a route).
   */
  Stalled: 'Stalled',
} as const;

export const REASON = {
  // Ready
  Programmed: 'Programmed',
  NotProgrammed: 'NotProgrammed',
  /** A previous good version stays programmed while the current spec cannot be. */
  LastGoodProgrammed: 'LastGoodProgrammed',
  // Programmed (the condition)
  Applied: 'Applied',
  ApplyPending: 'ApplyPending',
  // Accepted
  Accepted: 'Accepted',
  Invalid: 'Invalid',
  /** A Mesh that is not named "default" is ignored. */
  NotDefault: 'NotDefault',
  // ResolvedRefs
  ResolvedRefs: 'ResolvedRefs',
  ServiceNotFound: 'ServiceNotFound',
  PortNotFound: 'PortNotFound',
  // Overridden
  RouteTakesPrecedence: 'RouteTakesPrecedence',
  // Mesh
  ConfigTooLarge: 'ConfigTooLarge',
  WriteFailed: 'WriteFailed',
} as const;
export type Reason = (typeof REASON)[keyof typeof REASON];

/** Kubernetes Event reasons. */
export const EVENT_REASON = {
  InvalidSpec: 'InvalidSpec',
  RefNotFound: 'RefNotFound',
  ConfigWriteFailed: 'ConfigWriteFailed',
  ConfigTooLarge: 'ConfigTooLarge',
} as const;
