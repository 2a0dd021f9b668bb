// The fast path: the proxy watches its ConfigMap through the apiserver with the pod's own
// ServiceAccount token, instead of waiting for the kubelet's next volume sync (up to ~1.5 min).
// A list and a watch with a fieldSelector on the ConfigMap's name, which RBAC `resourceNames`
// can allow, so a proxy reads nothing else. Two targets: a sidecar watches its namespace's
// proxy-config ConfigMap (ClusterRole weft-proxy, bound by the operator's RoleBinding
// `weft-proxy` in each meshed namespace); every candidate goes through the same reassembly and
// validation as the volume (configdir.ts assembleConfig) and through ConfigWatcher.offer, which
// never moves the proxy back to a lower generation. A gateway also watches its own routing
// table, `<gateway>-weft-gateway` (the Role and RoleBinding of that name the operator writes),
// through GatewayTable.offer (gatewaytable.ts), with the same rules. When the apiserver is
// unreachable the proxy keeps serving what it has, the volume still applies newer configs, and
// the watch re-lists when it comes back.
import { existsSync, readFileSync } from 'node:fs';
import type Http from 'node:http';
import type Https from 'node:https';
import { join } from 'node:path';
import { CONFIG_DISTRIBUTION } from '../api/constants.ts';
import { type ConfigMapLike, configFromConfigMaps } from './configdir.ts';
import { ProxyError } from './errors.ts';
import type { ConfigWatcher } from './watcher.ts';

/** Where the kubelet mounts a ServiceAccount token (or the injector's projected one). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ApiServerAccess {
  /** "https://host:port" */
  server: string;
  /** Re-read before every request: projected tokens rotate. */
  tokenFile: string;
  caFile: string;
}

/** The in-cluster apiserver and token, when the pod has them; undefined otherwise. */
export function inClusterAccess(
  env: NodeJS.ProcessEnv = process.env,
  dir = SERVICE_ACCOUNT_DIR,
): ApiServerAccess | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host || !existsSync(join(dir, 'token')) || !existsSync(join(dir, 'ca.crt'))) return undefined;
  const h = host.includes(':') ? `[${host}]` : host;
  return { server: `https://${h}:${port}`, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca.crt') };
}

export interface ApiSourceStatus {
  /** A watch is open now. */
  watching: boolean;
  /** Watch events that carried a candidate (the target's key). */
  events: number;
  lastError: string | undefined;
}

