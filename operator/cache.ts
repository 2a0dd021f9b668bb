// The operator's cache: one informer per kind it reads, slimmed before caching
// (operator/transforms.ts). Reconcilers read it; handlers on it only enqueue keys
// (operator/watches.ts). The identity reconciler adds its own informers through the same
// factory, so every informer logs and counts restarts the same way.
import type { AuthorizationPolicy, Mesh, TrafficSplit } from '../api/index.ts';
import { CONFIG_DISTRIBUTION } from '../api/proxyconfig.ts';
import { type KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import type { Logger } from '../kube/log.ts';
import type { ConfigMapObj } from './distribution.ts';
import { slimEndpointSlice, slimNamespace, slimPod, slimService } from './transforms.ts';
import type { EndpointSliceObj, NamespaceObj, PodObj, ServiceObj } from './types.ts';

export type Obj<T> = T & KubeObject;

/** `k=v,k2=v2` */
export const labelSelector = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

export interface InformerFactoryOptions {
  client: KubeClient;
  log: Logger;
  watchTimeoutSeconds?: number;
  onRestart?: (kind: string, reason: string) => void;
}

export type InformerFactory = <T extends KubeObject>(
  type: ResourceType,
  extra?: { transform?: (o: KubeObject) => T; labelSelector?: string; fieldSelector?: string },
) => Informer<T>;

/** Makes informers and remembers them: `all` is what the manager starts and /readyz reports. */
export function informerFactory(o: InformerFactoryOptions): {
  make: InformerFactory;
  all: Informer<KubeObject>[];
} {
  const all: Informer<KubeObject>[] = [];
  const log = o.log.child({ component: 'informer' });
  const make = <T extends KubeObject>(
    type: ResourceType,
    extra: { transform?: (o: KubeObject) => T; labelSelector?: string; fieldSelector?: string } = {},
  ): Informer<T> => {
    const inf = new Informer<T>(o.client, type, {
      transform: extra.transform as ((o: T) => T) | undefined,
      labelSelector: extra.labelSelector,
      fieldSelector: extra.fieldSelector,
      log,
      watchTimeoutSeconds: o.watchTimeoutSeconds,
      onRestart: (reason) => o.onRestart?.(type.kind, reason),
    });
    all.push(inf as unknown as Informer<KubeObject>);
    return inf;
  };
  return { make, all };
}

export type OperatorCache = ReturnType<typeof operatorCache>;

export function operatorCache(make: InformerFactory) {
  return {
    namespaces: make<Obj<NamespaceObj>>(RESOURCES.namespaces, { transform: slimNamespace }),
    services: make<Obj<ServiceObj>>(RESOURCES.services, { transform: slimService }),
    endpointSlices: make<Obj<EndpointSliceObj>>(RESOURCES.endpointSlices, { transform: slimEndpointSlice }),
    pods: make<Obj<PodObj>>(RESOURCES.pods, { transform: slimPod }),
    meshes: make<Obj<Mesh>>(RESOURCES.meshes),
    trafficSplits: make<Obj<TrafficSplit>>(RESOURCES.trafficSplits),
    authorizationPolicies: make<Obj<AuthorizationPolicy>>(RESOURCES.authorizationPolicies),
    configMaps: make<Obj<ConfigMapObj>>(RESOURCES.configMaps, {
      labelSelector: labelSelector(CONFIG_DISTRIBUTION.labels),
    }),
  };
}
