// What the compiler reads: the cluster snapshot, and (from objects.ts) the slices of
// Kubernetes objects the informers keep.
import type { AuthorizationPolicy, Mesh, TrafficSplit } from '../api/index.ts';
import type { Route } from '../api/proxyconfig.ts';
import type { Binding } from './compile/gateway.ts';
import type { GRPCRouteObj, HTTPRouteObj, ReferenceGrantObj } from './compile/gatewaytypes.ts';
import type { EndpointSliceObj, NamespaceObj, PodObj, ServiceObj } from './objects.ts';

// The object slices live in objects.ts, a leaf that the Gateway API compile modules import
// without coming back here (types.ts imports their types: no cycle).
export type { EndpointSliceObj, Meta, NamespaceObj, PodObj, ServiceObj } from './objects.ts';

/** Everything the compiler reads: a consistent view of the cluster. */
export interface ClusterSnapshot {
  /** The Mesh named "default", if any (defaults apply otherwise). */
  mesh?: Mesh;
  clusterDomain: string;
  /** PEM roots (the CA seam: empty until the identity component provides them). */
  trustBundle: string[];
  namespaces: NamespaceObj[];
  services: ServiceObj[];
  endpointSlices: EndpointSliceObj[];
  pods: PodObj[];
  trafficSplits: TrafficSplit[];
  authorizationPolicies: AuthorizationPolicy[];
  /** Gateway API routes and grants (absent or empty when the CRDs are not installed). */
  httpRoutes?: HTTPRouteObj[];
  grpcRoutes?: GRPCRouteObj[];
  referenceGrants?: ReferenceGrantObj[];
  /** Namespaces never meshed (kube-system, the operator's own). */
  excludedNamespaces?: string[];
  /**
   * Routes and policies last programmed for resources whose current spec cannot be
   * programmed (bad reference, invalid): keeps "an invalid CR never changes what is
   * programmed". Keyed "<namespace>/<name>".
   */
  lastGood?: {
    routes: Map<string, Route>;
    policies: Map<string, import('../api/proxyconfig.ts').AuthzPolicy>;
    /** Per Gateway API route ("<Kind>/<namespace>/<name>"). */
    gatewayRoutes?: Map<string, Binding[]>;
  };
}
