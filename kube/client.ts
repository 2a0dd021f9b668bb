// The one Kubernetes REST client of the operator, the webhook and weftctl, over node:https, with
// credentials from kube/kubeconfig.ts (or anything shaped like client-node's KubeConfig). Weft needs a handful of verbs on known paths (list, watch, get, create, update,
// delete, server-side apply, also on the status subresource); doing them directly keeps
// keep-alive connections, streaming watches and error mapping under our control.
import * as http from 'node:http';
import * as https from 'node:https';
import { createInterface } from 'node:readline';
import { ERROR_CODES, isNotFound, KubeApiError, WeftError } from './errors.ts';
import type { KubeAccess } from './kubeconfig.ts';

export const FIELD_MANAGER = 'weft-operator';

/** Where a resource kind lives in the REST API. */
export interface ResourceType {
  /** "" for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

export const apiVersionOf = (t: ResourceType) => (t.group ? `${t.group}/${t.version}` : t.version);

export function resourcePath(t: ResourceType, namespace?: string, name?: string, sub?: string): string {
  let p = t.group ? `/apis/${t.group}/${t.version}` : `/api/${t.version}`;
  if (t.namespaced && namespace) p += `/namespaces/${encodeURIComponent(namespace)}`;
  p += `/${t.plural}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  if (sub) p += `/${sub}`;
  return p;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: OwnerReference[];
    managedFields?: unknown;
    deletionTimestamp?: string;
    creationTimestamp?: string;
  };
  [field: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

type Query = Record<string, string | number | boolean | undefined>;

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface WatchHandle {
  /** Resolves when the stream ends (server close, error, abort); rejects on a transport error. */
  done: Promise<void>;
  abort(): void;
}

export class KubeClient {
  readonly kc: KubeAccess;
  readonly server: string;
  private agent?: https.Agent;
  private readonly userAgent: string;

  constructor(kc: KubeAccess, userAgent = 'weft') {
    this.kc = kc;
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new WeftError(ERROR_CODES.CONFIG, 'kubeconfig has no current cluster');
    this.server = cluster.server;
    this.userAgent = userAgent;
  }

