// The operator as a library: startOperator() wires informers (on every replica, so a standby
// is warm), health and metrics servers (every replica), and the controllers (only on the
// leader). `cmd/weft.ts operator` wraps it; integration tests run it in-process.
//
// Controllers (work queues):
//   proxyconfig          key: namespace. Compiles and writes the namespace's ProxyConfig
//                        ConfigMaps when the content version differs; removes them when the
//                        namespace leaves the mesh. Fed by Services, EndpointSlices, Pods,
//                        Namespaces, the three CRs and its own ConfigMaps.
//   trafficsplit         key: ns/name. Status: Accepted, ResolvedRefs, Ready.
//   authorizationpolicy  key: ns/name. Status: Accepted, Ready.
//   mesh                 key: name. Status: Accepted, Ready, meshed namespaces and pods,
//                        the CA condition and caExpiry.
//   identity             key: "identities". Workload certificates and the trust bundle
//                        (operator/identity/controller.ts).
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import type { AuthorizationPolicy, Condition, Mesh, TrafficSplit } from '../api/index.ts';
import { CONFIG_DISTRIBUTION } from '../api/proxyconfig.ts';
import { KubeClient, type KubeObject, RESOURCES, type ResourceType } from '../kube/client.ts';
import type { Clock } from '../kube/clock.ts';
import { type ConditionInput, mergeConditions, sameConditions } from '../kube/conditions.ts';
import { ERROR_CODES, isNotFound, WeftError } from '../kube/errors.ts';
import { Informer, objectKey } from '../kube/informer.ts';
import type { KubeAccess } from '../kube/kubeconfig.ts';
import { LeaderElector } from '../kube/leader.ts';
import { type Logger, silentLogger } from '../kube/log.ts';
import { type ReconcileResult, WorkQueue } from '../kube/queue.ts';
import {
  Compiler,
  DEFAULT_MESH_NAME,
  isMeshedPod,
  meshedNamespaces,
  type Prepared,
  type ResourceResult,
} from './compiler.ts';
import { CONDITION, EVENT_REASON, REASON } from './conditions.ts';
import { ALL_SHARD_NAMES, type ConfigMapObj, decode, encode, shardName, versionOf } from './distribution.ts';
import { IDENTITY_CONDITION, IdentityController } from './identity/controller.ts';
import { type OperatorMetrics, operatorMetrics } from './metrics.ts';
import { podMatters, slimEndpointSlice, slimNamespace, slimPod, slimService } from './transforms.ts';
import type { ClusterSnapshot, EndpointSliceObj, NamespaceObj, PodObj, ServiceObj } from './types.ts';

export interface LeaderElectionConfig {
  leaseName?: string;
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface OperatorOptions {
  /** A client-node KubeConfig, or kube/kubeconfig.ts's lighter SimpleKubeConfig. */
  kubeConfig: KubeAccess;
  /** The operator's own namespace: holds the Lease, is never meshed. */
  namespace: string;
  /** false (default for the library): lead at once. true or settings: elect on a Lease. */
  leaderElection?: boolean | LeaderElectionConfig;
  /** "host:port" for /metrics; undefined: no server. Port 0 picks a free port. */
  metricsAddress?: string;
  /** "host:port" for /healthz and /readyz; undefined: no server. */
  healthAddress?: string;
  log?: Logger;
  clusterDomain?: string;
  /** The CA seam: PEM roots proxies trust. Default: the identity controller's trust bundle. */
  trustBundle?: () => string[];
  /**
   * Workload identity (CA, workload certificates, trust bundle). Default on; false turns it
   * off. `clock` drives issuance times and renewal timers (tests move it).
   */
  identity?: false | { clock?: Clock };
  /** Parallel reconciles per controller. */
  concurrency?: number;
  reconcileTimeoutMs?: number;
  /** Periodic full resync (re-check everything; writes only what differs). 0: never. */
  resyncMs?: number;
  /** Informer watchdog and watch timeout, for tests of restarts. */
  watchTimeoutSeconds?: number;
}

export interface OperatorHandle {
  /** Resolves once every informer has listed (what /readyz reports). */
  synced: Promise<void>;
  isLeader(): boolean;
  /** Resolves when this replica leads and its controllers run. */
  leading(): Promise<void>;
  metrics: OperatorMetrics;
  metricsPort?: number;
  healthPort?: number;
  identity: string;
  /** Queues every key of every controller and resolves when the queues are idle again. */
  resync(): Promise<void>;
  /** Resolves when every controller queue is idle. */
  idle(): Promise<void>;
  stats: { configMapWrites: number; configMapDeletes: number; statusWrites: number; events: number };
  stop(): Promise<void>;
}

type Obj<T> = T & KubeObject;

const CONTROLLERS = ['proxyconfig', 'trafficsplit', 'authorizationpolicy', 'mesh'] as const;
type ControllerName = (typeof CONTROLLERS)[number];

function parseAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  const host = i > 0 ? addr.slice(0, i) : '0.0.0.0';
  const port = Number(i >= 0 ? addr.slice(i + 1) : addr);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new WeftError(ERROR_CODES.CONFIG, `bad listen address "${addr}": want host:port`);
  return { host: host.replace(/^\[|\]$/g, ''), port };
}

