// What several weftctl commands read about pods: the pod a name or `kind/name` designates, the
// meshed pods of a namespace, and a GET on a pod's proxy health port through the apiserver's
// pods/proxy (as `kubectl get --raw`), so weftctl needs no route to the pod network.
import type { V1Pod } from '@kubernetes/client-node';
import { PROXY } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES, resourcePath } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import { isMeshedPod } from '../operator/compile/services.ts';
import { workloadOf } from '../proxy/sidecar.ts';
import { MESHED_LABEL } from '../webhook/constants.ts';

export type Pod = KubeObject & V1Pod;

/** The port the injected sidecar declares for health and metrics (`weft-health`). */
export function healthPortOf(pod: V1Pod): number {
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])])
    if (c.name === PROXY.containerName)
      return c.ports?.find((p) => p.name === 'weft-health')?.containerPort ?? PROXY.healthPort;
  return PROXY.healthPort;
}

export const hasProxy = (pod: V1Pod) => isMeshedPod(pod as Parameters<typeof isMeshedPod>[0]);
export const workloadOfPod = (pod: V1Pod) => workloadOf(pod.metadata?.labels ?? {}, pod.metadata?.name ?? '');

/** GET `path` on the pod's proxy health port through the apiserver; the body as text. */
export function proxyGet(
  client: KubeClient,
  pod: V1Pod,
  path: string,
  signal?: AbortSignal,
): Promise<string> {
  const ns = pod.metadata?.namespace ?? 'default';
  const name = `${pod.metadata?.name}:${healthPortOf(pod)}`;
  return client.requestText('GET', `${resourcePath(RESOURCES.pods, ns, name)}/proxy${path}`, {
    accept: '*/*',
    ...(signal ? { signal } : {}),
  });
}

/** The pod named `name`, or the first running pod of a Deployment/StatefulSet/DaemonSet given as `kind/name`. */
export async function resolvePod(client: KubeClient, ref: string, namespace: string): Promise<Pod> {
  const slash = ref.indexOf('/');
  if (slash < 0) {
    try {
      return await client.get<Pod>(RESOURCES.pods, ref, namespace);
    } catch (err) {
      if (isNotFound(err))
        throw new Error(
          `pod ${namespace}/${ref} not found: name a pod (kubectl get pods -n ${namespace}) or a workload as deploy/<name>`,
        );
      throw err;
    }
  }
  const kind = ref.slice(0, slash).toLowerCase();
  const name = ref.slice(slash + 1);
  const plural = (
    {
      deploy: 'deployments',
      deployment: 'deployments',
      deployments: 'deployments',
      sts: 'statefulsets',
      statefulset: 'statefulsets',
      statefulsets: 'statefulsets',
      ds: 'daemonsets',
      daemonset: 'daemonsets',
      daemonsets: 'daemonsets',
      pod: 'pods',
      pods: 'pods',
      po: 'pods',
    } as Record<string, string>
  )[kind];
  if (!plural) throw new Error(`"${ref}": kind ${kind} is not one of pod, deploy, sts, ds`);
  if (plural === 'pods') return resolvePod(client, name, namespace);
  const w = await client.get<KubeObject & { spec?: { selector?: { matchLabels?: Record<string, string> } } }>(
    { ...RESOURCES.deployments, plural },
    name,
    namespace,
  );
  const sel = Object.entries(w.spec?.selector?.matchLabels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const pods = (await client.list<Pod>(RESOURCES.pods, { namespace, labelSelector: sel })).items
    .filter((p) => p.status?.phase === 'Running' && !p.metadata.deletionTimestamp)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  if (!pods[0]) throw new Error(`${ref} in ${namespace} has no running pod`);
  return pods[0];
}

/** Pods with the sidecar (label weft.dev/meshed=true), in a namespace or everywhere. */
export async function meshedPods(client: KubeClient, namespace?: string): Promise<Pod[]> {
  return (
    await client.list<Pod>(RESOURCES.pods, { namespace, labelSelector: `${MESHED_LABEL}=true` })
  ).items.filter((p) => hasProxy(p) && p.status?.phase === 'Running' && !p.metadata.deletionTimestamp);
}
