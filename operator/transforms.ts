// What the informers keep of each object: only what the compiler and the status controllers
// read. At 10,000 pods this is most of the operator's data, so it matters:
//  - only the fields read are copied (the raw object is dropped by the informer);
//  - low-cardinality strings (namespaces, zones, ServiceAccounts, kinds, protocols, port
//    names) are interned, so 10,000 pods share one "bench" rather than holding 10,000 copies
//    (JSON.parse makes a fresh string for every value);
//  - a Pod keeps its ServiceAccount and whether it runs the proxy container (the only thing
//    `isMeshedPod` asks of its containers), as one shared container list;
//  - endpoint conditions are shared objects (there are few distinct ones).
import { PROXY } from '../api/proxyconfig.ts';
import type { KubeObject } from '../kube/client.ts';
import type { EndpointSliceObj, NamespaceObj, PodObj, ServiceObj } from './types.ts';

type K<T> = T & KubeObject;

/** Interned strings; bounded so a cluster of unique values cannot grow it without limit. */
const POOL_MAX = 20_000;
const pool = new Map<string, string>();
/** The one shared copy of a low-cardinality string. */
export function intern<S extends string | undefined>(s: S): S {
  if (s === undefined) return s;
  const hit = pool.get(s);
  if (hit !== undefined) return hit as S;
  if (pool.size < POOL_MAX) pool.set(s, s);
  return s;
}

const meta = (o: KubeObject, opts: { labels?: boolean; uid?: boolean } = {}) => {
  const m: KubeObject['metadata'] = { name: o.metadata.name };
  if (o.metadata.namespace) m.namespace = intern(o.metadata.namespace);
  if (opts.uid !== false && o.metadata.uid) m.uid = o.metadata.uid;
  if (o.metadata.resourceVersion) m.resourceVersion = o.metadata.resourceVersion;
  if (opts.labels && o.metadata.labels) m.labels = o.metadata.labels;
  return m;
};

/** Shared, frozen container lists: a pod with the proxy container and one without. */
const PROXY_CONTAINERS: readonly { name: string }[] = Object.freeze([
  Object.freeze({ name: PROXY.containerName }),
]);
const NO_CONTAINERS: readonly { name: string }[] = Object.freeze([]);

export function slimPod(o: KubeObject): K<PodObj> {
  const spec = (o.spec ?? {}) as NonNullable<PodObj['spec']>;
  // A pod that has finished (Succeeded or Failed) runs no proxy any more: it is no meshed pod
  // to count or to ask for its version (it was listed as lagging, "other side closed").
  const status = o.status as
    | {
        phase?: string;
        containerStatuses?: { state?: { terminated?: { exitCode?: number } } }[];
      }
    | undefined;
  const phase = status?.phase;
  // So is a pod whose app containers have all ended for good, before the phase says so: the
  // kubelet is stopping its sidecar then (Never; OnFailure after a success; Always restarts them).
  const policy = (spec as { restartPolicy?: string }).restartPolicy ?? 'Always';
  const apps = status?.containerStatuses ?? [];
  const appsEnded =
    policy !== 'Always' &&
    apps.length > 0 &&
    apps.every((c) => c.state?.terminated && (policy === 'Never' || c.state.terminated.exitCode === 0));
  const finished = phase === 'Succeeded' || phase === 'Failed' || appsEnded;
  const meshed =
    !finished &&
    ((spec.containers ?? []).some((c) => c.name === PROXY.containerName) ||
      (spec.initContainers ?? []).some((c) => c.name === PROXY.containerName));
  const s: NonNullable<PodObj['spec']> = {
    containers: (meshed ? PROXY_CONTAINERS : NO_CONTAINERS) as { name: string }[],
  };
  if (spec.serviceAccountName) s.serviceAccountName = intern(spec.serviceAccountName);
  // Pods' uids are never read: not kept. Meshed pods keep their labels (AuthorizationPolicy
  // selectors: which proxies must apply a policy) and IP (their proxy's version is asked there).
  const pod: K<PodObj> = { metadata: meta(o, { uid: false, labels: meshed }), spec: s };
  const podIP = (o.status as { podIP?: string } | undefined)?.podIP;
  if (meshed && podIP) pod.status = { podIP };
  if (meshed && o.metadata.deletionTimestamp) pod.status = { ...pod.status, terminating: true };
  return pod;
}

