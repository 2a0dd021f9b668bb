// One pod on the local node: its network namespace, volumes, init containers, native
// sidecars and app containers as local processes, probes, and the status written back.
import type { ChildProcess } from 'node:child_process';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1Pod,
  V1PodCondition,
  V1Service,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { containerEnv, expand } from './env.ts';
import { LocalNodeError } from './errors.ts';
import {
  type CommandPaths,
  execIn,
  killGroup,
  type LaunchSpec,
  launch,
  type Mount,
  mapCommand,
  type Tools,
} from './exec.ts';
import { ensureMountPoint } from './mounts.ts';
import type { HostNetwork, PodNetwork } from './network.ts';
import { ProbeLoop } from './probes.ts';
import { isProjected, type VolumeSources, volumePayload, writeAtomic } from './volumes.ts';

export interface PodDeps {
  /** Mount points the node created on the host (removed on stop). */
  createdMountPoints: Set<string>;
  nodeName: string;
  hostIP: string;
  tools: Tools;
  paths: CommandPaths;
  network: HostNetwork;
  sources: VolumeSources;
  /** Services whose environment variables a pod in `namespace` gets. */
  services(namespace: string): V1Service[];
  /** Directory for this pod's volumes and container logs. */
  podDir: string;
  log: Logger;
  /** Writes the pod's status (merge patch of the status subresource). */
  writeStatus(pod: V1Pod, status: Record<string, unknown>): Promise<void>;
  /** Called when the pod's containers have all ended (terminal phase) — nothing to do for the node. */
  onRunning?(): void;
}

type Kind = 'init' | 'sidecar' | 'app';

const now = () => new Date().toISOString();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class ContainerRun {
  readonly spec: V1Container;
  readonly kind: Kind;
  proc: ChildProcess | undefined;
  state: V1ContainerState = { waiting: { reason: 'PodInitializing' } };
  lastState: V1ContainerState = {};
  restartCount = 0;
  started = false;
  probeReady: boolean | undefined;
  probes: ProbeLoop[] = [];
  exited: Promise<number> = Promise.resolve(0);
  /** Resolves when the container counts as started (startup probe passed). */
  startedWaiters: (() => void)[] = [];
  constructor(spec: V1Container, kind: Kind) {
    this.spec = spec;
    this.kind = kind;
  }
  get running(): boolean {
    return this.state.running !== undefined;
  }
  get ready(): boolean {
    if (this.kind === 'init') return this.state.terminated?.exitCode === 0;
    if (!this.running || !this.started) return false;
    return this.spec.readinessProbe ? this.probeReady === true : true;
  }
  stopProbes(): void {
    for (const p of this.probes) p.stop();
    this.probes = [];
  }
}

export class PodWorker {
  pod: V1Pod;
  readonly uid: string;
  readonly #d: PodDeps;
  #net: PodNetwork | undefined;
  readonly #containers = new Map<string, ContainerRun>();
  #phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' = 'Pending';
  #initialized = false;
  #waitingMessage: string | undefined;
  #terminating = false;
  #done: Promise<void> | undefined;
  #startTime = now();
  readonly #conditionTimes = new Map<string, { status: string; time: string }>();
  #statusBusy = false;
  #statusDirty = false;
  #lastStatus = '';
  #volumeSync: Promise<void> = Promise.resolve();
  #volumesReady = false;

  constructor(pod: V1Pod, deps: PodDeps) {
    this.pod = pod;
    this.uid = pod.metadata!.uid!;
    this.#d = deps;
    const sp = pod.spec!;
    for (const c of sp.initContainers ?? []) {
      this.#containers.set(c.name, new ContainerRun(c, c.restartPolicy === 'Always' ? 'sidecar' : 'init'));
    }
    for (const c of sp.containers) this.#containers.set(c.name, new ContainerRun(c, 'app'));
  }

