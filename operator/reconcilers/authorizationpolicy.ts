// AuthorizationPolicy status (key: ns/name): Accepted and Ready. A Warning Event when it starts
// failing validation.
import type { AuthorizationPolicy } from '../../api/index.ts';
import { RESOURCES } from '../../kube/client.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import type { Obj } from '../cache.ts';
import { type CompiledResourceDeps, compiledStatusReconciler } from '../status.ts';

export type AuthorizationPolicyDeps = CompiledResourceDeps<Obj<AuthorizationPolicy>>;

export function authorizationPolicyReconciler(d: AuthorizationPolicyDeps): KeyReconciler {
  return compiledStatusReconciler(d, RESOURCES.authorizationPolicies);
}
