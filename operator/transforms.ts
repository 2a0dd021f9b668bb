// What the informers keep of each object: only what the compiler and the status controllers
// read. At 10,000 pods this is most of the operator's memory, so it matters.
import type { KubeObject } from '../kube/client.ts';
import type { EndpointSliceObj, NamespaceObj, PodObj, ServiceObj } from './types.ts';

type K<T> = T & KubeObject;

const meta = (o: KubeObject, labels = false) => {
  const m: KubeObject['metadata'] = { name: o.metadata.name };
  if (o.metadata.namespace) m.namespace = o.metadata.namespace;
  if (o.metadata.uid) m.uid = o.metadata.uid;
  if (o.metadata.resourceVersion) m.resourceVersion = o.metadata.resourceVersion;
  if (labels && o.metadata.labels) m.labels = o.metadata.labels;
  return m;
};

export function slimPod(o: KubeObject): K<PodObj> {
  const spec = (o.spec ?? {}) as NonNullable<PodObj['spec']>;
  return {
    metadata: meta(o),
    spec: {
      serviceAccountName: spec.serviceAccountName,
      containers: (spec.containers ?? []).map((c) => ({ name: c.name })),
      initContainers: (spec.initContainers ?? []).map((c) => ({ name: c.name })),
    },
  };
}

export function slimService(o: KubeObject): K<ServiceObj> {
  const spec = (o.spec ?? {}) as NonNullable<ServiceObj['spec']>;
  return {
    metadata: meta(o),
    spec: {
      type: spec.type,
      clusterIP: spec.clusterIP,
      clusterIPs: spec.clusterIPs,
      ports: (spec.ports ?? []).map((p) => ({
        name: p.name,
        port: p.port,
        protocol: p.protocol,
        appProtocol: p.appProtocol,
      })),
    },
  };
}

export function slimEndpointSlice(o: KubeObject): K<EndpointSliceObj> {
  const s = o as unknown as EndpointSliceObj;
  const svc = o.metadata.labels?.['kubernetes.io/service-name'];
  const m = meta(o);
  if (svc) m.labels = { 'kubernetes.io/service-name': svc };
  return {
    metadata: m,
    addressType: s.addressType,
    endpoints: (s.endpoints ?? []).map((e) => ({
      addresses: e.addresses,
      conditions: e.conditions,
      targetRef: e.targetRef && {
        kind: e.targetRef.kind,
        name: e.targetRef.name,
        namespace: e.targetRef.namespace,
      },
      zone: e.zone,
    })),
    ports: s.ports,
  };
}

export function slimNamespace(o: KubeObject): K<NamespaceObj> {
  return { metadata: meta(o, true) };
}

/** Whether a pod change can change what the compiler produces. */
export function podMatters(a: PodObj, b: PodObj): boolean {
  return JSON.stringify(a.spec) !== JSON.stringify(b.spec);
}
