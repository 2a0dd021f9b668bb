// `weftctl check --proxy`: the data plane, pod by pod. Each meshed pod's sidecar runs the
// image the Mesh names and the injector's current template; its proxy runs the configuration
// the operator last wrote for its namespace (the version and generation the proxy reports, the
// same status the operator long-polls on /config/version, against the ConfigMap's manifest);
// its workload certificate is not about to expire; and no pod of a meshed namespace runs
// without a sidecar because it was created before injection was turned on.
import { CONFIG_DISTRIBUTION, type MeshSpec, PROXY } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import {
  ANNOTATIONS,
  DEFAULT_PROXY_IMAGE,
  INJECT_LABEL,
  INJECTOR_VERSION,
  selectorMatches,
} from '../webhook/index.ts';
import { type Check, CheckFailed } from './checks.ts';
import { hasProxy, meshedPods, type Pod, proxyGet } from './pods.ts';
import { type AppliedConfig, expiresIn } from './proxyconfig.ts';

export interface ProxyCheckOptions {
  /** A certificate expiring sooner than this fails the check. */
  certWarnMs: number;
  now?: () => number;
  /** Weft's own namespace (never injected). */
  meshNamespace: string;
}

const podName = (p: Pod) => `${p.metadata.namespace}/${p.metadata.name}`;

/** The command that recreates a pod through its controller, so the webhook injects it. */
export async function restartCommand(client: KubeClient, pod: Pod): Promise<string> {
  const ns = pod.metadata.namespace;
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller);
  if (!owner)
    return `kubectl delete pod ${pod.metadata.name} -n ${ns} (and create it again: it has no controller)`;
  if (owner.kind === 'ReplicaSet') {
    try {
      const rs = await client.get(RESOURCES.replicaSets, owner.name, ns);
      const dep = rs.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'Deployment');
      if (dep) return `kubectl rollout restart deployment/${dep.name} -n ${ns}`;
    } catch {}
    return `kubectl delete pod ${pod.metadata.name} -n ${ns}`;
  }
  if (owner.kind === 'StatefulSet' || owner.kind === 'DaemonSet')
    return `kubectl rollout restart ${owner.kind.toLowerCase()}/${owner.name} -n ${ns}`;
  return `kubectl delete pod ${pod.metadata.name} -n ${ns} (${owner.kind} ${owner.name} creates it again)`;
}

