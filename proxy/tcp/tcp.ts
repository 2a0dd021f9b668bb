// Opaque TCP: a connection that is not HTTP (or not detected as such) is carried as bytes both
// ways. The target is the app's port inbound, and outbound the endpoint the plan picks (or the
// original destination for an address outside the mesh); inbound, authorization decides once per
// connection and a denial closes it.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { type ConnContext, type Direction, inboundConn, type ProxyCore, serviceLabel } from '../context.ts';
import { ALPN, TCP_ACK } from '../identity/tls.ts';
import { authzRequest } from '../inbound/admission.ts';
import { planOutbound } from '../outbound/plan.ts';
import type { Picked } from '../resilience/endpoints.ts';
import type { CompiledRoute } from '../table.ts';
import type { UpstreamAddress } from '../transport.ts';

export interface TcpTarget {
  to: UpstreamAddress;
  service: string;
  picked?: Picked;
  route?: CompiledRoute;
  /** Another endpoint of the same backend, none of `tried` (outbound to a Service only). */
  next?: (tried: Set<string>) => TcpTarget | undefined;
}

/** Where an opaque connection goes; undefined when nowhere (the connection is closed). */
export function tcpTarget(core: ProxyCore, direction: Direction, ctx: ConnContext): TcpTarget | undefined {
  if (!ctx.dst) return undefined;
  if (direction === 'inbound')
    return {
      to: { host: core.inboundTarget, port: ctx.dst.port, meshed: false },
      service: `${ctx.dst.port}`,
    };
  const plan = planOutbound(
    core.table,
    { dst: ctx.dst, authority: undefined, http: undefined },
    core.endpoints.planState,
  );
  if (plan.kind === 'passthrough')
    return { to: { host: plan.dst.address, port: plan.dst.port, meshed: false }, service: 'passthrough' };
  if (plan.kind !== 'forward') return undefined;
  const pick = (tried: Set<string>): TcpTarget | undefined => {
    const picked = core.endpoints.pickEndpoint(plan.backend, plan.route, tried, undefined);
    if (!picked) return undefined;
    return { to: picked.address, service: serviceLabel(plan.target), picked, route: plan.route, next: pick };
  };
  return pick(new Set());
}

/**
 * Two streams carried into each other count as one in-flight stream (drain waits for it) until
 * the returned close(), idempotent: it runs `onClose` and destroys both sides.
 */
export function spliced(
  core: ProxyCore,
  a: Pick<Duplex, 'destroy'>,
  b: Pick<Duplex, 'destroy'>,
  onClose?: () => void,
): () => void {
  core.begin();
  let closed = false;
  return () => {
    if (closed) return;
    closed = true;
    core.done();
    onClose?.();
    a.destroy();
    b.destroy();
  };
}

/**
 * Carries `client` to its target; `initial` (bytes read for detection) goes first. `pre` is an
 * upstream connection already opened for a server-first protocol, to `preTarget`.
 */
