// The public surface of Weft's Kubernetes runtime.

export {
  apiVersionOf,
  FIELD_MANAGER,
  KubeClient,
  type KubeObject,
  type OwnerReference,
  RESOURCES,
  type ResourceType,
  resourcePath,
} from './client.ts';
export { backoffMs, type Clock, ManualClock, systemClock } from './clock.ts';
export { type ConditionInput, findCondition, mergeConditions, sameConditions } from './conditions.ts';
export {
  ERROR_CODES,
  isConflict,
  isGone,
  isNotFound,
  KubeApiError,
  TerminalError,
  WeftError,
} from './errors.ts';
export { type EventType, Informer, objectKey } from './informer.ts';
export { type KubeAccess, SimpleKubeConfig } from './kubeconfig.ts';
export { LeaderElector } from './leader.ts';
export { type Logger, rootLogger, silentLogger } from './log.ts';
export {
  type Cache,
  type Controller,
  type ControllerOptions,
  type KeyReconciler,
  type LeaderCallbacks,
  type Leadership,
  Manager,
  type ManagerOptions,
  type ReconcileContext,
  type Server,
} from './manager.ts';
export { type Outcome, type ReconcileResult, type Reconciler, WorkQueue } from './queue.ts';
export { type LabelSelectorLike, matchesSelector } from './selector.ts';
export { HttpRunnable, healthServer, metricsServer, parseAddress } from './servers.ts';
export { onShutdown } from './shutdown.ts';
