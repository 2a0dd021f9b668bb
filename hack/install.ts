// Installs Weft as its users do: `helm upgrade --install` of charts/weft into weft-system, with
// the image of `npm run image` (ghcr.io/weft-mesh/weft:<version>, imported into the node, so
// the chart's default values name it). The demo (hack/demo.ts) and the e2e suite
// (test/e2e/mesh.test.ts) share it.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { WEBHOOK_NAMES } from '../webhook/manifests.ts';
import { applyGatewayApiCrds, GATEWAY_API_VERSION } from './gateway-api.ts';
import { eventually } from './lib/eventually.ts';
import { goTool } from './lib/go-tool.ts';

const root = join(import.meta.dirname, '..');
export const WEFT_NAMESPACE = 'weft-system';
export const HELM_PACKAGE = 'helm.sh/helm/v3/cmd/helm@v3.19.5';

/** The helm binary, built once from its Go module into Weft's cache (hack/go-tool.sh). */
export function helmBinary(): string {
  return goTool('helm', HELM_PACKAGE);
}

/** Builds the weft, demo and pause images into dist/images (cached: seconds when nothing changed). */
export function buildImages(): void {
  execFileSync(join(root, 'node_modules', '.bin', 'node'), [join(root, 'hack', 'image', 'build.ts'), 'all'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    cwd: root,
  });
}

export interface InstallOptions {
  kubeconfig: string;
  kubectl: string;
  /** Apply the Gateway API CRDs (hack/gateway-api.ts) before the chart; default true. */
  gatewayApi?: boolean;
  /** `--set` values, e.g. { 'operator.replicas': '1' }. */
  set?: Record<string, string>;
  log?: (line: string) => void;
}

/**
 * `helm upgrade --install weft charts/weft -n weft-system --wait`, then waits until the webhook
 * has written its CA into the webhook configurations: from then on the apiserver calls it
 * through its Service, and pods of labelled namespaces get the sidecar.
 */
export async function installWeft(o: InstallOptions): Promise<{ gatewayApiApplied: boolean }> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const set = Object.entries(o.set ?? {}).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
  let gatewayApiApplied = false;
  if (o.gatewayApi !== false) {
    gatewayApiApplied = applyGatewayApiCrds((...args) =>
      execFileSync(o.kubectl, ['--kubeconfig', o.kubeconfig, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    log(
      gatewayApiApplied
        ? `[install] Gateway API ${GATEWAY_API_VERSION} CRDs (standard channel) applied`
        : '[install] Gateway API CRDs already installed: left as they are',
    );
  }
  const t0 = Date.now();
  execFileSync(
    helmBinary(),
    [
      '--kubeconfig',
      o.kubeconfig,
      'upgrade',
      '--install',
      'weft',
      join(root, 'charts', 'weft'),
      '--namespace',
      WEFT_NAMESPACE,
      '--create-namespace',
      '--wait',
      '--timeout',
      '5m',
      ...set,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  log(`[install] helm install weft: operator and webhook Deployments available in ${Date.now() - t0} ms`);
  const kubectl = (...args: string[]) =>
    execFileSync(o.kubectl, ['--kubeconfig', o.kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  for (const [kind, name] of [
    ['mutatingwebhookconfiguration', WEBHOOK_NAMES.mutatingConfiguration],
    ['validatingwebhookconfiguration', WEBHOOK_NAMES.validatingConfiguration],
  ] as const) {
    await eventually(
      `the webhook to publish its CA in ${kind} ${name} (kubectl -n ${WEFT_NAMESPACE} logs deploy/weft-webhook)`,
      () =>
        kubectl('get', kind, name, '-o', 'jsonpath={.webhooks[0].clientConfig.caBundle}') ? true : undefined,
      { timeoutMs: 120_000, intervalMs: 500 },
    );
  }
  // Deployments available and the CA published do not mean the apiserver reaches the webhook:
  // until kube-proxy has programmed the webhook Service's endpoints the call is refused, and the
  // first apply of Weft's resources failed ("failed calling webhook … connection refused", seen in
  // the demo). A server-side dry run goes through the validating webhook and persists nothing.
  const probe = JSON.stringify({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'weft-install-check', namespace: WEFT_NAMESPACE },
    spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/weft-install-check'] } }] }] },
  });
  await eventually(
    `the apiserver to reach the webhook through its Service (kubectl -n ${WEFT_NAMESPACE} get endpointslices -l kubernetes.io/service-name=weft-webhook)`,
    () => {
      try {
        execFileSync(o.kubectl, ['--kubeconfig', o.kubeconfig, 'create', '--dry-run=server', '-f', '-'], {
          input: probe,
          stdio: ['pipe', 'ignore', 'pipe'],
        });
        return true;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 120_000, intervalMs: 500 },
  );
  return { gatewayApiApplied };
}

/**
 * kubectl arguments of the demo's call by name: the frontend's app container fetches
 * http://reviews:9080/ (through its sidecar) and prints "<status> <body>".
 */
export const CALL_REVIEWS_BY_NAME = [
  'exec',
  '-n',
  'weft-demo',
  'deploy/frontend',
  '-c',
  'app',
  '--',
  'node',
  '-e',
  'const r = await fetch("http://reviews:9080/"); console.log(r.status, await r.text())',
];

/** kubectl arguments of a JSON patch of the demo's canary split (TrafficSplit reviews-canary). */
const patchCanary = (ops: unknown[]) => [
  'patch',
  'trafficsplit',
  'reviews-canary',
  '-n',
  'weft-demo',
  '--type=json',
  '-p',
  JSON.stringify(ops),
];
const weights = (v1: number, v2: number) => [
  { op: 'replace', path: '/spec/backends/0/weight', value: v1 },
  { op: 'replace', path: '/spec/backends/1/weight', value: v2 },
];

/** kubectl arguments that set the demo's canary split (TrafficSplit reviews-canary) to v1/v2 percent. */
export const setCanaryWeights = (v1: number, v2: number) => patchCanary(weights(v1, v2));

/**
 * kubectl arguments that put the demo's canary under a built-in progression of reviews-v2
 * (docs/progressive-delivery.md), starting from v1 100 %, v2 0 %.
 */
export const setCanaryProgression = (progression: Record<string, unknown>) =>
  patchCanary([
    ...weights(100, 0),
    { op: 'add', path: '/spec/progression', value: { canary: 'reviews-v2', ...progression } },
  ]);
