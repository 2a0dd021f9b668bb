// AuthorizationPolicy status (key: ns/name): Accepted and Ready. A Warning Event when it starts
// failing validation.
import type { AuthorizationPolicy } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import { CONDITION, EVENT_REASON } from '../conditions.ts';
import {
  acceptedOf,
  type CompiledResourceDeps,
  compiledResource,
  failedBefore,
  programmedOf,
  readyOf,
} from '../status.ts';

export type AuthorizationPolicyDeps = CompiledResourceDeps<Obj<AuthorizationPolicy>>;

export function authorizationPolicyReconciler(d: AuthorizationPolicyDeps): KeyReconciler {
  return async (key) => {
    const found = compiledResource(d, key);
    if (!found) return undefined;
    const { obj: pol, r } = found;
    const wanted = [
      acceptedOf(r),
      readyOf(r, r.accepted.ok ? '' : r.accepted.message),
      ...programmedOf(d, key, r, pol),
    ];
    const wasFailing = !r.accepted.ok && failedBefore(pol, CONDITION.Accepted, r.accepted.reason);
    const changed = await d.status.write(RESOURCES.authorizationPolicies, pol, wanted);
    if (changed && !wasFailing && !r.accepted.ok)
      await d.events.warn(pol, RESOURCES.authorizationPolicies, EVENT_REASON.InvalidSpec, r.accepted.message);
    return undefined;
  };
}
