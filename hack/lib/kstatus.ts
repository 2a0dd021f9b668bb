// The kstatus of live objects, computed by the real library Flux's health checks use
// (sigs.k8s.io/cli-utils/pkg/kstatus/status), through hack/kstatus (a Go program built once by
// hack/go-tool.sh): `kubectl get -o json` output in, one {kind, name, status, message} per
// object out. Status: Current, InProgress, Failed, Terminating, NotFound or Unknown.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './cluster.ts';
import { goTool } from './go-tool.ts';

export interface KStatus {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  status: string;
  message: string;
}

let binary: string | undefined;
/** hack/kstatus, built on first use. */
export function kstatusBinary(): string {
  binary ??= goTool('kstatus', 'weft.dev/kstatus', join(repoRoot, 'hack', 'kstatus'));
  return binary;
}

/** kstatus of the objects in `json` (one object or a List, as `kubectl get -o json` prints). */
export function kstatus(json: string): KStatus[] {
  return JSON.parse(execFileSync(kstatusBinary(), { input: json, encoding: 'utf8' })) as KStatus[];
}
