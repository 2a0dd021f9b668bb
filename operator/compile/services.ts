// Services and endpoints as every namespace's ProxyConfig lists them, and the indexes of the
// snapshot the compiler builds once per compile.
import { INJECT_LABEL } from '../../api/constants.ts';
import { type Endpoint, PROXY, type Service } from '../../api/proxyconfig.ts';
import { matchesSelector } from '../../kube/selector.ts';
import type { ClusterSnapshot, EndpointSliceObj, NamespaceObj, PodObj, ServiceObj } from '../types.ts';
import { byKey, cmp, keyOf, sortKeys } from './util.ts';

/** Services never put in ProxyConfig: the apiserver's own (proxies pass it through untouched). */
export const SKIPPED_SERVICES = new Set(['default/kubernetes']);

export const spiffeId = (trustDomain: string, namespace: string, serviceAccount: string) =>
  `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;

export const isMeshedPod = (pod: PodObj) =>
  [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].some(
    (c) => c.name === PROXY.containerName,
  );

/** Namespaces whose pods get sidecars and a ProxyConfig. */
export function meshedNamespaces(
  snap: Pick<ClusterSnapshot, 'mesh' | 'namespaces' | 'excludedNamespaces'>,
): string[] {
  const sel = snap.mesh?.spec.injection?.namespaceSelector ?? { matchLabels: { [INJECT_LABEL]: 'enabled' } };
  const excluded = new Set(['kube-system', ...(snap.excludedNamespaces ?? [])]);
  return snap.namespaces
    .filter((n: NamespaceObj) => !excluded.has(n.metadata.name) && matchesSelector(sel, n.metadata.labels))
    .map((n) => n.metadata.name)
    .sort(cmp);
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints

/** Pods by namespace, then name: looked up with the strings an endpoint already holds. */
export type PodIndex = Map<string, Map<string, PodObj>>;

export function indexSlices(slices: readonly EndpointSliceObj[]): Map<string, EndpointSliceObj[]> {
  const slicesByService = new Map<string, EndpointSliceObj[]>();
  for (const s of slices) {
    const svc = s.metadata.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const k = `${s.metadata.namespace}/${svc}`;
    const list = slicesByService.get(k);
    if (list) list.push(s);
    else slicesByService.set(k, [s]);
  }
  return slicesByService;
}

export function indexPods(pods: readonly PodObj[]): PodIndex {
  const byNs: PodIndex = new Map();
  for (const p of pods) {
    const ns = p.metadata.namespace ?? '';
    let m = byNs.get(ns);
    if (!m) {
      m = new Map();
      byNs.set(ns, m);
    }
    m.set(p.metadata.name, p);
  }
  return byNs;
}

export function indexServices(services: readonly ServiceObj[]): Map<string, ServiceObj> {
  const m = new Map<string, ServiceObj>();
  for (const s of services) m.set(keyOf(s.metadata), s);
  return m;
}

/** Indexes the snapshot once: slices by service, pods by namespace and name, services by key. */
export function indexSnapshot(snap: ClusterSnapshot) {
  return {
    slicesByService: indexSlices(snap.endpointSlices),
    pods: indexPods(snap.pods),
    services: indexServices(snap.services),
    meshed: new Set(meshedNamespaces(snap)),
  };
}
export type SnapshotIndex = ReturnType<typeof indexSnapshot>;

const podOf = (idx: SnapshotIndex, namespace: string, name: string) => idx.pods.get(namespace)?.get(name);

/** Whether two lists hold the same objects in the same order (no allocation). */
export function sameItems<T>(a: readonly T[] | undefined, b: readonly T[]): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sortedPorts(slice: EndpointSliceObj): Record<string, number> {
  const ports: [string, number][] = [];
  for (const p of slice.ports ?? []) if (p.port) ports.push([p.name ?? '', p.port]);
  ports.sort((a, b) => cmp(a[0], b[0]));
  return Object.fromEntries(ports);
}

function endpointsOf(
  slices: EndpointSliceObj[],
  idx: SnapshotIndex,
  trustDomain: string,
  namespace: string,
): Endpoint[] {
  const byAddress = new Map<string, Endpoint>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    const ports = sortedPorts(slice);
    for (const ep of slice.endpoints ?? []) {
      const ready = ep.conditions?.ready ?? true;
      const serving = ep.conditions?.serving ?? ready;
      const terminating = ep.conditions?.terminating ?? false;
      let identity: string | undefined;
      let meshed = false;
      let pod: string | undefined;
      if (ep.targetRef?.kind === 'Pod' && ep.targetRef.name) {
        pod = ep.targetRef.name;
        const p = podOf(idx, ep.targetRef.namespace ?? namespace, pod);
        // A pod the cache does not hold: deleted (with --grace-period=0 --force it leaves at
        // once, while the slice still lists it and its sidecar may still run) or not seen yet.
        // Whether it is meshed, and as whom, is unknown: left out rather than sent plaintext
        // (a STRICT sidecar refuses that). Its Pod event brings it back (serviceSignature).
        if (!p) continue;
        meshed = isMeshedPod(p);
        if (meshed || idx.meshed.has(namespace))
          identity = spiffeId(trustDomain, namespace, p.spec?.serviceAccountName || 'default');
      }
      for (const address of ep.addresses) {
        const prev = byAddress.get(address);
        if (prev) {
          // The same endpoint in two slices (different port sets): merge the ports.
          prev.ports = sortKeys({ ...prev.ports, ...ports });
          continue;
        }
        // Keys in sorted order, so plain JSON.stringify is canonical.
        const e = { address } as Endpoint;
        if (identity) e.identity = identity;
        e.meshed = meshed;
        if (pod) e.pod = pod;
        e.ports = ports;
        e.ready = ready;
        e.serving = serving;
        e.terminating = terminating;
        if (ep.zone) e.zone = ep.zone;
        byAddress.set(address, e);
      }
    }
  }
  return [...byAddress.values()].sort(byKey((e) => e.address));
}

/** One Service as every namespace sees it (without the short in-namespace hostname). */
export function compileService(
  svc: ServiceObj,
  idx: SnapshotIndex,
  trustDomain: string,
  clusterDomain: string,
): Service {
  const { name, namespace = '' } = svc.metadata;
  const spec = svc.spec ?? {};
  const clusterIPs = (spec.clusterIPs ?? (spec.clusterIP ? [spec.clusterIP] : [])).filter(
    (ip) => ip && ip !== 'None',
  );
  const ports = [...(spec.ports ?? [])]
    .map((p) => {
      const sp = {} as Service['ports'][number];
      if (p.appProtocol) sp.appProtocol = p.appProtocol;
      sp.name = p.name ?? '';
      sp.port = p.port;
      sp.protocol = (p.protocol ?? 'TCP') as 'TCP' | 'UDP' | 'SCTP';
      return sp;
    })
    .sort((a, b) => a.port - b.port || cmp(a.name, b.name));
  return {
    clusterIPs,
    endpoints: endpointsOf(
      idx.slicesByService.get(`${namespace}/${name}`) ?? [],
      idx,
      trustDomain,
      namespace,
    ),
    hostnames: [
      `${name}.${namespace}.svc.${clusterDomain}`,
      `${name}.${namespace}.svc`,
      `${name}.${namespace}`,
    ],
    id: `${namespace}/${name}`,
    name,
    namespace,
    ports,
  };
}

/**
 * What a compiled Service depends on, when every input carries a resourceVersion: equal
 * signatures mean an equal Service, so the Compiler reuses it (and its JSON) across compiles.
 */
export function serviceSignature(
  svc: ServiceObj,
  idx: SnapshotIndex,
  trustDomain: string,
): string | undefined {
  const ns = svc.metadata.namespace ?? '';
  if (!svc.metadata.resourceVersion) return undefined;
  let sig = `${trustDomain}|${idx.meshed.has(ns)}|${svc.metadata.resourceVersion}`;
  for (const slice of idx.slicesByService.get(`${ns}/${svc.metadata.name}`) ?? []) {
    if (!slice.metadata.resourceVersion) return undefined;
    sig += `|${slice.metadata.name}@${slice.metadata.resourceVersion}`;
    for (const ep of slice.endpoints ?? []) {
      if (ep.targetRef?.kind !== 'Pod' || !ep.targetRef.name) continue;
      const p = podOf(idx, ep.targetRef.namespace ?? ns, ep.targetRef.name);
      if (p && !p.metadata.resourceVersion) return undefined;
      sig += `,${p ? p.metadata.resourceVersion : '-'}`;
    }
  }
  return sig;
}

/** The Services a namespace's workloads can call: all of them, but ExternalName and the apiserver's. */
export function callableServices(snap: Pick<ClusterSnapshot, 'services'>): ServiceObj[] {
  // Keys computed once, not on every comparison.
  const keyed: { key: string; svc: ServiceObj }[] = [];
  for (const svc of snap.services) {
    if (svc.spec?.type === 'ExternalName') continue;
    const key = keyOf(svc.metadata);
    if (!SKIPPED_SERVICES.has(key)) keyed.push({ key, svc });
  }
  keyed.sort((a, b) => cmp(a.key, b.key));
  return keyed.map((k) => k.svc);
}
