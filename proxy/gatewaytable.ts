// Gateway mode (docs/ingress.md): the Gateway's routing table (GatewayConfig JSON) from two
// sources, as a sidecar's ProxyConfig (watcher.ts): the ConfigMap volume (`--gateway-config`,
// polled; the start-up source, and the fallback when the apiserver is unreachable) and the
// apiserver watch of the gateway's own ConfigMap (apisource.ts, `--gateway-configmap`).
// Whichever delivers a generation first applies it; neither moves the gateway back to a lower
// (or the same) generation (`generation`, written by the operator). A candidate that is not JSON
// or not a valid GatewayConfig is refused, logged and counted, and the last good table stays.
// The listeners' certificates (PEM files the table names, from the `-tls` Secret's volume) are
// polled with it: a renewed certificate is served without restart.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { GATEWAY_CONFIG_KEY } from '../api/constants.ts';
import type { GatewayConfig } from '../api/proxyconfig.ts';
import type { ConfigMapTarget } from './apisource.ts';
import type { ProxyHandle } from './proxy.ts';
import type { ConfigSource } from './watcher.ts';

export interface GatewayTableStatus {
  /** The applied table's generation; undefined for a table without one (or none yet). */
  generation: number | undefined;
  source: ConfigSource | undefined;
  /** Candidates not applied because they were older than (or the same as) the applied one. */
  stale: number;
  appliedAt: string | undefined;
  lastError: { message: string; at: string } | undefined;
  reloads: number;
  failures: number;
}

/** The PEM files the HTTPS listeners of `gw` name, read from `dir`. */
async function readCertificates(gw: GatewayConfig, dir: string | undefined): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  if (!dir) return files;
  const names = gw.ports.flatMap((p) => (p.tls ?? []).flatMap((t) => [t.cert, t.key]));
  for (const name of new Set(names)) {
    // The schema allows only plain file names; a missing file is reported by GatewayTls.
    if (name.startsWith('..')) continue;
    try {
      files.set(name, await readFile(join(dir, name), 'utf8'));
    } catch {}
  }
  return files;
}

export class GatewayTable {
  readonly status: GatewayTableStatus = {
    generation: undefined,
    source: undefined,
    stale: 0,
    appliedAt: undefined,
    lastError: undefined,
    reloads: 0,
    failures: 0,
  };
  readonly #file: string;
  readonly #certsDir: string | undefined;
  readonly #proxy: Pick<ProxyHandle, 'setGateway'>;
  readonly #log: Logger;
  readonly #pollMs: number;
  /** The applied table, and the certificates it was applied with (JSON). */
  #applied: { gw: GatewayConfig; text: string; certificates: string } | undefined;
  /** The volume's content last considered. */
  #volumeText: string | undefined;
  #volumeMissingLogged = false;
  /** Candidates and polls run one at a time, in order. */
  #queue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  constructor(o: {
    file: string;
    certsDir?: string;
    proxy: Pick<ProxyHandle, 'setGateway'>;
    log: Logger;
    pollMs?: number;
  }) {
    this.#file = o.file;
    this.#certsDir = o.certsDir;
    this.#proxy = o.proxy;
    this.#log = o.log;
    this.#pollMs = o.pollMs ?? 2000;
  }

  /** Reads the volume once (the result is in `status`), then polls it and the certificates. */
  async start(): Promise<void> {
    await this.#poll();
    this.#timer = setInterval(() => void this.#poll(), this.#pollMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The apiserver fast path's target: the gateway's own ConfigMap `name`. */
  target(name: string): ConfigMapTarget {
    return {
      name,
      key: GATEWAY_CONFIG_KEY,
      take: (cm) => this.offer(cm.data?.[GATEWAY_CONFIG_KEY] ?? '', 'apiserver'),
    };
  }

  /** A candidate table; applied unless invalid or not newer than the applied one. */
  offer(text: string, source: ConfigSource): Promise<void> {
    return this.#enqueue(() => this.#consider(text, source));
  }

  #enqueue(fn: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch((e: Error) => this.#log.error({ err: e.message }, 'gateway routing table'));
    return this.#queue;
  }

  #poll(): Promise<void> {
    return this.#enqueue(async () => {
      let text: string | undefined;
      try {
        text = await readFile(this.#file, 'utf8');
      } catch (e) {
        if (!this.#volumeMissingLogged && !this.#applied)
          this.#log.warn({ file: this.#file, err: (e as Error).message }, 'no gateway routing table yet');
        this.#volumeMissingLogged = true;
      }
      if (text !== undefined && text !== this.#volumeText) {
        this.#volumeText = text;
        await this.#consider(text, 'volume');
      }
      // A renewed certificate (the `-tls` Secret's volume) is served without restart.
      const a = this.#applied;
      if (!a) return;
      const certificates = await readCertificates(a.gw, this.#certsDir);
      const state = JSON.stringify([...certificates]);
      if (state === a.certificates || a !== this.#applied) return;
      a.certificates = state;
      await this.#proxy.setGateway(a.gw, certificates);
      this.#log.info({ gateway: a.gw.gateway }, 'gateway certificates reloaded');
    });
  }

  #refuse(source: ConfigSource, message: string): void {
    this.status.failures++;
    this.status.lastError = { message, at: new Date().toISOString() };
    this.#log.warn({ source }, `gateway routing table refused, keeping the last good one: ${message}`);
  }

  async #consider(text: string, source: ConfigSource): Promise<void> {
    if (text === this.#applied?.text) return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return this.#refuse(source, (e as Error).message);
    }
    // Loaded only in gateway mode: ajv and the schemas cost a sidecar about 7 MB of RSS.
    const [{ check }, { GatewayConfig: schema }] = await Promise.all([
      import('../api/validate.ts'),
      import('../api/proxyconfig.ts'),
    ]);
    const errors = check(schema, value, 'gateway');
    if (errors.length > 0)
      return this.#refuse(source, errors.map((e) => `${e.field}: ${e.message}`).join('; '));
    const gw = value as GatewayConfig;
    const cur = this.status.generation;
    if (cur !== undefined && (gw.generation === undefined || gw.generation <= cur)) {
      this.status.stale++;
      return;
    }
    const certificates = await readCertificates(gw, this.#certsDir);
    await this.#proxy.setGateway(gw, certificates);
    this.#applied = { gw, text, certificates: JSON.stringify([...certificates]) };
    Object.assign(this.status, {
      generation: gw.generation,
      source,
      appliedAt: new Date().toISOString(),
      lastError: undefined,
      reloads: this.status.reloads + 1,
    });
    this.#log.info(
      { gateway: gw.gateway, ports: gw.ports.map((p) => p.port), generation: gw.generation ?? null, source },
      'gateway routing table applied',
    );
  }
}
