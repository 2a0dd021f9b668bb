// The webhook's public surface: the pure injector and validator, the server, the manifests.
export { webhookCommand } from './cli.ts';
export * from './constants.ts';
export { WEBHOOK_ERROR_CODES, WebhookError, type WebhookErrorCode } from './errors.ts';
export {
  type InjectAction,
  type InjectResult,
  injectPod,
  type NamespaceInfo,
  selectorMatches,
} from './inject.ts';
export { applyPatch, escapePointer, type JsonPatchOp } from './jsonpatch.ts';
export { certManagerResources, WEBHOOK_NAMES, webhookConfigurations } from './manifests.ts';
export {
  DEFAULT_TLS_SECRET,
  startWebhook,
  WEBHOOK_PATHS,
  type WebhookHandle,
  type WebhookOptions,
} from './server.ts';
export { type ClusterView, type ValidationResult, validateResource } from './validate.ts';
