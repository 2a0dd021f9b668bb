// One error base class for Weft's runtime: every error carries a stable `code` (never match on
// message text) and may chain the error that caused it.
import { CodedError } from '../api/errors.ts';

export const ERROR_CODES = {
  /** The apiserver answered with a non-2xx status; see KubeApiError.statusCode. */
  API: 'WEFT_KUBE_API',
  /** The apiserver could not be reached or the connection broke. */
  TRANSPORT: 'WEFT_KUBE_TRANSPORT',
  /** A reconcile ran longer than the queue's per-reconcile timeout. */
  RECONCILE_TIMEOUT: 'WEFT_RECONCILE_TIMEOUT',
  /** A reconcile failed in a way that retrying cannot fix; logged and not retried. */
  TERMINAL: 'WEFT_TERMINAL',
  /** A watch stayed silent longer than the watchdog allows. */
  WATCH_SILENT: 'WEFT_WATCH_SILENT',
  /** The ProxyConfig of a namespace does not fit in CONFIG_DISTRIBUTION.maxShards ConfigMaps. */
  CONFIG_TOO_LARGE: 'WEFT_CONFIG_TOO_LARGE',
  /** A configuration value (flag, environment variable) is unusable. */
  CONFIG: 'WEFT_CONFIG',
  /** The component is stopping; the operation was abandoned. */
  STOPPED: 'WEFT_STOPPED',
} as const;
export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export class WeftError extends CodedError<ErrorCode> {}

/** A reconcile error that must not be retried (bad input that only a user can fix). */
export class TerminalError extends WeftError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.TERMINAL, message, options);
    this.name = 'TerminalError';
  }
}

/** What the apiserver refused, with its Status reason ("NotFound", "Conflict", ...). */
export class KubeApiError extends WeftError {
  readonly statusCode: number;
  readonly reason: string;
  readonly method: string;
  readonly path: string;
  constructor(method: string, path: string, statusCode: number, reason: string, message: string) {
    super(ERROR_CODES.API, `${method} ${path}: ${statusCode} ${reason}: ${message}`);
    this.name = 'KubeApiError';
    this.statusCode = statusCode;
    this.reason = reason;
    this.method = method;
    this.path = path;
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.statusCode === 404;
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.statusCode === 409;
export const isGone = (err: unknown): boolean => err instanceof KubeApiError && err.statusCode === 410;
