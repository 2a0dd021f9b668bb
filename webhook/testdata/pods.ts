// Pods and meshes the injector's unit tests, golden files, integration tests and benchmark share.
import type { V1Pod } from '@kubernetes/client-node';
import type { MeshSpec } from '../../api/index.ts';

export const MESH: MeshSpec = {
  proxy: {
    image: 'registry.example/weft:0.1.0',
    logLevel: 'debug',
    resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { memory: '128Mi' } },
  },
};

/** A typical Deployment pod: probes on a named and a numeric port, an init container, volumes, env. */
export function typicalPod(name = 'web'): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'web' }, annotations: { 'example.com/owner': 'team-a' } },
    spec: {
      serviceAccountName: 'web',
      initContainers: [{ name: 'migrate', image: 'web:1', command: ['migrate'] }],
      containers: [
        {
          name: 'web',
          image: 'web:1',
          command: ['web'],
          ports: [
            { name: 'http', containerPort: 8080 },
            { name: 'admin', containerPort: 9090 },
          ],
          env: [{ name: 'MODE', value: 'prod' }],
          readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 2 },
          livenessProbe: { httpGet: { path: 'live', port: 9090 } },
          startupProbe: { tcpSocket: { port: 8080 } },
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
        {
          name: 'sidecar',
          image: 'log:1',
          readinessProbe: { httpGet: { path: '/', port: 8443, scheme: 'HTTPS' } },
        },
      ],
      volumes: [{ name: 'data', emptyDir: {} }],
    },
  };
}

/** The smallest pod: no metadata maps, no init containers, no volumes. */
export function barePod(name = 'bare'): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: { containers: [{ name: 'app', image: 'app:1', command: ['app'] }] },
  };
}

/** A pod spec of about `bytes` bytes of JSON (big env blocks), for the benchmark. */
export function largePod(bytes: number, name = 'large'): V1Pod {
  const pod = typicalPod(name);
  const env = pod.spec!.containers[0]!.env!;
  let i = 0;
  while (JSON.stringify(pod).length < bytes) env.push({ name: `VAR_${i++}`, value: 'x'.repeat(200) });
  return pod;
}
