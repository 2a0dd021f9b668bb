// The parts of the Gateway API (gateway.networking.k8s.io, standard channel) that Weft reads:
// HTTPRoute and GRPCRoute attached to Services (GAMMA), and ReferenceGrant. The CRDs are the
// upstream ones (docs/gateway-api.md); these types hold only the fields the compiler uses.
import type { Condition } from '../../api/common.ts';
import type { ResourceType } from '../../kube/client.ts';
import type { Meta } from '../objects.ts';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** The controllerName Weft writes in route status.parents[] (and only touches those entries). */
export const CONTROLLER_NAME = 'weft.dev/mesh';

export const GATEWAY_RESOURCES = {
  httpRoutes: {
    group: GATEWAY_GROUP,
    version: 'v1',
    plural: 'httproutes',
    kind: 'HTTPRoute',
    namespaced: true,
  },
  grpcRoutes: {
    group: GATEWAY_GROUP,
    version: 'v1',
    plural: 'grpcroutes',
    kind: 'GRPCRoute',
    namespaced: true,
  },
  referenceGrants: {
    group: GATEWAY_GROUP,
    version: 'v1beta1',
    plural: 'referencegrants',
    kind: 'ReferenceGrant',
    namespaced: true,
  },
} as const satisfies Record<string, ResourceType>;

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';

export interface ParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface BackendRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  port?: number;
  weight?: number;
  filters?: GatewayFilter[];
}

export interface HeaderModifierSpec {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}

export interface PathModifierSpec {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface GatewayFilter {
  type: string;
  requestHeaderModifier?: HeaderModifierSpec;
  responseHeaderModifier?: HeaderModifierSpec;
  requestRedirect?: {
    scheme?: string;
    hostname?: string;
    path?: PathModifierSpec;
    port?: number;
    statusCode?: number;
  };
  urlRewrite?: { hostname?: string; path?: PathModifierSpec };
  requestMirror?: {
    backendRef: BackendRef;
    percent?: number;
    fraction?: { numerator: number; denominator?: number };
  };
}

export interface HeaderMatchSpec {
  type?: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface HTTPRouteMatchSpec {
  path?: { type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; value?: string };
  headers?: HeaderMatchSpec[];
  queryParams?: HeaderMatchSpec[];
  method?: string;
}

export interface GRPCRouteMatchSpec {
  method?: { type?: 'Exact' | 'RegularExpression'; service?: string; method?: string };
  headers?: HeaderMatchSpec[];
}

export interface RouteRule<M> {
  name?: string;
  matches?: M[];
  filters?: GatewayFilter[];
  backendRefs?: BackendRef[];
  timeouts?: { request?: string; backendRequest?: string };
}

export interface RouteParentStatus {
  parentRef: ParentRef;
  controllerName: string;
  conditions?: Condition[];
}

interface RouteObj<M> {
  apiVersion?: string;
  kind?: string;
  metadata: Meta & { creationTimestamp?: string };
  spec: { parentRefs?: ParentRef[]; hostnames?: string[]; rules?: RouteRule<M>[] };
  status?: { parents?: RouteParentStatus[] };
}

export type HTTPRouteObj = RouteObj<HTTPRouteMatchSpec>;
export type GRPCRouteObj = RouteObj<GRPCRouteMatchSpec>;
export type GatewayRouteObj = HTTPRouteObj | GRPCRouteObj;

export interface ReferenceGrantObj {
  metadata: Meta;
  spec: {
    from: { group: string; kind: string; namespace: string }[];
    to: { group: string; kind: string; name?: string }[];
  };
}