type Log = (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;

/** What a watched ConfigMap's content is handed to. */
export interface ConfigMapTarget {
  /** The ConfigMap watched, by name. */
  name: string;
  /** The data key a candidate carries (events without it are skipped). */
  key: string;
  /** Validates and offers a candidate; `get` reads another ConfigMap of the namespace. */
  take(cm: ConfigMapLike, get: (name: string) => Promise<ConfigMapLike>): Promise<void>;
}

/** The sidecar's target: the namespace's ProxyConfig ConfigMaps, offered to the ConfigWatcher. */
export function proxyConfigTarget(watcher: ConfigWatcher, log: Log = () => {}): ConfigMapTarget {
  return {
    name: CONFIG_DISTRIBUTION.configMapName,
    key: CONFIG_DISTRIBUTION.manifestKey,
    async take(cm, get) {
      try {
        const c = await configFromConfigMaps(cm, get);
        if (watcher.offer(c, 'apiserver'))
          log('info', 'config applied from the apiserver watch', {
            version: c.config.version,
            generation: c.generation ?? null,
          });
      } catch (e) {
        // A shard written after its manifest was read is transient: the next event brings it.
        if (e instanceof ProxyError && e.code === 'WEFT_CONFIG_INCOMPLETE') return;
        watcher.refuse(e);
      }
    },
  };
}

export class ApiConfigSource {
  readonly status: ApiSourceStatus = { watching: false, events: 0, lastError: undefined };
  readonly #access: ApiServerAccess;
  readonly #namespace: string;
  readonly #target: ConfigMapTarget;
  readonly #log: Log;
  #https: typeof Https | undefined;
  #agent: Https.Agent | undefined;
  #stopped = false;
  #current: Http.ClientRequest | undefined;
  #sleep: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  /** Candidates are handled one at a time, the newest winning. */
  #pending: ConfigMapLike | undefined;
  #handling = false;

  /** A ConfigWatcher: the namespace's ProxyConfig (proxyConfigTarget). */
  constructor(
    access: ApiServerAccess,
    namespace: string,
    target: ConfigWatcher | ConfigMapTarget,
    log: Log = () => {},
  ) {
    this.#access = access;
    this.#namespace = namespace;
    this.#target = 'take' in target ? target : proxyConfigTarget(target, log);
    this.#log = log;
  }

  start(): void {
    void this.#loop();
  }

  stop(): void {
    this.#stopped = true;
    this.#current?.destroy();
    clearTimeout(this.#sleep);
    this.#wake?.();
    this.#agent?.destroy();
  }

  #path(name?: string, query = ''): string {
    const base = `/api/v1/namespaces/${encodeURIComponent(this.#namespace)}/configmaps`;
    return name ? `${base}/${encodeURIComponent(name)}` : `${base}?${query}`;
  }

  #request(path: string): Promise<Http.IncomingMessage> {
    this.#https ??= process.getBuiltinModule('node:https');
    const ca = readFileSync(this.#access.caFile);
    this.#agent ??= new this.#https.Agent({ keepAlive: true, ca });
    const token = readFileSync(this.#access.tokenFile, 'utf8').trim();
    const url = new URL(this.#access.server + path);
    return new Promise((resolve, reject) => {
      const req = this.#https!.request(
        url,
        {
          agent: this.#agent,
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'application/json',
            'user-agent': 'weft-proxy',
          },
          timeout: 30_000,
        },
        (res) => {
          if (res.statusCode !== 200) {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => {
              if (body.length < 2000) body += d;
            });
            res.on('end', () => {
              let msg = body;
              try {
                msg = (JSON.parse(body) as { message?: string }).message ?? body;
              } catch {}
              reject(new Error(`apiserver answered ${res.statusCode} to GET ${url.pathname}: ${msg}`));
            });
            return;
          }
          resolve(res);
        },
      );
      req.on('timeout', () =>
        req.destroy(new Error(`no answer from the apiserver within 30 s: GET ${url.pathname}`)),
      );
      req.on('error', reject);
      this.#current = req;
      req.end();
    });
  }

  async #getJson<T>(path: string): Promise<T> {
    const res = await this.#request(path);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
  }

  async #loop(): Promise<void> {
    const selector = `fieldSelector=${encodeURIComponent(`metadata.name=${this.#target.name}`)}`;
    let backoffMs = 500;
    while (!this.#stopped) {
      try {
        const list = await this.#getJson<{ metadata: { resourceVersion: string }; items: ConfigMapLike[] }>(
          this.#path(undefined, selector),
        );
        if (list.items[0]) this.#offer(list.items[0]);
        const rv = list.metadata.resourceVersion;
        const res = await this.#request(
          this.#path(
            undefined,
            `${selector}&watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=${rv}`,
          ),
        );
        res.setTimeout(0);
        this.status.watching = true;
        this.status.lastError = undefined;
        backoffMs = 500;
        let buf = '';
        res.setEncoding('utf8');
        for await (const chunk of res) {
          buf += chunk as string;
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (!line.trim()) continue;
            const ev = JSON.parse(line) as { type: string; object: ConfigMapLike & { message?: string } };
            if (ev.type === 'ERROR')
              throw new Error(`watch ended by the apiserver: ${ev.object.message ?? ''}`);
            if (ev.type === 'ADDED' || ev.type === 'MODIFIED') this.#offer(ev.object);
          }
        }
      } catch (e) {
        if (this.#stopped) break;
        const msg = (e as Error).message;
        if (this.status.lastError !== msg)
          this.#log('warn', `config fast path: ${msg}; retrying (the volume still applies new configs)`, {
            retryMs: backoffMs,
          });
        this.status.lastError = msg;
        await this.#pause(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      } finally {
        this.status.watching = false;
      }
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((r) => {
      this.#wake = r;
      this.#sleep = setTimeout(r, ms);
      this.#sleep.unref();
    });
  }

  #offer(cm: ConfigMapLike): void {
    if (!cm.data?.[this.#target.key]) return;
    this.status.events++;
    this.#pending = cm;
    if (!this.#handling) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#handling = true;
    try {
      while (this.#pending && !this.#stopped) {
        const cm = this.#pending;
        this.#pending = undefined;
        await this.#handle(cm);
      }
    } finally {
      this.#handling = false;
    }
  }

  async #handle(cm: ConfigMapLike): Promise<void> {
    await this.#target.take(cm, (name) => this.#getJson<ConfigMapLike>(this.#path(name)));
  }
}
