// Inbound admission, decided the same way on every inbound transport (node:http, the HTTP/1.1
// fast path, HTTP/2, upgrades, opaque TCP): who calls (the verified mTLS identity first, the
// client sidecar's headers otherwise) and the one authorization request the enforcer is asked.
// The path it carries is already normalized (proxy/pathnorm.ts, `admit`).
import { SIDECAR_HEADERS } from '../../api/constants.ts';
import type { AuthzRequest } from '../authz/matcher.ts';

/** What an inbound connection knows about its caller. */
export interface InboundConn {
  /** The destination port the caller dialled (the app's port). */
  port: number;
  /** The peer's verified SPIFFE ID (spiffe://…) on an mTLS connection; undefined in plaintext. */
  peer: string | undefined;
  sourceIp: string | undefined;
}

export interface InboundHttp {
  method: string;
  /** The normalized path. */
  path: string;
  host: string | undefined;
  /** Header names in lower case. */
  headers: Record<string, string | string[] | undefined>;
}

/** The authorization request for a connection (opaque TCP) or one HTTP request on it. */
export function authzRequest(conn: InboundConn, http?: InboundHttp): AuthzRequest {
  return {
    principal: conn.peer === undefined ? undefined : principalOf(conn.peer),
    sourceIp: conn.sourceIp ?? '',
    port: conn.port,
    ...(http
      ? { http: { method: http.method, path: http.path, host: http.host ?? '', headers: http.headers } }
      : {}),
  };
}

/**
 * The last SPIFFE ID seen and what was read from it: a connection's peer is the same for each of
 * its requests, so the regular expressions run once per peer, not per request (mTLS).
 */
let lastId: string | undefined;
let lastNamespace: string | undefined;
let lastPrincipal = '';

function readSpiffe(id: string): void {
  if (id === lastId) return;
  lastId = id;
  lastNamespace = /\/ns\/([^/]+)\/sa\//.exec(id)?.[1];
  lastPrincipal = id.replace(/^spiffe:\/\//, '');
}

/** The principal of a SPIFFE ID as policies name it: the ID without `spiffe://`. */
function principalOf(id: string): string {
  readSpiffe(id);
  return lastPrincipal;
}

/** The namespace in a SPIFFE ID spiffe://<td>/ns/<ns>/sa/<sa>. */
export function namespaceOfSpiffe(id: string): string | undefined {
  readSpiffe(id);
  return lastNamespace;
}

/**
 * Who calls, for metrics and the access log: the workload the client sidecar named, and the
 * namespace of the verified identity under mTLS (the header's only in plaintext).
 */
export function callerOf(
  peer: string | undefined,
  header: (name: string) => string | undefined,
): { workload: string; namespace: string } {
  return {
    workload: header(SIDECAR_HEADERS.srcWorkload) ?? 'unknown',
    namespace:
      (peer ? namespaceOfSpiffe(peer) : undefined) ?? header(SIDECAR_HEADERS.srcNamespace) ?? 'unknown',
  };
}
