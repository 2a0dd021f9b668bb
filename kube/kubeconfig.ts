// A small kubeconfig loader for the operator: the current context of a kubeconfig file, or
// the in-cluster ServiceAccount. It covers what a controller uses (server, CA, bearer token or
// token file, client certificate) and nothing else. Written by hand because importing
// @kubernetes/client-node's KubeConfig loads its whole generated API (~45 MB of RSS in the
// operator, measured); anything it does not support (exec plugins, auth providers) is
// refused with an error that says to use a token or certificate kubeconfig.
// Structurally compatible with client-node's KubeConfig where kube/client.ts uses it.
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

export class SimpleKubeConfig implements KubeAccess {
  readonly server: string;
  readonly #ca?: Buffer;
  readonly #insecure: boolean;
  readonly #token?: string;
  readonly #tokenFile?: string;
  readonly #cert?: Buffer;
  readonly #key?: Buffer;

  private constructor(o: {
    server: string;
    ca?: Buffer;
    insecure?: boolean;
    token?: string;
    tokenFile?: string;
    cert?: Buffer;
    key?: Buffer;
  }) {
    this.server = o.server.replace(/\/$/, '');
    this.#ca = o.ca;
    this.#insecure = o.insecure ?? false;
    this.#token = o.token;
    this.#tokenFile = o.tokenFile;
    this.#cert = o.cert;
    this.#key = o.key;
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

  /** The current context of a kubeconfig file. */
  static fromFile(path: string, contextName?: string): SimpleKubeConfig {
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
    const want = contextName ?? doc['current-context'];
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
    if (user.exec || user['auth-provider']) {
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
    });
  }

  /** --kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config. */
  static load(path?: string, env: NodeJS.ProcessEnv = process.env): SimpleKubeConfig {
    if (path) return SimpleKubeConfig.fromFile(path);
    if (env.KUBECONFIG) return SimpleKubeConfig.fromFile(env.KUBECONFIG.split(':')[0]!);
    if (env.KUBERNETES_SERVICE_HOST) return SimpleKubeConfig.inCluster(env);
    return SimpleKubeConfig.fromFile(join(homedir(), '.kube', 'config'));
  }

  getCurrentCluster(): { server: string } {
    return { server: this.server };
  }

  async applyToHTTPSOptions(opts: https.RequestOptions): Promise<void> {
    if (this.#ca) opts.ca = this.#ca;
    if (this.#insecure) opts.rejectUnauthorized = false;
    if (this.#cert) opts.cert = this.#cert;
    if (this.#key) opts.key = this.#key;
    const token = this.#token ?? (this.#tokenFile ? readFileSync(this.#tokenFile, 'utf8').trim() : undefined);
    if (token)
      opts.headers = { ...(opts.headers as Record<string, string>), authorization: `Bearer ${token}` };
  }
}
