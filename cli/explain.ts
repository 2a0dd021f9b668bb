// `weftctl authz explain`: the decision the proxy would make for a request, and why, from
// the AuthorizationPolicies (in the cluster or in files) and the Mesh's default; the caller's
// identity and the destination's labels and port typed as flags or taken from live pods
// (`--from`, `--to`).
import type { AuthorizationPolicy, AuthzPolicy, PathNormalization } from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import { spiffeId } from '../operator/compile/services.ts';
import { type AuthzDecision, type AuthzRequest, compileAuthorizer, selects } from '../proxy/authz/matcher.ts';
import { DEFAULT_PATH_NORMALIZATION, normalizeTarget } from '../proxy/pathnorm.ts';
import { hasProxy, type Pod, resolvePod } from './pods.ts';

/** The ProxyConfig form of an AuthorizationPolicy resource (what the operator compiles). */
export function toAuthzPolicy(p: AuthorizationPolicy): AuthzPolicy {
  const ns = p.metadata.namespace ?? 'default';
  return {
    name: `${ns}/${p.metadata.name}`,
    namespace: ns,
    action: p.spec.action ?? 'ALLOW',
    ...(p.spec.selector ? { selector: p.spec.selector } : {}),
    ...(p.spec.rules ? { rules: p.spec.rules } : {}),
  };
}

export interface ExplainInput {
  namespace: string;
  labels: Record<string, string>;
  request: AuthzRequest;
  policies: AuthorizationPolicy[];
  defaultAction: 'ALLOW' | 'DENY';
  /** The Mesh's pathNormalization: the path is judged as the proxy normalizes it (default BASE). */
  pathNormalization?: PathNormalization;
}

export interface Explanation {
  decision: AuthzDecision;
  /** The HTTP path as the proxy authorizes and forwards it, after normalization. */
  path?: string;
  /** Policies in the namespace, and whether each selects the workload. */
  considered: { policy: string; action: string; selects: boolean }[];
}

export function explain(input: ExplainInput): Explanation {
  const inNs = input.policies
    .filter((p) => (p.metadata.namespace ?? 'default') === input.namespace)
    .map(toAuthzPolicy);
  const authz = compileAuthorizer(inNs, input.labels, {
    defaultAction: input.defaultAction,
    namespace: input.namespace,
  });
  let request = input.request;
  if (request.http) {
    const n = normalizeTarget(
      request.http.path,
      input.pathNormalization ?? DEFAULT_PATH_NORMALIZATION,
      request.http.host,
    );
    if (!n.ok)
      throw new Error(`--path: the proxy answers 400 to ${JSON.stringify(request.http.path)}: ${n.reason}`);
    request = { ...request, http: { ...request.http, path: n.target } };
  }
  return {
    decision: authz.decide(request),
    ...(request.http ? { path: request.http.path } : {}),
    considered: inNs.map((p) => ({ policy: p.name, action: p.action, selects: selects(p, input.labels) })),
  };
}

export function renderExplanation(e: Explanation): string {
  const lines = [`${e.decision.allowed ? 'ALLOW' : 'DENY'}: ${e.decision.explanation}`];
  if (e.path !== undefined) lines.push(`  path as the proxy normalizes it: ${e.path}`);
  for (const a of e.decision.audited) lines.push(`  audited by ${a.policy} rule ${a.rule}`);
  lines.push('policies in the namespace:');
  if (e.considered.length === 0) lines.push('  (none)');
  for (const c of e.considered)
    lines.push(
      `  ${c.policy} ${c.action} ${c.selects ? 'selects this workload' : 'does not select this workload'}`,
    );
  return `${lines.join('\n')}\n`;
}

