// One error class for the proxy, with stable codes: callers and tests switch on `code`, never
// on message text. Messages say what happened and what the user can do.
import { CodedError } from '../api/errors.ts';
export const PROXY_ERROR_CODES = [
  'WEFT_NATIVE_UNAVAILABLE',
  'WEFT_NO_ORIGINAL_DST',
  'WEFT_CONFIG_MISSING',
  'WEFT_CONFIG_INCOMPLETE',
  'WEFT_CONFIG_INVALID',
  'WEFT_NO_ROUTE',
  'WEFT_NO_ENDPOINTS',
  'WEFT_OVERFLOW',
  'WEFT_RATE_LIMITED',
  'WEFT_UPSTREAM_CONNECT',
  'WEFT_UPSTREAM_RESET',
  'WEFT_UPSTREAM_TIMEOUT',
  'WEFT_ENDPOINT_GONE',
  'WEFT_DENIED',
  'WEFT_MTLS_REQUIRED',
  'WEFT_PEER_IDENTITY',
  'WEFT_NOT_REDIRECTED',
  'WEFT_BAD_PATH',
] as const;
export type ProxyErrorCode = (typeof PROXY_ERROR_CODES)[number];

export class ProxyError extends CodedError<ProxyErrorCode> {}

/** The HTTP status a request ends with when the proxy itself fails it. */
export function statusForError(code: ProxyErrorCode): number {
  switch (code) {
    case 'WEFT_NO_ENDPOINTS':
    case 'WEFT_OVERFLOW':
    case 'WEFT_ENDPOINT_GONE':
      return 503;
    case 'WEFT_RATE_LIMITED':
      return 429;
    case 'WEFT_UPSTREAM_TIMEOUT':
      return 504;
    case 'WEFT_DENIED':
    case 'WEFT_MTLS_REQUIRED':
      return 403;
    default:
      return 502;
  }
}
