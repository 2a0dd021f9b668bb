// Weft's Gateway API gateway (docs/ingress.md). GatewayClass (key: name): `Accepted` when its
// controllerName is weft.dev/gateway. Gateway (key: ns/name) of such a class: server-side
// applies, owned by the Gateway (garbage-collected with it), a ServiceAccount (the gateway's
// SPIFFE identity), a ConfigMap with its routing table (compile/ingress.ts) and a Role and
// RoleBinding that let that ServiceAccount read it (the proxy's fast path), a Deployment
// running `weft proxy --gateway` and a Service (NodePort, or LoadBalancer when the Gateway's
// annotation asks), then writes the Gateway's status: Accepted, Programmed (a ready replica),
// listeners with attachedRoutes, addresses (the Service's).
import { GATEWAY_CONFIG_KEY } from '../../api/constants.ts';
import { type Mesh, PROXY } from '../../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../../kube/client.ts';
import { type ConditionInput, mergeConditions, sameConditions } from '../../kube/conditions.ts';
import { isNotFound } from '../../kube/errors.ts';
import type { KeyReconciler } from '../../kube/manager.ts';
import { COMMANDS } from '../../webhook/constants.ts';
import { proxyContainer, proxyVolumes } from '../../webhook/inject.ts';
import type { Obj } from '../cache.ts';
import {
  GATEWAY_RESOURCES,
  type GatewayClassObj,
  type GatewayObj,
  type HTTPRouteObj,
  type ReferenceGrantObj,
} from '../compile/gatewaytypes.ts';
import {
  compileIngress,
  type GatewayProxyConfig,
  gatewayClassConditions,
  type IngressCompiled,
  isWeftClass,
  type TlsSecret,
} from '../compile/ingress.ts';
import type { WriteStats } from '../status.ts';
import type { ServiceObj } from '../types.ts';

/** The Gateway annotation that asks for a LoadBalancer Service (default: NodePort). */
export const SERVICE_TYPE_ANNOTATION = 'weft.dev/gateway-service-type';
export { GATEWAY_CONFIG_KEY };
/** Where the gateway proxy reads it. */
export const GATEWAY_CONFIG_DIR = '/etc/weft/gateway';
/** Where the gateway proxy reads its HTTPS listeners' certificates (the `-tls` Secret). */
export const GATEWAY_CERTS_DIR = '/etc/weft/gateway-tls';
/** The label of every object run for a Gateway, with its name (its pods too). */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/** The name of every object run for a Gateway (Service, Deployment, ServiceAccount, ConfigMap). */
export const workloadName = (gateway: string) => `${gateway}-weft-gateway`;
/**
 * The Secret holding the certificates and keys of a Gateway's HTTPS listeners, copied by the
 * operator from the Secrets the listeners name (also across namespaces, with a ReferenceGrant),
 * once checked; mounted in the gateway's pod only. config/rbac/secrets_admission_policy.yaml
 * lets the operator write Secrets of this name with the gateway labels and no other.
 */
export const certificatesSecretName = (gateway: string) => `${workloadName(gateway)}-tls`;

/**
 * The generation to write the routing table with: the current one's when the content is the
 * same, else the next. The gateway proxy never applies a lower or the same generation (from its
 * volume or its watch, proxy/gatewaytable.ts), so a late volume sync cannot take it back.
 */
export function tableGeneration(config: GatewayProxyConfig, current: string | undefined): number {
  let have: Partial<GatewayProxyConfig> = {};
  try {
    have = JSON.parse(current ?? '{}') as Partial<GatewayProxyConfig>;
  } catch {}
  const { generation, ...content } = have;
  const { generation: _, ...want } = config;
  const gen = Number.isInteger(generation) && generation! > 0 ? generation! : 0;
  return gen > 0 && JSON.stringify(content) === JSON.stringify(want) ? gen : gen + 1;
}

