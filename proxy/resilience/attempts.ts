// One request's tries, whatever the transport (node:http and HTTP/2 in handleHttp, the HTTP/1.1
// fast paths): how many tries are allowed, the per-try timeout and the overall deadline (the
// route timeout), the endpoint exclusion after a try, the rule that a pooled connection found
// closed is resent once on a fresh one, and the retry decision (retry.ts: retryOn, then the
// budget). The transport does the I/O and tells each try's outcome; this decides what comes next.
import type { RetryPolicy } from '../../api/index.ts';
import type { Now } from '../clock.ts';
import type { ProxyErrorCode } from '../errors.ts';
import { observeLatency } from '../lb.ts';
import type { Backend, CompiledRoute } from '../table.ts';
import type { ClusterState, Endpoints, Picked } from './endpoints.ts';
import { retriable, spendRetry, type TryFailureKind } from './retry.ts';

/** Methods that may be sent twice (RFC 9110 §9.2.2): the only ones resent after a stale connection. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * How one try ended: a response head, or a failure before it (`stale`: a pooled connection the
 * peer had closed). `unsent`: the head is a peer sidecar's own answer that its local app refused
 * the connection (unsentByPeer), so the request reached no app. `gone`: the try was ended while it
 * waited for its head because its endpoint is gone (left the config, or found unreachable:
 * Endpoints.gone). `unreachable`: its connection never opened and the address did not answer at
 * all (connect timeout, host unreachable), so its endpoint is presumed gone.
 */
export type TryOutcome =
  | { status: number; grpcStatus: string | undefined; unsent?: boolean }
  | { failure: TryFailureKind; stale: boolean; gone?: boolean; unreachable?: boolean };

/**
 * Whether a response head is a peer sidecar's own 502 saying its local app refused the
 * connection (`weft-error: WEFT_UPSTREAM_CONNECT`): nothing reached the app, so the request may
 * go to another endpoint like a connect failure. Only over mTLS (`fromPeerSidecar`): the inbound
 * side never passes an app's own `weft-error` header on (RESPONSE_STRIP_INBOUND).
 */
export function unsentByPeer(
  status: number,
  weftError: string | undefined,
  fromPeerSidecar: boolean,
): boolean {
  return fromPeerSidecar && status === 502 && weftError === 'WEFT_UPSTREAM_CONNECT';
}

/** Response headers of the local app the inbound side drops: only a sidecar's own answers carry them. */
export const RESPONSE_STRIP_INBOUND: ReadonlySet<string> = new Set(['weft-error']);

/** What the transport does after a try: resend on a fresh connection (same try), retry, or answer. */
export type NextStep = 'resend' | 'retry' | 'stop';

/** Where the tries go: endpoints with a key each, and what happens to one when a try ends. */
export interface TrySource<T> {
  /** A target avoiding the keys in `tried` when it can; undefined when there is none (503). */
  pick(tried: ReadonlySet<string>): { target: T; key: string } | undefined;
  /** How many targets there are: once all were tried, they may be tried again. */
  size(): number;
  /** A try began (counted in flight; waiting for its response head). */
  begin?(target: T, t: Try<T>): void;
  /** A try ended after `ms`; `outcome` undefined when it was cancelled (client gone, deadline). */
  end?(target: T, outcome: TryOutcome | undefined, ms: number, t: Try<T>): void;
}

export interface AttemptsPolicy {
  method: string;
  /** The route's retry policy (retries, per-try timeout); undefined: one try. */
  retries: RetryPolicy | undefined;
  /** The route timeout, ms (0: none): the overall deadline of the request. */
  timeoutMs: number;
  /** Each try's deadline, ms (0: none); absent: the retry policy's. */
  perTryTimeoutMs?: number;
  /** Spends one retry from the budget (and counts it); absent: always allowed. */
  spend?: () => boolean;
  now: Now;
}

/** One try in progress. */
export interface Try<T> {
  readonly target: T;
  readonly key: string;
  readonly started: number;
  ended: boolean;
  /**
   * Set by the transport while the try waits for its response head: called when its endpoint is
   * gone, it ends the try at once (its connection aborted, settled with `gone`).
   */
  gone?: () => void;
}

