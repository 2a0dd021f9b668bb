// The Gateway API CRDs (standard channel) Weft implements for the mesh, pinned. They are the
// upstream project's files, never copied into this repository: read from the Go module cache
// (`go mod download` of the pinned module) and applied beside the chart, before `helm install`,
// as the Gateway API docs recommend (users: `kubectl apply --server-side -f` the release's
// standard-install.yaml; docs/gateway-api.md).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitEstablished } from './lib/crds.ts';

export const GATEWAY_API_MODULE = 'sigs.k8s.io/gateway-api';
export const GATEWAY_API_VERSION = 'v1.6.3';

/** config/crd/standard of the pinned module, downloaded once into the Go module cache. */
export function gatewayApiCrdDir(): string {
  const out = execFileSync(
    'go',
    ['mod', 'download', '-json', `${GATEWAY_API_MODULE}@${GATEWAY_API_VERSION}`],
    {
      encoding: 'utf8',
      // Outside any module, so no go.mod around decides what is downloaded.
      cwd: tmpdir(),
      env: { ...process.env, GOFLAGS: '-mod=mod' },
    },
  );
  const { Dir, Error: err } = JSON.parse(out) as { Dir?: string; Error?: string };
  const dir = Dir && join(Dir, 'config', 'crd', 'standard');
  if (!dir || !existsSync(dir))
    throw new Error(`${GATEWAY_API_MODULE}@${GATEWAY_API_VERSION}: no config/crd/standard (${err ?? out})`);
  return dir;
}

const ROUTE_CRDS = ['httproutes', 'grpcroutes', 'referencegrants'].map(
  (k) => `crd/${k}.gateway.networking.k8s.io`,
);

/**
 * Applies the standard-channel CRDs unless a Gateway API is already installed (a cluster's own
 * version is left as it is), and waits until the route kinds are served. `kubectl` runs kubectl
 * with these arguments and returns its output. True when this call installed them (so whoever
 * called may remove them: removeGatewayApiCrds).
 */
export function applyGatewayApiCrds(kubectl: (...args: string[]) => unknown): boolean {
  const present = String(
    kubectl('get', 'crd', '--ignore-not-found', '-o', 'name', ...ROUTE_CRDS.map((c) => c.slice(4))),
  ).trim();
  const apply = present === '';
  if (apply) kubectl('apply', '--server-side', '--field-manager=weft-install', '-f', gatewayApiCrdDir());
  waitEstablished(kubectl, ...ROUTE_CRDS);
  return apply;
}

/** Removes what applyGatewayApiCrds applied. */
export function removeGatewayApiCrds(kubectl: (...args: string[]) => unknown): void {
  kubectl('delete', '--ignore-not-found', '-f', gatewayApiCrdDir());
}
