// The local node agent: makes a control plane without kubelets a working one-node cluster.
// It registers a Node and renews its Lease, binds unscheduled pods to itself (it is the
// scheduler too), runs the pods bound to it as local processes in network namespaces, and
// writes their status back so the controller-manager builds EndpointSlices.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { arch, cpus, hostname, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  CoordinationV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
  type V1EndpointSlice,
  type V1Pod,
  type V1Secret,
  type V1Service,
} from '@kubernetes/client-node';
import pino, { type Logger } from 'pino';
import { LocalNodeError } from './errors.ts';
import { commandPaths, findTools } from './exec.ts';
import { removeMountPoints } from './mounts.ts';
import { HostNetwork, parseCidr, shortHash } from './network.ts';
import { PodWorker } from './pod.ts';
import { ServiceVips } from './services.ts';
import type { VolumeSources } from './volumes.ts';

export interface LocalNodeOptions {
  kubeConfig: KubeConfig;
  /** Node name; default "weft-local". */
  name?: string;
  /** Pod range, private to this machine; default 10.244.0.0/24. Must not overlap a route the host has. */
  podCIDR?: string;
  /** The cluster's Service range (routed from pods to the bridge); default 10.96.0.0/16. */
  serviceCIDR?: string;
  /** Program Service VIPs (iptables DNAT) for pods without a sidecar; default true. */
  serviceVIPs?: boolean;
  /** Where pod volumes and container logs live; default a fresh temp directory, removed on stop. */
  stateDir?: string;
  /** Period of the volume refresh (the kubelet's sync); default 2000 ms. ConfigMap changes also trigger a refresh at once. */
  volumeSyncMs?: number;
  /** Lease renewal period; default 10 s (lease duration 40 s, as the kubelet). */
  leaseRenewMs?: number;
  /** Delete the Node object on stop (otherwise it is marked NotReady); default false. */
  deleteNodeOnStop?: boolean;
  logger?: Logger;
  /** One line per start-up step; default: stderr. */
  progress?: (line: string) => void;
}

export interface LocalNodePodInfo {
  namespace: string;
  name: string;
  uid: string;
  ip: string | undefined;
  netns: string | undefined;
  /** Running containers' process ids by container name. */
  pids: Record<string, number>;
  /** Container log files by container name. */
  logs: Record<string, string>;
}

export interface LocalNode {
  name: string;
  podCIDR: string;
  bridge: string;
  /** The bridge address: the pods' gateway and the node's InternalIP. */
  hostIP: string;
  stateDir: string;
  /** The pods this node runs now. */
  pods(): LocalNodePodInfo[];
  /** Stops every pod (SIGTERM, then SIGKILL), removes every namespace, veth, the bridge and the iptables rules. */
  stop(): Promise<void>;
}

const LEASE_DURATION_S = 40;
const FIELD_MANAGER = 'weft-local-node';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

function errCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

