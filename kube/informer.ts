// An informer: list, then watch from the list's resourceVersion, keeping a local cache that
// reconcilers read. Differences from client-node's makeInformer, which this replaces:
//  - any watch error restarts list+watch after a jittered exponential backoff (never exits),
//    and "410 Gone" relists at once;
//  - a watchdog aborts a watch that sends nothing (the server sends bookmarks every minute or
//    so, and we ask for a server-side timeout), so a silently dead connection cannot freeze
//    the cache;
//  - `synced` resolves after the first complete list, for /readyz and for starting controllers;
//  - managedFields are dropped and an optional transform slims objects before they are cached.
import type { Logger } from 'pino';
import type { KubeClient, KubeObject, ResourceType, WatchEvent, WatchHandle } from './client.ts';
import { backoffMs, type Clock, systemClock } from './clock.ts';
import { ERROR_CODES, isGone, KubeApiError, WeftError } from './errors.ts';

export type EventType = 'add' | 'update' | 'delete';
export type Handler<T> = (type: EventType, obj: T, old?: T) => void;

export interface InformerOptions<T extends KubeObject> {
  labelSelector?: string;
  fieldSelector?: string;
  /** Slims an object before it is cached (drop what reconcilers never read). */
  transform?: (obj: T) => T;
  /** Items per list page (default 500). */
  pageSize?: number;
  /** Server-side watch timeout, randomised ±20 % so informers do not reconnect together. */
  watchTimeoutSeconds?: number;
  /** Abort a watch silent for this long. Default: watch timeout + 30 s. */
  watchdogMs?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  random?: () => number;
  clock?: Clock;
  log?: Logger;
  /** Called on every list+watch restart after an error, for metrics. */
  onRestart?: (reason: string) => void;
}

export const objectKey = (o: { metadata: { name: string; namespace?: string } }) =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

export class Informer<T extends KubeObject> {
  readonly type: ResourceType;
  private readonly client: KubeClient;
  private readonly opts: InformerOptions<T>;
  private readonly cache = new Map<string, T>();
  private readonly handlers: Handler<T>[] = [];
  private stopped = false;
  private watch?: WatchHandle;
  private sleepTimer: unknown;
  private wake?: () => void;
  private resolveSynced!: () => void;
  private loop?: Promise<void>;
  /** Resolves once the first full list is in the cache. */
  readonly synced: Promise<void>;
  hasSynced = false;
  /** Restarts after errors since start (exported as a metric). */
  restarts = 0;

  constructor(client: KubeClient, type: ResourceType, opts: InformerOptions<T> = {}) {
    this.client = client;
    this.type = type;
    this.opts = opts;
    this.synced = new Promise((r) => {
      this.resolveSynced = r;
    });
  }

  on(handler: Handler<T>): void {
    this.handlers.push(handler);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(namespace?: string): T[] {
    const out: T[] = [];
    for (const o of this.cache.values())
      if (namespace === undefined || o.metadata.namespace === namespace) out.push(o);
    return out;
  }

  get size(): number {
    return this.cache.size;
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.abort();
    (this.opts.clock ?? systemClock).clearTimeout(this.sleepTimer);
    this.wake?.();
    await this.loop;
  }

  private clean(obj: T): T {
    if (obj.metadata.managedFields !== undefined) delete obj.metadata.managedFields;
    return this.opts.transform ? this.opts.transform(obj) : obj;
  }

  private emit(type: EventType, obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        h(type, obj, old);
      } catch (err) {
        this.opts.log?.error({ err, kind: this.type.kind }, 'informer handler threw; event dropped for it');
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    const clock = this.opts.clock ?? systemClock;
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = clock.setTimeout(resolve, ms);
    });
  }

  private async run(): Promise<void> {
    const log = this.opts.log;
    let failures = 0;
    while (!this.stopped) {
      try {
        let rv = await this.relist();
        failures = 0;
        // Watch, re-watching from the last seen resourceVersion after a normal close.
        while (!this.stopped) {
          rv = await this.watchFrom(rv);
        }
      } catch (err) {
        if (this.stopped) break;
        failures++;
        this.restarts++;
        const reason = err instanceof WeftError ? err.code : 'error';
        this.opts.onRestart?.(reason);
        const gone = isGone(err);
        const delay = gone
          ? 0
          : backoffMs(
              failures,
              this.opts.baseBackoffMs ?? 200,
              this.opts.maxBackoffMs ?? 30_000,
              this.opts.random,
            );
        log?.warn(
          { err, kind: this.type.kind, retryInMs: delay },
          gone ? 'watch expired (410 Gone): relisting' : 'list/watch failed: restarting after backoff',
        );
        if (delay > 0) await this.sleep(delay);
      }
    }
  }

  /** Lists everything, replaces the cache and emits the differences; returns the list's resourceVersion. */
  private async relist(): Promise<string> {
    // Each item is cleaned (and slimmed) as its page arrives: the full objects of one page at
    // most are alive at a time.
    const res = await this.client.list<T>(this.type, {
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
      limit: this.opts.pageSize,
      map: (raw) => this.clean(raw),
    });
    const seen = new Set<string>();
    for (const obj of res.items) {
      const key = objectKey(obj);
      seen.add(key);
      const old = this.cache.get(key);
      this.cache.set(key, obj);
      if (!old) this.emit('add', obj);
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.emit('update', obj, old);
    }
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.emit('delete', old);
      }
    }
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.resolveSynced();
    }
    return res.resourceVersion;
  }

  private async watchFrom(resourceVersion: string): Promise<string> {
    let rv = resourceVersion;
    const base = this.opts.watchTimeoutSeconds ?? 300;
    const random = this.opts.random ?? Math.random;
    const timeoutSeconds = Math.round(base * (0.8 + 0.4 * random()));
    let failure: unknown;
    let handle: WatchHandle | undefined;
    handle = await this.client.watch<T>(
      this.type,
      {
        resourceVersion: rv,
        timeoutSeconds,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
      },
      (ev: WatchEvent<T>) => {
        if (ev.type === 'ERROR') {
          const st = ev.object as unknown as { code?: number; reason?: string; message?: string };
          failure = new KubeApiError(
            'WATCH',
            this.type.plural,
            st.code ?? 500,
            st.reason ?? 'Unknown',
            st.message ?? '',
          );
          handle?.abort();
          return;
        }
        const newRv = ev.object?.metadata?.resourceVersion;
        if (newRv) rv = newRv;
        if (ev.type === 'BOOKMARK') return;
        const obj = this.clean(ev.object);
        const key = objectKey(obj);
        const old = this.cache.get(key);
        if (ev.type === 'DELETED') {
          this.cache.delete(key);
          this.emit('delete', old ?? obj);
        } else {
          this.cache.set(key, obj);
          this.emit(old ? 'update' : 'add', obj, old);
        }
      },
      this.opts.watchdogMs ?? (timeoutSeconds + 30) * 1000,
    );
    this.watch = handle;
    await handle.done;
    if (failure) throw failure;
    if (this.stopped) throw new WeftError(ERROR_CODES.STOPPED, 'informer stopped');
    return rv;
  }
}
