// The injector: a pure function of (pod, namespace, mesh spec, options) that returns the JSON
// Patch adding Weft's sidecar, or the human-readable reasons it does not. The admission
// server turns the result into an AdmissionResponse, an Event and a counter; weftctl and the
// golden tests call it directly.
import type {
  V1Container,
  V1EnvVar,
  V1HTTPGetAction,
  V1Pod,
  V1Probe,
  V1ResourceRequirements,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import {
  CONFIG_DISTRIBUTION,
  type LabelSelector,
  type MeshSpec,
  PROXY,
  PROXY_ENV,
  PROXY_NODE_FLAGS,
} from '../api/index.ts';
import {
  ANNOTATIONS,
  APP_HEALTH_PREFIX,
  APP_STOP_DELAY_SECONDS,
  COMMANDS,
  DEFAULT_PROXY_IMAGE,
  INJECT_LABEL,
  INJECTOR_VERSION,
  identitySecretName,
  MESHED_LABEL,
  PROTECTED_NAMESPACES,
  PROXY_INBOUND_EXCLUDED,
  PROXY_READY_PATH,
  RESERVED_PORTS,
  VOLUMES,
} from './constants.ts';
import { escapePointer, type JsonPatchOp } from './jsonpatch.ts';

export interface NamespaceInfo {
  name: string;
  labels?: Record<string, string>;
}

export interface InjectOptions {
  /** The namespace Weft itself runs in: never injected. */
  meshNamespace: string;
}

export type InjectAction =
  /** The patch adds the sidecar. */
  | 'inject'
  /** Injection was asked for (namespace label or pod annotation) but does not happen. */
  | 'skip'
  /** Nobody asked, or the namespace is protected: the pod is not touched at all. */
  | 'ignore'
  /** The pod asks for something impossible (a malformed annotation): admission is denied. */
  | 'deny';

export interface InjectResult {
  action: InjectAction;
  /** JSON Patch against the pod as received; empty when nothing changes. */
  patch: JsonPatchOp[];
  /** Why the pod is skipped, ignored or denied; for 'inject', notes (probes left unchanged). */
  reasons: string[];
}

type ProbeKind = 'livenessProbe' | 'readinessProbe' | 'startupProbe';
const PROBE_KINDS: ProbeKind[] = ['livenessProbe', 'readinessProbe', 'startupProbe'];

/** Where an app probe pointed before the rewrite (recorded in ANNOTATIONS.appProbes). */
export interface OriginalProbe {
  port: number;
  path: string;
}

const DEFAULT_SELECTOR: LabelSelector = { matchLabels: { [INJECT_LABEL]: 'enabled' } };

/** Kubernetes label-selector semantics (matchLabels AND every matchExpression). */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string> = {}): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(labels[e.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[e.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

function describeSelector(s: LabelSelector): string {
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? [])
    parts.push(`${e.key} ${e.operator} ${(e.values ?? []).join(',')}`);
  return parts.join(', ') || '(everything)';
}

/** Parses a comma-separated port list; throws a message naming the annotation. */
function parsePorts(annotation: string, value: string): number[] {
  const out: number[] = [];
  for (const raw of value.split(',')) {
    const s = raw.trim();
    if (!s) continue;
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 65535)
      throw new Error(`annotation ${annotation}: "${s}" is not a port (1-65535); use a comma-separated list`);
    out.push(n);
  }
  return out;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
function isCidr(s: string): boolean {
  const [ip, bits, extra] = s.split('/');
  if (extra !== undefined || ip === undefined) return false;
  if (IPV4.test(ip)) return bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= 32);
  if (ip.includes(':') && /^[0-9a-fA-F:.]+$/.test(ip))
    return bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= 128);
  return false;
}

function parseCidrs(annotation: string, value: string): string[] {
  const out: string[] = [];
  for (const raw of value.split(',')) {
    const s = raw.trim();
    if (!s) continue;
    if (!isCidr(s))
      throw new Error(
        `annotation ${annotation}: "${s}" is not an IP address or CIDR block such as 10.0.0.0/8`,
      );
    out.push(s);
  }
  return out;
}