/** The objects that run a Gateway; pure. Undefined with a message when they cannot be named. */
export function gatewayWorkload(
  gw: GatewayObj & { metadata: { uid?: string } },
  compiled: IngressCompiled,
  mesh: Mesh['spec'] | undefined,
  /** The routing table's generation (tableGeneration). */
  generation = 1,
): { objects: { type: ResourceType; obj: KubeObject }[] } | { error: string } {
  const name = workloadName(gw.metadata.name);
  if (name.length > 63)
    return {
      error: `metadata.name: "${gw.metadata.name}" is too long for the Service "${name}" (63 characters at most); use a name of 50 characters or fewer`,
    };
  const namespace = gw.metadata.namespace ?? '';
  const labels = {
    'app.kubernetes.io/managed-by': 'weft',
    'weft.dev/component': 'gateway',
    [GATEWAY_NAME_LABEL]: gw.metadata.name,
  };
  const metadata = {
    name,
    namespace,
    labels,
    ownerReferences: [
      {
        apiVersion: `${GATEWAY_RESOURCES.gateways.group}/${GATEWAY_RESOURCES.gateways.version}`,
        kind: 'Gateway',
        name: gw.metadata.name,
        uid: gw.metadata.uid ?? '',
        controller: true,
      },
    ],
  };
  const certs = certificatesSecretName(gw.metadata.name);
  const proxy = proxyContainer(mesh);
  const { restartPolicy: _sidecarOnly, startupProbe: _, ...container } = proxy;
  const ports = compiled.config.ports;
  const serviceType =
    gw.metadata.annotations?.[SERVICE_TYPE_ANNOTATION] === 'LoadBalancer' ? 'LoadBalancer' : 'NodePort';
  const deployment: KubeObject = {
    metadata,
    spec: {
      replicas: 1,
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: gw.metadata.name } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: name,
          // The gateway is the outbound side without interception: no iptables init container.
          containers: [
            {
              ...container,
              command: [...COMMANDS.proxy, '--gateway'],
              // Probed every second, not every 5 s as a sidecar (whose startupProbe, at 1 s, it
              // has not): the Gateway is Programmed once its pod is ready, and a gateway that
              // stops answering leaves its Service's endpoints within 3 s.
              ...(container.readinessProbe
                ? { readinessProbe: { ...container.readinessProbe, periodSeconds: 1 } }
                : {}),
              env: [
                ...(container.env ?? []),
                { name: 'WEFT_GATEWAY_CONFIG', value: `${GATEWAY_CONFIG_DIR}/${GATEWAY_CONFIG_KEY}` },
                { name: 'WEFT_GATEWAY_CERTS', value: GATEWAY_CERTS_DIR },
                // The fast path: the proxy watches this ConfigMap too (Role and RoleBinding below).
                { name: 'WEFT_GATEWAY_CONFIGMAP', value: name },
              ],
              // The listeners' ports are not declared (the Service's targetPort names the bound
              // port by number): a listener added, removed or moved changes the routing table
              // (applied in place, without restart) and the Service, never the pod template,
              // so it does not roll the gateway's pods.
              ports: [{ name: 'weft-health', containerPort: PROXY.healthPort, protocol: 'TCP' }],
              volumeMounts: [
                ...(container.volumeMounts ?? []),
                { name: 'weft-gateway', mountPath: GATEWAY_CONFIG_DIR, readOnly: true },
                { name: 'weft-gateway-tls', mountPath: GATEWAY_CERTS_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            ...proxyVolumes(name),
            { name: 'weft-gateway', configMap: { name } },
            { name: 'weft-gateway-tls', secret: { secretName: certs } },
          ],
        },
      },
    },
  };
  const service: KubeObject = {
    metadata,
    spec: {
      type: serviceType,
      selector: { [GATEWAY_NAME_LABEL]: gw.metadata.name },
      ports: ports.map((p) => ({ name: `gw-${p.port}`, port: p.port, targetPort: p.bind, protocol: 'TCP' })),
    },
  };
  // The gateway's ServiceAccount may read its own routing table, by name, and nothing else.
  const rbac = 'rbac.authorization.k8s.io';
  const role: KubeObject = {
    metadata,
    rules: [
      { apiGroups: [''], resources: ['configmaps'], resourceNames: [name], verbs: ['get', 'list', 'watch'] },
    ],
  } as KubeObject;
  const roleBinding: KubeObject = {
    metadata,
    roleRef: { apiGroup: rbac, kind: 'Role', name },
    subjects: [{ kind: 'ServiceAccount', name, namespace }],
  } as KubeObject;
  return {
    objects: [
      { type: RESOURCES.serviceAccounts, obj: { metadata } },
      {
        type: RESOURCES.configMaps,
        obj: { metadata, data: { [GATEWAY_CONFIG_KEY]: JSON.stringify({ ...compiled.config, generation }) } },
      },
      { type: RESOURCES.roles, obj: role },
      { type: RESOURCES.roleBindings, obj: roleBinding },
      {
        type: RESOURCES.secrets,
        obj: {
          metadata: { ...metadata, name: certs },
          type: 'Opaque',
          data: Object.fromEntries(
            [...compiled.certificates].map(([file, pem]) => [file, Buffer.from(pem).toString('base64')]),
          ),
        },
      },
      { type: RESOURCES.deployments, obj: deployment },
      ...(ports.length > 0 ? [{ type: RESOURCES.services, obj: service }] : []),
    ],
  };
}