/** Parses "k=v,k2=v2". */
export function parseLabels(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (text ?? '').split(',').filter(Boolean)) {
    const i = pair.indexOf('=');
    if (i <= 0)
      throw new Error(`--labels: "${pair}" is not key=value (example: --labels app=reviews,version=v1)`);
    out[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return out;
}

/** The live facts `authz explain --from/--to` takes from the pods instead of flags. */
export interface LiveEnds {
  from?: { pod: string; ip?: string; principal?: string; meshed: boolean };
  to: { pod: string; namespace: string; labels: Record<string, string>; port?: number; service?: string };
}

type ServiceObj = KubeObject & {
  spec?: { selector?: Record<string, string>; ports?: { port: number; targetPort?: number | string }[] };
};

/** A container port by number or name, among the pod's app containers. */
function containerPort(pod: Pod, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  const ports = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []);
  if (port === undefined) return ports[0]?.containerPort;
  if (/^\d+$/.test(port)) return Number(port);
  return ports.find((p) => p.name === port)?.containerPort;
}

/**
 * Resolves `--from <pod>` and `--to <pod | svc/name>` against the cluster: the caller's
 * principal (its ServiceAccount's SPIFFE ID, when it runs a sidecar) and IP, the destination
 * pod's namespace, labels and the port the request reaches (a Service's target port).
 */
export async function resolveEnds(
  client: KubeClient,
  o: {
    from?: string;
    fromNamespace?: string;
    to: string;
    namespace: string;
    port?: number;
    trustDomain: string;
  },
): Promise<LiveEnds> {
  let to: LiveEnds['to'];
  const svc = /^(svc|service|services)\/(.+)$/.exec(o.to);
  if (svc) {
    const s = await client.get<ServiceObj>(RESOURCES.services, svc[2]!, o.namespace);
    const selector = Object.entries(s.spec?.selector ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    if (!selector) throw new Error(`--to ${o.to}: the Service has no selector, so no pod to explain for`);
    const pods = (
      await client.list<Pod>(RESOURCES.pods, { namespace: o.namespace, labelSelector: selector })
    ).items
      .filter((p) => p.status?.phase === 'Running')
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    const pod = pods[0];
    if (!pod) throw new Error(`--to ${o.to}: no running pod backs the Service in ${o.namespace}`);
    const sp = o.port === undefined ? s.spec?.ports?.[0] : s.spec?.ports?.find((p) => p.port === o.port);
    const port = containerPort(pod, sp?.targetPort ?? sp?.port) ?? o.port;
    to = {
      pod: pod.metadata.name,
      namespace: o.namespace,
      labels: pod.metadata.labels ?? {},
      service: s.metadata.name,
      ...(port ? { port } : {}),
    };
  } else {
    const pod = await resolvePod(client, o.to, o.namespace);
    const port = o.port ?? containerPort(pod, undefined);
    to = {
      pod: pod.metadata.name,
      namespace: pod.metadata.namespace ?? o.namespace,
      labels: pod.metadata.labels ?? {},
      ...(port ? { port } : {}),
    };
  }
  if (!o.from) return { to };
  const fromNs = o.fromNamespace ?? o.namespace;
  const src = await resolvePod(client, o.from, fromNs);
  const meshed = hasProxy(src);
  const id = spiffeId(
    o.trustDomain,
    src.metadata.namespace ?? fromNs,
    src.spec?.serviceAccountName || 'default',
  );
  return {
    from: {
      pod: `${src.metadata.namespace}/${src.metadata.name}`,
      meshed,
      ...(src.status?.podIP ? { ip: src.status.podIP } : {}),
      ...(meshed ? { principal: id.replace(/^spiffe:\/\//, '') } : {}),
    },
    to,
  };
}

export function renderEnds(e: LiveEnds): string {
  const lines: string[] = [];
  if (e.from)
    lines.push(
      `from: ${e.from.pod} ${e.from.meshed ? `as ${e.from.principal}` : '(no sidecar: plaintext, no principal)'}${e.from.ip ? ` at ${e.from.ip}` : ''}`,
    );
  const labels = Object.entries(e.to.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  lines.push(
    `to:   ${e.to.namespace}/${e.to.pod}${e.to.service ? ` (Service ${e.to.service})` : ''} port ${e.to.port ?? '?'} labels ${labels || '(none)'}`,
  );
  return `${lines.join('\n')}\n`;
}
