// One error base class for the webhook: a stable `code` (never match on message text) and an
// optional cause. Admission turns these into denials whose message the user sees in kubectl.
import { CodedError } from '../api/errors.ts';

export const WEBHOOK_ERROR_CODES = {
  /** An injection annotation on the pod is malformed (ports, CIDRs). */
  BAD_ANNOTATION: 'WEFT_WEBHOOK_BAD_ANNOTATION',
  /** A custom resource failed a semantic check. */
  INVALID_RESOURCE: 'WEFT_WEBHOOK_INVALID_RESOURCE',
  /** The AdmissionReview body is not something the webhook can read. */
  BAD_REVIEW: 'WEFT_WEBHOOK_BAD_REVIEW',
  /** The serving certificate could not be created, read or stored. */
  TLS: 'WEFT_WEBHOOK_TLS',
  /** A configuration value (flag, option) is unusable. */
  CONFIG: 'WEFT_WEBHOOK_CONFIG',
} as const;
export type WebhookErrorCode = (typeof WEBHOOK_ERROR_CODES)[keyof typeof WEBHOOK_ERROR_CODES];

export class WebhookError extends CodedError<WebhookErrorCode> {}
