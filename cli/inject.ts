// `weftctl inject`: the webhook's own injector (webhook/inject.ts), run offline on a YAML
// stream. Each Pod, and the pod template of each Deployment, StatefulSet, DaemonSet,
// ReplicaSet, Job and CronJob (also inside a List), gets the sidecar exactly as admission
// would add it; other documents pass through unchanged. Asking for injection is what the
// command means, so a template without the weft.dev/inject annotation gets `enabled`; one that
// says `disabled` is skipped. Already injected templates are left as they are (idempotent).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import * as yaml from 'js-yaml';
import type { MeshSpec } from '../api/index.ts';
import { ANNOTATIONS, applyPatch, injectPod } from '../webhook/index.ts';

export interface InjectReport {
  /** "Deployment shop/web" */
  object: string;
  action: 'injected' | 'unchanged' | 'skipped' | 'refused';
  reasons: string[];
}

export interface InjectStreamOptions {
  mesh: MeshSpec | undefined;
  /** Namespace of objects that name none. */
  defaultNamespace: string;
  /** Weft's own namespace (never injected). */
  meshNamespace: string;
}

type Obj = {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  items?: unknown[];
};
type Template = { metadata?: V1Pod['metadata']; spec?: V1Pod['spec'] };

/** Where a kind keeps its pod template; undefined: not a workload. */
function templateOf(o: Obj): { get(): Template | undefined; set(t: Template): void } | undefined {
  const spec = o.spec as Record<string, Record<string, unknown>> | undefined;
  switch (o.kind) {
    case 'Pod':
      return {
        get: () => ({ metadata: o.metadata as V1Pod['metadata'], spec: o.spec as V1Pod['spec'] }),
        set: (t) => {
          o.metadata = t.metadata as Obj['metadata'];
          o.spec = t.spec as Obj['spec'];
        },
      };
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'ReplicationController':
    case 'Job':
      return spec
        ? { get: () => spec.template as Template | undefined, set: (t) => (spec.template = t as never) }
        : undefined;
    case 'CronJob': {
      const job = spec?.jobTemplate as { spec?: { template?: Template } } | undefined;
      return job?.spec ? { get: () => job.spec!.template, set: (t) => (job.spec!.template = t) } : undefined;
    }
    default:
      return undefined;
  }
}

/** Injects one object in place (recursing into Lists); returns a report per workload. */
export function injectObject(o: Obj, opts: InjectStreamOptions): InjectReport[] {
  if (o === null || typeof o !== 'object') return [];
  if (o.kind?.endsWith('List') && Array.isArray(o.items))
    return o.items.flatMap((i) => injectObject(i as Obj, opts));
  const where = templateOf(o);
  if (!where) return [];
  const ns = o.metadata?.namespace ?? opts.defaultNamespace;
  const object = `${o.kind} ${ns}/${o.metadata?.name ?? '(no name)'}`;
  const template = where.get();
  if (!template?.spec)
    return [{ object, action: 'refused', reasons: [`${object} has no pod template spec to inject into`] }];
  const annotations = template.metadata?.annotations ?? {};
  if (annotations[ANNOTATIONS.inject] === 'disabled')
    return [
      {
        object,
        action: 'skipped',
        reasons: [`the pod opts out with annotation ${ANNOTATIONS.inject}=disabled`],
      },
    ];
  const asked = annotations[ANNOTATIONS.inject] === undefined;
  const pod: V1Pod = {
    metadata: {
      ...template.metadata,
      annotations: asked ? { ...annotations, [ANNOTATIONS.inject]: 'enabled' } : annotations,
    },
    spec: template.spec,
  };
  const r = injectPod(pod, { name: ns }, opts.mesh, { meshNamespace: opts.meshNamespace });
  switch (r.action) {
    case 'inject':
      where.set(applyPatch(pod, r.patch) as Template);
      return [{ object, action: 'injected', reasons: r.reasons }];
    case 'deny':
      return [{ object, action: 'refused', reasons: r.reasons }];
    case 'skip':
      return [{ object, action: 'skipped', reasons: r.reasons }];
    default:
      // Already injected, a protected namespace, or "disabled" in a namespace that does not
      // select it: left as it is.
      return [
        {
          object,
          action: r.reasons[0] === 'the pod already has the Weft proxy' ? 'unchanged' : 'skipped',
          reasons: r.reasons,
        },
      ];
  }
}

/** The YAML documents of a file, a directory (its *.yaml, *.yml, *.json, sorted) or "-" (stdin). */
export function readManifests(source: string, stdin: () => string): { name: string; text: string }[] {
  if (source === '-') return [{ name: '(stdin)', text: stdin() }];
  if (statSync(source).isDirectory())
    return readdirSync(source)
      .filter((f) => /\.(ya?ml|json)$/.test(f))
      .sort()
      .flatMap((f) => readManifests(join(source, f), stdin));
  return [{ name: source, text: readFileSync(source, 'utf8') }];
}

/** Injects every document of a YAML stream; the YAML out and a report per workload. */
export function injectYaml(
  text: string,
  opts: InjectStreamOptions,
  sourceName = '(input)',
): { yaml: string; reports: InjectReport[] } {
  let docs: unknown[];
  try {
    docs = yaml.loadAll(text);
  } catch (err) {
    throw new Error(`${sourceName}: not valid YAML: ${(err as Error).message}`);
  }
  const reports: InjectReport[] = [];
  const out: string[] = [];
  for (const d of docs) {
    if (d === null || d === undefined) continue;
    reports.push(...injectObject(d as Obj, opts));
    out.push(yaml.dump(d, { noRefs: true, lineWidth: -1 }));
  }
  return { yaml: out.join('---\n'), reports };
}

/** The line on stderr for a report (none for a plain injection without notes). */
export function renderInjectReport(r: InjectReport): string {
  const head = `${r.object}: ${r.action}`;
  return r.reasons.length ? `${head}: ${r.reasons.join('; ')}\n` : `${head}\n`;
}
