// The public surface of Weft's API: CRD kinds, their types and schemas, the ProxyConfig
// contract, the CRD generator and validation.
export * from './authorizationpolicy.ts';
export * from './common.ts';
export { crdName, generateCrd, toStructural } from './crd.ts';
export { CodedError } from './errors.ts';
export { canonicalJson, contentVersion } from './hash.ts';
export * from './mesh.ts';
export * from './proxyconfig.ts';
export * from './trafficsplit.ts';
export { assertValid, check, type FieldError, ValidationError } from './validate.ts';

import { AuthorizationPolicyKind } from './authorizationpolicy.ts';
import { MeshKind } from './mesh.ts';
import { TrafficSplitKind } from './trafficsplit.ts';

export const KINDS = [MeshKind, TrafficSplitKind, AuthorizationPolicyKind] as const;
