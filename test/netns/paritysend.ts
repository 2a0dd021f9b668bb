// The parity test's table row (`Case`) and one request from its client pod through a given
// transport of its sidecar: HTTP/1.1 (fast path or node:http: the route decides; or over the mux
// from the mux client pod), h2c prior knowledge, an HTTP/1.1 Upgrade. Answers the status, the backend and the response headers.
import type { AuthzPolicy, Route } from '../../api/index.ts';
import type { Agent } from './netns.ts';

/** h1-mux: HTTP/1.1 from a second client pod whose sidecar sends it as HTTP/2 streams over mTLS (the mux). */
export type Transport = 'h1-fast' | 'h1-node' | 'h1-mux' | 'h2' | 'upgrade';
export const TRANSPORTS: Transport[] = ['h1-fast', 'h1-node', 'h1-mux', 'h2', 'upgrade'];

/** One row of the parity table: routes, a request, what every transport must answer. */
export interface Case {
  name: string;
  routes: (name: string) => Route[];
  headers?: Record<string, string>;
  /** The request path (default "/"), or one per transport. */
  path?: string | ((t: Transport) => string);
  /** AuthorizationPolicies the server sidecars enforce. */
  policies?: AuthzPolicy[];
  /**
   * The outcomes of requests sent in order, one connection each: status, backend, and response
   * headers (undefined: absent).
   */
  expect: Array<{
    /** This request's path, when not the case's. */
    path?: string;
    status: number | 'ok';
    backend?: () => string;
    headers?: Record<string, string | undefined>;
  }>;
  /** After the requests: what went wrong elsewhere (a mirror that got nothing), if anything. */
  verify?: (t: Transport) => Promise<string | undefined>;
  /** The transports the case applies to (default: all); an upgrade is neither retried nor timed. */
  transports?: Transport[];
}

/** What one request got back: the status, the backend pod that answered (if any), the headers. */
export interface Outcome {
  status: number;
  backend: string | undefined;
  headers: Record<string, string>;
}

export async function sendVia(
  agent: Agent,
  transport: Transport,
  path: string,
  headers: Record<string, string>,
  vip = '10.96.0.10',
): Promise<Outcome> {
  if (transport === 'h2') {
    const r = await agent.send<{ status?: number; backend?: string; headers?: Record<string, string> }>({
      op: 'h2get',
      url: `http://${vip}${path}`,
      headers,
    });
    return { status: r.status ?? -1, backend: r.backend, headers: r.headers ?? {} };
  }
  if (transport === 'upgrade') {
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    const r = await agent.send<{ got: string[] }>({
      op: 'script',
      host: vip,
      port: 80,
      steps: [
        {
          send:
            `GET ${path} HTTP/1.1\r\nhost: web\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
            'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n' +
            `${extra}\r\n`,
          until: '\r\n\r\n',
        },
      ],
    });
    const head = (r.got[0] ?? '').split('\r\n\r\n')[0]!;
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? -1);
    const got: Record<string, string> = {};
    for (const line of head.split('\r\n').slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) got[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    return { status, backend: got['x-backend'], headers: got };
  }
  const r = await agent.send<{ first: { status: number; headers: Record<string, string> } }>({
    op: 'http',
    url: `http://${vip}${path}`,
    headers: { ...headers, connection: 'close' },
  });
  return { status: r.first.status, backend: r.first.headers['x-backend'], headers: r.first.headers };
}