async function listen(server: Server, addr: string): Promise<number> {
  const { host, port } = parseAddress(addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as { port: number }).port;
}

export async function startOperator(opts: OperatorOptions): Promise<OperatorHandle> {
  const log = (opts.log ?? silentLogger).child({ component: 'operator' });
  const client = new KubeClient(opts.kubeConfig, 'weft-operator');
  const metrics = operatorMetrics();
  const compiler = new Compiler();
  const clusterDomain = opts.clusterDomain ?? 'cluster.local';
  let identityController: IdentityController | undefined;
  const trustBundle = opts.trustBundle ?? (() => identityController?.trustBundle() ?? []);
  const le = opts.leaderElection === true ? {} : opts.leaderElection || undefined;
  const identity = le?.identity ?? `${hostname()}_${randomBytes(4).toString('hex')}`;
  const stats = { configMapWrites: 0, configMapDeletes: 0, statusWrites: 0, events: 0 };

  // ------------------------------------------------------------------------------ informers
  const informerLog = log.child({ component: 'informer' });
  const mk = <T extends KubeObject>(
    type: ResourceType,
    extra: { transform?: (o: KubeObject) => T; labelSelector?: string } = {},
  ) =>
    new Informer<T>(client, type, {
      transform: extra.transform as ((o: T) => T) | undefined,
      labelSelector: extra.labelSelector,
      log: informerLog,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onRestart: (reason) => metrics.informerRestarts.inc({ kind: type.kind, reason }),
    });
  const inf = {
    namespaces: mk<Obj<NamespaceObj>>(RESOURCES.namespaces, { transform: slimNamespace }),
    services: mk<Obj<ServiceObj>>(RESOURCES.services, { transform: slimService }),
    endpointSlices: mk<Obj<EndpointSliceObj>>(RESOURCES.endpointSlices, { transform: slimEndpointSlice }),
    pods: mk<Obj<PodObj>>(RESOURCES.pods, { transform: slimPod }),
    meshes: mk<Obj<Mesh>>(RESOURCES.meshes),
    trafficSplits: mk<Obj<TrafficSplit>>(RESOURCES.trafficSplits),
    authorizationPolicies: mk<Obj<AuthorizationPolicy>>(RESOURCES.authorizationPolicies),
    configMaps: mk<Obj<ConfigMapObj>>(RESOURCES.configMaps, {
      labelSelector: Object.entries(CONFIG_DISTRIBUTION.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    }),
  };
  if (opts.identity !== false) {
    identityController = new IdentityController({
      client,
      namespace: opts.namespace,
      log,
      clock: opts.identity?.clock,
      mesh: () => inf.meshes.get(DEFAULT_MESH_NAME),
      meshedServiceAccounts: () => {
        const meshed = new Set(
          meshedNamespaces({
            mesh: inf.meshes.get(DEFAULT_MESH_NAME),
            namespaces: inf.namespaces.list(),
            excludedNamespaces: [opts.namespace],
          }),
        );
        const out = new Map<string, { namespace: string; serviceAccount: string }>();
        for (const pod of inf.pods.list()) {
          const namespace = pod.metadata.namespace ?? '';
          if (!meshed.has(namespace) && !isMeshedPod(pod)) continue;
          const serviceAccount = pod.spec?.serviceAccountName || 'default';
          out.set(`${namespace}/${serviceAccount}`, { namespace, serviceAccount });
        }
        return [...out.values()];
      },
      onTrustBundleChange: () => {
        touch();
        enqueueAllConfigs();
      },
      onStatusChange: () => enqueue('mesh', DEFAULT_MESH_NAME),
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onInformerRestart: (kind, reason) => metrics.informerRestarts.inc({ kind, reason }),
      timeoutMs:
        opts.reconcileTimeoutMs === undefined ? undefined : Math.max(opts.reconcileTimeoutMs, 60_000),
    });
  }
  const informers = [
    ...(Object.values(inf) as Informer<KubeObject>[]),
    ...(identityController?.informers ?? []),
  ];
  const synced = Promise.all(informers.map((i) => i.synced)).then(() => {
    metrics.cacheSynced.set(1);
    log.info('caches synced');
  });

  // ------------------------------------------------------------------------------ state
  /** Bumped on every informer event: the prepared compilation is reused while it is unchanged. */
  let stateVersion = 0;
  let prepared: { at: number; p: Prepared } | undefined;
  const lastGood = { routes: new Map(), policies: new Map() } as NonNullable<ClusterSnapshot['lastGood']>;
  /** Last config error per namespace, for the Mesh's status. */
  const configErrors = new Map<string, { reason: string; message: string }>();

  const snapshot = (): ClusterSnapshot => ({
    mesh: inf.meshes.get(DEFAULT_MESH_NAME),
    clusterDomain,
    trustBundle: trustBundle(),
    namespaces: inf.namespaces.list(),
    services: inf.services.list(),
    endpointSlices: inf.endpointSlices.list(),
    pods: inf.pods.list(),
    trafficSplits: inf.trafficSplits.list(),
    authorizationPolicies: inf.authorizationPolicies.list(),
    excludedNamespaces: [opts.namespace],
    lastGood,
  });
  const prepare = (): Prepared => {
    if (prepared && prepared.at === stateVersion) return prepared.p;
    const at = stateVersion;
    const p = compiler.prepare(snapshot());
    // What is programmed now becomes the last good version (deleted resources drop out).
    lastGood.routes = new Map(p.routes);
    lastGood.policies = new Map(p.authz);
    prepared = { at, p };
    return p;
  };
  const resultIndex = new WeakMap<Prepared, Map<string, ResourceResult>>();
  const resultOf = (p: Prepared, key: string) => {
    let m = resultIndex.get(p);
    if (!m) {
      m = new Map([...p.splits, ...p.policies].map((r) => [r.key, r]));
      resultIndex.set(p, m);
    }
    return m.get(key);
  };

  // ------------------------------------------------------------------------------ queues
  let queues: Record<ControllerName, WorkQueue> | undefined;
  const enqueue = (c: ControllerName, key: string) => queues?.[c].add(key);
  const meshedNow = () => (prepared && prepared.at === stateVersion ? prepared.p.meshed : prepare().meshed);
  const enqueueAllConfigs = () => {
    if (!queues) return;
    for (const ns of meshedNow()) enqueue('proxyconfig', ns);
  };

  const events = async (
    obj: KubeObject,
    type: ResourceType,
    reason: string,
    message: string,
  ): Promise<void> => {
    const now = new Date().toISOString();
    const namespace = obj.metadata.namespace ?? 'default';
    try {
      await client.create(RESOURCES.events, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          name: `${obj.metadata.name}.${Date.now().toString(16)}${randomBytes(2).toString('hex')}`,
          namespace,
        },
        involvedObject: {
          apiVersion: type.group ? `${type.group}/${type.version}` : type.version,
          kind: type.kind,
          name: obj.metadata.name,
          namespace: obj.metadata.namespace,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        reason,
        message,
        type: 'Warning',
        source: { component: 'weft-operator' },
        reportingComponent: 'weft.dev/operator',
        reportingInstance: identity,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
      stats.events++;
    } catch (err) {
      log.warn({ err, reason }, 'could not record an Event');
    }
  };

  /** Applies status (conditions + extra fields) when it says something new. */
  const writeStatus = async (
    type: ResourceType,
    obj: KubeObject & { status?: { conditions?: Condition[]; observedGeneration?: number } },
    wanted: ConditionInput[],
    extra: Record<string, unknown> = {},
  ): Promise<boolean> => {
    const gen = obj.metadata.generation;
    const current = obj.status?.conditions;
    const conditions = mergeConditions(current, wanted, gen);
    const extraSame = Object.entries(extra).every(
      ([k, v]) =>
        JSON.stringify((obj.status as Record<string, unknown> | undefined)?.[k]) === JSON.stringify(v),
    );
    if (sameConditions(current, conditions) && obj.status?.observedGeneration === gen && extraSame)
      return false;
    const meta: KubeObject['metadata'] = { name: obj.metadata.name };
    if (obj.metadata.namespace) meta.namespace = obj.metadata.namespace;
    await client.apply(
      type,
      { metadata: meta, status: { observedGeneration: gen, conditions, ...extra } },
      { subresource: 'status' },
    );
    stats.statusWrites++;
    return true;
  };
  const failedBefore = (obj: { status?: { conditions?: Condition[] } }, type: string, reason: string) =>
    obj.status?.conditions?.some((c) => c.type === type && c.status === 'False' && c.reason === reason) ??
    false;

  /** Deletes one of Weft's ConfigMaps (already gone is fine) and counts it. */
  const deleteConfigMap = async (name: string, ns: string): Promise<void> => {
    try {
      await client.delete(RESOURCES.configMaps, name, ns);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    stats.configMapDeletes++;
    metrics.configMapWrites.inc({ namespace: ns, op: 'delete' });
  };

  // ------------------------------------------------------------------------------ reconcilers
  const reconcileProxyConfig = async (ns: string): Promise<ReconcileResult | undefined> => {
    const p = prepare();
    const existing = new Map<string, Obj<ConfigMapObj>>();
    for (const name of ALL_SHARD_NAMES) {
      const cm = inf.configMaps.get(`${ns}/${name}`);
      if (cm) existing.set(name, cm);
    }
    if (!p.meshed.includes(ns)) {
      // Not (or no longer) in the mesh: remove what Weft wrote.
      for (const name of existing.keys()) await deleteConfigMap(name, ns);
      metrics.configBytes.remove({ namespace: ns, encoding: 'json' });
      metrics.configBytes.remove({ namespace: ns, encoding: 'gzip' });
      configErrors.delete(ns);
      return undefined;
    }
    // The trust bundle is not known yet on this leader: the identity controller enqueues
    // every namespace once it is.
    if (identityController && !identityController.ready) return undefined;
    const cfg = p.render(ns);
    const mesh = inf.meshes.get(DEFAULT_MESH_NAME);
    const ownerReferences = mesh?.metadata.uid
      ? [{ apiVersion: 'weft.dev/v1alpha1', kind: 'Mesh', name: mesh.metadata.name, uid: mesh.metadata.uid }]
      : undefined;
    const haveVersion = versionOf(existing.get(shardName(0)));
    const owned = (cm: Obj<ConfigMapObj> | undefined) =>
      JSON.stringify(cm?.metadata.ownerReferences ?? []) === JSON.stringify(ownerReferences ?? []);
    if (haveVersion === cfg.version && owned(existing.get(shardName(0)))) {
      metrics.configBytes.set({ namespace: ns, encoding: 'json' }, Buffer.byteLength(cfg.json));
      return undefined;
    }
    let enc: ReturnType<typeof encode>;
    try {
      enc = encode(cfg, { ownerReferences });
    } catch (err) {
      if (err instanceof WeftError && err.code === ERROR_CODES.CONFIG_TOO_LARGE) {
        configErrors.set(ns, { reason: REASON.ConfigTooLarge, message: err.message });
        enqueue('mesh', DEFAULT_MESH_NAME);
        if (mesh) await events(mesh, RESOURCES.meshes, EVENT_REASON.ConfigTooLarge, err.message);
      }
      throw err;
    }
    // Parts first, the manifest's ConfigMap last: a proxy never sees a manifest naming parts
    // that are not written yet (it re-checks sha256 anyway).
    for (const cm of [...enc.configMaps.slice(1), enc.configMaps[0]!]) {
      await client.apply(RESOURCES.configMaps, cm as unknown as KubeObject);
      stats.configMapWrites++;
      metrics.configMapWrites.inc({ namespace: ns, op: 'apply' });
    }
    for (const name of existing.keys()) {
      if (!enc.configMaps.some((c) => c.metadata.name === name)) await deleteConfigMap(name, ns);
    }
    metrics.configBytes.set({ namespace: ns, encoding: 'json' }, enc.size);
    metrics.configBytes.set({ namespace: ns, encoding: 'gzip' }, enc.compressedSize);
    if (configErrors.delete(ns)) enqueue('mesh', DEFAULT_MESH_NAME);
    return undefined;
  };

  const readyOf = (r: ResourceResult, why: string): ConditionInput =>
    r.programmed === 'current'
      ? {
          type: CONDITION.Ready,
          status: 'True',
          reason: REASON.Programmed,
          message: 'Programmed into the proxy configuration',
        }
      : r.programmed === 'lastGood'
        ? {
            type: CONDITION.Ready,
            status: 'False',
            reason: REASON.LastGoodProgrammed,
            message: `The previous version stays programmed: ${why}`,
          }
        : { type: CONDITION.Ready, status: 'False', reason: REASON.NotProgrammed, message: why };

  const reconcileSplit = async (key: string): Promise<ReconcileResult | undefined> => {
    const split = inf.trafficSplits.get(key);
    if (!split) return undefined;
    const r = resultOf(prepare(), key);
    if (!r) return undefined;
    const wanted: ConditionInput[] = [];
    let why = '';
    if (r.accepted.ok)
      wanted.push({ type: CONDITION.Accepted, status: 'True', reason: REASON.Accepted, message: 'Valid' });
    else {
      why = r.accepted.message;
      wanted.push({
        type: CONDITION.Accepted,
        status: 'False',
        reason: r.accepted.reason,
        message: r.accepted.message,
      });
    }
    if (r.resolvedRefs?.ok)
      wanted.push({
        type: CONDITION.ResolvedRefs,
        status: 'True',
        reason: REASON.ResolvedRefs,
        message: 'All Services exist',
      });
    else if (r.resolvedRefs) {
      why = r.resolvedRefs.message;
      wanted.push({
        type: CONDITION.ResolvedRefs,
        status: 'False',
        reason: r.resolvedRefs.reason,
        message: r.resolvedRefs.message,
      });
    }
    wanted.push(readyOf(r, why));
    const wasFailing =
      (!r.accepted.ok && failedBefore(split, CONDITION.Accepted, r.accepted.reason)) ||
      (r.resolvedRefs &&
        !r.resolvedRefs.ok &&
        failedBefore(split, CONDITION.ResolvedRefs, r.resolvedRefs.reason));
    const changed = await writeStatus(RESOURCES.trafficSplits, split, wanted);
    if (changed && !wasFailing) {
      if (!r.accepted.ok)
        await events(split, RESOURCES.trafficSplits, EVENT_REASON.InvalidSpec, r.accepted.message);
      else if (r.resolvedRefs && !r.resolvedRefs.ok)
        await events(split, RESOURCES.trafficSplits, EVENT_REASON.RefNotFound, r.resolvedRefs.message);
    }
    return undefined;
  };

  const reconcilePolicy = async (key: string): Promise<ReconcileResult | undefined> => {
    const pol = inf.authorizationPolicies.get(key);
    if (!pol) return undefined;
    const r = resultOf(prepare(), key);
    if (!r) return undefined;
    const wanted: ConditionInput[] = [];
    if (r.accepted.ok)
      wanted.push({ type: CONDITION.Accepted, status: 'True', reason: REASON.Accepted, message: 'Valid' });
    else
      wanted.push({
        type: CONDITION.Accepted,
        status: 'False',
        reason: r.accepted.reason,
        message: r.accepted.message,
      });
    wanted.push(readyOf(r, r.accepted.ok ? '' : r.accepted.message));
    const wasFailing = !r.accepted.ok && failedBefore(pol, CONDITION.Accepted, r.accepted.reason);
    const changed = await writeStatus(RESOURCES.authorizationPolicies, pol, wanted);
    if (changed && !wasFailing && !r.accepted.ok)
      await events(pol, RESOURCES.authorizationPolicies, EVENT_REASON.InvalidSpec, r.accepted.message);
    return undefined;
  };

  const reconcileMesh = async (name: string): Promise<ReconcileResult | undefined> => {
    const mesh = inf.meshes.get(name);
    if (!mesh) return undefined;
    if (name !== DEFAULT_MESH_NAME) {
      await writeStatus(RESOURCES.meshes, mesh, [
        {
          type: CONDITION.Accepted,
          status: 'False',
          reason: REASON.NotDefault,
          message: `Weft reads only the Mesh named "${DEFAULT_MESH_NAME}"; this one is ignored`,
        },
        { type: CONDITION.Ready, status: 'False', reason: REASON.NotDefault, message: 'Ignored' },
      ]);
      return undefined;
    }
    const ca = identityController?.meshStatus();
    // The identity controller has not decided yet: it enqueues the Mesh when it has.
    if (identityController && !ca) return undefined;
    const p = prepare();
    const meshedSet = new Set(p.meshed);
    const meshedPods = inf.pods
      .list()
      .filter((pod) => meshedSet.has(pod.metadata.namespace ?? '') && isMeshedPod(pod)).length;
    const errs = [...configErrors.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    const caFailed = ca?.condition.status === 'False' ? ca.condition : undefined;
    const ready: ConditionInput =
      errs.length === 0 && caFailed
        ? { type: CONDITION.Ready, status: 'False', reason: caFailed.reason, message: caFailed.message }
        : errs.length === 0
          ? {
              type: CONDITION.Ready,
              status: 'True',
              reason: REASON.Programmed,
              message: `Proxy configuration written for ${p.meshed.length} namespace(s)`,
            }
          : {
              type: CONDITION.Ready,
              status: 'False',
              reason: errs[0]![1].reason,
              message: errs.map(([ns, e]) => `${ns}: ${e.message}`).join('; '),
            };
    await writeStatus(
      RESOURCES.meshes,
      mesh,
      [
        { type: CONDITION.Accepted, status: 'True', reason: REASON.Accepted, message: 'Valid' },
        ready,
        ...(ca ? [{ ...ca.condition, type: IDENTITY_CONDITION }] : []),
      ],
      { meshedNamespaces: p.meshed.length, meshedPods, ...(ca?.caExpiry ? { caExpiry: ca.caExpiry } : {}) },
    );
    return undefined;
  };

  const reconcilers: Record<ControllerName, (key: string) => Promise<ReconcileResult | undefined>> = {
    proxyconfig: reconcileProxyConfig,
    trafficsplit: reconcileSplit,
    authorizationpolicy: reconcilePolicy,
    mesh: reconcileMesh,
  };

  const makeQueues = (): Record<ControllerName, WorkQueue> => {
    const out = {} as Record<ControllerName, WorkQueue>;
    for (const c of CONTROLLERS) {
      const clog = log.child({ controller: c });
      let seq = 0;
      out[c] = new WorkQueue({
        name: c,
        concurrency: opts.concurrency ?? 4,
        timeoutMs: opts.reconcileTimeoutMs ?? 30_000,
        reconcile: async (key) => {
          const [namespace, name] = key.includes('/') ? key.split('/') : [undefined, key];
          const rlog = clog.child({ namespace, name, reconcileID: `${c}-${++seq}` });
          rlog.debug('reconcile');
          return reconcilers[c](key);
        },
        onResult: (key, outcome, ms, err) => {
          metrics.reconciles.inc({ controller: c, result: outcome });
          metrics.reconcileDuration.observe({ controller: c }, ms / 1000);
          if (outcome !== 'success') {
            metrics.reconcileErrors.inc({ controller: c });
            clog.warn(
              { err, key, outcome },
              `reconcile of ${key} failed${outcome === 'terminal' ? '' : '; retrying with backoff'}`,
            );
          }
        },
      });
    }
    return out;
  };
  metrics.depth.source = () => Object.fromEntries(CONTROLLERS.map((c) => [c, queues?.[c].depth ?? 0]));

  // ------------------------------------------------------------------------------ handlers
  const touch = () => {
    stateVersion++;
  };
  const splitsIn = (ns: string) => {
    for (const s of inf.trafficSplits.list(ns)) enqueue('trafficsplit', objectKey(s));
  };
  inf.namespaces.on(() => {
    touch();
    if (!queues) return;
    // A namespace joining or leaving changes identities everywhere and its own ConfigMaps.
    for (const n of inf.namespaces.list()) enqueue('proxyconfig', n.metadata.name);
    enqueue('mesh', DEFAULT_MESH_NAME);
    identityController?.enqueue();
  });
  inf.services.on((_t, svc) => {
    touch();
    enqueueAllConfigs();
    splitsIn(svc.metadata.namespace ?? '');
  });
  inf.endpointSlices.on(() => {
    touch();
    enqueueAllConfigs();
  });
  inf.pods.on((type, pod, old) => {
    touch();
    if (type === 'update' && old && !podMatters(old, pod)) return;
    enqueueAllConfigs();
    enqueue('mesh', DEFAULT_MESH_NAME);
    if (queues) identityController?.enqueue();
  });
  inf.meshes.on((_t, m) => {
    touch();
    enqueueAllConfigs();
    enqueue('mesh', m.metadata.name);
    if (queues) identityController?.enqueue();
  });
  inf.trafficSplits.on((type, s, old) => {
    touch();
    // Status-only updates (ours) change no generation: nothing to recompile.
    if (type === 'update' && old && old.metadata.generation === s.metadata.generation) return;
    enqueueAllConfigs();
    enqueue('trafficsplit', objectKey(s));
  });
  inf.authorizationPolicies.on((type, p, old) => {
    touch();
    if (type === 'update' && old && old.metadata.generation === p.metadata.generation) return;
    enqueue('proxyconfig', p.metadata.namespace ?? '');
    enqueue('authorizationpolicy', objectKey(p));
  });
  inf.configMaps.on((_t, cm) => enqueue('proxyconfig', cm.metadata.namespace ?? ''));

  const enqueueEverything = () => {
    for (const n of inf.namespaces.list()) enqueue('proxyconfig', n.metadata.name);
    for (const s of inf.trafficSplits.list()) enqueue('trafficsplit', objectKey(s));
    for (const p of inf.authorizationPolicies.list()) enqueue('authorizationpolicy', objectKey(p));
    for (const m of inf.meshes.list()) enqueue('mesh', m.metadata.name);
    if (queues) identityController?.enqueue();
  };

  // ------------------------------------------------------------------------------ leadership
  let leadingResolve!: () => void;
  let leadingPromise = new Promise<void>((r) => {
    leadingResolve = r;
  });
  let resyncTimer: NodeJS.Timeout | undefined;
  const startControllers = async () => {
    await synced;
    if (stopped) return;
    seedLastGood();
    queues = makeQueues();
    for (const q of Object.values(queues)) q.start();
    identityController?.start();
    metrics.isLeader.set(1);
    enqueueEverything();
    if ((opts.resyncMs ?? 10 * 60_000) > 0) {
      resyncTimer = setInterval(enqueueEverything, opts.resyncMs ?? 10 * 60_000);
      resyncTimer.unref();
    }
    log.info({ identity }, 'controllers started');
    leadingResolve();
  };
  const stopControllers = async () => {
    clearInterval(resyncTimer);
    const q = queues;
    queues = undefined;
    metrics.isLeader.set(0);
    await identityController?.stop();
    if (q) await Promise.all(Object.values(q).map((x) => x.stop()));
    leadingPromise = new Promise<void>((r) => {
      leadingResolve = r;
    });
    log.info('controllers stopped');
  };
  /** After a restart, what is already programmed is the last good version of each route/policy. */
  const seedLastGood = () => {
    const byNs = new Map<
      string,
      Map<string, { data?: Record<string, string>; binaryData?: Record<string, string> }>
    >();
    for (const cm of inf.configMaps.list()) {
      const ns = cm.metadata.namespace ?? '';
      if (!byNs.has(ns)) byNs.set(ns, new Map());
      byNs.get(ns)!.set(cm.metadata.name, cm);
    }
    for (const [ns, cms] of byNs) {
      try {
        const cfg = decode(cms);
        for (const r of cfg.routes) if (!lastGood.routes.has(r.name)) lastGood.routes.set(r.name, r);
        for (const p of cfg.authorizationPolicies)
          if (!lastGood.policies.has(p.name)) lastGood.policies.set(p.name, p);
      } catch (err) {
        log.debug({ err, namespace: ns }, 'existing ProxyConfig unreadable; not used as last good');
      }
    }
    touch();
  };

  let stopped = false;
  let elector: LeaderElector | undefined;

  // ------------------------------------------------------------------------------ servers
  const servers: Server[] = [];
  let metricsPort: number | undefined;
  let healthPort: number | undefined;
  if (opts.metricsAddress !== undefined) {
    const s = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    });
    servers.push(s);
    metricsPort = await listen(s, opts.metricsAddress);
  }
  if (opts.healthAddress !== undefined) {
    const s = createServer((req, res) => {
      if (req.url === '/healthz') res.writeHead(200).end('ok');
      else if (req.url === '/readyz') {
        const notSynced = informers.filter((i) => !i.hasSynced).map((i) => i.type.plural);
        if (notSynced.length === 0) res.writeHead(200).end('ok');
        else res.writeHead(503).end(`caches not synced: ${notSynced.join(', ')}`);
      } else res.writeHead(404).end();
    });
    servers.push(s);
    healthPort = await listen(s, opts.healthAddress);
  }

  for (const i of informers) i.start();

  if (le) {
    elector = new LeaderElector(client, {
      namespace: opts.namespace,
      name: le.leaseName ?? 'weft-operator',
      identity,
      leaseDurationMs: le.leaseDurationMs,
      renewDeadlineMs: le.renewDeadlineMs,
      retryPeriodMs: le.retryPeriodMs,
      log: log.child({ component: 'leader-election' }),
      onStartedLeading: () => {
        void startControllers();
      },
      onStoppedLeading: stopControllers,
    });
    elector.start();
  } else {
    void startControllers();
  }

  const idle = async () => {
    for (;;) {
      const q = queues;
      if (!q) return;
      await Promise.all([...Object.values(q).map((x) => x.idle()), identityController?.idle()]);
      if (
        Object.values(q).every((x) => x.depth === 0 && x.activeCount === 0) &&
        (identityController?.depth ?? 0) === 0
      )
        return;
    }
  };

  return {
    synced,
    isLeader: () => queues !== undefined,
    leading: () => leadingPromise,
    metrics,
    metricsPort,
    healthPort,
    identity,
    stats,
    idle,
    resync: async () => {
      enqueueEverything();
      await idle();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (elector) await elector.stop();
      else await stopControllers();
      await Promise.all(informers.map((i) => i.stop()));
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      for (const s of servers) s.closeAllConnections();
      client.close();
      log.info('stopped');
    },
  };
}