export function proxyChecks(client: KubeClient, o: ProxyCheckOptions): Check[] {
  const now = o.now ?? Date.now;
  let cached: Promise<{ mesh: MeshSpec | undefined; pods: Pod[] }> | undefined;
  const state = () =>
    (cached ??= (async () => {
      const m = await client.find<KubeObject & { spec?: MeshSpec }>(RESOURCES.meshes, 'default');
      return { mesh: m?.spec, pods: await meshedPods(client) };
    })());
  // One /config/applied?config=false per pod, shared by the version and certificate checks.
  const reports = new Map<string, Promise<AppliedConfig | Error>>();
  const report = (p: Pod) => {
    let r = reports.get(podName(p));
    if (!r) {
      r = proxyGet(client, p, '/config/applied?config=false').then(
        (t) => JSON.parse(t) as AppliedConfig,
        (e: Error) => e,
      );
      reports.set(podName(p), r);
    }
    return r;
  };
  return [
    {
      category: 'weft-proxies',
      name: 'every meshed pod runs the sidecar the Mesh names, from the current injector template',
      hint: 'restart the workloads named above (kubectl rollout restart deployment/<name> -n <ns>) so the webhook injects the current sidecar',
      warning: true,
      async run() {
        const { mesh, pods } = await state();
        const image = mesh?.proxy?.image ?? DEFAULT_PROXY_IMAGE;
        const bad: string[] = [];
        for (const p of pods) {
          const c = [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].find(
            (x) => x.name === PROXY.containerName,
          );
          const template = p.metadata.annotations?.[ANNOTATIONS.injected];
          if (c?.image !== image) bad.push(`${podName(p)} runs ${c?.image}, the Mesh names ${image}`);
          else if (template !== INJECTOR_VERSION)
            bad.push(
              `${podName(p)} was injected from template ${template ?? '(unknown)'}, current is ${INJECTOR_VERSION}`,
            );
        }
        if (bad.length) throw new CheckFailed(bad.join('; '));
        return `${pods.length} meshed pod(s) run ${image}`;
      },
    },
    {
      category: 'weft-proxies',
      name: 'every proxy runs the configuration the operator last wrote for its namespace',
      hint: 'a lagging proxy is paused, overloaded or cannot reach the apiserver: weftctl proxy-config <pod> --diff shows what it runs and what it misses; read its logs (container weft-proxy)',
      warning: true,
      async run() {
        const { pods } = await state();
        const written = new Map<string, { version: string; generation?: number } | undefined>();
        const bad: string[] = [];
        for (const p of pods) {
          const ns = p.metadata.namespace ?? '';
          if (!written.has(ns)) {
            const cm = await client.find<KubeObject & { data?: Record<string, string> }>(
              RESOURCES.configMaps,
              CONFIG_DISTRIBUTION.configMapName,
              ns,
            );
            const manifest = cm?.data?.[CONFIG_DISTRIBUTION.manifestKey];
            written.set(ns, manifest ? JSON.parse(manifest) : undefined);
          }
          const w = written.get(ns);
          const r = await report(p);
          if (r instanceof Error) bad.push(`${podName(p)} does not answer: ${r.message}`);
          else if (!w) bad.push(`${podName(p)}: the operator has written no configuration for ${ns}`);
          else if (r.status.version !== w.version)
            bad.push(
              `${podName(p)} runs ${r.status.version ?? 'nothing'} (generation ${r.status.generation ?? '-'}), the operator wrote ${w.version} (generation ${w.generation ?? '-'})`,
            );
        }
        if (bad.length) throw new CheckFailed(bad.join('; '));
        return `${pods.length} proxies current`;
      },
    },
    {
      category: 'weft-proxies',
      name: 'no workload certificate is expired or about to expire',
      hint: 'the operator renews certificates before they expire: is it running (kubectl -n weft-system get pods)? A proxy without one talks plaintext: is the Secret weft-identity-<serviceaccount> there?',
      async run() {
        const { pods } = await state();
        const bad: string[] = [];
        let soonest: string | undefined;
        for (const p of pods) {
          const r = await report(p);
          if (r instanceof Error) continue; // named by the configuration check
          const c = r.certificate;
          if (!c) {
            bad.push(`${podName(p)} has no workload certificate (plaintext to peers)`);
            continue;
          }
          if (Date.parse(c.notAfter) - now() < o.certWarnMs)
            bad.push(
              `${podName(p)}'s certificate ${c.spiffeId} expires ${c.notAfter} (in ${expiresIn(c.notAfter, now())})`,
            );
          if (!soonest || c.notAfter < soonest) soonest = c.notAfter;
        }
        if (bad.length) throw new CheckFailed(bad.join('; '));
        return soonest ? `the first expires in ${expiresIn(soonest, now())}` : 'no meshed pods';
      },
    },
    {
      category: 'weft-proxies',
      name: 'every pod of a meshed namespace has its sidecar',
      hint: 'pods created before injection was turned on keep running without a sidecar: run the commands above to recreate them',
      warning: true,
      async run() {
        const { mesh } = await state();
        const selector = mesh?.injection?.namespaceSelector ?? { matchLabels: { [INJECT_LABEL]: 'enabled' } };
        const namespaces = (await client.list(RESOURCES.namespaces)).items.filter(
          (n) => n.metadata.name !== o.meshNamespace && selectorMatches(selector, n.metadata.labels ?? {}),
        );
        const bad: string[] = [];
        for (const n of namespaces) {
          for (const p of (await client.list<Pod>(RESOURCES.pods, { namespace: n.metadata.name })).items) {
            if (hasProxy(p) || p.metadata.deletionTimestamp) continue;
            if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
            const a = p.metadata.annotations ?? {};
            if (a[ANNOTATIONS.inject] === 'disabled' || p.spec?.hostNetwork) continue;
            if (a[ANNOTATIONS.skipped]) {
              bad.push(`${podName(p)} was skipped: ${a[ANNOTATIONS.skipped]}`);
              continue;
            }
            bad.push(`${podName(p)} has no sidecar: ${await restartCommand(client, p)}`);
          }
        }
        if (bad.length) throw new CheckFailed(bad.join('; '));
        return `${namespaces.length} meshed namespace(s)`;
      },
    },
  ];
}
