// The setup the propagation test and benchmark share: a meshed namespace with Services web,
// web-v1 and web-v2, a ServiceAccount whose token (with the cluster CA) is written to tokenDir
// as the injector's projected volume would hold it, and ClusterRole weft-proxy installed from
// config/rbac/proxy_role.yaml (the operator binds it in the namespace).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { type KubeClient, RESOURCES } from '../../kube/client.ts';
import { createNamespaces, repoRoot } from './cluster.ts';

export async function meshedNamespaceWithProxyToken(o: {
  client: KubeClient;
  kc: KubeConfig;
  kubectl: (...args: string[]) => string;
  namespace: string;
  serviceAccount: string;
  tokenDir: string;
}): Promise<void> {
  const { client, namespace } = o;
  o.kubectl('apply', '--server-side', '-f', join(repoRoot, 'config', 'rbac', 'proxy_role.yaml'));
  await createNamespaces(client, { 'weft-system': {}, [namespace]: { 'weft.dev/inject': 'enabled' } });
  await client.create(RESOURCES.serviceAccounts, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: o.serviceAccount, namespace },
  });
  for (const svc of ['web', 'web-v1', 'web-v2'])
    await client.create(RESOURCES.services, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: svc, namespace },
      spec: { selector: { app: svc }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    });
  writeServiceAccountToken(o);
}

/**
 * A pod with a `weft-proxy` container reported Running on 127.0.0.1 (no kubelet: its proxy runs
 * as a local process the test starts), so the operator long-polls it.
 */
export async function runningMeshedPod(
  client: KubeClient,
  o: { namespace: string; name: string; serviceAccount: string; labels: Record<string, string> },
): Promise<void> {
  await client.create(RESOURCES.pods, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: o.name, namespace: o.namespace, labels: o.labels },
    spec: {
      serviceAccountName: o.serviceAccount,
      automountServiceAccountToken: false,
      containers: [
        { name: 'app', image: 'app' },
        { name: 'weft-proxy', image: 'weft' },
      ],
    },
  });
  await client.apply(
    RESOURCES.pods,
    { metadata: { name: o.name, namespace: o.namespace }, status: { phase: 'Running', podIP: '127.0.0.1' } },
    { subresource: 'status', fieldManager: 'weft-test' },
  );
}

/** A token of the ServiceAccount and the cluster CA in tokenDir, as the projected token volume holds them. */
export function writeServiceAccountToken(o: {
  kc: KubeConfig;
  kubectl: (...args: string[]) => string;
  namespace: string;
  serviceAccount: string;
  tokenDir: string;
}): void {
  mkdirSync(o.tokenDir, { recursive: true });
  const token = o.kubectl('create', 'token', o.serviceAccount, '-n', o.namespace, '--duration=2h').trim();
  writeFileSync(join(o.tokenDir, 'token'), token);
  const ca = o.kc.getCurrentCluster()!;
  writeFileSync(
    join(o.tokenDir, 'ca.crt'),
    ca.caData ? Buffer.from(ca.caData, 'base64') : readFileSync(ca.caFile!),
  );
}
