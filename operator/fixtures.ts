// Synthetic cluster state for compiler tests and the benchmark: `services` Services with
// `endpointsPerService` ready pod endpoints each, one slice per Service, in one namespace.
import type { TrafficSplit } from '../api/index.ts';
import type { ClusterSnapshot, EndpointSliceObj, PodObj, ServiceObj } from './types.ts';

export function ipOf(n: number): string {
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

export function scaleSnapshot(
  services: number,
  endpointsPerService: number,
  namespace = 'shop',
): ClusterSnapshot {
  const svcs: ServiceObj[] = [];
  const slices: EndpointSliceObj[] = [];
  const pods: PodObj[] = [];
  let n = 1;
  for (let s = 0; s < services; s++) {
    const name = `svc-${String(s).padStart(4, '0')}`;
    svcs.push({
      metadata: { name, namespace, resourceVersion: '1' },
      spec: {
        type: 'ClusterIP',
        clusterIP: ipOf(0x600000 + s),
        clusterIPs: [ipOf(0x600000 + s)],
        ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }],
      },
    });
    const endpoints: NonNullable<EndpointSliceObj['endpoints']> = [];
    for (let e = 0; e < endpointsPerService; e++) {
      const pod = `${name}-${e}`;
      pods.push({
        metadata: { name: pod, namespace },
        spec: { serviceAccountName: name, containers: [{ name: 'app' }, { name: 'weft-proxy' }] },
      });
      endpoints.push({
        addresses: [ipOf(n++)],
        conditions: { ready: true, serving: true, terminating: false },
        targetRef: { kind: 'Pod', name: pod, namespace },
        zone: `zone-${e % 3}`,
      });
    }
    slices.push({
      metadata: { name: `${name}-abcde`, namespace, labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4',
      endpoints,
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
  return {
    clusterDomain: 'cluster.local',
    trustBundle: [],
    namespaces: [{ metadata: { name: namespace, labels: { 'weft.dev/inject': 'enabled' } } }],
    services: svcs,
    endpointSlices: slices,
    pods,
    trafficSplits: [],
    authorizationPolicies: [],
  };
}

export function split(
  namespace: string,
  name: string,
  spec: Partial<TrafficSplit['spec']> & Pick<TrafficSplit['spec'], 'service' | 'backends'>,
  generation = 1,
): TrafficSplit {
  return {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'TrafficSplit',
    metadata: { name, namespace, generation },
    spec,
  };
}
