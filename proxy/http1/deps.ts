// What both fast-path adapters (inbound.ts, outbound.ts) are given by the proxy: limits, this
// pod's identity, the admission of the request target, the drain state, in-flight accounting,
// and the one finish reporter (proxy/telemetry/finish.ts).
import { SIDECAR_HEADERS } from '../../api/constants.ts';
import type { Now } from '../clock.ts';
import type { NormalizedTarget } from '../pathnorm.ts';
import type { FinishRecord } from '../telemetry/finish.ts';
import type { ConnDeps } from './conn.ts';

/** The client's sidecar metadata headers: never passed on as they came (ours replace them). */
export const SIDECAR_STRIP: ReadonlySet<string> = new Set([
  SIDECAR_HEADERS.srcWorkload,
  SIDECAR_HEADERS.srcNamespace,
]);

export interface FastDeps {
  connLimits: { maxHeaderBytes: number; idleTimeoutMs: number; headersTimeoutMs: number };
  /** Who the proxy serves. */
  identity: { workload: string; namespace: string };
  now: Now;
  /** True while tracing is on: the connection goes the node:http way (which propagates spans). */
  tracingActive(): boolean;
  /** The request target normalized by the mesh's pathNormalization, or why it is refused. */
  admit(target: string, host: string | undefined): NormalizedTarget;
  draining(): boolean;
  /** One request more in flight (a drain waits for it), and one less. */
  started(): void;
  ended(): void;
  report(f: FinishRecord): void;
  error(direction: 'inbound' | 'outbound', code: string): void;
}

/** The connection loop's settings and hooks for one direction (all but `decide`). */
export function connDeps(
  d: FastDeps,
  direction: 'inbound' | 'outbound',
  onHead: () => void,
  handoff: (buffered: Buffer) => void,
): Omit<ConnDeps<unknown>, 'decide'> {
  return {
    ...d.connLimits,
    handoffWanted: d.tracingActive,
    handoff: (_s, buffered) => handoff(buffered),
    admit: d.admit,
    onHead,
    draining: d.draining,
    error: (code) => d.error(direction, code),
  };
}