interface Applied {
  service?: {
    spec?: { clusterIP?: string; ports?: { port: number; nodePort?: number }[] };
    status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } };
  };
  deployment?: { status?: { readyReplicas?: number } };
}

/** The Gateway's status; pure. */
export function gatewayStatus(
  gw: GatewayObj,
  compiled: IngressCompiled,
  applied: Applied,
  /** Why the Gateway is refused (`accepted`) or cannot be run (`programmed`), beyond `compiled`. */
  problem: { accepted?: string; programmed?: string } = {},
  now?: () => Date,
): NonNullable<GatewayObj['status']> {
  const error = problem.accepted;
  const gen = gw.metadata.generation;
  const lb = applied.service?.status?.loadBalancer?.ingress ?? [];
  const addresses = [
    ...lb.map((i) =>
      i.ip ? { type: 'IPAddress', value: i.ip } : { type: 'Hostname', value: i.hostname ?? '' },
    ),
    ...(lb.length === 0 && applied.service?.spec?.clusterIP
      ? [{ type: 'IPAddress', value: applied.service.spec.clusterIP }]
      : []),
  ];
  const nodePorts = (applied.service?.spec?.ports ?? [])
    .filter((p) => p.nodePort)
    .map((p) => `${p.port} → node port ${p.nodePort}`);
  const ready = (applied.deployment?.status?.readyReplicas ?? 0) > 0;
  const accepted: ConditionInput = error
    ? { type: 'Accepted', status: 'False', reason: 'Invalid', message: error }
    : compiled.accepted.ok
      ? {
          type: 'Accepted',
          status: 'True',
          reason: compiled.accepted.partly ? 'ListenersNotValid' : 'Accepted',
          message: compiled.accepted.message,
        }
      : {
          type: 'Accepted',
          status: 'False',
          reason: compiled.accepted.reason,
          message: compiled.accepted.message,
        };
  const programmed: ConditionInput =
    accepted.status === 'False'
      ? { type: 'Programmed', status: 'False', reason: 'Invalid', message: 'The Gateway is not accepted' }
      : problem.programmed
        ? { type: 'Programmed', status: 'False', reason: 'Invalid', message: problem.programmed }
        : ready
          ? {
              type: 'Programmed',
              status: 'True',
              reason: 'Programmed',
              message: `The gateway proxy is ready${nodePorts.length ? ` (${nodePorts.join(', ')})` : ''}`,
            }
          : {
              type: 'Programmed',
              status: 'False',
              reason: 'Pending',
              message: `Waiting for a ready replica of Deployment ${workloadName(gw.metadata.name)}`,
            };
  const prevListeners = new Map((gw.status?.listeners ?? []).map((l) => [l.name, l]));
  return {
    conditions: mergeConditions(gw.status?.conditions, [accepted, programmed], gen, now),
    addresses,
    listeners: compiled.listeners.map((l) => ({
      name: l.name,
      supportedKinds: l.supportedKinds,
      attachedRoutes: l.attachedRoutes,
      conditions: mergeConditions(prevListeners.get(l.name)?.conditions, l.conditions, gen, now),
    })),
  };
}

export interface IngressDeps {
  client: KubeClient;
  gateways: { get(key: string): Obj<GatewayObj> | undefined };
  classes: { get(key: string): Obj<GatewayClassObj> | undefined };
  httpRoutes: () => readonly HTTPRouteObj[];
  referenceGrants: () => readonly ReferenceGrantObj[];
  services: () => Map<string, ServiceObj>;
  namespaceLabels: (ns: string) => Record<string, string> | undefined;
  /** Secrets of type kubernetes.io/tls (HTTPS listeners' certificateRefs). */
  secrets: (namespace: string, name: string) => TlsSecret | undefined;
  mesh: () => Mesh | undefined;
  stats: WriteStats;
  /** How often a Gateway whose proxy is not ready yet is looked at again. */
  pendingRequeueMs?: number;
}

/** The compiled Gateway `key` when it is one of Weft's (used for its routes' status too). */
export function compileWeftGateway(d: Omit<IngressDeps, 'client' | 'stats' | 'mesh'>, key: string) {
  const gw = d.gateways.get(key);
  if (!gw || !isWeftClass(d.classes.get(gw.spec.gatewayClassName))) return undefined;
  return {
    gw,
    compiled: compileIngress({
      gateway: gw,
      httpRoutes: d.httpRoutes(),
      referenceGrants: d.referenceGrants(),
      services: d.services(),
      namespaceLabels: d.namespaceLabels,
      secrets: d.secrets,
    }),
  };
}

