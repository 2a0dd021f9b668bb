// A de-duplicating work queue in the manner of client-go's workqueue and controller-runtime's
// controller: keys, not objects, are queued; a key queued twice runs once; a key never runs
// twice at once (added while running, it runs again afterwards); failures back off per key
// exponentially (with jitter) up to a cap; at most `concurrency` reconciles run together; each
// has a timeout after which its AbortSignal fires and the run counts as failed.
import { backoffMs, type Clock, systemClock } from './clock.ts';
import { ERROR_CODES, TerminalError, WeftError } from './errors.ts';

export interface ReconcileResult {
  /** Run the key again after this long (a periodic re-check), without counting a failure. */
  requeueAfterMs?: number;
}

export type Reconciler = (key: string, signal: AbortSignal) => Promise<ReconcileResult | undefined>;

export type Outcome = 'success' | 'error' | 'terminal' | 'timeout';

export interface WorkQueueOptions {
  name: string;
  reconcile: Reconciler;
  concurrency?: number;
  timeoutMs?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  clock?: Clock;
  random?: () => number;
  /** Called after every reconcile; metrics and logs hang here. */
  onResult?: (key: string, outcome: Outcome, durationMs: number, err?: unknown) => void;
}

export class WorkQueue {
  readonly name: string;
  private readonly opts: Required<Omit<WorkQueueOptions, 'onResult' | 'name' | 'reconcile'>>;
  private readonly reconcile: Reconciler;
  private readonly onResult: WorkQueueOptions['onResult'];
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; handle: unknown }>();
  private readonly inflight = new Set<Promise<void>>();
  private started = false;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.reconcile = opts.reconcile;
    this.onResult = opts.onResult;
    this.opts = {
      concurrency: opts.concurrency ?? 4,
      timeoutMs: opts.timeoutMs ?? 30_000,
      baseBackoffMs: opts.baseBackoffMs ?? 5,
      maxBackoffMs: opts.maxBackoffMs ?? 5 * 60_000,
      clock: opts.clock ?? systemClock,
      random: opts.random ?? Math.random,
    };
  }

  /** Keys waiting to run (not counting running or delayed ones). */
  get depth(): number {
    return this.queue.length;
  }
  get activeCount(): number {
    return this.running.size;
  }
  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Queues a key now. Already queued: nothing. Running: it runs once more when done. */
  add(key: string): void {
    if (this.stopped) return;
    const d = this.delayed.get(key);
    if (d) {
      this.opts.clock.clearTimeout(d.handle);
      this.delayed.delete(key);
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Queues a key after a delay; an earlier pending delay for the key wins. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.opts.clock.now() + ms;
    const prev = this.delayed.get(key);
    if (prev && prev.at <= at) return;
    if (prev) this.opts.clock.clearTimeout(prev.handle);
    const handle = this.opts.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, handle });
  }

  /** Starts the workers; keys added before start wait. */
  start(): void {
    this.started = true;
    this.pump();
  }

  /** Resolves when nothing is queued or running (delayed keys do not count). */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops taking keys, cancels delayed ones, aborts nothing but waits for running reconciles. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const d of this.delayed.values()) this.opts.clock.clearTimeout(d.handle);
    this.delayed.clear();
    this.queue.length = 0;
    this.queued.clear();
    await Promise.allSettled([...this.inflight]);
  }

  private pump(): void {
    if (!this.started || this.stopped) return;
    while (this.running.size < this.opts.concurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.running.add(key);
      const p = this.run(key).finally(() => {
        this.inflight.delete(p);
      });
      this.inflight.add(p);
    }
  }

  private async run(key: string): Promise<void> {
    const clock = this.opts.clock;
    const started = clock.now();
    const ac = new AbortController();
    let timer: unknown;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = clock.setTimeout(() => {
        timedOut = true;
        const err = new WeftError(
          ERROR_CODES.RECONCILE_TIMEOUT,
          `${this.name}: reconcile of ${key} exceeded ${this.opts.timeoutMs} ms`,
        );
        ac.abort(err);
        reject(err);
      }, this.opts.timeoutMs);
    });
    timeout.catch(() => {});
    const work = Promise.resolve().then(() => this.reconcile(key, ac.signal));
    let outcome: Outcome = 'success';
    let error: unknown;
    let requeueAfterMs: number | undefined;
    try {
      const res = await Promise.race([work, timeout]);
      requeueAfterMs = res?.requeueAfterMs;
    } catch (err) {
      error = err;
      outcome = timedOut ? 'timeout' : err instanceof TerminalError ? 'terminal' : 'error';
    } finally {
      clock.clearTimeout(timer);
    }
    // The key stays "running" until the reconcile itself has settled, even after a timeout.
    if (timedOut) await work.catch(() => {});
    this.running.delete(key);
    this.onResult?.(key, outcome, clock.now() - started, error);

    if (outcome === 'error' || outcome === 'timeout') {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      if (this.dirty.delete(key)) this.add(key);
      else
        this.addAfter(key, backoffMs(n, this.opts.baseBackoffMs, this.opts.maxBackoffMs, this.opts.random));
    } else {
      this.failures.delete(key);
      if (this.dirty.delete(key)) this.add(key);
      else if (requeueAfterMs !== undefined) this.addAfter(key, requeueAfterMs);
    }
    this.pump();
    if (this.queue.length === 0 && this.running.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
