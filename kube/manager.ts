// The manager, after controller-runtime's (`pkg/manager/runnable_group.go`): what a replica runs,
// in three groups started in this order and stopped in the reverse one.
//
//   servers      every replica: HTTP servers (health, metrics), listening before start returns.
//   caches       every replica: informers, so a standby has warm caches.
//   controllers  the Lease holder only, once every cache has synced: one work queue per
//                controller around a reconciler that gets a key, reads the caches and returns
//                `{ requeueAfterMs? }`; a thrown error is a rate-limited retry, a TerminalError
//                is logged and not retried (kube/queue.ts).
//
// Leadership is passed in: `leaderElection` builds an elector (kube/leader.ts's LeaderElector)
// from the two callbacks; without it this replica leads at once. Losing the Lease stops the
// controllers (their queues are dropped: a new term starts from a full enqueue); caches and
// servers keep running. A periodic resync enqueues every controller's keys.
import { type Clock, systemClock } from './clock.ts';
import type { Logger } from './log.ts';
import { type Outcome, type ReconcileResult, WorkQueue } from './queue.ts';

/** An HTTP server or anything else that starts before the caches and stops after them. */
export interface Server {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** An informer, as the manager sees it. */
export interface Cache {
  readonly synced: Promise<void>;
  start(): void;
  stop(): Promise<void>;
}

export interface ReconcileContext {
  /** A child logger `{controller, namespace, name, reconcileID}`. */
  log: Logger;
  /** Fired when the reconcile times out. */
  signal: AbortSignal;
}

/** Gets a key (`namespace/name`, or `name`), returns when to look again; throws to retry with backoff. */
export type KeyReconciler = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult | undefined>;

export interface ControllerOptions {
  name: string;
  reconcile: KeyReconciler;
  /** Every key this controller knows: enqueued when it starts and at each resync. */
  keys: () => Iterable<string>;
  /** Runs when a term starts, before the first reconcile: resets what a leader keeps in memory. */
  onStart?: () => void;
  concurrency?: number;
  timeoutMs?: number;
  /** The queue's clock (backoff, timeouts, requeueAfterMs). Default: the manager's. */
  clock?: Clock;
}

export interface Controller {
  readonly name: string;
  /** Queues a key; nothing while this replica does not lead. */
  add(key: string): void;
  /** Keys waiting (0 while not leading). */
  readonly depth: number;
}

export interface LeaderCallbacks {
  onStartedLeading: () => void;
  onStoppedLeading: () => Promise<void>;
}

export interface Leadership {
  start(): void;
  /** Stops campaigning; a leader calls onStoppedLeading first. */
  stop(): Promise<void>;
}

export interface ManagerOptions {
  log: Logger;
  /** Builds the elector. Undefined: lead at once. */
  leaderElection?: (callbacks: LeaderCallbacks) => Leadership;
  /** Periodic full enqueue on the leader. 0 or undefined: never. */
  resyncMs?: number;
  clock?: Clock;
  /** After every reconcile (metrics). */
  onResult?: (controller: string, key: string, outcome: Outcome, durationMs: number) => void;
  /** Leadership changed (metrics). */
  onLeading?: (leading: boolean) => void;
  /** Every cache synced. */
  onSynced?: () => void;
}

interface Registered extends ControllerOptions {
  queue?: WorkQueue;
  seq: number;
}

export class Manager {
  private readonly opts: ManagerOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly servers: Server[] = [];
  private readonly caches: Cache[] = [];
  private readonly controllers: Registered[] = [];
  private leadership?: Leadership;
  private running = false;
  private stopped = false;
  /** Bumped when a term ends: a start still waiting for the caches belongs to an old term. */
  private term = 0;
  private resyncTimer: unknown;
  private syncedPromise?: Promise<void>;
  private leadingPromise!: Promise<void>;
  private leadingResolve!: () => void;

  constructor(opts: ManagerOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log;
    this.resetLeading();
  }

  addServer(s: Server): void {
    this.servers.push(s);
  }

  addCache(c: Cache): void {
    this.caches.push(c);
  }

  addController(c: ControllerOptions): Controller {
    const r: Registered = { ...c, seq: 0 };
    this.controllers.push(r);
    return {
      name: c.name,
      add: (key) => r.queue?.add(key),
      get depth() {
        return r.queue?.depth ?? 0;
      },
    };
  }