export async function startLocalNode(o: LocalNodeOptions): Promise<LocalNode> {
  const name = o.name ?? 'weft-local';
  const progress = o.progress ?? ((l: string) => process.stderr.write(`${l}\n`));
  const step = (l: string) => progress(`[local-node] ${l}`);
  const log = (o.logger ?? pino({ level: process.env.WEFT_LOG_LEVEL ?? 'info' }, pino.destination(2))).child({
    component: 'local-node',
    node: name,
  });
  if (process.getuid?.() !== 0) {
    throw new LocalNodeError(
      'WEFT_LN_NOT_ROOT',
      'the local node needs root (network namespaces, veths, iptables, mounts)',
    );
  }
  const podCidr = parseCidr(o.podCIDR ?? '10.244.0.0/24');
  const serviceCidr = parseCidr(o.serviceCIDR ?? '10.96.0.0/16');
  const id = shortHash(`${name}/${podCidr.text}`, 6);
  const tools = findTools();
  const paths = commandPaths();
  const stateDir = o.stateDir ?? mkdtempSync(join(tmpdir(), 'weft-node-'));
  const ownStateDir = o.stateDir === undefined;
  mkdirSync(stateDir, { recursive: true });
  if (!paths.weftEntry)
    step(
      'note: cmd/weft.ts does not exist yet; `weft proxy` containers run proxy/main.ts, other `weft` commands fail',
    );

  const kc = o.kubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  const coord = kc.makeApiClient(CoordinationV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);

  const network = new HostNetwork({ id, podCidr, serviceCidr, log: (m) => log.info(m) });
  const vips =
    o.serviceVIPs === false
      ? undefined
      : new ServiceVips({ id, bridge: network.bridge, podCidr, serviceCidr });
  const hostIP = network.gateway;
  const workers = new Map<string, PodWorker>();
  const createdMountPoints = new Set<string>();
  const informers: Informer<KubernetesObject>[] = [];
  const timers: NodeJS.Timeout[] = [];
  let stopping = false;

  // --- host network
  step(
    `preparing the network: bridge ${network.bridge} ${hostIP}/${podCidr.prefix}, pod range ${podCidr.text}`,
  );
  await network.removeStale();
  await vips?.tearDown();
  await network.checkCidrFree();
  const cleanupNetwork = async () => {
    await vips?.tearDown();
    await network.tearDown();
  };
  try {
    await network.setUp();
    await vips?.setUp();
  } catch (err) {
    await cleanupNetwork();
    throw err;
  }

  // --- Node and Lease
  const nodeStatus = (ready: boolean, reason: string, message: string) => {
    const t = new Date().toISOString();
    const cond = (type: string, status: string, r: string, m: string) => ({
      type,
      status,
      reason: r,
      message: m,
      lastHeartbeatTime: t,
      lastTransitionTime: t,
    });
    const capacity = {
      cpu: String(cpus().length),
      memory: `${Math.floor(totalmem() / 1024)}Ki`,
      pods: '110',
      'ephemeral-storage': '100Gi',
    };
    return {
      status: {
        capacity,
        allocatable: capacity,
        conditions: [
          cond('Ready', ready ? 'True' : 'False', reason, message),
          cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'local node'),
          cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'local node'),
          cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'local node'),
        ],
        addresses: [
          { type: 'InternalIP', address: hostIP },
          { type: 'Hostname', address: name },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
        nodeInfo: {
          machineID: '',
          systemUUID: '',
          bootID: '',
          kernelVersion: release(),
          osImage: `weft local node on ${hostname()}`,
          containerRuntimeVersion: 'weft-local://0.1.0',
          kubeletVersion: 'v1.34.0-weft-local',
          kubeProxyVersion: '',
          operatingSystem: 'linux',
          architecture: arch() === 'x64' ? 'amd64' : arch(),
        },
      },
    };
  };
  const readyLastTransition: { t?: string } = {};
  const patchNodeStatus = async (ready: boolean, reason: string, message: string) => {
    const body = nodeStatus(ready, reason, message);
    if (ready && readyLastTransition.t) body.status.conditions[0]!.lastTransitionTime = readyLastTransition.t;
    else if (ready) readyLastTransition.t = body.status.conditions[0]!.lastTransitionTime;
    await core.patchNodeStatus({ name, body }, mergePatch);
  };

  step(`registering Node ${name}`);
  const nodeSpec = { podCIDR: podCidr.text, podCIDRs: [podCidr.text] };
  try {
    const existing = await core.readNode({ name });
    if (existing.spec?.podCIDR && existing.spec.podCIDR !== podCidr.text) {
      // podCIDR is immutable: replace a node left by an earlier run with another range.
      await core.deleteNode({ name });
      await core.createNode({ body: { metadata: { name, labels: nodeLabels(name) }, spec: nodeSpec } });
    } else {
      await core.patchNode(
        { name, body: { metadata: { labels: nodeLabels(name) }, spec: { ...nodeSpec, taints: null } } },
        mergePatch,
      );
    }
  } catch (err) {
    if (errCode(err) !== 404) throw err;
    await core.createNode({ body: { metadata: { name, labels: nodeLabels(name) }, spec: nodeSpec } });
  }
  await patchNodeStatus(true, 'KubeletReady', 'weft local node is posting ready status');
  const renewLease = async () => {
    const body = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace: 'kube-node-lease' },
      spec: {
        holderIdentity: name,
        leaseDurationSeconds: LEASE_DURATION_S,
        renewTime: new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z'),
      },
    };
    await coord.patchNamespacedLease(
      { name, namespace: 'kube-node-lease', body, fieldManager: FIELD_MANAGER, force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  };
  await renewLease();
  timers.push(
    setInterval(() => {
      renewLease().catch((err) => log.warn({ err: (err as Error).message }, 'lease renewal failed'));
    }, o.leaseRenewMs ?? 10_000),
    setInterval(() => {
      patchNodeStatus(true, 'KubeletReady', 'weft local node is posting ready status').catch((err) =>
        log.warn({ err: (err as Error).message }, 'node status update failed'),
      );
    }, 60_000),
  );
  step(
    `Node ${name} is Ready (lease in kube-node-lease renewed every ${(o.leaseRenewMs ?? 10_000) / 1000} s)`,
  );

  // --- caches
  const inform = <T extends KubernetesObject>(path: string, list: () => Promise<{ items: T[] }>) => {
    const inf = makeInformer<T>(kc, path, list as never);
    informers.push(inf as unknown as Informer<KubernetesObject>);
    inf.on('error', (err) => {
      if (stopping) return;
      log.warn({ path, err: String((err as Error)?.message ?? err) }, 'watch failed; restarting in 1 s');
      setTimeout(() => {
        if (!stopping) void inf.start().catch(() => {});
      }, 1000);
    });
    return inf;
  };
  const configMaps = inform<V1ConfigMap>('/api/v1/configmaps', () => core.listConfigMapForAllNamespaces());
  const secrets = inform<V1Secret>('/api/v1/secrets', () => core.listSecretForAllNamespaces());
  const services = inform<V1Service>('/api/v1/services', () => core.listServiceForAllNamespaces());
  const slices = inform<V1EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices', () =>
    discovery.listEndpointSliceForAllNamespaces(),
  );
  const pods = inform<V1Pod>('/api/v1/pods', () => core.listPodForAllNamespaces());

  const get = <T extends KubernetesObject>(c: ObjectCache<T>, ns: string, n: string) => c.get(n, ns);
  const tokens = new Map<string, { token: string; refreshAt: number }>();
  const sources: VolumeSources = {
    configMap: (ns, n) => get(configMaps, ns, n),
    secret: (ns, n) => get(secrets, ns, n),
    async token(pod, audience, expirationSeconds) {
      const key = `${pod.metadata!.uid}/${audience ?? ''}/${expirationSeconds}`;
      const cached = tokens.get(key);
      if (cached && Date.now() < cached.refreshAt) return cached.token;
      const ns = pod.metadata!.namespace!;
      const res = await core.createNamespacedServiceAccountToken({
        name: pod.spec?.serviceAccountName || 'default',
        namespace: ns,
        body: {
          spec: {
            audiences: audience ? [audience] : [],
            expirationSeconds,
            boundObjectRef: {
              apiVersion: 'v1',
              kind: 'Pod',
              name: pod.metadata!.name!,
              uid: pod.metadata!.uid!,
            },
          },
        },
      });
      const token = res.status?.token ?? '';
      tokens.set(key, { token, refreshAt: Date.now() + expirationSeconds * 800 });
      return token;
    },
  };
  const servicesFor = (ns: string) =>
    services
      .list()
      .filter(
        (s) =>
          s.metadata?.namespace === ns ||
          (s.metadata?.namespace === 'default' && s.metadata.name === 'kubernetes'),
      );

  // --- pods
  const binding = new Set<string>();
  const bind = async (pod: V1Pod) => {
    const key = pod.metadata!.uid!;
    if (binding.has(key)) return;
    binding.add(key);
    try {
      await core.createNamespacedPodBinding({
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        body: {
          metadata: {
            name: pod.metadata!.name!,
            namespace: pod.metadata!.namespace!,
            uid: pod.metadata!.uid!,
          },
          target: { apiVersion: 'v1', kind: 'Node', name },
        },
      });
      log.info({ pod: `${pod.metadata!.namespace}/${pod.metadata!.name}` }, 'pod bound to this node');
    } catch (err) {
      if (errCode(err) !== 409 && errCode(err) !== 404)
        log.warn({ err: (err as Error).message }, 'binding failed');
      binding.delete(key);
    }
  };

  const finalize = async (pod: V1Pod) => {
    try {
      await core.deleteNamespacedPod({
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata!.uid! } },
      });
    } catch (err) {
      if (errCode(err) !== 404 && errCode(err) !== 409)
        log.warn({ err: (err as Error).message }, 'pod finalization failed');
    }
  };

  const writeStatus = async (pod: V1Pod, status: Record<string, unknown>) => {
    await core.patchNamespacedPodStatus(
      {
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        body: { metadata: { uid: pod.metadata!.uid }, status },
      },
      mergePatch,
    );
  };

  const onPod = (pod: V1Pod) => {
    if (stopping) return;
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const phase = pod.status?.phase;
    const terminal = phase === 'Succeeded' || phase === 'Failed';
    if (!pod.spec?.nodeName) {
      const sched = pod.spec?.schedulerName;
      if (!pod.metadata?.deletionTimestamp && !terminal && (!sched || sched === 'default-scheduler'))
        void bind(pod);
      return;
    }
    if (pod.spec.nodeName !== name) return;
    const podLog = log.child({ namespace: pod.metadata!.namespace, pod: pod.metadata!.name });
    let w = workers.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      const grace = pod.metadata.deletionGracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
      if (!w) {
        void finalize(pod);
        return;
      }
      w.update(pod);
      if (!w.terminating) {
        void w.terminate(grace).then(async () => {
          await finalize(pod);
          workers.delete(uid);
        });
      }
      return;
    }
    if (w) {
      w.update(pod);
      return;
    }
    if (terminal) return;
    w = new PodWorker(pod, {
      nodeName: name,
      createdMountPoints,
      hostIP,
      tools,
      paths,
      network,
      sources,
      services: servicesFor,
      podDir: join(stateDir, 'pods', `${pod.metadata!.namespace}_${pod.metadata!.name}_${uid}`),
      log: podLog,
      writeStatus,
    });
    workers.set(uid, w);
    podLog.info('starting pod');
    w.start();
  };
  const onPodDeleted = (pod: V1Pod) => {
    const w = pod.metadata?.uid ? workers.get(pod.metadata.uid) : undefined;
    if (!w) return;
    void w.terminate(0).then(() => workers.delete(w.uid));
  };
  pods.on('add', onPod);
  pods.on('update', onPod);
  pods.on('delete', onPodDeleted);

  // ConfigMap/Secret changes re-project at once; a periodic sync catches the rest (downward API, tokens).
  const resyncAll = () => {
    for (const w of workers.values()) w.syncVolumes();
  };
  let resyncTimer: NodeJS.Timeout | undefined;
  const resyncSoon = () => {
    if (resyncTimer || stopping) return;
    resyncTimer = setTimeout(() => {
      resyncTimer = undefined;
      resyncAll();
    }, 100);
  };
  for (const ev of ['add', 'update', 'delete'] as const) {
    configMaps.on(ev, resyncSoon);
    secrets.on(ev, resyncSoon);
  }
  timers.push(setInterval(resyncAll, o.volumeSyncMs ?? 2000));

  let vipTimer: NodeJS.Timeout | undefined;
  let vipSync: Promise<unknown> = Promise.resolve();
  const syncVips = () => {
    if (!vips || vipTimer || stopping) return;
    vipTimer = setTimeout(() => {
      vipTimer = undefined;
      vipSync = vipSync
        .then(() => vips.sync([...services.list()], [...slices.list()]))
        .catch((err) => log.warn({ err: (err as Error).message }, 'service VIP sync failed'));
    }, 100);
  };
  for (const ev of ['add', 'update', 'delete'] as const) {
    services.on(ev, syncVips);
    slices.on(ev, syncVips);
  }

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    step(`stopping Node ${name}: ${workers.size} pod(s)`);
    for (const t of timers) clearInterval(t);
    if (resyncTimer) clearTimeout(resyncTimer);
    if (vipTimer) clearTimeout(vipTimer);
    for (const inf of informers) await inf.stop();
    await Promise.all(
      [...workers.values()].map(async (w) => {
        const grace = Math.min(w.pod.spec?.terminationGracePeriodSeconds ?? 30, 5);
        await w.terminate(grace);
      }),
    );
    await vipSync.catch(() => {});
    const podsLeft = [...workers.values()];
    workers.clear();
    await cleanupNetwork();
    const left = removeMountPoints(createdMountPoints);
    if (left.length) log.warn({ left }, 'mount points still in use elsewhere were left in place');
    if (ownStateDir) rmSync(stateDir, { recursive: true, force: true });
    // The API side last, best effort (the control plane may be gone already).
    const api = async () => {
      if (o.deleteNodeOnStop) await core.deleteNode({ name });
      else await patchNodeStatus(false, 'LocalNodeStopped', 'the weft local node agent stopped');
      for (const w of podsLeft) {
        if (w.pod.metadata?.deletionTimestamp) continue;
        await core.patchNamespacedPodStatus(
          {
            name: w.pod.metadata!.name!,
            namespace: w.pod.metadata!.namespace!,
            body: {
              status: { conditions: [{ type: 'Ready', status: 'False', reason: 'LocalNodeStopped' }] },
            },
          },
          setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
        );
      }
    };
    await Promise.race([api().catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
    process.removeListener('exit', onExit);
    step(`Node ${name} stopped; its namespaces, veths, bridge and iptables rules are removed`);
  };
  // Last resort when the process exits without stop(): kill the containers' process groups.
  const onExit = () => {
    for (const w of workers.values()) {
      for (const pid of Object.values(w.pids())) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {}
      }
    }
  };
  process.on('exit', onExit);

  try {
    step('watching Pods, ConfigMaps, Secrets, Services and EndpointSlices');
    for (const inf of [configMaps, secrets, services, slices]) await inf.start();
    await pods.start();
  } catch (err) {
    await stop();
    throw err;
  }
  step(`ready: pods bound to ${name} run here (state in ${stateDir})`);

  return {
    name,
    podCIDR: podCidr.text,
    bridge: network.bridge,
    hostIP,
    stateDir,
    pods: () =>
      [...workers.values()].map((w) => ({
        namespace: w.pod.metadata!.namespace!,
        name: w.pod.metadata!.name!,
        uid: w.uid,
        ip: w.ip,
        netns: w.netns,
        pids: w.pids(),
        logs: Object.fromEntries(
          [...(w.pod.spec?.initContainers ?? []), ...(w.pod.spec?.containers ?? [])].map((c) => [
            c.name,
            w.logFile(c.name),
          ]),
        ),
      })),
    stop,
  };
}

function nodeLabels(name: string): Record<string, string> {
  return {
    'kubernetes.io/hostname': name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': arch() === 'x64' ? 'amd64' : arch(),
    'weft.dev/local-node': 'true',
  };
}
