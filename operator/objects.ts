// The slices of Kubernetes objects the compiler reads (operator/types.ts re-exports them). The
// informers keep only these fields (see operator/transforms.ts), which keeps the operator's
// memory small at scale. A leaf: it imports nothing of the operator's.
import type { KubeObject } from '../kube/client.ts';

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
  /**
   * Kept for meshed pods only: where the operator asks the proxy which config it runs, and
   * whether the pod is being deleted (metadata.deletionTimestamp set).
   */
  status?: { podIP?: string; terminating?: true };
}
