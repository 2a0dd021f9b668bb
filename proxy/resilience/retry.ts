// Whether a failed or answered try is retried: the route's retryOn conditions, then the retry
// budget of the backend. One decision for every transport, asked by the try driver (attempts.ts).
import type { RetryPolicy } from '../../api/index.ts';
import type { ClusterState } from './endpoints.ts';

/** gRPC status codes by retryOn name. */
const GRPC_CODES: Record<string, number> = {
  cancelled: 1,
  'deadline-exceeded': 4,
  'resource-exhausted': 8,
  unavailable: 14,
};

/** How a try failed without a response (UpstreamFailure kinds). */
export type TryFailureKind = 'connect-failure' | 'refused-stream' | 'reset' | 'timeout' | string;

/** Whether `policy.retryOn` covers this outcome: a failure, else the status (and gRPC status). */
export function retriable(
  policy: RetryPolicy,
  failure: { kind: TryFailureKind } | undefined,
  status: number,
  grpcStatus: string | undefined,
): boolean {
  const on = new Set(policy.retryOn);
  if (failure) {
    if (failure.kind === 'connect-failure')
      return on.has('connect-failure') || on.has('5xx') || on.has('gateway-error');
    if (failure.kind === 'refused-stream') return on.has('refused-stream') || on.has('5xx');
    // reset and per-try timeout
    return on.has('reset') || on.has('5xx') || on.has('gateway-error');
  }
  if (status >= 500 && on.has('5xx')) return true;
  if ((status === 502 || status === 503 || status === 504) && on.has('gateway-error')) return true;
  if (status === 409 && on.has('retriable-4xx')) return true;
  if (grpcStatus !== undefined) {
    for (const [cond, code] of Object.entries(GRPC_CODES))
      if (on.has(cond as never) && Number(grpcStatus) === code) return true;
  }
  return false;
}

/**
 * A retry the policy wants: sent when the backend's retry budget allows (counted as `sent`),
 * else not (`budget_exhausted`).
 */
export function spendRetry(
  cluster: ClusterState,
  count: (outcome: 'sent' | 'budget_exhausted') => void,
): boolean {
  if (cluster.budget?.tryRetry() ?? true) {
    count('sent');
    return true;
  }
  count('budget_exhausted');
  return false;
}