/** Whether a try that met a stale pooled connection is resent on a fresh one: once, idempotent, replayable. */
export function resendsStale(method: string, canReplay: boolean, resentBefore: boolean): boolean {
  return !resentBefore && canReplay && IDEMPOTENT.has(method);
}

/**
 * The proxy's own answer when the last try failed before a response head (`gone`: ended because
 * its endpoint went away while it waited, and not sent again).
 */
export function failureReply(kind: TryFailureKind, gone = false): { status: number; code: ProxyErrorCode } {
  if (gone) return { status: 503, code: 'WEFT_ENDPOINT_GONE' };
  if (kind === 'timeout') return { status: 504, code: 'WEFT_UPSTREAM_TIMEOUT' };
  if (kind === 'connect-failure') return { status: 503, code: 'WEFT_UPSTREAM_CONNECT' };
  return { status: 502, code: 'WEFT_UPSTREAM_RESET' };
}

/** What `pick` is given before anything was excluded (never written to). */
const NOTHING_TRIED: ReadonlySet<string> = new Set();

export class Attempts<T> {
  readonly maxTries: number;
  readonly timeoutMs: number;
  readonly perTryTimeoutMs: number;
  /** True once the overall deadline passed. */
  expired = false;
  readonly #policy: AttemptsPolicy;
  readonly #source: TrySource<T>;
  /** Keys of the targets tried; created at the first try of a source with more than one target. */
  #tried: Set<string> | undefined;
  #tryNo = 1;
  #resent = false;
  #reconnected = false;
  #goneResent = false;
  #deadline: NodeJS.Timeout | undefined;

  constructor(policy: AttemptsPolicy, source: TrySource<T>) {
    this.#policy = policy;
    this.#source = source;
    this.maxTries = 1 + (policy.retries?.attempts ?? 0);
    this.timeoutMs = policy.timeoutMs;
    this.perTryTimeoutMs = policy.perTryTimeoutMs ?? policy.retries?.perTryTimeoutMs ?? 0;
  }

