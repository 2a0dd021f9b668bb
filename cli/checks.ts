// `weftctl check`: named checks in categories, each with a hint, retried until a deadline,
// results printed as they come (as `linkerd check` does).
import { CodedError } from '../api/errors.ts';
import { describeLaggingProxy, GROUP, type LaggingProxy } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES, resourcePath } from '../kube/client.ts';

export interface CheckResult {
  category: string;
  name: string;
  ok: boolean;
  /** Only a warning: the mesh works, but something deserves attention. */
  warning?: boolean;
  message?: string;
  hint?: string;
}

export interface Check {
  category: string;
  name: string;
  hint: string;
  warning?: boolean;
  run(): Promise<string | undefined>;
}

export class CheckFailed extends CodedError<'WEFT_CHECK_FAILED'> {
  constructor(message: string) {
    super('WEFT_CHECK_FAILED', message);
  }
}

function conditionsOf(obj: unknown): { type: string; status: string; reason?: string; message?: string }[] {
  return ((obj as { status?: { conditions?: [] } }).status?.conditions ?? []) as never;
}

type MeshObj = KubeObject & {
  status?: { proxiesInSync?: number; proxiesOutOfSync?: number; laggingProxies?: LaggingProxy[] };
};

export function clusterChecks(client: KubeClient): Check[] {
  const mesh = () => client.get<MeshObj>(RESOURCES.meshes, 'default');
  const crd = (plural: string): Check => ({
    category: 'weft-api',
    name: `${plural}.${GROUP} is installed and Established`,
    hint: 'install the CRDs: kubectl apply --server-side -k crds (or the Helm chart)',
    async run() {
      const c = await client.get(RESOURCES.customResourceDefinitions, `${plural}.${GROUP}`);
      if (!conditionsOf(c).some((x) => x.type === 'Established' && x.status === 'True')) {
        throw new CheckFailed(`${plural}.${GROUP} exists but is not Established`);
      }
      return undefined;
    },
  });
  return [
    {
      category: 'kubernetes-api',
      name: 'can reach the Kubernetes API',
      hint: 'check your kubeconfig (--kubeconfig or KUBECONFIG) and that the cluster is running',
      async run() {
        await client.request('GET', resourcePath(RESOURCES.namespaces), { query: { limit: 1 } });
        return undefined;
      },
    },
    crd('meshes'),
    crd('trafficsplits'),
    crd('authorizationpolicies'),
    {
      category: 'weft-mesh',
      name: 'the Mesh "default" exists',
      hint: 'apply one: kubectl apply -f config/samples/mesh.yaml',
      async run() {
        await mesh();
        return undefined;
      },
    },
    {
      category: 'weft-mesh',
      name: 'the Mesh is Ready',
      hint: 'is the operator running? kubectl -n weft-system get pods; read the Mesh conditions: kubectl get mesh default -o yaml',
      async run() {
        const ready = conditionsOf(await mesh()).find((c) => c.type === 'Ready');
        if (ready?.status !== 'True')
          throw new CheckFailed(
            ready ? `Ready=${ready.status}: ${ready.reason}: ${ready.message}` : 'no Ready condition yet',
          );
        return undefined;
      },
    },
    {
      category: 'weft-resources',
      name: 'every TrafficSplit and AuthorizationPolicy is Ready',
      hint: 'weftctl status lists each resource with the reason it is not Ready',
      warning: true,
      async run() {
        const bad: string[] = [];
        for (const t of [RESOURCES.trafficSplits, RESOURCES.authorizationPolicies]) {
          for (const item of (await client.list(t)).items) {
            const md = item.metadata;
            const ready = conditionsOf(item).find((c) => c.type === 'Ready');
            if (ready?.status !== 'True')
              bad.push(`${t.plural}/${md.namespace}/${md.name} (${ready?.reason ?? 'not reconciled yet'})`);
          }
        }
        if (bad.length) throw new CheckFailed(`not Ready: ${bad.join(', ')}`);
        return undefined;
      },
    },
    {
      category: 'weft-data-plane',
      name: "every proxy runs its namespace's latest configuration",
      hint: 'a lagging proxy is paused, overloaded or cannot reach the apiserver: read its logs (container weft-proxy) and /config on its admin port',
      warning: true,
      async run() {
        const st = (await mesh()).status;
        if (st?.proxiesInSync === undefined)
          throw new CheckFailed('the operator has not reported proxy versions yet');
        const lagging = st.laggingProxies ?? [];
        if (st.proxiesOutOfSync)
          throw new CheckFailed(
            `${st.proxiesOutOfSync} proxies out of sync: ${lagging.map(describeLaggingProxy).join('; ')}`,
          );
        return `${st.proxiesInSync} proxies in sync`;
      },
    },
    {
      category: 'weft-data-plane',
      name: 'every meshed namespace has its proxy configuration',
      hint: 'the operator writes ConfigMap weft-proxy-config in each namespace labelled weft.dev/inject=enabled; check its logs',
      async run() {
        const nss = await client.list(RESOURCES.namespaces, { labelSelector: 'weft.dev/inject=enabled' });
        const missing: string[] = [];
        for (const ns of nss.items) {
          try {
            await client.get(RESOURCES.configMaps, 'weft-proxy-config', ns.metadata.name);
          } catch {
            missing.push(ns.metadata.name);
          }
        }
        if (missing.length) throw new CheckFailed(`no proxy configuration in: ${missing.join(', ')}`);
        return `${nss.items.length} meshed namespace(s)`;
      },
    },
  ];
}

/** Runs checks in order, retrying each until the deadline; reports each result as it comes. */
export async function runChecks(
  checks: Check[],
  opts: {
    deadlineMs: number;
    retryMs?: number;
    onResult?: (r: CheckResult) => void;
    now?: () => number;
    sleep?: (ms: number) => Promise<void>;
  },
): Promise<CheckResult[]> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = now() + opts.deadlineMs;
  const results: CheckResult[] = [];
  let blocked = false;
  for (const c of checks) {
    let result: CheckResult;
    if (blocked && c.category !== 'kubernetes-api') {
      result = {
        category: c.category,
        name: c.name,
        ok: false,
        message: 'skipped: the Kubernetes API is not reachable',
        hint: c.hint,
      };
    } else {
      for (;;) {
        try {
          const message = await c.run();
          result = { category: c.category, name: c.name, ok: true, ...(message ? { message } : {}) };
          break;
        } catch (err) {
          if (now() + (opts.retryMs ?? 1000) < deadline) {
            await sleep(opts.retryMs ?? 1000);
            continue;
          }
          result = {
            category: c.category,
            name: c.name,
            ok: false,
            ...(c.warning ? { warning: true } : {}),
            message: (err as Error).message,
            hint: c.hint,
          };
          break;
        }
      }
      if (!result.ok && c.category === 'kubernetes-api') blocked = true;
    }
    results.push(result);
    opts.onResult?.(result);
  }
  return results;
}

export function renderResult(r: CheckResult): string {
  const mark = r.ok ? '√' : r.warning ? '‼' : '×';
  let s = `${mark} [${r.category}] ${r.name}${r.message ? `: ${r.message}` : ''}\n`;
  if (!r.ok && r.hint) s += `    hint: ${r.hint}\n`;
  return s;
}