function isInjected(pod: V1Pod): boolean {
  const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
  return (
    names.includes(PROXY.containerName) ||
    names.includes(PROXY.initContainerName) ||
    pod.metadata?.annotations?.[ANNOTATIONS.injected] !== undefined
  );
}

function resolvePort(container: V1Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  if (typeof port !== 'string') return undefined;
  if (/^\d+$/.test(port)) return Number(port);
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

/** The kubelet probes the proxy's health port, which forwards to the app's original port and path. */
function rewriteProbe(
  container: V1Container,
  kind: ProbeKind,
  probe: V1Probe,
): { httpGet: V1HTTPGetAction; original: OriginalProbe } | { note: string } | undefined {
  const get = probe.httpGet;
  if (!get) return undefined;
  if (get.port === PROXY.healthPort && get.path?.startsWith(`${APP_HEALTH_PREFIX}/`)) return undefined;
  const what = `container ${container.name} ${kind}`;
  if (get.scheme === 'HTTPS')
    return { note: `${what} uses HTTPS: left unchanged (the proxy forwards plain HTTP probes only)` };
  if (get.host) return { note: `${what} probes host ${get.host}: left unchanged` };
  const port = resolvePort(container, get.port);
  if (port === undefined)
    return {
      note: `${what} names port ${String(get.port)}, which the container does not declare: left unchanged`,
    };
  const path = get.path ? (get.path.startsWith('/') ? get.path : `/${get.path}`) : '/';
  const httpGet: V1HTTPGetAction = {
    path: `${APP_HEALTH_PREFIX}/${port}${path}`,
    port: PROXY.healthPort,
    scheme: 'HTTP',
  };
  if (get.httpHeaders) httpGet.httpHeaders = get.httpHeaders;
  return { httpGet, original: { port, path } };
}

function proxyResources(mesh: MeshSpec | undefined): V1ResourceRequirements {
  const r = mesh?.proxy?.resources;
  if (r && (r.requests || r.limits)) {
    const out: V1ResourceRequirements = {};
    if (r.requests) out.requests = { ...r.requests } as Record<string, string>;
    if (r.limits) out.limits = { ...r.limits } as Record<string, string>;
    return out;
  }
  return { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '256Mi' } };
}

const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({
  name,
  valueFrom: { fieldRef: { fieldPath } },
});