export function gatewayClassReconciler(d: {
  client: KubeClient;
  classes: { get(key: string): Obj<GatewayClassObj> | undefined };
  stats: WriteStats;
}): KeyReconciler {
  return async (key) => {
    const gc = d.classes.get(key);
    if (!isWeftClass(gc)) return undefined;
    const conditions = mergeConditions(
      gc.status?.conditions,
      gatewayClassConditions(gc),
      gc.metadata.generation,
    );
    if (sameConditions(gc.status?.conditions, conditions)) return undefined;
    await d.client.apply(
      GATEWAY_RESOURCES.gatewayClasses,
      { metadata: { name: gc.metadata.name }, status: { conditions } },
      { subresource: 'status' },
    );
    d.stats.statusWrites++;
    return undefined;
  };
}

/** The routing table the Gateway's ConfigMap holds now (read live: the next generation follows it). */
async function currentTable(client: KubeClient, gw: GatewayObj): Promise<string | undefined> {
  try {
    const cm = await client.get<KubeObject & { data?: Record<string, string> }>(
      RESOURCES.configMaps,
      workloadName(gw.metadata.name),
      gw.metadata.namespace,
    );
    return cm.data?.[GATEWAY_CONFIG_KEY];
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** The first object that exists without this Gateway (uid) as its controller, as a message. */
async function firstForeign(
  client: KubeClient,
  objects: { type: ResourceType; obj: KubeObject }[],
  uid: string,
): Promise<string | undefined> {
  for (const { type, obj } of objects) {
    const { name, namespace } = obj.metadata;
    let current: KubeObject | undefined;
    if (type === RESOURCES.secrets) {
      // The operator may list Secrets but not get them (config/rbac/role.yaml).
      const found = await client.list<KubeObject>(type, {
        namespace,
        fieldSelector: `metadata.name=${name}`,
      });
      current = found.items[0];
      if (!current) continue;
    } else
      try {
        current = await client.get<KubeObject>(type, name, namespace);
      } catch (e) {
        if (isNotFound(e)) continue;
        throw e;
      }
    const owner = current.metadata.ownerReferences?.find((r) => r.controller);
    if (owner?.uid !== uid)
      return `${type.kind} ${namespace}/${name} exists and is not this Gateway's (${owner ? `controlled by ${owner.kind} ${owner.name}` : 'no controller'}): delete or rename it, or rename the Gateway`;
  }
  return undefined;
}

export function gatewayReconciler(d: IngressDeps): KeyReconciler {
  return async (key) => {
    const found = compileWeftGateway(d, key);
    if (!found) return undefined;
    const { gw, compiled } = found;
    const generation = compiled.accepted.ok
      ? tableGeneration(compiled.config, await currentTable(d.client, gw))
      : undefined;
    const workload =
      generation !== undefined ? gatewayWorkload(gw, compiled, d.mesh()?.spec, generation) : undefined;
    const applied: Applied = {};
    // Never take over an object of the same name that is not this Gateway's (someone else's
    // ConfigMap or Deployment): nothing is applied and the Gateway says which object is in the way.
    const foreign =
      workload && 'objects' in workload
        ? await firstForeign(d.client, workload.objects, gw.metadata.uid ?? '')
        : undefined;
    if (workload && 'objects' in workload && !foreign)
      for (const { type, obj } of workload.objects) {
        const out = await d.client.apply<KubeObject & Applied['service'] & Applied['deployment']>(type, obj);
        if (type.kind === 'Service') applied.service = out;
        if (type.kind === 'Deployment') applied.deployment = out;
      }
    const status = gatewayStatus(gw, compiled, applied, {
      accepted: workload && 'error' in workload ? workload.error : undefined,
      programmed: foreign,
    });
    const same =
      sameConditions(gw.status?.conditions, status.conditions) &&
      JSON.stringify(gw.status?.addresses ?? []) === JSON.stringify(status.addresses) &&
      (gw.status?.listeners ?? []).length === status.listeners!.length &&
      status.listeners!.every((l, i) => {
        const p = gw.status?.listeners?.[i];
        return (
          p?.name === l.name &&
          p.attachedRoutes === l.attachedRoutes &&
          sameConditions(p.conditions, l.conditions)
        );
      });
    if (!same) {
      await d.client.apply(
        GATEWAY_RESOURCES.gateways,
        { metadata: { name: gw.metadata.name, namespace: gw.metadata.namespace }, status },
        { subresource: 'status' },
      );
      d.stats.statusWrites++;
    }
    const pending = status.conditions?.some((c) => c.type === 'Programmed' && c.reason === 'Pending');
    return pending ? { requeueAfterMs: d.pendingRequeueMs ?? 5_000 } : undefined;
  };
}