export function slimService(o: KubeObject): K<ServiceObj> {
  const spec = (o.spec ?? {}) as NonNullable<ServiceObj['spec']>;
  return {
    metadata: meta(o),
    spec: {
      type: intern(spec.type),
      clusterIP: spec.clusterIP,
      clusterIPs: spec.clusterIPs,
      ports: (spec.ports ?? []).map((p) => ({
        name: intern(p.name),
        port: p.port,
        protocol: intern(p.protocol),
        appProtocol: intern(p.appProtocol),
      })),
    },
  };
}

type Conditions = NonNullable<NonNullable<EndpointSliceObj['endpoints']>[number]['conditions']>;
const conditionsPool = new Map<string, Conditions>();
const tri = (b: boolean | null | undefined) =>
  b === true ? 't' : b === false ? 'f' : b === null ? 'n' : 'u';
/** One shared (frozen) object per distinct ready/serving/terminating combination. */
function sharedConditions(c: Conditions | undefined): Conditions | undefined {
  if (!c) return undefined;
  const key = tri(c.ready) + tri(c.serving) + tri(c.terminating);
  let shared = conditionsPool.get(key);
  if (!shared) {
    const x: Conditions = {};
    if (c.ready !== undefined) x.ready = c.ready;
    if (c.serving !== undefined) x.serving = c.serving;
    if (c.terminating !== undefined) x.terminating = c.terminating;
    shared = Object.freeze(x);
    conditionsPool.set(key, shared);
  }
  return shared;
}

export function slimEndpointSlice(o: KubeObject): K<EndpointSliceObj> {
  const s = o as unknown as EndpointSliceObj;
  const svc = o.metadata.labels?.['kubernetes.io/service-name'];
  const m = meta(o, { uid: false });
  if (svc) m.labels = { 'kubernetes.io/service-name': svc };
  const out: K<EndpointSliceObj> = {
    metadata: m,
    addressType: intern(s.addressType),
    endpoints: (s.endpoints ?? []).map((e) => {
      const ep: NonNullable<EndpointSliceObj['endpoints']>[number] = { addresses: e.addresses };
      const conditions = sharedConditions(e.conditions);
      if (conditions) ep.conditions = conditions;
      if (e.targetRef) {
        const ref: NonNullable<typeof ep.targetRef> = {};
        if (e.targetRef.kind) ref.kind = intern(e.targetRef.kind);
        if (e.targetRef.name) ref.name = e.targetRef.name;
        if (e.targetRef.namespace) ref.namespace = intern(e.targetRef.namespace);
        ep.targetRef = ref;
      }
      if (e.zone) ep.zone = intern(e.zone);
      return ep;
    }),
  };
  if (s.ports)
    out.ports = s.ports.map((p) => {
      const x: NonNullable<EndpointSliceObj['ports']>[number] = {};
      if (p.name !== undefined) x.name = p.name === null ? null : intern(p.name);
      if (p.port !== undefined) x.port = p.port;
      if (p.protocol !== undefined) x.protocol = intern(p.protocol);
      return x;
    });
  return out;
}

export function slimNamespace(o: KubeObject): K<NamespaceObj> {
  return { metadata: meta(o, { labels: true }) };
}

/** Whether a pod change can change what the compiler produces. */
export function podMatters(a: PodObj, b: PodObj): boolean {
  return (
    (a.spec?.serviceAccountName ?? '') !== (b.spec?.serviceAccountName ?? '') || isProxied(a) !== isProxied(b)
  );
}

const isProxied = (p: PodObj) =>
  [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? [])].some(
    (c) => c.name === PROXY.containerName,
  );
