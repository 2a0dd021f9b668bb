// A stand-in for cert-manager's Certificate API in tests: a minimal CustomResourceDefinition
// for certificates.cert-manager.io/v1 (structural, spec and status kept as they come with
// x-kubernetes-preserve-unknown-fields). The real CRD has a full schema and cert-manager's
// controller behind it; here the test plays the controller by writing the issued Secret.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiextensionsV1Api } from '@kubernetes/client-node';
import type { TestCluster } from './cluster.ts';

export const CERTIFICATE_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'certificates.cert-manager.io' },
  spec: {
    group: 'cert-manager.io',
    names: {
      kind: 'Certificate',
      listKind: 'CertificateList',
      plural: 'certificates',
      singular: 'certificate',
    },
    scope: 'Namespaced',
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
              status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
            },
          },
        },
      },
    ],
  },
};

/** Installs the minimal Certificate CRD and waits until it is Established. */
export async function installCertificateCrd(cluster: TestCluster, timeoutMs = 30_000): Promise<void> {
  const ext = cluster.kc.makeApiClient(ApiextensionsV1Api);
  // Raw JSON through kubectl: client-node's typed models would drop the x-kubernetes-* keys.
  const dir = mkdtempSync(join(tmpdir(), 'weft-crd-'));
  try {
    const file = join(dir, 'crd.json');
    writeFileSync(file, JSON.stringify(CERTIFICATE_CRD));
    cluster.kubectl('apply', '--server-side', '--field-manager=weft-test', '-f', file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const crd = await ext.readCustomResourceDefinition({ name: CERTIFICATE_CRD.metadata.name });
    if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return;
    if (Date.now() > deadline) throw new Error('Certificate CRD not Established in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