  /** Resolves once every cache has listed; valid after start(). */
  get synced(): Promise<void> {
    this.syncedPromise ??= Promise.all(this.caches.map((c) => c.synced)).then(() => this.opts.onSynced?.());
    return this.syncedPromise;
  }

  /** Whether this replica's controllers run. */
  isLeader(): boolean {
    return this.running;
  }

  /** Resolves when this replica leads and its controllers run. */
  leading(): Promise<void> {
    return this.leadingPromise;
  }

  /** Starts servers (listening when this resolves), then caches, then the campaign. */
  async start(): Promise<void> {
    const started: Server[] = [];
    try {
      for (const s of this.servers) {
        await s.start();
        started.push(s);
      }
    } catch (err) {
      for (const s of started.reverse()) await s.stop();
      throw err;
    }
    for (const c of this.caches) c.start();
    void this.synced;
    const callbacks: LeaderCallbacks = {
      onStartedLeading: () => {
        void this.startControllers();
      },
      onStoppedLeading: () => this.stopControllers(),
    };
    if (this.opts.leaderElection) {
      this.leadership = this.opts.leaderElection(callbacks);
      this.leadership.start();
    } else callbacks.onStartedLeading();
  }

  /** Controllers (stepping down), then caches, then servers. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.leadership) await this.leadership.stop();
    else await this.stopControllers();
    await Promise.all(this.caches.map((c) => c.stop()));
    for (const s of [...this.servers].reverse()) await s.stop();
  }

  /** Queues every key of every controller. */
  enqueueAll(): void {
    for (const c of this.controllers) {
      if (!c.queue) continue;
      for (const k of c.keys()) c.queue.add(k);
    }
  }

  /** Resolves when every controller queue is idle (at once when not leading). */
  async idle(): Promise<void> {
    for (;;) {
      const queues = this.controllers.map((c) => c.queue);
      if (!this.running || queues.some((q) => !q)) return;
      await Promise.all(queues.map((q) => q!.idle()));
      if (queues.every((q) => q!.depth === 0 && q!.activeCount === 0)) return;
    }
  }

  private resetLeading(): void {
    this.leadingPromise = new Promise<void>((r) => {
      this.leadingResolve = r;
    });
  }

  private async startControllers(): Promise<void> {
    const term = this.term;
    await this.synced;
    if (this.stopped || this.running || term !== this.term) return;
    for (const c of this.controllers) {
      c.onStart?.();
      c.queue = this.makeQueue(c);
    }
    this.running = true;
    for (const c of this.controllers) c.queue!.start();
    this.opts.onLeading?.(true);
    this.enqueueAll();
    const every = this.opts.resyncMs ?? 0;
    if (every > 0) this.scheduleResync(every);
    this.log.info('controllers started');
    this.leadingResolve();
  }

  private scheduleResync(every: number): void {
    this.resyncTimer = this.clock.setTimeout(() => {
      if (!this.running) return;
      this.enqueueAll();
      this.scheduleResync(every);
    }, every);
    (this.resyncTimer as { unref?: () => void }).unref?.();
  }

  private async stopControllers(): Promise<void> {
    this.term++;
    this.clock.clearTimeout(this.resyncTimer);
    const queues = this.controllers.map((c) => c.queue);
    for (const c of this.controllers) c.queue = undefined;
    const was = this.running;
    this.running = false;
    this.opts.onLeading?.(false);
    await Promise.all(queues.reverse().map((q) => q?.stop()));
    if (was) {
      this.resetLeading();
      this.log.info('controllers stopped');
    }
  }

  private makeQueue(c: Registered): WorkQueue {
    const clog = this.log.child({ controller: c.name });
    return new WorkQueue({
      name: c.name,
      concurrency: c.concurrency ?? 4,
      timeoutMs: c.timeoutMs ?? 30_000,
      clock: c.clock ?? this.clock,
      reconcile: (key, signal) => {
        const [namespace, name] = key.includes('/') ? key.split('/') : [undefined, key];
        const log = clog.child({ namespace, name, reconcileID: `${c.name}-${++c.seq}` });
        log.debug('reconcile');
        return c.reconcile(key, { log, signal });
      },
      onResult: (key, outcome, ms, err) => {
        this.opts.onResult?.(c.name, key, outcome, ms);
        if (outcome !== 'success')
          clog.warn(
            { err, key, outcome },
            `reconcile of ${key} failed${outcome === 'terminal' ? '' : '; retrying with backoff'}`,
          );
      },
    });
  }
}
