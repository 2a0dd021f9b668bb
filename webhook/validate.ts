// Semantic checks of Weft's custom resources that a CRD schema cannot express: they need
// other objects (one Mesh, TrafficSplit cycles and conflicts), or the RE2 regular-expression
// engine, or quantity arithmetic. Errors deny admission and name the field; references to
// objects that do not exist yet only warn, because GitOps tools apply in any order.
import {
  type AuthorizationPolicySpec,
  AuthorizationPolicySpec as AuthorizationPolicySpecSchema,
  canonicalJson,
  check,
  durationMs,
  type FieldError,
  type MeshSpec,
  MeshSpec as MeshSpecSchema,
  type TrafficSplitSpec,
  TrafficSplitSpec as TrafficSplitSpecSchema,
} from '../api/index.ts';
import { matchRegexErrors } from '../api/regex.ts';

/** What the checks may ask of the cluster. The server answers from the apiserver; tests from memory. */
export interface ClusterView {
  /** Names of every Mesh. */
  meshNames(): Promise<string[]>;
  /** TrafficSplits of a namespace, as {name, spec}. */
  trafficSplits(namespace: string): Promise<{ name: string; spec: TrafficSplitSpec }[]>;
  exists(
    kind: 'Namespace' | 'Service' | 'ServiceAccount' | 'Secret',
    namespace: string,
    name: string,
  ): Promise<boolean>;
}

export interface ReviewedObject {
  kind: 'Mesh' | 'TrafficSplit' | 'AuthorizationPolicy';
  operation: 'CREATE' | 'UPDATE';
  name: string;
  /** Empty for the cluster-scoped Mesh. */
  namespace: string;
  spec: unknown;
  /** UPDATE: the spec before the change. */
  oldSpec?: unknown;
}

export interface ValidationResult {
  errors: FieldError[];
  warnings: string[];
}

export interface ValidateOptions {
  /** Weft's own namespace (where a Mesh's ca.builtIn.rootSecretName lives). */
  meshNamespace: string;
}

const SCHEMAS = {
  Mesh: MeshSpecSchema,
  TrafficSplit: TrafficSplitSpecSchema,
  AuthorizationPolicy: AuthorizationPolicySpecSchema,
} as const;

export async function validateResource(
  obj: ReviewedObject,
  view: ClusterView,
  options: ValidateOptions,
): Promise<ValidationResult> {
  // An update that leaves the spec alone (labels, finalizers, the operator's metadata) is never
  // refused: an object accepted earlier, or created while the webhook was down, must stay
  // manageable and deletable.
  if (obj.operation === 'UPDATE' && canonicalJson(obj.spec ?? {}) === canonicalJson(obj.oldSpec ?? {}))
    return { errors: [], warnings: [] };
  // The apiserver has already applied the CRD schema; this catches a webhook serving a newer
  // API than the installed CRDs, and guarantees the shapes the semantic checks rely on.
  const errors = check(SCHEMAS[obj.kind], obj.spec ?? {}, 'spec');
  if (errors.length > 0) return { errors, warnings: [] };
  switch (obj.kind) {
    case 'Mesh':
      return validateMesh(obj, obj.spec as MeshSpec, view, options);
    case 'TrafficSplit':
      return validateTrafficSplit(obj, obj.spec as TrafficSplitSpec, view);
    case 'AuthorizationPolicy':
      return validateAuthorizationPolicy(obj, obj.spec as AuthorizationPolicySpec, view);
  }
}

// --- Mesh -------------------------------------------------------------------------------

const UNITS: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};
/** A Kubernetes quantity as the schema allows it ("50m", "128Mi"), in base units. */
export function parseQuantity(q: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) return Number.NaN;
  return Number(m[1]) * UNITS[m[2] ?? '']!;
}

