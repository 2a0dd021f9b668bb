// The cluster a test runs against: a fresh local control plane by default, or an existing
// cluster (kind, for example) when WEFT_TEST_KUBECONFIG names its kubeconfig.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiextensionsV1Api, KubeConfig, KubernetesObjectApi } from '@kubernetes/client-node';
import * as yaml from 'js-yaml';
import { type KubeClient, RESOURCES } from '../../kube/client.ts';
import { ensureBinaries, startControlPlane } from './control-plane.ts';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface TestCluster {
  kc: KubeConfig;
  kubeconfigPath: string;
  kubectl: (...args: string[]) => string;
  objects: KubernetesObjectApi;
  /** What the cluster is, for the test log: "kube-apiserver v1.34.4 at https://…". */
  description: string;
  stop(): Promise<void>;
}

export async function startTestCluster(opts: { controllerManager?: boolean } = {}): Promise<TestCluster> {
  const external = process.env.WEFT_TEST_KUBECONFIG;
  let kubeconfigPath: string;
  let kubectlBin: string;
  let stop = async () => {};
  if (external) {
    kubeconfigPath = external;
    kubectlBin = join(ensureBinaries(), 'kubectl');
  } else {
    const cp = await startControlPlane({ controllerManager: opts.controllerManager ?? false, log: () => {} });
    kubeconfigPath = cp.kubeconfigPath;
    kubectlBin = cp.kubectl;
    stop = cp.stop;
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const kubectl = (...args: string[]) =>
    execFileSync(kubectlBin, ['--kubeconfig', kubeconfigPath, ...args], {
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  const version = JSON.parse(kubectl('version', '-o', 'json')).serverVersion.gitVersion as string;
  return {
    kc,
    kubeconfigPath,
    kubectl,
    objects: KubernetesObjectApi.makeApiClient(kc),
    description: `kube-apiserver ${version} at ${kc.getCurrentCluster()?.server}`,
    stop,
  };
}

export function readYamlDocs(path: string): Record<string, unknown>[] {
  return yaml.loadAll(readFileSync(path, 'utf8')).filter(Boolean) as Record<string, unknown>[];
}

/** The objects of config/samples, as its kustomization lists them (what `kubectl apply -k` applies). */
export function sampleObjects(): { kind: string; metadata: { name: string; namespace?: string } }[] {
  const dir = join(repoRoot, 'config', 'samples');
  const k = yaml.load(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  return k.resources.flatMap((f) => readYamlDocs(join(dir, f))) as ReturnType<typeof sampleObjects>;
}

/** Creates Namespaces with their labels (e.g. { shop: { 'weft.dev/inject': 'enabled' } }). */
export async function createNamespaces(
  client: KubeClient,
  namespaces: Record<string, Record<string, string>>,
): Promise<void> {
  for (const [name, labels] of Object.entries(namespaces))
    await client.create(RESOURCES.namespaces, {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, labels },
    });
}

/** Applies crds/*.yaml (server-side) and waits until every CRD is Established. */
export async function installCrds(cluster: TestCluster, timeoutMs = 30_000): Promise<string[]> {
  cluster.kubectl('apply', '--server-side', '--field-manager=weft-test', '-k', join(repoRoot, 'crds'));
  const ext = cluster.kc.makeApiClient(ApiextensionsV1Api);
  const names = ['meshes.weft.dev', 'trafficsplits.weft.dev', 'authorizationpolicies.weft.dev'];
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd = await ext.readCustomResourceDefinition({ name });
      if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return names;
}

/** The error message an apiserver call failed with (the Status message), or '' if it succeeded. */
export async function refusal(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return '';
  } catch (err) {
    const body = (err as { body?: unknown }).body;
    if (typeof body === 'string') {
      try {
        return (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        return body;
      }
    }
    if (body && typeof body === 'object') return String((body as { message?: string }).message);
    return String((err as Error).message);
  }
}

/** `kubectl auth can-i … --as=<user>` (e.g. system:serviceaccount:<ns>:<name>): "yes" or "no". */
export function canI(kubectl: TestCluster['kubectl'], user: string, ...args: string[]): string {
  try {
    return kubectl('auth', 'can-i', `--as=${user}`, ...args).trim();
  } catch (err) {
    // "no" exits 1, a reason may follow it.
    return (
      String((err as { stdout?: string }).stdout ?? '')
        .trim()
        .split(/\s/)[0] ?? ''
    );
  }
}

/**
 * '' when `user` may server-side apply `obj` with `fieldManager` (a server dry run: RBAC and
 * admission decide, nothing is written), else the apiserver's refusal.
 */
export function dryRunApplyAs(
  kubectl: TestCluster['kubectl'],
  user: string,
  fieldManager: string,
  obj: Record<string, unknown>,
): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-apply-'));
  try {
    const file = join(dir, 'object.json');
    writeFileSync(file, JSON.stringify(obj));
    kubectl(
      'apply',
      `--as=${user}`,
      '--server-side',
      `--field-manager=${fieldManager}`,
      '--dry-run=server',
      '-f',
      file,
    );
    return '';
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? (err as Error).message);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
