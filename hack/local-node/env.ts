// Container environment the way the kubelet builds it: Service links, envFrom, env with
// downward-API / ConfigMap / Secret references, and $(VAR) expansion.
import type { V1Container, V1Pod, V1Service } from '@kubernetes/client-node';
import { LocalNodeError } from './errors.ts';
import { fieldRefValue, type VolumeSources } from './volumes.ts';

/** Expands $(VAR) from env; $$ escapes; unknown references stay as written (kubelet expansion). */
export function expand(s: string, env: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '$' && s[i + 1] === '$') {
      out += '$';
      i++;
    } else if (ch === '$' && s[i + 1] === '(') {
      const end = s.indexOf(')', i + 2);
      if (end < 0) {
        out += s.slice(i);
        break;
      }
      const name = s.slice(i + 2, end);
      out += name in env ? env[name] : `$(${name})`;
      i = end;
    } else out += ch;
  }
  return out;
}

const envName = (s: string) => s.toUpperCase().replace(/-/g, '_');

/** {NAME}_SERVICE_HOST, {NAME}_SERVICE_PORT, {NAME}_PORT_… for each Service with a ClusterIP. */
export function serviceEnv(services: V1Service[]): Record<string, string> {
  const env: Record<string, string> = {};
  const sorted = [...services].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
  for (const svc of sorted) {
    const ip = svc.spec?.clusterIP;
    if (!ip || ip === 'None') continue;
    const ports = svc.spec?.ports ?? [];
    if (ports.length === 0) continue;
    const n = envName(svc.metadata!.name!);
    const first = ports[0]!;
    env[`${n}_SERVICE_HOST`] = ip;
    env[`${n}_SERVICE_PORT`] = String(first.port);
    env[`${n}_PORT`] = `${(first.protocol ?? 'TCP').toLowerCase()}://${ip}:${first.port}`;
    for (const p of ports) {
      const proto = p.protocol ?? 'TCP';
      if (p.name) env[`${n}_SERVICE_PORT_${envName(p.name)}`] = String(p.port);
      const prefix = `${n}_PORT_${p.port}_${proto}`;
      env[prefix] = `${proto.toLowerCase()}://${ip}:${p.port}`;
      env[`${prefix}_PROTO`] = proto.toLowerCase();
      env[`${prefix}_PORT`] = String(p.port);
      env[`${prefix}_ADDR`] = ip;
    }
  }
  return env;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The environment of one container. `services` are the Services of the pod's namespace plus
 * `kubernetes` in default. `nodeBinDir` is put first on PATH so `node` is the project's Node 24.
 */
export function containerEnv(
  pod: V1Pod,
  c: V1Container,
  services: V1Service[],
  src: VolumeSources,
  nodeBinDir: string,
): Record<string, string> {
  const ns = pod.metadata?.namespace ?? 'default';
  const env: Record<string, string> = {
    PATH: `${nodeBinDir}:${DEFAULT_PATH}`,
    HOSTNAME: pod.spec?.hostname ?? pod.metadata?.name ?? '',
    HOME: '/root',
  };
  const links =
    pod.spec?.enableServiceLinks === false
      ? services.filter((s) => s.metadata?.namespace === 'default' && s.metadata.name === 'kubernetes')
      : services;
  // The pod's namespace wins over the master service in default.
  const master = links.filter((s) => s.metadata?.namespace !== ns);
  const own = links.filter((s) => s.metadata?.namespace === ns);
  Object.assign(env, serviceEnv(master), serviceEnv(own));

  for (const from of c.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.configMapRef) {
      const cm = src.configMap(ns, from.configMapRef.name!);
      if (!cm) {
        if (from.configMapRef.optional) continue;
        throw new LocalNodeError(
          'WEFT_LN_ENV',
          `configmap ${ns}/${from.configMapRef.name} not found (envFrom)`,
        );
      }
      for (const [k, v] of Object.entries(cm.data ?? {})) env[prefix + k] = v;
    } else if (from.secretRef) {
      const s = src.secret(ns, from.secretRef.name!);
      if (!s) {
        if (from.secretRef.optional) continue;
        throw new LocalNodeError('WEFT_LN_ENV', `secret ${ns}/${from.secretRef.name} not found (envFrom)`);
      }
      for (const [k, v] of Object.entries(s.data ?? {}))
        env[prefix + k] = Buffer.from(v, 'base64').toString('utf8');
    }
  }

  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      env[e.name] = expand(e.value ?? '', env);
      continue;
    }
    const vf = e.valueFrom;
    if (vf.fieldRef) env[e.name] = fieldRefValue(pod, vf.fieldRef.fieldPath);
    else if (vf.configMapKeyRef) {
      const r = vf.configMapKeyRef;
      const v = src.configMap(ns, r.name!)?.data?.[r.key];
      if (v === undefined) {
        if (r.optional) continue;
        throw new LocalNodeError(
          'WEFT_LN_ENV',
          `configmap ${ns}/${r.name} key ${r.key} not found (env ${e.name})`,
        );
      }
      env[e.name] = v;
    } else if (vf.secretKeyRef) {
      const r = vf.secretKeyRef;
      const v = src.secret(ns, r.name!)?.data?.[r.key];
      if (v === undefined) {
        if (r.optional) continue;
        throw new LocalNodeError(
          'WEFT_LN_ENV',
          `secret ${ns}/${r.name} key ${r.key} not found (env ${e.name})`,
        );
      }
      env[e.name] = Buffer.from(v, 'base64').toString('utf8');
    } else if (vf.resourceFieldRef) {
      // No resource accounting on the local node: report what was asked, else 0.
      const res = vf.resourceFieldRef.resource;
      const [kind, name] = res.split('.') as [string, string];
      const q = (kind === 'limits' ? c.resources?.limits : c.resources?.requests)?.[name];
      env[e.name] = q === undefined ? '0' : String(q);
    }
  }
  return env;
}