async function validateMesh(
  obj: ReviewedObject,
  spec: MeshSpec,
  view: ClusterView,
  options: ValidateOptions,
): Promise<ValidationResult> {
  const errors: FieldError[] = [];
  const warnings: string[] = [];
  const others = (await view.meshNames()).filter((n) => n !== obj.name);
  if (others.length > 0)
    errors.push({
      field: 'metadata.name',
      message: `only one Mesh may exist and Mesh "${others[0]}" already does: edit it instead of creating "${obj.name}"`,
    });
  if (obj.name !== 'default')
    warnings.push(`Weft reads the Mesh named "default"; this Mesh is named "${obj.name}" and has no effect`);

  const res = spec.proxy?.resources;
  for (const r of ['cpu', 'memory'] as const) {
    const req = res?.requests?.[r];
    const lim = res?.limits?.[r];
    if (req && lim && parseQuantity(req) > parseQuantity(lim))
      errors.push({
        field: `spec.proxy.resources.requests.${r}`,
        message: `${req} is more than limits.${r} ${lim}: Kubernetes would refuse every injected pod`,
      });
  }
  const d = spec.defaults;
  if (d?.timeout && d.retries?.perTryTimeout) {
    const t = durationMs(d.timeout);
    if (t > 0 && durationMs(d.retries.perTryTimeout) > t)
      errors.push({
        field: 'spec.defaults.retries.perTryTimeout',
        message: `${d.retries.perTryTimeout} is longer than defaults.timeout ${d.timeout}: no retry could ever run`,
      });
  }

  const nsChecks = (spec.mtls?.namespaces ?? []).map(async (o, i) => {
    if (!(await view.exists('Namespace', '', o.namespace)))
      warnings.push(`spec.mtls.namespaces[${i}].namespace: namespace ${o.namespace} does not exist yet`);
  });
  await Promise.all(nsChecks);
  const rootSecret = spec.ca?.builtIn?.rootSecretName;
  if (rootSecret && !(await view.exists('Secret', options.meshNamespace, rootSecret)))
    warnings.push(
      `spec.ca.builtIn.rootSecretName: Secret ${options.meshNamespace}/${rootSecret} does not exist yet; the operator waits for it before issuing identities`,
    );
  return { errors, warnings: warnings.sort() };
}

// --- TrafficSplit -----------------------------------------------------------------------

