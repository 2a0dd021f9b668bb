// The demo server's container (hack/demo-apps/server.ts in the demo image), as the real-cluster
// tests and tools deploy it: one spec, whatever the Service it plays (echo in hack/lib/faults.ts,
// podinfo in test/e2e/flagger.test.ts).

/** The demo apps' image (hack/image builds it: npm run image). */
export const DEMO_IMAGE = 'ghcr.io/weft-mesh/weft-demo:0.1.0';
/** The port the demo server listens on (its PORT default). */
export const DEMO_PORT = 8080;

/**
 * The container `app` running the demo server as `service` (SERVICE_NAME), its pod's name from
 * the downward API, ready once it answers /healthz; `env` adds variables (VERSION, STATUS, …).
 */
export function demoServerContainer(service: string, env: Record<string, string> = {}) {
  return {
    name: 'app',
    image: DEMO_IMAGE,
    // The demo server exits at once on SIGTERM, as many apps do.
    command: ['node', 'hack/demo-apps/server.ts'],
    env: [
      { name: 'SERVICE_NAME', value: service },
      ...Object.entries(env).map(([name, value]) => ({ name, value })),
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ],
    ports: [{ name: 'http', containerPort: DEMO_PORT }],
    readinessProbe: { httpGet: { path: '/healthz', port: DEMO_PORT }, periodSeconds: 1 },
  };
}