export function proxyTcp(
  core: ProxyCore,
  direction: Direction,
  client: net.Socket,
  ctx: ConnContext,
  initial: Buffer,
  pre?: net.Socket,
  preTarget?: TcpTarget,
): void {
  const { metrics, id } = core;
  const table = core.table;
  if (direction === 'inbound' && table) {
    // Opaque TCP: the decision is per connection, and a denial closes it.
    const v = core.authorize(authzRequest(inboundConn(ctx)), table.config);
    if (!v.allow) {
      metrics.proxyErrors.inc({ direction, code: 'WEFT_DENIED' });
      if (core.accessLog?.enabled())
        core.accessLog.write({
          direction,
          protocol: 'tcp',
          service: `${ctx.dst?.port ?? 0}`,
          principal: ctx.peer,
          sourceIp: ctx.sourceIp,
          authz: 'deny',
          policy: v.policy,
          rule: v.rule,
          reason: v.reason,
        });
      pre?.destroy();
      client.destroy();
      return;
    }
  }
  const target = preTarget ?? tcpTarget(core, direction, ctx);
  if (!target) {
    client.destroy();
    return;
  }
  const labels = {
    direction,
    source_workload: direction === 'outbound' ? id.workload : 'unknown',
    source_namespace: direction === 'outbound' ? id.namespace : 'unknown',
    destination_service: target.service,
  };
  metrics.tcpOpened.inc(labels);
  // Outbound to a Service, a connection that does not open (refused, reset, timed out, its TLS
  // handshake failed, or, to a sidecar that says so (ALPN weft-tcp-ack), its app refused it)
  // counts as the endpoint's connect failure and is made once more to another endpoint: nothing
  // was sent yet (the client's bytes wait in its socket until the upstream is open), as for an
  // HTTP request whose connection never opened. A backend's sidecar or app that crashed then
  // costs no connection.
  const tried = new Set<string>();
  let current = target;
  const connect = (t: TcpTarget) => core.transport.connect(t.to, t.picked ? ['tcpAck', 'tcp'] : 'tcp');
  let up = pre ?? connect(target);
  let open = false;
  const close = spliced(core, client, { destroy: () => up.destroy() }, () => {
    metrics.tcpReceived.inc(labels, client.bytesRead);
    metrics.tcpSent.inc(labels, client.bytesWritten);
  });
  const opened = () => {
    open = true;
    if (current.picked && current.route)
      core.endpoints.recordOutcome(current.picked, 'success', current.route, current.service);
    // The app took the connection: the peer sidecar waiting for it may send the client's bytes.
    if (ctx.tcpAck) client.write(Buffer.from([TCP_ACK]));
    if (initial.length > 0) up.write(initial);
    if (client.readableEnded) up.end();
    else client.on('end', () => up.end());
    up.on('end', () => client.end());
    client.pipe(up, { end: false });
    up.pipe(client, { end: false });
    client.resume();
  };
  /**
   * Opened once the peer sidecar's TCP_ACK came (its app accepted); anything else, or its end
   * (half-open, the socket would not close by itself), fails it.
   */
  const acked = (s: net.Socket) => {
    const ended = () => s.destroy(new Error('the peer sidecar closed before TCP_ACK'));
    s.once('end', ended);
    const read = () => {
      const b = s.read(1) as Buffer | null;
      if (b === null) return void s.once('readable', read);
      s.off('end', ended);
      if (b[0] === TCP_ACK) opened();
      else s.destroy(new Error(`the peer sidecar sent ${b[0]} instead of TCP_ACK`));
    };
    read();
  };
  /** The upstream `s` failed or closed: before it opened, another endpoint once; else the end. */
  const ended = (s: net.Socket) => {
    if (s !== up) return;
    if (!open && current.picked && current.route) {
      core.endpoints.recordOutcome(current.picked, 'connect-failure', current.route, current.service);
      tried.add(current.picked.stats.key);
      const next = tried.size === 1 ? current.next?.(tried) : undefined;
      if (next) {
        current = next;
        up = connect(next);
        attach(up);
        return;
      }
    }
    close();
  };
  const attach = (s: net.Socket) => {
    // Half-close is passed on both ways: a client that ends its side still gets the server's
    // answer. Without allowHalfOpen Node would close the socket at its FIN, and close() would
    // tear the other side down before the answer came.
    s.allowHalfOpen = true;
    if (pre) opened();
    // (node:tls is loaded on first use, proxy/builtins.ts: a TLS socket by its `encrypted` flag.)
    else if ((s as Partial<TLSSocket>).encrypted)
      s.once('secureConnect', () => ((s as TLSSocket).alpnProtocol === ALPN.tcpAck ? acked(s) : opened()));
    else s.once('connect', opened);
    s.on('error', () => ended(s));
    s.on('close', () => ended(s));
  };
  client.allowHalfOpen = true;
  client.on('error', close);
  client.on('close', close);
  attach(up);
}
