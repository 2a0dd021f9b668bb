// Follows the config directory: fs.watch for prompt pickup of the kubelet's `..data` swap plus
// a slow poll (watch events can be missed), both debounced. Every read is validated; a valid
// config with a new version is handed to `apply` (one atomic swap), an invalid one is refused
// with the reason logged and counted, and the last good config stays in force.
import { type FSWatcher, watch } from 'node:fs';
import type { ProxyConfig } from '../api/index.ts';
import { dirFingerprint, readConfigDir } from './configdir.ts';
import type { ProxyError } from './errors.ts';

export interface ConfigStatus {
  version: string | undefined;
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
    try {
      const config = await readConfigDir(this.dir);
      this.#fingerprint = fp;
      if (config.version === this.status.version) return;
      this.#events.apply(config);
      this.status.version = config.version;
      this.status.appliedAt = new Date().toISOString();
      this.status.lastError = undefined;
      this.status.reloads++;
    } catch (e) {
      const err = e as ProxyError;
      this.#fingerprint = fp;
      // A config not fully projected yet is transient: it will be re-read on the next change.
      this.status.failures++;
      this.status.lastError = {
        code: err.code ?? 'WEFT_CONFIG_INVALID',
        message: err.message,
        at: new Date().toISOString(),
      };
      this.#events.rejected(err);
    }
  }
}