/** The native sidecar: an init container with restartPolicy Always, started before the app. */
export function proxyContainer(mesh: MeshSpec | undefined): V1Container {
  const readyProbe = { httpGet: { path: PROXY_READY_PATH, port: PROXY.healthPort, scheme: 'HTTP' } };
  const mounts: V1VolumeMount[] = [
    { name: VOLUMES.config, mountPath: PROXY.configDir, readOnly: true },
    { name: VOLUMES.identity, mountPath: PROXY.identityDir, readOnly: true },
    { name: VOLUMES.podInfo, mountPath: PROXY.podInfoDir, readOnly: true },
    { name: VOLUMES.token, mountPath: PROXY.tokenDir, readOnly: true },
  ];
  return {
    name: PROXY.containerName,
    image: mesh?.proxy?.image ?? DEFAULT_PROXY_IMAGE,
    command: [...COMMANDS.proxy],
    restartPolicy: 'Always',
    ports: [
      { name: 'weft-inbound', containerPort: PROXY.inboundPort, protocol: 'TCP' },
      { name: 'weft-health', containerPort: PROXY.healthPort, protocol: 'TCP' },
    ],
    env: [
      fieldEnv('WEFT_POD_NAME', 'metadata.name'),
      fieldEnv('WEFT_NAMESPACE', 'metadata.namespace'),
      fieldEnv('WEFT_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      fieldEnv('WEFT_POD_IP', 'status.podIP'),
      { name: 'WEFT_LOG_LEVEL', value: mesh?.proxy?.logLevel ?? 'info' },
      { name: 'WEFT_CONFIG_DIR', value: PROXY.configDir },
      { name: 'WEFT_IDENTITY_DIR', value: PROXY.identityDir },
      { name: 'WEFT_POD_INFO_DIR', value: PROXY.podInfoDir },
      { name: 'WEFT_TOKEN_DIR', value: PROXY.tokenDir },
      // The sidecar's V8 heap and malloc settings (api/constants.ts), whatever launches `weft proxy`.
      { name: 'NODE_OPTIONS', value: PROXY_NODE_FLAGS.join(' ') },
      ...Object.entries(PROXY_ENV).map(([name, value]) => ({ name, value })),
    ],
    resources: proxyResources(mesh),
    securityContext: {
      runAsUser: PROXY.uid,
      runAsGroup: PROXY.gid,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    // The app's containers start only once the proxy is ready (native sidecar ordering).
    startupProbe: { ...readyProbe, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 120 },
    readinessProbe: { ...readyProbe, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 },
    volumeMounts: mounts,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

/** The init container that installs the iptables redirect (proxy/iptables.sh). */
export function initContainer(
  mesh: MeshSpec | undefined,
  exclude: { inboundPorts: number[]; outboundPorts: number[]; outboundCidrs: string[] },
): V1Container {
  const env: V1EnvVar[] = [
    { name: 'WEFT_PROXY_UID', value: String(PROXY.uid) },
    { name: 'WEFT_PROXY_GID', value: String(PROXY.gid) },
    { name: 'WEFT_OUTBOUND_PORT', value: String(PROXY.outboundPort) },
    { name: 'WEFT_INBOUND_PORT', value: String(PROXY.inboundPort) },
    {
      name: 'WEFT_EXCLUDE_INBOUND_PORTS',
      value: [...new Set([...PROXY_INBOUND_EXCLUDED, ...exclude.inboundPorts])].join(','),
    },
  ];
  if (exclude.outboundPorts.length > 0)
    env.push({ name: 'WEFT_EXCLUDE_OUTBOUND_PORTS', value: [...new Set(exclude.outboundPorts)].join(',') });
  if (exclude.outboundCidrs.length > 0)
    env.push({ name: 'WEFT_EXCLUDE_OUTBOUND_CIDRS', value: [...new Set(exclude.outboundCidrs)].join(',') });
  return {
    name: PROXY.initContainerName,
    image: mesh?.proxy?.image ?? DEFAULT_PROXY_IMAGE,
    command: [...COMMANDS.init],
    env,
    resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '64Mi' } },
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

/** The projected ConfigMaps, the identity Secret and the downward-API pod info. */
export function proxyVolumes(serviceAccount: string): V1Volume[] {
  const sources = Array.from({ length: CONFIG_DISTRIBUTION.maxShards }, (_, i) => ({
    configMap: {
      name: i === 0 ? CONFIG_DISTRIBUTION.configMapName : `${CONFIG_DISTRIBUTION.configMapName}-${i}`,
      optional: true,
    },
  }));
  return [
    { name: VOLUMES.config, projected: { sources } },
    { name: VOLUMES.identity, secret: { secretName: identitySecretName(serviceAccount), optional: true } },
    {
      name: VOLUMES.podInfo,
      downwardAPI: {
        items: [
          { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
          { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
        ],
      },
    },
    // The config fast path: the pod's own ServiceAccount token (short-lived, rotated by the
    // kubelet) for the proxy only, whatever the pod's automountServiceAccountToken says; RBAC
    // lets it read nothing but the namespace's ProxyConfig ConfigMaps (ClusterRole weft-proxy).
    {
      name: VOLUMES.token,
      projected: {
        sources: [
          { serviceAccountToken: { path: 'token', expirationSeconds: 3600 } },
          { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        ],
      },
    },
  ];
}

/** Patch ops that set annotations/labels, creating the map when the pod has none. */
function setMapOps(
  pod: V1Pod,
  field: 'annotations' | 'labels',
  values: Record<string, string>,
): JsonPatchOp[] {
  const current = pod.metadata?.[field];
  if (!pod.metadata) return [{ op: 'add', path: '/metadata', value: { [field]: values } }];
  if (!current) return [{ op: 'add', path: `/metadata/${field}`, value: values }];
  return Object.entries(values)
    .filter(([k, v]) => current[k] !== v)
    .map(([k, v]) => ({ op: 'add', path: `/metadata/${field}/${escapePointer(k)}`, value: v }));
}

function skip(pod: V1Pod, reasons: string[]): InjectResult {
  return {
    action: 'skip',
    patch: setMapOps(pod, 'annotations', { [ANNOTATIONS.skipped]: reasons.join('; ') }),
    reasons,
  };
}

/**
 * Decides whether the pod gets the sidecar and returns the patch. `namespace` is the
 * namespace object the pod is created in (its labels drive the decision); `mesh` is the spec
 * of the Mesh named "default", or undefined for the defaults.
 */
export function injectPod(
  pod: V1Pod,
  namespace: NamespaceInfo,
  mesh: MeshSpec | undefined,
  options: InjectOptions,
): InjectResult {
  const ns = namespace.name;
  const podAnnotation = pod.metadata?.annotations?.[ANNOTATIONS.inject];
  const selector = mesh?.injection?.namespaceSelector ?? DEFAULT_SELECTOR;
  const namespaceSelected = selectorMatches(selector, namespace.labels);
  const requested = podAnnotation === 'enabled' || (namespaceSelected && podAnnotation !== 'disabled');

  if ((PROTECTED_NAMESPACES as readonly string[]).includes(ns) || ns === options.meshNamespace) {
    const why = ns === options.meshNamespace ? "is Weft's own namespace" : 'is a system namespace';
    return { action: 'ignore', patch: [], reasons: [`namespace ${ns} ${why}: never injected`] };
  }
  if (podAnnotation === 'disabled' && namespaceSelected)
    return skip(pod, [`the pod opts out with annotation ${ANNOTATIONS.inject}=disabled`]);
  if (!requested) {
    const reasons = [
      `namespace ${ns} does not match the injection selector (${describeSelector(selector)}) and the pod has no annotation ${ANNOTATIONS.inject}=enabled`,
    ];
    if (podAnnotation !== undefined && podAnnotation !== 'disabled')
      reasons.push(`annotation ${ANNOTATIONS.inject}="${podAnnotation}" is neither "enabled" nor "disabled"`);
    return { action: 'ignore', patch: [], reasons };
  }
  if (isInjected(pod))
    return { action: 'ignore', patch: [], reasons: ['the pod already has the Weft proxy'] };

  const spec = pod.spec;
  if (!spec) return { action: 'ignore', patch: [], reasons: ['the pod has no spec'] };
  if (spec.hostNetwork)
    return skip(pod, ["the pod uses hostNetwork: redirecting its traffic would capture the node's traffic"]);

  const reasons: string[] = [];
  for (const c of spec.containers ?? []) {
    for (const p of c.ports ?? []) {
      if ((RESERVED_PORTS as readonly number[]).includes(p.containerPort))
        reasons.push(`container ${c.name} uses port ${p.containerPort}, which the Weft proxy needs`);
    }
    if (c.securityContext?.runAsUser === PROXY.uid)
      reasons.push(
        `container ${c.name} runs as UID ${PROXY.uid}, the proxy's UID: its traffic would bypass the proxy`,
      );
  }
  const taken = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const v of Object.values(VOLUMES))
    if (taken.has(v)) reasons.push(`the pod already has a volume named ${v}`);
  if (reasons.length > 0) return skip(pod, reasons);

  const annotations = pod.metadata?.annotations ?? {};
  let exclude: { inboundPorts: number[]; outboundPorts: number[]; outboundCidrs: string[] };
  try {
    exclude = {
      inboundPorts: parsePorts(
        ANNOTATIONS.excludeInboundPorts,
        annotations[ANNOTATIONS.excludeInboundPorts] ?? '',
      ),
      outboundPorts: parsePorts(
        ANNOTATIONS.excludeOutboundPorts,
        annotations[ANNOTATIONS.excludeOutboundPorts] ?? '',
      ),
      outboundCidrs: parseCidrs(
        ANNOTATIONS.excludeOutboundCidrs,
        annotations[ANNOTATIONS.excludeOutboundCidrs] ?? '',
      ),
    };
    // The proxy's own listeners stay captured inbound, so no other host reaches them (15001 would
    // otherwise proxy anyone's request with this pod's identity); iptables.sh keeps them anyway.
    const own = exclude.inboundPorts.find((p) => p === PROXY.outboundPort || p === PROXY.inboundPort);
    if (own !== undefined)
      throw new Error(
        `annotation ${ANNOTATIONS.excludeInboundPorts}: ${own} is a port of the Weft proxy's own listeners, which are never excluded (only the pod's own redirect may reach them); remove it`,
      );
  } catch (err) {
    return { action: 'deny', patch: [], reasons: [(err as Error).message] };
  }

  const patch: JsonPatchOp[] = [];
  const serviceAccount = spec.serviceAccountName || 'default';

  // Probes: rewritten to the proxy's health port, the original port and path kept in the path.
  const originals: Record<string, Partial<Record<ProbeKind, OriginalProbe>>> = {};
  (spec.containers ?? []).forEach((c, i) => {
    for (const kind of PROBE_KINDS) {
      const probe = c[kind];
      if (!probe) continue;
      const r = rewriteProbe(c, kind, probe);
      if (!r) continue;
      if ('note' in r) {
        reasons.push(r.note);
        continue;
      }
      patch.push({ op: 'replace', path: `/spec/containers/${i}/${kind}/httpGet`, value: r.httpGet });
      originals[c.name] = { ...originals[c.name], [kind]: r.original };
    }
  });

  // Endpoint churn without errors: the app stops only once callers had time to drop the pod.
  const stopDelay = Math.min(APP_STOP_DELAY_SECONDS, (spec.terminationGracePeriodSeconds ?? 30) - 1);
  (spec.containers ?? []).forEach((c, i) => {
    if (stopDelay < 1 || c.lifecycle?.preStop) return;
    const preStop = { sleep: { seconds: stopDelay } };
    if (c.lifecycle)
      patch.push({ op: 'add', path: `/spec/containers/${i}/lifecycle/preStop`, value: preStop });
    else patch.push({ op: 'add', path: `/spec/containers/${i}/lifecycle`, value: { preStop } });
  });

  const newAnnotations: Record<string, string> = { [ANNOTATIONS.injected]: INJECTOR_VERSION };
  if (Object.keys(originals).length > 0) newAnnotations[ANNOTATIONS.appProbes] = JSON.stringify(originals);
  const labels = { [MESHED_LABEL]: 'true' };
  if (!pod.metadata)
    patch.unshift({ op: 'add', path: '/metadata', value: { annotations: newAnnotations, labels } });
  else patch.unshift(...setMapOps(pod, 'annotations', newAnnotations), ...setMapOps(pod, 'labels', labels));

  // Init containers: the redirect first, then the proxy, then the pod's own (kept, in order).
  const init = initContainer(mesh, exclude);
  const proxy = proxyContainer(mesh);
  if (!spec.initContainers || spec.initContainers.length === 0) {
    patch.push({ op: 'add', path: '/spec/initContainers', value: [init, proxy] });
  } else {
    patch.push({ op: 'add', path: '/spec/initContainers/0', value: proxy });
    patch.push({ op: 'add', path: '/spec/initContainers/0', value: init });
  }

  const volumes = proxyVolumes(serviceAccount);
  if (!spec.volumes || spec.volumes.length === 0)
    patch.push({ op: 'add', path: '/spec/volumes', value: volumes });
  else for (const v of volumes) patch.push({ op: 'add', path: '/spec/volumes/-', value: v });

  return { action: 'inject', patch, reasons };
}
