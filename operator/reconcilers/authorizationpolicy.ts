// AuthorizationPolicy status (key: ns/name): Accepted and Ready. A Warning Event when it starts
// failing validation.
import type { AuthorizationPolicy } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import type { ResourceResult } from '../compiler.ts';
import { CONDITION, EVENT_REASON } from '../conditions.ts';
import { acceptedOf, type EventRecorder, failedBefore, readyOf, type StatusWriter } from '../status.ts';

export interface AuthorizationPolicyDeps {
  policies: { get(key: string): Obj<AuthorizationPolicy> | undefined };
  resultOf: (key: string) => ResourceResult | undefined;
  status: StatusWriter;
  events: EventRecorder;
}

export function authorizationPolicyReconciler(d: AuthorizationPolicyDeps): KeyReconciler {
  return async (key) => {
    const pol = d.policies.get(key);
    if (!pol) return undefined;
    const r = d.resultOf(key);
    if (!r) return undefined;
    const wanted = [acceptedOf(r), readyOf(r, r.accepted.ok ? '' : r.accepted.message)];
    const wasFailing = !r.accepted.ok && failedBefore(pol, CONDITION.Accepted, r.accepted.reason);
    const changed = await d.status.write(RESOURCES.authorizationPolicies, pol, wanted);
    if (changed && !wasFailing && !r.accepted.ok)
      await d.events.warn(pol, RESOURCES.authorizationPolicies, EVENT_REASON.InvalidSpec, r.accepted.message);
    return undefined;
  };
}
