// Follows the config directory: fs.watch for prompt pickup of the kubelet's `..data` swap plus
// a slow poll (watch events can be missed), both debounced. Every read is validated; a valid
// config with a new version is handed to `apply` (one atomic swap), an invalid one is refused
// with the reason logged and counted, and the last good config stays in force.
// The volume is one source; the apiserver fast path (apisource.ts) offers candidates through
// offer() too: whichever source delivers a generation first applies it, and neither can move
// the proxy back to a lower generation (manifest `generation`, written by the operator).
import { type FSWatcher, watch } from 'node:fs';
import type { ProxyConfig } from '../api/index.ts';
import { type ConfigCandidate, dirFingerprint, readConfigSource } from './configdir.ts';
import { ProxyError } from './errors.ts';

export type ConfigSource = 'volume' | 'apiserver';

export interface ConfigStatus {
  version: string | undefined;
  /** The applied manifest's generation; undefined for a config without one. */
  generation: number | undefined;
  /** Where the applied config came from. */
  source: ConfigSource | undefined;
  /** Candidates not applied because they were older than (or the same as) the applied one. */
  stale: number;
  appliedAt: string | undefined;
  lastError: { code: string; message: string; at: string } | undefined;
  reloads: number;
  failures: number;
}

export interface WatcherEvents {
  apply(config: ProxyConfig): void;
  rejected(err: ProxyError): void;
}

export class ConfigWatcher {
  readonly dir: string;
  readonly status: ConfigStatus = {
    version: undefined,
    generation: undefined,
    source: undefined,
    stale: 0,
    appliedAt: undefined,
    lastError: undefined,
    reloads: 0,
    failures: 0,
  };
  readonly #events: WatcherEvents;
  readonly #pollMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #fingerprint = '';
  #running: Promise<void> | undefined;
  #again = false;
  readonly #listeners = new Set<() => void>();

  constructor(dir: string, events: WatcherEvents, pollMs = 2000) {
    this.dir = dir;
    this.#events = events;
    this.#pollMs = pollMs;
  }

  /** Loads once (the result is in `status`), then follows changes. */
  async start(): Promise<void> {
    await this.reload();
    try {
      this.#watcher = watch(this.dir, () => this.#schedule());
      this.#watcher.on('error', () => {});
    } catch {
      // The directory may not exist yet; the poll picks it up.
    }
    this.#timer = setInterval(() => {
      dirFingerprint(this.dir).then(
        (fp) => {
          if (fp !== this.#fingerprint) this.#schedule();
        },
        () => {},
      );
    }, this.#pollMs);
    this.#timer.unref();
  }

  /** Calls fn after every applied config until the returned function is called. */
  onApplied(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Applies a validated candidate unless it would not move the proxy forward: a lower (or the
   * same) generation than the applied one is ignored and counted in `stale`, as is one without a
   * generation once a generation is known. True when applied.
   */
  offer(c: ConfigCandidate, source: ConfigSource): boolean {
    const cur = this.status;
    if (c.config.version === cur.version) {
      // The same content under a newer generation (the operator rewrote it): nothing to swap,
      // but the proxy reports the newer generation.
      if (c.generation !== undefined && (cur.generation === undefined || c.generation > cur.generation)) {
        cur.generation = c.generation;
        for (const fn of this.#listeners) fn();
      }
      return false;
    }
    if (cur.generation !== undefined && (c.generation === undefined || c.generation <= cur.generation)) {
      cur.stale++;
      return false;
    }
    try {
      this.#events.apply(c.config);
    } catch (e) {
      this.refuse(e);
      return false;
    }
    cur.version = c.config.version;
    cur.generation = c.generation;
    cur.source = source;
    cur.appliedAt = new Date().toISOString();
    cur.lastError = undefined;
    cur.reloads++;
    for (const fn of this.#listeners) fn();
    return true;
  }

  /** A candidate that could not be read or validated: counted, logged, the last good kept. */
  refuse(e: unknown): void {
    const err =
      e instanceof ProxyError ? e : new ProxyError('WEFT_CONFIG_INVALID', String((e as Error)?.message ?? e));
    this.status.failures++;
    this.status.lastError = {
      code: err.code ?? 'WEFT_CONFIG_INVALID',
      message: err.message,
      at: new Date().toISOString(),
    };
    this.#events.rejected(err);
  }

  stop(): void {
    this.#watcher?.close();
    if (this.#timer) clearInterval(this.#timer);
    if (this.#debounce) clearTimeout(this.#debounce);
  }

  #schedule(): void {
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.reload(), 50);
    this.#debounce.unref();
  }

  /** Reads the directory now; concurrent calls coalesce. */
  async reload(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await this.#readOnce();
      } while (this.#again);
    })();
    try {
      await this.#running;
    } finally {
      this.#running = undefined;
    }
  }

  async #readOnce(): Promise<void> {
    const fp = await dirFingerprint(this.dir);
    let c: ConfigCandidate;
    try {
      c = await readConfigSource(this.dir);
    } catch (e) {
      // A config not fully projected yet is transient: it will be re-read on the next change.
      this.#fingerprint = fp;
      this.refuse(e);
      return;
    }
    this.#fingerprint = fp;
    this.offer(c, 'volume');
  }
}
