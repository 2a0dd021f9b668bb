// The state of one node:http / HTTP/2 request shared by handle.ts (which reports its finish
// record) and the direction that carries it out (inbound.ts, outbound.ts).
import type { AuthzVerdict } from '../authz/matcher.ts';
import type { ConnContext, Direction } from '../context.ts';
import type { RouteLabel, ServiceTarget } from '../table.ts';
import type { RequestSpan } from '../tracing.ts';
import type { DownReq, DownRes } from './relay.ts';

/** One request in flight: what it is, and what its finish record will say. */
export interface Exchange {
  readonly direction: Direction;
  readonly req: DownReq;
  readonly res: DownRes;
  readonly h2: boolean;
  readonly ctx: ConnContext;
  readonly method: string;
  readonly authority: string | undefined;
  /** The normalized target: what is authorized, routed and forwarded. */
  readonly path: string;
  /** The headers sent upstream (hop-by-hop and sidecar metadata removed). */
  readonly headers: Record<string, string | string[]>;
  readonly span: RequestSpan | undefined;
  /** The status reported (0: the response's own). */
  status: number;
  grpcStatus: string;
  /** Outbound: the service answered for (the backend once picked). */
  target: ServiceTarget | undefined;
  /** Outbound: the route the plan took (undefined: none matched). */
  route: RouteLabel | undefined;
  upstreamWorkload: string;
  upstreamNamespace: string;
  denied: AuthzVerdict | undefined;
}