  get key(): string {
    return `${this.pod.metadata!.namespace}/${this.pod.metadata!.name}`;
  }
  get ip(): string | undefined {
    return this.#net?.ip;
  }
  get netns(): string | undefined {
    return this.#net?.netns;
  }
  get terminating(): boolean {
    return this.#terminating;
  }
  /** Process ids of the running containers, by name. */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [n, c] of this.#containers) if (c.running && c.proc?.pid) out[n] = c.proc.pid;
    return out;
  }
  logFile(container: string): string {
    return join(this.#d.podDir, 'logs', `${container}.log`);
  }

  /** Starts the pod; returns at once, the work goes on in the background. */
  start(): void {
    void this.#run().catch((err) => {
      if (this.#terminating) return;
      this.#d.log.error({ err }, 'pod failed to start');
      this.#waitingMessage = String((err as Error).message);
      this.#scheduleStatus();
    });
  }

  /** The pod object changed (labels, annotations): refresh downward-API volumes. */
  update(pod: V1Pod): void {
    if (pod.metadata?.uid !== this.uid) return;
    this.pod = pod;
    this.syncVolumes();
  }

  /** Re-projects ConfigMap/Secret/downward-API volumes; content that did not change is not rewritten. */
  syncVolumes(): void {
    // Before the first projection completes, #run is the only writer.
    if (!this.#volumesReady || this.#terminating) return;
    this.#volumeSync = this.#volumeSync
      .then(() => this.#writeVolumes())
      .catch((err) =>
        this.#d.log.warn({ err: (err as Error).message }, 'volume refresh failed; keeping the last content'),
      );
  }

  async #writeVolumes(): Promise<void> {
    for (const vol of this.pod.spec?.volumes ?? []) {
      const dir = join(this.#d.podDir, 'volumes', vol.name);
      if (vol.emptyDir) {
        await mkdir(dir, { recursive: true, mode: 0o777 });
        await chmod(dir, 0o777);
        continue;
      }
      if (vol.hostPath) continue;
      if (!isProjected(vol)) {
        throw new LocalNodeError(
          'WEFT_LN_VOLUME',
          `volume ${vol.name}: only configMap, secret, downwardAPI, projected, emptyDir and hostPath are supported`,
        );
      }
      const payload = await volumePayload(this.#podForFields(), vol, this.#d.sources);
      if (payload && (await writeAtomic(dir, payload)))
        this.#d.log.debug({ volume: vol.name }, 'volume projected');
    }
  }

  /** The pod as the downward API sees it: with the IPs the node assigned, even before the status write. */
  #podForFields(): V1Pod {
    const ip = this.#net?.ip;
    return {
      ...this.pod,
      spec: { ...this.pod.spec!, nodeName: this.#d.nodeName },
      status: {
        ...this.pod.status,
        hostIP: this.#d.hostIP,
        hostIPs: [{ ip: this.#d.hostIP }],
        ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
      },
    };
  }

  #mounts(c: V1Container): Mount[] {
    const vols = new Map((this.pod.spec?.volumes ?? []).map((v) => [v.name, v]));
    const out: Mount[] = [];
    for (const m of c.volumeMounts ?? []) {
      const v = vols.get(m.name);
      if (!v)
        throw new LocalNodeError('WEFT_LN_VOLUME', `container ${c.name} mounts unknown volume ${m.name}`);
      const base = v.hostPath ? v.hostPath.path : join(this.#d.podDir, 'volumes', v.name);
      const source = m.subPath ? join(base, m.subPath) : base;
      // A subPath of a projected volume is a symlink into ..data: resolve it to the file (as the kubelet does, no updates).
      out.push({ source, target: m.mountPath, readOnly: !!m.readOnly, file: !!m.subPath && isProjected(v) });
    }
    return out;
  }

  #launchSpec(c: V1Container, env: Record<string, string>): Omit<LaunchSpec, 'logFile'> {
    const sc = this.pod.spec?.securityContext;
    const uid = c.securityContext?.runAsUser ?? sc?.runAsUser;
    const gid = c.securityContext?.runAsGroup ?? sc?.runAsGroup;
    return {
      netnsPath: this.#net!.netnsPath,
      mounts: this.#mounts(c),
      uid: uid ?? undefined,
      gid: gid ?? (uid !== undefined ? 0 : undefined),
      argv: mapCommand(c, this.#d.paths, (s) => expand(s, env)),
      env,
      cwd: c.workingDir || this.#d.paths.repoRoot,
    };
  }

  async #run(): Promise<void> {
    const log = this.#d.log;
    await mkdir(join(this.#d.podDir, 'logs'), { recursive: true });
    this.#net = await this.#d.network.addPod(this.uid);
    log.info({ ip: this.#net.ip, netns: this.#net.netns }, 'pod sandbox ready');
    this.#scheduleStatus();

    // Volumes: a missing ConfigMap or Secret keeps the pod waiting, as under the kubelet.
    for (let attempt = 0; ; attempt++) {
      if (this.#terminating) return;
      try {
        await this.#writeVolumes();
        this.#volumesReady = true;
        this.#waitingMessage = undefined;
        break;
      } catch (err) {
        if (!(err instanceof LocalNodeError)) throw err;
        if (this.#waitingMessage !== err.message) {
          log.warn({ reason: err.message }, 'waiting for volume sources');
          this.#waitingMessage = err.message;
          this.#scheduleStatus();
        }
        await sleep(Math.min(200 * 2 ** attempt, 2000));
      }
    }
    for (const c of this.#containers.values())
      if (c.kind !== 'app') c.state = { waiting: { reason: 'PodInitializing' } };

    // Init containers in order; native sidecars start and stay.
    for (const c of this.#containers.values()) {
      if (c.kind === 'app') continue;
      if (this.#terminating) return;
      if (c.kind === 'sidecar') {
        await this.#startContainer(c);
        await new Promise<void>((resolve) => {
          if (c.started) resolve();
          else c.startedWaiters.push(resolve);
        });
        continue;
      }
      for (;;) {
        await this.#startContainer(c);
        const code = await c.exited;
        if (this.#terminating) return;
        if (code === 0) break;
        if (this.pod.spec?.restartPolicy === 'Never') {
          this.#phase = 'Failed';
          log.warn(
            { container: c.spec.name, code },
            'init container failed; restartPolicy Never: pod failed',
          );
          await this.#stopAll(0);
          this.#scheduleStatus();
          return;
        }
        c.lastState = c.state;
        c.restartCount++;
        await sleep(this.#backoff(c));
      }
    }
    this.#initialized = true;
    for (const c of this.#containers.values())
      if (c.kind === 'app') c.state = { waiting: { reason: 'ContainerCreating' } };
    this.#scheduleStatus();
    for (const c of this.#containers.values()) {
      if (c.kind === 'app' && !this.#terminating) await this.#startContainer(c);
    }
    if (!this.#terminating && this.#phase === 'Pending') this.#phase = 'Running';
    this.#scheduleStatus();
  }

  #backoff(c: ContainerRun): number {
    return Math.min(1000 * 2 ** Math.max(0, c.restartCount - 1), 20_000);
  }

  async #startContainer(c: ContainerRun): Promise<void> {
    const log = this.#d.log.child({ container: c.spec.name });
    let spec: Omit<LaunchSpec, 'logFile'>;
    try {
      const env = containerEnv(
        this.#podForFields(),
        c.spec,
        this.#d.services(this.pod.metadata!.namespace!),
        this.#d.sources,
        join(this.#d.paths.repoRoot, 'node_modules', '.bin'),
      );
      spec = this.#launchSpec(c.spec, env);
    } catch (err) {
      const reason =
        err instanceof LocalNodeError && err.code === 'WEFT_LN_ENV'
          ? 'CreateContainerConfigError'
          : 'CreateContainerError';
      c.state = { waiting: { reason, message: (err as Error).message } };
      log.error({ err: (err as Error).message }, 'container cannot start');
      this.#scheduleStatus();
      c.exited = sleep(2000).then(() => 1);
      if (c.kind !== 'init') void c.exited.then(() => this.#onExit(c, 1, log));
      return;
    }
    for (const m of spec.mounts) ensureMountPoint(m.target, m.file, this.#d.createdMountPoints);
    const proc = launch(this.#d.tools, { ...spec, logFile: this.logFile(c.spec.name) });
    c.proc = proc;
    c.started = false;
    c.probeReady = undefined;
    c.state = { running: { startedAt: now() as unknown as Date } };
    log.info({ pid: proc.pid, argv: spec.argv, uid: spec.uid }, 'container started');
    c.exited = new Promise<number>((resolve) => {
      proc.on('error', (err) => {
        log.error({ err: err.message }, 'container could not be spawned');
        resolve(127);
      });
      proc.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (signalNumber[signal] ?? 15) : 1)));
    });
    void c.exited.then((code) => {
      const startedAt = c.state.running?.startedAt;
      c.stopProbes();
      c.proc = undefined;
      c.started = false;
      c.state = {
        terminated: {
          exitCode: code,
          reason: code === 0 ? 'Completed' : 'Error',
          startedAt: startedAt as unknown as Date,
          finishedAt: now() as unknown as Date,
          containerID: `weft-local://${proc.pid}`,
        },
      };
      log.info({ code }, 'container exited');
      this.#scheduleStatus();
      if (c.kind !== 'init') this.#onExit(c, code, log);
    });
    if (c.kind !== 'init') this.#startProbes(c, spec);
    this.#scheduleStatus();
  }

  #markStarted(c: ContainerRun): void {
    c.started = true;
    for (const w of c.startedWaiters.splice(0)) w();
  }

  #startProbes(c: ContainerRun, spec: Omit<LaunchSpec, 'logFile'>): void {
    const ctx = {
      podIP: this.#net!.ip,
      container: c.spec,
      exec: (argv: string[], timeoutMs: number) => execIn(this.#d.tools, { ...spec, argv }, timeoutMs),
    };
    const log = this.#d.log.child({ container: c.spec.name });
    const afterStart = () => {
      this.#markStarted(c);
      if (c.spec.readinessProbe) {
        const p = new ProbeLoop(c.spec.readinessProbe, ctx, (ok, msg) => {
          c.probeReady = ok;
          log.info({ ok, msg }, 'readiness changed');
          this.#scheduleStatus();
        });
        c.probes.push(p);
        p.start();
      }
      if (c.spec.livenessProbe) {
        const p = new ProbeLoop(c.spec.livenessProbe, ctx, (ok, msg) => {
          if (!ok && c.proc) {
            log.warn({ msg }, 'liveness probe failed: restarting the container');
            this.#killContainer(c, 2);
          }
        });
        c.probes.push(p);
        p.start();
      }
      this.#scheduleStatus();
    };
    if (c.spec.startupProbe) {
      const p = new ProbeLoop(c.spec.startupProbe, ctx, (ok, msg) => {
        if (ok) {
          p.stop();
          log.info('startup probe passed');
          afterStart();
        } else if (c.proc) {
          log.warn({ msg }, 'startup probe failed: restarting the container');
          this.#killContainer(c, 2);
        }
      });
      c.probes.push(p);
      p.start();
    } else afterStart();
  }

  #onExit(c: ContainerRun, code: number, log: Logger): void {
    if (this.#terminating || this.#phase === 'Succeeded' || this.#phase === 'Failed') return;
    const policy = this.pod.spec?.restartPolicy ?? 'Always';
    const restart = c.kind === 'sidecar' || policy === 'Always' || (policy === 'OnFailure' && code !== 0);
    if (restart) {
      c.lastState = c.state;
      c.restartCount++;
      const delay = this.#backoff(c);
      c.state = {
        waiting: {
          reason: 'CrashLoopBackOff',
          message: `back-off ${delay} ms restarting the failed container`,
        },
      };
      this.#scheduleStatus();
      setTimeout(() => {
        if (!this.#terminating && this.#phase !== 'Succeeded' && this.#phase !== 'Failed')
          void this.#startContainer(c);
      }, delay);
      log.info({ delay }, 'restarting container');
      return;
    }
    const apps = [...this.#containers.values()].filter((x) => x.kind === 'app');
    if (apps.every((x) => x.state.terminated)) {
      this.#phase = apps.every((x) => x.state.terminated?.exitCode === 0) ? 'Succeeded' : 'Failed';
      log.info({ phase: this.#phase }, 'all containers ended');
      // Sidecars end when the app containers have.
      void this.#stopAll(2).then(() => this.#scheduleStatus());
      this.#scheduleStatus();
    }
  }

  #killContainer(c: ContainerRun, graceSeconds: number): Promise<number> {
    const p = c.proc;
    if (!p) return c.exited;
    killGroup(p, 'SIGTERM');
    const t = setTimeout(() => killGroup(p, 'SIGKILL'), graceSeconds * 1000);
    return c.exited.finally(() => clearTimeout(t));
  }

  /** App containers first (SIGTERM, grace, SIGKILL), then sidecars in reverse order. */
  async #stopAll(graceSeconds: number): Promise<void> {
    const all = [...this.#containers.values()];
    for (const c of all) c.stopProbes();
    const deadline = Date.now() + graceSeconds * 1000;
    const left = () => Math.max(0, (deadline - Date.now()) / 1000);
    await Promise.all(all.filter((c) => c.kind !== 'sidecar').map((c) => this.#killContainer(c, left())));
    for (const c of all.filter((x) => x.kind === 'sidecar').reverse())
      await this.#killContainer(c, Math.max(left(), 1));
  }

  /** Stops the pod: containers get SIGTERM, SIGKILL after the grace period; the sandbox is removed. */
  terminate(graceSeconds: number): Promise<void> {
    if (this.#done) return this.#done;
    this.#terminating = true;
    this.#done = (async () => {
      this.#d.log.info({ graceSeconds }, 'stopping pod');
      await this.#stopAll(graceSeconds);
      await this.#volumeSync.catch(() => {});
      if (this.#net) await this.#d.network.removePod(this.#net);
      await rm(this.#d.podDir, { recursive: true, force: true });
      this.#d.log.info('pod stopped; sandbox removed');
    })();
    return this.#done;
  }

  #condition(type: string, ok: boolean, reason?: string): V1PodCondition {
    const status = ok ? 'True' : 'False';
    let t = this.#conditionTimes.get(type);
    if (!t || t.status !== status) {
      t = { status, time: now() };
      this.#conditionTimes.set(type, t);
    }
    return {
      type,
      status,
      lastTransitionTime: t.time as unknown as Date,
      lastProbeTime: null as unknown as Date,
      ...(reason && !ok ? { reason } : {}),
    };
  }

  #containerStatus(c: ContainerRun): V1ContainerStatus {
    let state = c.state;
    if (state.waiting && this.#waitingMessage && !this.#initialized) {
      state = {
        waiting: {
          reason: c.kind === 'app' ? 'ContainerCreating' : 'PodInitializing',
          message: this.#waitingMessage,
        },
      };
    }
    return {
      name: c.spec.name,
      image: c.spec.image ?? '',
      imageID: '',
      ...(c.proc?.pid ? { containerID: `weft-local://${c.proc.pid}` } : {}),
      ready: c.ready,
      started: c.kind === 'init' ? false : c.started,
      restartCount: c.restartCount,
      state,
      lastState: c.lastState,
    };
  }

  status(): Record<string, unknown> {
    const all = [...this.#containers.values()];
    const apps = all.filter((c) => c.kind === 'app');
    const sidecars = all.filter((c) => c.kind === 'sidecar');
    const running = this.#phase === 'Running';
    const containersReady = running && apps.every((c) => c.ready) && sidecars.every((c) => c.ready);
    const ip = this.#net?.ip;
    return {
      phase: this.#phase,
      hostIP: this.#d.hostIP,
      hostIPs: [{ ip: this.#d.hostIP }],
      ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
      startTime: this.#startTime,
      // qosClass is set by the apiserver at creation and immutable: never written here.
      conditions: [
        this.#condition('PodReadyToStartContainers', !!ip),
        this.#condition('Initialized', this.#initialized, 'ContainersNotInitialized'),
        this.#condition('Ready', containersReady, 'ContainersNotReady'),
        this.#condition('ContainersReady', containersReady, 'ContainersNotReady'),
        this.#condition('PodScheduled', true),
      ],
      initContainerStatuses: all.filter((c) => c.kind !== 'app').map((c) => this.#containerStatus(c)),
      containerStatuses: apps.map((c) => this.#containerStatus(c)),
      ...(this.#waitingMessage ? { message: this.#waitingMessage } : { message: null }),
    };
  }

  /** Coalesces status writes: at most one in flight, the latest state always written last. */
  #scheduleStatus(): void {
    if (this.#statusBusy) {
      this.#statusDirty = true;
      return;
    }
    this.#statusBusy = true;
    void (async () => {
      do {
        this.#statusDirty = false;
        const s = this.status();
        const text = JSON.stringify(s);
        if (text === this.#lastStatus) continue;
        try {
          await this.#d.writeStatus(this.pod, s);
          this.#lastStatus = text;
        } catch (err) {
          const code = (err as { code?: number }).code;
          if (code === 404) break;
          this.#d.log.warn({ err: (err as Error).message }, 'pod status write failed; retrying');
          await sleep(500);
          this.#statusDirty = true;
        }
      } while (this.#statusDirty);
      this.#statusBusy = false;
    })();
  }
}

const signalNumber: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