  private async options(
    method: string,
    path: string,
    query?: Query,
  ): Promise<https.RequestOptions & { url: URL }> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const opts: https.RequestOptions = { method, headers: {} };
    await this.kc.applyToHTTPSOptions(opts);
    if (!this.agent) {
      this.agent = new https.Agent({
        keepAlive: true,
        maxSockets: 32,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        rejectUnauthorized: opts.rejectUnauthorized,
        servername: opts.servername,
      });
    }
    const headers = { ...(opts.headers as Record<string, string>), 'user-agent': this.userAgent };
    return {
      url,
      method,
      headers,
      agent: url.protocol === 'https:' ? this.agent : undefined,
      auth: opts.auth,
    };
  }

  /** One request; the parsed JSON body, or a KubeApiError with the Status' reason and message. */
  async request<T>(
    method: string,
    path: string,
    opts: { query?: Query; body?: unknown; contentType?: string; signal?: AbortSignal } = {},
  ): Promise<T> {
    const text = await this.requestText(method, path, opts);
    try {
      return text ? JSON.parse(text) : (undefined as T);
    } catch {
      return undefined as T;
    }
  }

  /**
   * One request; the body as text (a pod's /metrics through pods/proxy, say), or a KubeApiError
   * with the Status' reason and message.
   */
  async requestText(
    method: string,
    path: string,
    opts: { query?: Query; body?: unknown; contentType?: string; signal?: AbortSignal; accept?: string } = {},
  ): Promise<string> {
    const o = await this.options(method, path, opts.query);
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    if (payload) {
      (o.headers as Record<string, string>)['content-type'] = opts.contentType ?? 'application/json';
      (o.headers as Record<string, string>)['content-length'] = String(payload.length);
    }
    (o.headers as Record<string, string>).accept = opts.accept ?? 'application/json';
    const mod = o.url.protocol === 'https:' ? https : http;
    return new Promise<string>((resolve, reject) => {
      const req = mod.request(o.url, { ...o, signal: opts.signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) =>
          reject(new WeftError(ERROR_CODES.TRANSPORT, `${method} ${path}: ${err.message}`, { cause: err })),
        );
        res.on('end', () => {
          const text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8');
          chunks.length = 0;
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(text);
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          const st = (parsed ?? {}) as { reason?: string; message?: string };
          reject(
            new KubeApiError(method, path, status, st.reason ?? 'Unknown', st.message ?? text.slice(0, 500)),
          );
        });
      });
      req.on('error', (err) =>
        reject(new WeftError(ERROR_CODES.TRANSPORT, `${method} ${path}: ${err.message}`, { cause: err })),
      );
      req.end(payload);
    });
  }

  get<T extends KubeObject>(t: ResourceType, name: string, namespace?: string): Promise<T> {
    return this.request<T>('GET', resourcePath(t, namespace, name));
  }

  /** get, or undefined when the object does not exist (404); other refusals throw. */
  async find<T extends KubeObject>(
    t: ResourceType,
    name: string,
    namespace?: string,
  ): Promise<T | undefined> {
    try {
      return await this.get<T>(t, name, namespace);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Lists every page (`limit`, default 500) of a kind, across namespaces unless one is given.
   * With `map`, each item is mapped as its page arrives and only the result is kept, so the
   * full objects of one page at most are alive at a time (an informer slims 10,000 Pods
   * without ever holding 10,000 full Pods).
   */
  async list<T extends KubeObject, U = T>(
    t: ResourceType,
    opts: {
      namespace?: string;
      labelSelector?: string;
      fieldSelector?: string;
      signal?: AbortSignal;
      limit?: number;
      map?: (item: T) => U;
    } = {},
  ): Promise<ListResult<U>> {
    const items: U[] = [];
    const map = opts.map;
    let cont: string | undefined;
    let rv = '';
    do {
      let page:
        | {
            items: T[];
            metadata: { resourceVersion: string; continue?: string };
          }
        | undefined = await this.request('GET', resourcePath(t, opts.namespace), {
        query: {
          limit: opts.limit ?? 500,
          continue: cont,
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
        },
        signal: opts.signal,
      });
      const pageItems = page!.items ?? [];
      rv = page!.metadata.resourceVersion;
      cont = page!.metadata.continue || undefined;
      page = undefined;
      for (let i = 0; i < pageItems.length; i++) {
        const it = pageItems[i]!;
        // Drop the page's reference as we go: the raw item can be collected once mapped.
        (pageItems as (T | undefined)[])[i] = undefined;
        items.push(map ? map(it) : (it as unknown as U));
      }
    } while (cont);
    return { items, resourceVersion: rv };
  }

  create<T extends KubeObject>(t: ResourceType, obj: T): Promise<T> {
    return this.request<T>('POST', resourcePath(t, obj.metadata.namespace), { body: obj });
  }

  update<T extends KubeObject>(t: ResourceType, obj: T): Promise<T> {
    return this.request<T>('PUT', resourcePath(t, obj.metadata.namespace, obj.metadata.name), { body: obj });
  }

  /** Deletes an object; `gracePeriodSeconds: 0` with a pod is `kubectl delete --grace-period=0 --force`. */
  async delete(
    t: ResourceType,
    name: string,
    namespace?: string,
    opts: { gracePeriodSeconds?: number } = {},
  ): Promise<void> {
    await this.request('DELETE', resourcePath(t, namespace, name), {
      body: { propagationPolicy: 'Background', ...opts },
    });
  }

  /**
   * Server-side apply of the fields in `obj` under one field manager (force: Weft owns what it
   * applies). With `subresource: 'status'`, only status is applied, never spec.
   */
  apply<T extends KubeObject>(
    t: ResourceType,
    obj: KubeObject,
    opts: { subresource?: 'status'; fieldManager?: string } = {},
  ): Promise<T> {
    const body = { apiVersion: apiVersionOf(t), kind: t.kind, ...obj };
    return this.request<T>(
      'PATCH',
      resourcePath(t, obj.metadata.namespace, obj.metadata.name, opts.subresource),
      {
        body,
        contentType: 'application/apply-patch+yaml',
        query: { fieldManager: opts.fieldManager ?? FIELD_MANAGER, force: true },
      },
    );
  }

  /**
   * A streaming watch. Every event goes to onEvent; `idleTimeoutMs` is the watchdog: a watch
   * that sends nothing (not even a bookmark) for that long is aborted and reported as silent.
   */
  async watch<T>(
    t: ResourceType,
    query: Query,
    onEvent: (ev: WatchEvent<T>) => void,
    idleTimeoutMs: number,
  ): Promise<WatchHandle> {
    const o = await this.options('GET', resourcePath(t), {
      ...query,
      watch: true,
      allowWatchBookmarks: true,
    });
    (o.headers as Record<string, string>).accept = 'application/json';
    const mod = o.url.protocol === 'https:' ? https : http;
    let req: http.ClientRequest | undefined;
    let timer: NodeJS.Timeout | undefined;
    let silent = false;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        silent = true;
        req?.destroy();
      }, idleTimeoutMs);
      timer.unref();
    };
    let aborted = false;
    const done = new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        clearTimeout(timer);
        if (aborted) return resolve();
        if (silent)
          return reject(
            new WeftError(ERROR_CODES.WATCH_SILENT, `watch ${t.plural}: silent for ${idleTimeoutMs} ms`, {
              cause: err,
            }),
          );
        reject(new WeftError(ERROR_CODES.TRANSPORT, `watch ${t.plural}: ${err.message}`, { cause: err }));
      };
      arm();
      req = mod.request(o.url, o, (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            clearTimeout(timer);
            let st: { reason?: string; message?: string } = {};
            try {
              st = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {}
            reject(
              new KubeApiError(
                'WATCH',
                resourcePath(t),
                res.statusCode ?? 0,
                st.reason ?? 'Unknown',
                st.message ?? '',
              ),
            );
          });
          return;
        }
        res.on('data', arm);
        res.on('error', fail);
        const lines = createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY });
        // readline forwards the input's errors (an aborted response) to the interface.
        lines.on('error', fail);
        lines.on('line', (line) => {
          if (!line) return;
          let ev: WatchEvent<T>;
          try {
            ev = JSON.parse(line) as WatchEvent<T>;
          } catch {
            return;
          }
          onEvent(ev);
        });
        lines.on('close', () => {
          clearTimeout(timer);
          if (silent) fail(new Error('idle'));
          else resolve();
        });
      });
      req.on('error', fail);
      req.end();
    });
    done.catch(() => {});
    return {
      done,
      abort: () => {
        aborted = true;
        clearTimeout(timer);
        req?.destroy();
      },
    };
  }

  close(): void {
    this.agent?.destroy();
  }
}

