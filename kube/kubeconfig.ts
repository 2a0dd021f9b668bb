// A small kubeconfig loader for the operator, the webhook and weftctl: the current context of a
// kubeconfig file, or the in-cluster ServiceAccount. It covers server, CA, bearer token or
// token file, client certificate and, where asked (`{ exec: true }`: weftctl and the webhook,
// which client-node served before), client-go exec credential plugins. Written by hand because
// importing @kubernetes/client-node's KubeConfig loads its whole generated API (~45 MB of RSS
// in the operator, measured); what it does not support (auth providers; exec plugins for the
// operator) is refused with an error that says to use a token or certificate kubeconfig.
// Structurally compatible with client-node's KubeConfig where kube/client.ts uses it.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type https from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import * as yaml from 'js-yaml';
import { ERROR_CODES, WeftError } from './errors.ts';

/** What kube/client.ts needs of a kubeconfig (client-node's KubeConfig has the same shape). */
export interface KubeAccess {
  getCurrentCluster(): { server: string } | null;
  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void>;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface Named<T> {
  name: string;
  [key: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}
type Rec = Record<string, string | boolean | undefined>;

/** A user's `exec` stanza: client-go's credential plugin (client.authentication.k8s.io). */
interface ExecConfig {
  command: string;
  args?: string[];
  env?: { name: string; value: string }[] | null;
  apiVersion?: string;
}

interface ExecCredential {
  token?: string;
  cert?: Buffer;
  key?: Buffer;
  /** ms since the epoch; undefined: valid for the life of the process. */
  expires?: number;
}

/** Runs the plugin and reads its ExecCredential (`status.token` or a client certificate). */
function runExecPlugin(cfg: ExecConfig, base: string): Promise<ExecCredential> {
  const apiVersion = cfg.apiVersion ?? 'client.authentication.k8s.io/v1';
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const e of cfg.env ?? []) env[e.name] = e.value;
  env.KUBERNETES_EXEC_INFO = JSON.stringify({
    apiVersion,
    kind: 'ExecCredential',
    spec: { interactive: false },
  });
  // A relative command path is relative to the kubeconfig, as in client-go.
  const command =
    cfg.command.includes('/') && !isAbsolute(cfg.command) ? join(base, cfg.command) : cfg.command;
  return new Promise((resolve, reject) =>
    execFile(
      command,
      cfg.args ?? [],
      { env, timeout: 60_000, maxBuffer: 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err)
          return reject(
            new WeftError(
              ERROR_CODES.CONFIG,
              `kubeconfig exec plugin ${cfg.command} failed: ${String(stderr).trim() || err.message}`,
              { cause: err },
            ),
          );
        let status: {
          token?: string;
          clientCertificateData?: string;
          clientKeyData?: string;
          expirationTimestamp?: string;
        };
        try {
          status = (JSON.parse(String(stdout)) as { status?: typeof status }).status ?? {};
        } catch (e) {
          return reject(
            new WeftError(
              ERROR_CODES.CONFIG,
              `kubeconfig exec plugin ${cfg.command} printed no ExecCredential JSON`,
              {
                cause: e,
              },
            ),
          );
        }
        if (!status.token && !(status.clientCertificateData && status.clientKeyData))
          return reject(
            new WeftError(
              ERROR_CODES.CONFIG,
              `kubeconfig exec plugin ${cfg.command}: its ExecCredential has neither status.token nor status.clientCertificateData and clientKeyData`,
            ),
          );
        resolve({
          token: status.token,
          cert: status.clientCertificateData ? Buffer.from(status.clientCertificateData) : undefined,
          key: status.clientKeyData ? Buffer.from(status.clientKeyData) : undefined,
          expires: status.expirationTimestamp ? Date.parse(status.expirationTimestamp) : undefined,
        });
      },
    ),
  );
}

export class SimpleKubeConfig implements KubeAccess {
  readonly server: string;
  readonly #ca?: Buffer;
  readonly #insecure: boolean;
  readonly #token?: string;
  readonly #tokenFile?: string;
  readonly #cert?: Buffer;
  readonly #key?: Buffer;
  readonly #exec?: { config: ExecConfig; base: string };
  #credential?: Promise<ExecCredential>;

  private constructor(o: {
    server: string;
    ca?: Buffer;
    insecure?: boolean;
    token?: string;
    tokenFile?: string;
    cert?: Buffer;
    key?: Buffer;
    exec?: { config: ExecConfig; base: string };
  }) {
    this.server = o.server.replace(/\/$/, '');
    this.#ca = o.ca;
    this.#insecure = o.insecure ?? false;
    this.#token = o.token;
    this.#tokenFile = o.tokenFile;
    this.#cert = o.cert;
    this.#key = o.key;
    this.#exec = o.exec;
  }

