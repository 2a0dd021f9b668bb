// The slices of Kubernetes objects the compiler reads. The informers keep only these fields
// (see operator/transforms.ts), which keeps the operator's memory small at scale.
import type { AuthorizationPolicy, Mesh, TrafficSplit } from '../api/index.ts';
import type { Route } from '../api/proxyconfig.ts';
import type { KubeObject } from '../kube/client.ts';
import type { Binding } from './compile/gateway.ts';
import type { GRPCRouteObj, HTTPRouteObj, ReferenceGrantObj } from './compile/gatewaytypes.ts';

/** The metadata fields the compiler reads (kube/client.ts KubeObject has the rest). */
export type Meta = Pick<
  KubeObject['metadata'],
  'name' | 'namespace' | 'uid' | 'resourceVersion' | 'generation' | 'labels'
>;

export interface NamespaceObj {
  metadata: Meta;
}

export interface ServiceObj {
  metadata: Meta;
  spec?: {
    type?: string;
    clusterIP?: string;
    clusterIPs?: string[];
    ports?: { name?: string; port: number; protocol?: string; appProtocol?: string }[];
  };
}

export interface EndpointSliceObj {
  metadata: Meta;
  addressType?: string;
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
    targetRef?: { kind?: string; name?: string; namespace?: string };
    zone?: string;
    nodeName?: string;
  }[];
  ports?: { name?: string | null; port?: number | null; protocol?: string }[] | null;
}

export interface PodObj {
  metadata: Meta;
  spec?: {
    serviceAccountName?: string;
    containers?: { name: string }[];
    initContainers?: { name: string }[];
  };
  /** Kept for meshed pods only: where the operator asks the proxy which config it runs. */
  status?: { podIP?: string };
}

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