/** The REST coordinates of the kinds Weft reads and writes. */
export const RESOURCES = {
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  configMaps: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  replicaSets: { group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet', namespaced: true },
  events: { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  secrets: { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  serviceAccounts: {
    group: '',
    version: 'v1',
    plural: 'serviceaccounts',
    kind: 'ServiceAccount',
    namespaced: true,
  },
  customResourceDefinitions: {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    plural: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    namespaced: false,
  },
  mutatingWebhookConfigurations: {
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    plural: 'mutatingwebhookconfigurations',
    kind: 'MutatingWebhookConfiguration',
    namespaced: false,
  },
  validatingWebhookConfigurations: {
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    plural: 'validatingwebhookconfigurations',
    kind: 'ValidatingWebhookConfiguration',
    namespaced: false,
  },
  endpointSlices: {
    group: 'discovery.k8s.io',
    version: 'v1',
    plural: 'endpointslices',
    kind: 'EndpointSlice',
    namespaced: true,
  },
  roles: {
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    plural: 'roles',
    kind: 'Role',
    namespaced: true,
  },
  roleBindings: {
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    plural: 'rolebindings',
    kind: 'RoleBinding',
    namespaced: true,
  },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  meshes: { group: 'weft.dev', version: 'v1alpha1', plural: 'meshes', kind: 'Mesh', namespaced: false },
  trafficSplits: {
    group: 'weft.dev',
    version: 'v1alpha1',
    plural: 'trafficsplits',
    kind: 'TrafficSplit',
    namespaced: true,
  },
  authorizationPolicies: {
    group: 'weft.dev',
    version: 'v1alpha1',
    plural: 'authorizationpolicies',
    kind: 'AuthorizationPolicy',
    namespaced: true,
  },
} as const satisfies Record<string, ResourceType>;