/** Canonical form of a split's match set: two splits with the same one conflict. */
function matchKey(spec: TrafficSplitSpec): string {
  const matches = (spec.matches ?? []).map((m) =>
    JSON.stringify({
      path: m.path ? { type: m.path.type ?? 'PathPrefix', value: m.path.value } : null,
      headers: [...(m.headers ?? [])]
        .map((h) => ({ name: h.name.toLowerCase(), type: h.type ?? 'Exact', value: h.value ?? null }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      method: m.method ?? null,
    }),
  );
  return JSON.stringify([spec.port ?? null, [...matches].sort()]);
}

async function validateTrafficSplit(
  obj: ReviewedObject,
  spec: TrafficSplitSpec,
  view: ClusterView,
): Promise<ValidationResult> {
  const errors: FieldError[] = matchRegexErrors(spec.matches ?? [], 'spec.matches');

  const others = (await view.trafficSplits(obj.namespace)).filter((s) => s.name !== obj.name);
  const key = matchKey(spec);
  for (const o of others) {
    if (o.spec.service === spec.service && matchKey(o.spec) === key) {
      errors.push({
        field: 'spec.service',
        message: `TrafficSplit ${obj.namespace}/${o.name} already splits service ${spec.service}${
          spec.port ? ` port ${spec.port}` : ''
        } for the same requests: merge the two, or give them different matches or ports`,
      });
    }
  }

  // Cycles: root → backend edges across every split of the namespace (a backend equal to its
  // own root means "the root's own endpoints" and is not an edge).
  const edges = new Map<string, Set<string>>();
  const addEdges = (s: TrafficSplitSpec) => {
    const set = edges.get(s.service) ?? new Set<string>();
    for (const b of s.backends) if (b.service !== s.service) set.add(b.service);
    edges.set(s.service, set);
  };
  for (const o of others) addEdges(o.spec);
  addEdges(spec);
  const pathBack = (from: string, seen: Set<string>): string[] | undefined => {
    if (from === spec.service) return [from];
    if (seen.has(from)) return undefined;
    seen.add(from);
    for (const next of edges.get(from) ?? []) {
      const rest = pathBack(next, seen);
      if (rest) return [from, ...rest];
    }
    return undefined;
  };
  spec.backends.forEach((b, i) => {
    if (b.service === spec.service) return;
    const cycle = pathBack(b.service, new Set());
    if (cycle)
      errors.push({
        field: `spec.backends[${i}].service`,
        message: `routing to ${b.service} forms a cycle of TrafficSplits: ${[spec.service, ...cycle].join(' → ')}`,
      });
  });

  const warnings: string[] = [];
  const refs: [string, string][] = [
    ['spec.service', spec.service],
    ...spec.backends.map((b, i): [string, string] => [`spec.backends[${i}].service`, b.service]),
  ];
  if (spec.mirror) refs.push(['spec.mirror.service', spec.mirror.service]);
  await Promise.all(
    refs.map(async ([field, name]) => {
      if (!(await view.exists('Service', obj.namespace, name)))
        warnings.push(
          `${field}: Service ${obj.namespace}/${name} does not exist yet; traffic for it fails until it does`,
        );
    }),
  );
  return { errors, warnings: warnings.sort() };
}

// --- AuthorizationPolicy ----------------------------------------------------------------

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const IP_OR_CIDR =
  /^((25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}(\/([0-9]|[12][0-9]|3[0-2]))?|[0-9a-fA-F:]*:[0-9a-fA-F:.]*(\/\d{1,3})?)$/;

/** "*" alone, or at the start or the end only (Istio's wildcard rule). */
function wildcardOk(v: string): boolean {
  if (v === '*') return true;
  const inner = v.slice(1, -1);
  return !inner.includes('*') && !(v.startsWith('*') && v.endsWith('*'));
}

async function validateAuthorizationPolicy(
  obj: ReviewedObject,
  spec: AuthorizationPolicySpec,
  view: ClusterView,
): Promise<ValidationResult> {
  const errors: FieldError[] = [];
  const pending: Promise<void>[] = [];
  const warnings: string[] = [];
  const wildcards = (base: string, values: string[] | undefined) =>
    (values ?? []).forEach((v, k) => {
      if (!wildcardOk(v))
        errors.push({
          field: `${base}[${k}]`,
          message: `"${v}": a * wildcard may only stand alone or at the start or the end`,
        });
    });

  (spec.rules ?? []).forEach((rule, i) => {
    const r = `spec.rules[${i}]`;
    (rule.from ?? []).forEach((f, j) => {
      const s = f.source;
      const base = `${r}.from[${j}].source`;
      for (const key of ['principals', 'notPrincipals'] as const) {
        wildcards(`${base}.${key}`, s[key]);
        (s[key] ?? []).forEach((p, k) => {
          if (p.startsWith('spiffe://'))
            errors.push({
              field: `${base}.${key}[${k}]`,
              message: `"${p}": write identities without the spiffe:// scheme, e.g. ${p.slice(9)}`,
            });
        });
      }
      for (const key of ['serviceAccounts', 'notServiceAccounts'] as const) {
        (s[key] ?? []).forEach((sa, k) => {
          const parts = sa.split('/');
          if (parts.length > 2 || parts.some((p) => !DNS_SUBDOMAIN.test(p))) {
            errors.push({
              field: `${base}.${key}[${k}]`,
              message: `"${sa}" is not <namespace>/<name> or <name> of a ServiceAccount`,
            });
            return;
          }
          const [ns, name] = parts.length === 2 ? [parts[0]!, parts[1]!] : [obj.namespace, parts[0]!];
          if (key === 'serviceAccounts')
            pending.push(
              view.exists('ServiceAccount', ns, name).then((ok) => {
                if (!ok)
                  warnings.push(`${base}.${key}[${k}]: ServiceAccount ${ns}/${name} does not exist yet`);
              }),
            );
        });
      }
      (s.namespaces ?? []).forEach((ns, k) => {
        if (ns.includes('*')) return;
        pending.push(
          view.exists('Namespace', '', ns).then((ok) => {
            if (!ok) warnings.push(`${base}.namespaces[${k}]: namespace ${ns} does not exist yet`);
          }),
        );
      });
    });
    (rule.to ?? []).forEach((t, j) => {
      const base = `${r}.to[${j}].operation`;
      for (const key of ['paths', 'notPaths', 'hosts', 'notHosts'] as const)
        wildcards(`${base}.${key}`, t.operation[key]);
      for (const key of ['paths', 'notPaths'] as const)
        (t.operation[key] ?? []).forEach((p, k) => {
          if (!p.startsWith('/') && !p.startsWith('*'))
            errors.push({
              field: `${base}.${key}[${k}]`,
              message: `"${p}" must start with "/" (or be a * wildcard)`,
            });
        });
    });
    (rule.when ?? []).forEach((w, j) => {
      const base = `${r}.when[${j}]`;
      for (const key of ['values', 'notValues'] as const)
        (w[key] ?? []).forEach((v, k) => {
          if (w.key === 'destination.port' && !(/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535))
            errors.push({ field: `${base}.${key}[${k}]`, message: `"${v}" is not a port (1-65535)` });
          if (w.key === 'source.ip' && !IP_OR_CIDR.test(v))
            errors.push({
              field: `${base}.${key}[${k}]`,
              message: `"${v}" is not an IP address or CIDR block`,
            });
        });
    });
  });
  await Promise.all(pending);
  return { errors, warnings: warnings.sort() };
}