  /** Starts the overall deadline when the route has one: `expire` runs once when it passes. */
  deadline(expire: () => void): void {
    if (this.timeoutMs <= 0 || this.#deadline) return;
    this.#deadline = setTimeout(() => {
      this.expired = true;
      expire();
    }, this.timeoutMs);
  }

  /** Stops the deadline: a response head came, or the request is over. */
  stopDeadline(): void {
    if (this.#deadline) clearTimeout(this.#deadline);
  }

  /** The target of the next try (in flight from now), or undefined when there is none. */
  pick(): Try<T> | undefined {
    const p = this.#source.pick(this.#tried ?? NOTHING_TRIED);
    if (!p) return undefined;
    // Once every target was tried, allow them again (a retry may still hit a recovered one): with
    // one target, none is ever left excluded and no set is needed.
    const targets = this.#source.size();
    if (targets > 1) {
      this.#tried ??= new Set();
      this.#tried.add(p.key);
      if (this.#tried.size >= targets) this.#tried.clear();
    }
    const t: Try<T> = { target: p.target, key: p.key, started: this.#policy.now(), ended: false };
    this.#source.begin?.(p.target, t);
    return t;
  }

  /** Starts the per-try timeout when the route has one; returns the function that stops it. */
  perTry(expire: () => void): (() => void) | undefined {
    if (this.perTryTimeoutMs <= 0) return undefined;
    const timer = setTimeout(expire, this.perTryTimeoutMs);
    return () => clearTimeout(timer);
  }

  /** Ends a try without an outcome: the client went away, or the deadline passed. */
  cancel(t: Try<T>): void {
    this.#end(t, undefined);
  }

  /**
   * A try's outcome, reported for its target; then what comes next. `canReplay`: the request
   * can be sent again (no body, its body not begun, or all of it sent so far kept: replay.ts).
   */
  settle(t: Try<T>, o: TryOutcome, canReplay: boolean): NextStep {
    this.#end(t, o);
    if ('failure' in o && o.stale && resendsStale(this.#policy.method, canReplay, this.#resent)) {
      // Not the endpoint's fault and not a policy retry: the same try on a fresh connection.
      this.#resent = true;
      this.#tried?.delete(t.key);
      return 'resend';
    }
    if (
      ('failure' in o ? o.failure === 'connect-failure' && !o.stale : o.unsent === true) &&
      !this.#reconnected &&
      canReplay &&
      this.#source.size() > 1
    ) {
      // The connection never opened (or the peer sidecar's app refused it), so nothing reached an
      // app: safe for any method. Once per request, on another target (the failed one stays in
      // `tried`), whatever the retry policy says; an endpoint whose pod just went away, or whose
      // app container crashed, costs one try, not the request.
      this.#reconnected = true;
      return 'resend';
    }
    if ('failure' in o && o.gone && !this.#goneResent && canReplay && IDEMPOTENT.has(this.#policy.method)) {
      // Its endpoint went away while the request waited for an answer: an idempotent request is
      // sent once more to another endpoint (the gone one stays in `tried`), whatever the policy.
      this.#goneResent = true;
      return 'resend';
    }
    const retries = this.#policy.retries;
    if (!retries || this.#tryNo >= this.maxTries || !canReplay) return 'stop';
    const wanted =
      'failure' in o
        ? retriable(retries, { kind: o.failure }, 0, undefined)
        : retriable(retries, undefined, o.status, o.grpcStatus);
    if (!wanted || !(this.#policy.spend?.() ?? true)) return 'stop';
    this.#tryNo++;
    return 'retry';
  }

  #end(t: Try<T>, o: TryOutcome | undefined): void {
    if (t.ended) return;
    t.ended = true;
    t.gone = undefined;
    this.#source.end?.(t.target, o, this.#policy.now() - t.started, t);
  }
}

/**
 * Tries over a backend's endpoints (the outbound case): the balancer's pick, EWMA latency and
 * in-flight counts, outlier detection (a stale pooled connection says nothing of the endpoint's
 * health), the retry budget of the backend.
 */
export function backendAttempts(
  endpoints: Endpoints,
  plan: { route: CompiledRoute; backend: Backend; hashKey: string | undefined },
  cluster: ClusterState,
  r: { method: string; service: string; now: Now; countRetry(outcome: 'sent' | 'budget_exhausted'): void },
): Attempts<Picked> {
  const { route, backend, hashKey } = plan;
  cluster.budget?.recordRequest();
  return new Attempts<Picked>(
    {
      method: r.method,
      retries: route.retries,
      timeoutMs: route.timeoutMs,
      perTryTimeoutMs: route.perTryTimeoutMs,
      spend: () => spendRetry(cluster, r.countRetry),
      now: r.now,
    },
    {
      pick(tried) {
        const p = endpoints.pickEndpoint(backend, route, tried as Set<string>, hashKey);
        return p && { target: p, key: p.stats.key };
      },
      size: () => endpoints.entriesFor(backend).stats.length,
      begin: (p, t) => {
        p.stats.inflight++;
        endpoints.waiting(t);
      },
      end(p, o, ms, t) {
        p.stats.inflight--;
        endpoints.done(t);
        observeLatency(p.stats, ms, r.now());
        if (!o) return;
        // A peer sidecar's word that its app refused the connection is a connect failure of
        // that endpoint (default ejection: 3 in a row), so requests that cannot be sent again
        // (their body begun and over the replay limit) stop going there.
        if ('status' in o)
          endpoints.recordOutcome(
            p,
            o.unsent ? 'connect-failure' : o.status >= 500 ? '5xx' : 'success',
            route,
            r.service,
          );
        else if (!o.stale) {
          // An endpoint gone silent counts as one that cannot be connected to.
          endpoints.recordOutcome(
            p,
            o.failure === 'connect-failure' || o.gone ? 'connect-failure' : '5xx',
            route,
            r.service,
          );
          if (o.unreachable) endpoints.unreachable(p.stats.key);
        }
      },
    },
  );
}