  /** The in-cluster ServiceAccount (token re-read on every request: bound tokens rotate). */
  static inCluster(env: NodeJS.ProcessEnv = process.env, dir = SA_DIR): SimpleKubeConfig {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT ?? '443';
    if (!host || !existsSync(join(dir, 'token'))) {
      throw new WeftError(
        ERROR_CODES.CONFIG,
        'not running in a cluster and no kubeconfig given: pass --kubeconfig or set KUBECONFIG',
      );
    }
    const h = host.includes(':') ? `[${host}]` : host;
    return new SimpleKubeConfig({
      server: `https://${h}:${port}`,
      ca: readFileSync(join(dir, 'ca.crt')),
      tokenFile: join(dir, 'token'),
    });
  }

  /**
   * The current context of a kubeconfig file. `exec`: run the user's credential plugin, if it
   * has one (otherwise such a kubeconfig is refused).
   */
  static fromFile(path: string, opts: { context?: string; exec?: boolean } = {}): SimpleKubeConfig {
    const doc = yaml.load(readFileSync(path, 'utf8')) as {
      'current-context'?: string;
      contexts?: Named<Rec>[];
      clusters?: Named<Rec>[];
      users?: Named<Rec>[];
    };
    const base = dirname(path);
    const file = (p: string | boolean | undefined) =>
      typeof p === 'string' ? readFileSync(isAbsolute(p) ? p : join(base, p)) : undefined;
    const data = (d: string | boolean | undefined) =>
      typeof d === 'string' ? Buffer.from(d, 'base64') : undefined;
    const want = opts.context ?? doc['current-context'];
    const ctx = doc.contexts?.find((c) => c.name === want)?.context;
    if (!ctx)
      throw new WeftError(
        ERROR_CODES.CONFIG,
        `kubeconfig ${path}: context "${want ?? ''}" not found (set current-context)`,
      );
    const cluster = doc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
    if (!cluster?.server)
      throw new WeftError(
        ERROR_CODES.CONFIG,
        `kubeconfig ${path}: cluster "${String(ctx.cluster)}" has no server`,
      );
    const user = doc.users?.find((u) => u.name === ctx.user)?.user ?? {};
    const exec = user.exec as unknown as ExecConfig | undefined;
    if ((exec && !opts.exec) || user['auth-provider']) {
      throw new WeftError(
        ERROR_CODES.CONFIG,
        `kubeconfig ${path}: user "${String(ctx.user)}" uses an exec plugin or auth provider, which the operator does not run; give it a token or a client certificate (or run it in the cluster)`,
      );
    }
    return new SimpleKubeConfig({
      server: String(cluster.server),
      ca: data(cluster['certificate-authority-data']) ?? file(cluster['certificate-authority']),
      insecure: cluster['insecure-skip-tls-verify'] === true,
      token: typeof user.token === 'string' ? user.token : undefined,
      tokenFile: typeof user.tokenFile === 'string' ? user.tokenFile : undefined,
      cert: data(user['client-certificate-data']) ?? file(user['client-certificate']),
      key: data(user['client-key-data']) ?? file(user['client-key']),
      ...(exec ? { exec: { config: exec, base } } : {}),
    });
  }

  /** --kubeconfig, else $KUBECONFIG (its first file), else in-cluster, else ~/.kube/config. */
  static load(
    path?: string,
    env: NodeJS.ProcessEnv = process.env,
    opts: { exec?: boolean } = {},
  ): SimpleKubeConfig {
    if (path) return SimpleKubeConfig.fromFile(path, opts);
    if (env.KUBECONFIG) return SimpleKubeConfig.fromFile(env.KUBECONFIG.split(':')[0]!, opts);
    if (env.KUBERNETES_SERVICE_HOST) return SimpleKubeConfig.inCluster(env);
    return SimpleKubeConfig.fromFile(join(homedir(), '.kube', 'config'), opts);
  }

  /** The exec plugin's credential, run again a minute before it expires. */
  async #execCredential(): Promise<ExecCredential | undefined> {
    if (!this.#exec) return undefined;
    const current = await this.#credential?.catch(() => undefined);
    if (!current || (current.expires !== undefined && current.expires - 60_000 < Date.now())) {
      this.#credential = runExecPlugin(this.#exec.config, this.#exec.base);
    }
    return this.#credential;
  }

  getCurrentCluster(): { server: string } {
    return { server: this.server };
  }

  async applyToHTTPSOptions(opts: https.RequestOptions): Promise<void> {
    if (this.#ca) opts.ca = this.#ca;
    if (this.#insecure) opts.rejectUnauthorized = false;
    const exec = await this.#execCredential();
    const cert = exec?.cert ?? this.#cert;
    const key = exec?.key ?? this.#key;
    if (cert) opts.cert = cert;
    if (key) opts.key = key;
    const token =
      exec?.token ??
      this.#token ??
      (this.#tokenFile ? readFileSync(this.#tokenFile, 'utf8').trim() : undefined);
    if (token)
      opts.headers = { ...(opts.headers as Record<string, string>), authorization: `Bearer ${token}` };
  }
}
