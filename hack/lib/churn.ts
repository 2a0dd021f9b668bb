// Endpoint churn under load, on a real cluster with Weft installed (the e2e suite and
// bench/propagation.ts): a backend Deployment `echo` (the demo server, `replicas` pods), a meshed
// client pod `steady` that calls http://echo:8080/ every 50 ms, and `kubectl rollout restart`
// of the backend while it does. Returns how many of the client's requests after both first
// replicas answered failed (anything but a 200), and which pods answered.
import { execFileSync } from 'node:child_process';
import { eventually } from './eventually.ts';

export const DEMO_IMAGE = 'ghcr.io/weft-mesh/weft-demo:0.1.0';

export interface ChurnResult {
  requests: number;
  failed: string[];
  /** Pods that answered: old and new replicas. */
  servedBy: string[];
  rolloutMs: number;
  /** When requests failed: the client's sidecar's warnings and errors, for the report. */
  clientProxyWarnings: string[];
}

export async function rollingRestartUnderLoad(o: {
  kubectl: string;
  kubeconfig: string;
  namespace: string;
  /** A ServiceAccount of the namespace for the client. */
  serviceAccount: string;
  requests: number;
  replicas?: number;
}): Promise<ChurnResult> {
  const ns = o.namespace;
  const kubectl = (...args: string[]) =>
    execFileSync(o.kubectl, ['--kubeconfig', o.kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const apply = (obj: object) =>
    execFileSync(o.kubectl, ['--kubeconfig', o.kubeconfig, 'apply', '-f', '-'], {
      input: JSON.stringify(obj),
      encoding: 'utf8',
    });
  const rolledOut = () =>
    kubectl('rollout', 'status', 'deployment/echo', '-n', ns, '--timeout=1s').includes('successfully')
      ? true
      : undefined;
  const clientLines = () => {
    try {
      return kubectl('logs', '-n', ns, 'steady', '-c', 'app').trim().split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  const labels = { app: 'echo' };
  apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'echo', namespace: ns },
    spec: { selector: labels, ports: [{ name: 'http', port: 8080, targetPort: 8080, appProtocol: 'http' }] },
  });
  apply({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'echo', namespace: ns },
    spec: {
      replicas: o.replicas ?? 2,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: o.serviceAccount,
          containers: [
            {
              name: 'app',
              image: DEMO_IMAGE,
              // The demo server exits at once on SIGTERM, as many apps do.
              command: ['node', 'hack/demo-apps/server.ts'],
              env: [
                { name: 'SERVICE_NAME', value: 'echo' },
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              ],
              readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
            },
          ],
        },
      },
    },
  });
  await eventually('echo available', rolledOut, { timeoutMs: 180_000, intervalMs: 500 });
  apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'steady', namespace: ns, labels: { app: 'steady' } },
    spec: {
      serviceAccountName: o.serviceAccount,
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'app',
          image: DEMO_IMAGE,
          command: ['node', 'hack/demo-apps/client.ts', 'http://echo:8080/'],
          env: [
            { name: 'COUNT', value: String(o.requests) },
            { name: 'INTERVAL_MS', value: '50' },
          ],
        },
      ],
    },
  });
  // Counting starts once every replica answered (before that the client's sidecar may not have
  // the endpoints yet: the operator writes them after the EndpointSlice).
  const want = o.replicas ?? 2;
  const start = await eventually(
    `steady: answers from ${want} echo replicas`,
    () => {
      const l = clientLines();
      const pods = new Set<string>();
      const i = l.findIndex((x) => {
        if (x.split(' ')[1] === '200') pods.add(x.split(' ')[4]!);
        return pods.size === want;
      });
      return i >= 0 ? i + 1 : undefined;
    },
    { timeoutMs: 180_000, intervalMs: 500 },
  );
  const t0 = Date.now();
  kubectl('rollout', 'restart', 'deployment/echo', '-n', ns);
  await eventually('the rollout restart done', rolledOut, { timeoutMs: 300_000, intervalMs: 500 });
  const rolloutMs = Date.now() - t0;
  const lines = await eventually(
    `steady: ${o.requests} answers`,
    () => {
      const l = clientLines();
      return l.length >= o.requests ? l : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 1000 },
  );
  const counted = lines.slice(start);
  const ok = counted.filter((l) => l.split(' ')[1] === '200');
  const failed = counted.filter((l) => l.split(' ')[1] !== '200');
  const clientProxyWarnings = failed.length
    ? kubectl('logs', '-n', ns, 'steady', '-c', 'weft-proxy')
        .split('\n')
        .filter((l) => /"level":(40|50)/.test(l))
        .slice(-20)
    : [];
  kubectl('delete', 'pod', 'steady', '-n', ns, '--wait=false');
  return {
    requests: counted.length,
    failed,
    clientProxyWarnings,
    servedBy: [...new Set(ok.map((l) => l.split(' ')[4]!))].sort(),
    rolloutMs,
  };
}
