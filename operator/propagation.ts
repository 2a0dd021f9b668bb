// Proof of application: which configuration generation each proxy runs, and what that means
// for each resource and for the Mesh.
//
// - ProxyReports long-polls every meshed pod's health port (`GET /config/version?known=…`,
//   proxy/admin.ts): one idle connection per proxy, answered when the proxy applies another
//   version. No apiserver write per proxy, ever: the reports live in the leader's memory.
// - Propagation remembers, per namespace, the generation last written (the proxyconfig
//   reconciler records it), and per TrafficSplit / AuthorizationPolicy the first configuration
//   generation of each namespace that carried its current metadata.generation. A proxy applied
//   a resource when its reported generation is at least that one.
// - Report changes are coalesced (flushMs) before the resources and the Mesh are re-queued, so
//   status writes per change are bounded by time (a few per change), not by the proxy count.
import { PROXY } from '../api/constants.ts';
import type { LaggingProxy } from '../api/index.ts';
import { type TrustSummary, trustKey } from '../api/pem.ts';
import type { Logger } from '../kube/log.ts';
import { isMeshedPod } from './compiler.ts';
import type { PodObj } from './types.ts';

export interface ProxyReport {
  version: string | undefined;
  generation: number | undefined;
  /**
   * The roots the proxy's workload identity trusts and the one its certificate comes from
   * (SHA-256 fingerprints); null: no identity loaded; undefined: not reported (an older proxy).
   */
  trust?: TrustSummary | null;
  /** Set while the proxy does not answer (paused, gone, network): its last report is kept. */
  error: string | undefined;
}

export interface ProxyReportsOptions {
  /** The base URL of a pod's health server; default http://<podIP>:15020. */
  address?: (pod: PodObj) => string | undefined;
  /** How long a proxy may hold the long poll (it answers earlier on a change). */
  waitMs?: number;
  /** Coalescing window for change notifications. */
  flushMs?: number;
  /** Called with the namespaces whose reports changed. */
  onChange: (namespaces: Set<string>) => void;
  log: Logger;
}

const podKey = (p: { metadata: { namespace?: string; name: string } }) =>
  `${p.metadata.namespace ?? ''}/${p.metadata.name}`;

export const defaultProxyAddress = (pod: PodObj): string | undefined => {
  const ip = pod.status?.podIP;
  if (!ip) return undefined;
  return `http://${ip.includes(':') ? `[${ip}]` : ip}:${PROXY.healthPort}`;
};

/** The long polls, one per meshed pod with an address. */
export class ProxyReports {
  readonly #o: Required<Omit<ProxyReportsOptions, 'log'>> & { log: Logger };
  readonly #polls = new Map<string, { address: string; ctl: AbortController; terminating: boolean }>();
  readonly #reports = new Map<string, ProxyReport>();
  #changed = new Set<string>();
  #flush: NodeJS.Timeout | undefined;

  constructor(o: ProxyReportsOptions) {
    // Each default on its own: an option passed as undefined keeps the default.
    this.#o = {
      ...o,
      address: o.address ?? defaultProxyAddress,
      waitMs: o.waitMs ?? 30_000,
      flushMs: o.flushMs ?? 250,
    };
  }

  get(pod: { metadata: { namespace?: string; name: string } }): ProxyReport | undefined {
    return this.#reports.get(podKey(pod));
  }

  /**
   * Whether every one of `pods` that can be polled has answered (or failed) at least once: until
   * then counts would say "not reported" for proxies that are fine (after an operator restart),
   * so the reconcilers keep what the status says.
   */
  settled(pods: PodObj[]): boolean {
    return pods.every((p) => this.#reports.has(podKey(p)) || !isMeshedPod(p) || !this.#o.address(p));
  }

  /** The highest generation a proxy of the namespace reports (0: none). */
  maxGeneration(ns: string): number {
    let max = 0;
    for (const [key, r] of this.#reports)
      if (key.startsWith(`${ns}/`) && r.generation !== undefined && r.generation > max) max = r.generation;
    return max;
  }

  /** Starts polls for new meshed pods (or new addresses), stops those of pods that went away. */
  sync(pods: PodObj[]): void {
    const want = new Map<string, { pod: PodObj; address: string }>();
    for (const pod of pods) {
      if (!isMeshedPod(pod)) continue;
      const address = this.#o.address(pod);
      if (address) want.set(podKey(pod), { pod, address });
    }
    for (const [key, poll] of this.#polls) {
      if (want.get(key)?.address === poll.address) continue;
      poll.ctl.abort();
      this.#polls.delete(key);
      if (!want.has(key) && this.#reports.delete(key)) {
        // A proxy that is gone (pod deleted or finished) no longer counts: statuses that
        // waited for it are recomputed.
        this.#notify(key.slice(0, key.indexOf('/')));
      }
    }
    for (const [key, { pod, address }] of want) {
      const poll = this.#polls.get(key);
      if (poll) {
        // A pod being deleted whose proxy no longer answers stops counting (leaving()): now.
        const terminating = pod.status?.terminating === true;
        if (terminating !== poll.terminating && this.#reports.get(key)?.error !== undefined)
          this.#notify(pod.metadata.namespace ?? '');
        poll.terminating = terminating;
        continue;
      }
      const ctl = new AbortController();
      this.#polls.set(key, { address, ctl, terminating: pod.status?.terminating === true });
      void this.#poll(key, pod.metadata.namespace ?? '', address, ctl.signal);
    }
  }

  stop(): void {
    for (const p of this.#polls.values()) p.ctl.abort();
    this.#polls.clear();
    clearTimeout(this.#flush);
  }

  #set(key: string, ns: string, r: ProxyReport): void {
    const old = this.#reports.get(key);
    this.#reports.set(key, r);
    if (
      old &&
      old.version === r.version &&
      old.generation === r.generation &&
      old.error === r.error &&
      trustKey(old.trust) === trustKey(r.trust)
    )
      return;
    this.#notify(ns);
  }

  /** Tells onChange about ns, coalesced over flushMs with other namespaces. */
  #notify(ns: string): void {
    this.#changed.add(ns);
    this.#flush ??= setTimeout(() => {
      this.#flush = undefined;
      const changed = this.#changed;
      this.#changed = new Set();
      this.#o.onChange(changed);
    }, this.#o.flushMs);
  }

  async #poll(key: string, ns: string, address: string, signal: AbortSignal): Promise<void> {
    // No `known` on the first poll (and after an error): the proxy answers at once.
    let known: string | undefined;
    let generation: number | '' = '';
    let trust = '';
    let backoffMs = 500;
    while (!signal.aborted) {
      try {
        const url =
          known === undefined
            ? `${address}/config/version`
            : `${address}/config/version?known=${encodeURIComponent(known)}&generation=${generation}&trust=${encodeURIComponent(trust)}&waitMs=${this.#o.waitMs}`;
        const res = await fetch(url, {
          signal: AbortSignal.any([signal, AbortSignal.timeout(this.#o.waitMs + 5000)]),
        });
        if (res.status !== 200) throw new Error(`the proxy answered ${res.status}`);
        const j = (await res.json()) as {
          version: string | null;
          generation: number | null;
          trust?: TrustSummary | null;
        };
        this.#set(key, ns, {
          version: j.version ?? undefined,
          generation: j.generation ?? undefined,
          trust: j.trust,
          error: undefined,
        });
        known = j.version ?? '';
        generation = j.generation ?? '';
        trust = trustKey(j.trust);
        backoffMs = 500;
      } catch (e) {
        if (signal.aborted) return;
        const err = e as Error;
        const reason =
          err.name === 'TimeoutError'
            ? `no answer from ${address} within ${this.#o.waitMs + 5000} ms`
            : `${address}: ${(err.cause as Error | undefined)?.message ?? err.message}`;
        const last = this.#reports.get(key);
        this.#set(key, ns, {
          version: last?.version,
          generation: last?.generation,
          trust: last?.trust,
          error: reason,
        });
        known = undefined;
        await new Promise((r) => setTimeout(r, backoffMs).unref());
        backoffMs = Math.min(backoffMs * 2, 10_000);
      }
    }
  }
}

export type Lagging = LaggingProxy;

/** What was written per namespace, and since which generation each resource is in it. */
export class Propagation {
  readonly #written = new Map<string, { version: string; generation: number }>();
  readonly #since = new Map<string, { generation: number | undefined; byNs: Map<string, number> }>();

  /**
   * The namespace's ConfigMaps hold `generation` (just written, or found up to date); the
   * resources in `included` (key and metadata.generation) are in it.
   */
  written(
    ns: string,
    w: { version: string; generation: number },
    included: { key: string; generation?: number }[],
  ): void {
    this.#written.set(ns, w);
    // What this namespace no longer carries (a resource deleted, or its current spec not
    // compiled in) is forgotten for it; a resource no namespace carries is forgotten entirely.
    const keys = new Set(included.map((r) => r.key));
    for (const [key, s] of this.#since) {
      if (keys.has(key) || !s.byNs.delete(ns)) continue;
      if (s.byNs.size === 0) this.#since.delete(key);
    }
    for (const r of included) {
      let s = this.#since.get(r.key);
      if (!s || s.generation !== r.generation) {
        s = { generation: r.generation, byNs: new Map() };
        this.#since.set(r.key, s);
      }
      if (!s.byNs.has(ns)) s.byNs.set(ns, w.generation);
    }
  }

  /** The namespace left the mesh. */
  forget(ns: string): void {
    this.#written.delete(ns);
    for (const [key, s] of this.#since) if (s.byNs.delete(ns) && s.byNs.size === 0) this.#since.delete(key);
  }

  /** How many resources are tracked (for tests: deleted ones must not pile up). */
  get tracked(): number {
    return this.#since.size;
  }

  /** Whether the generation written is known for the namespaces of all `pods` (after a restart, once reconciled). */
  knows(pods: PodObj[]): boolean {
    return pods.every((p) => this.#written.has(p.metadata.namespace ?? ''));
  }

  generationOf(ns: string): number | undefined {
    return this.#written.get(ns)?.generation;
  }

  /**
   * How many of `pods` run a generation that carries the resource's `generation`, and the ones
   * that do not (sorted, for the message).
   */
  applied(
    key: string,
    generation: number | undefined,
    pods: PodObj[],
    reports: Pick<ProxyReports, 'get'>,
  ): { applied: number; total: number; waiting: Lagging[] } {
    const s = this.#since.get(key);
    const known = s && s.generation === generation ? s.byNs : undefined;
    let applied = 0;
    const waiting: Lagging[] = [];
    for (const pod of pods) {
      const ns = pod.metadata.namespace ?? '';
      const need = known?.get(ns);
      const r = reports.get(pod);
      if (leaving(pod, r)) continue;
      if (need !== undefined && r?.generation !== undefined && r.generation >= need && !r.error) applied++;
      else waiting.push(lagging(pod, r, need ?? this.generationOf(ns) ?? 0));
    }
    return { applied, total: applied + waiting.length, waiting: waiting.sort(byPod) };
  }

  /** Proxies in sync with their namespace's latest generation, and the ones that are not. */
  summary(pods: PodObj[], reports: Pick<ProxyReports, 'get'>): { inSync: number; lagging: Lagging[] } {
    let inSync = 0;
    const out: Lagging[] = [];
    for (const pod of pods) {
      const want = this.generationOf(pod.metadata.namespace ?? '');
      if (want === undefined) continue;
      const r = reports.get(pod);
      if (leaving(pod, r)) continue;
      if (r?.generation !== undefined && r.generation >= want && !r.error) inSync++;
      else out.push(lagging(pod, r, want));
    }
    return { inSync, lagging: out.sort(byPod) };
  }
}

/**
 * A pod being deleted whose proxy does not answer (it drained and stopped, or never reported):
 * it applies nothing any more, so it is neither counted nor named as lagging.
 */
const leaving = (pod: PodObj, r: ProxyReport | undefined) =>
  pod.status?.terminating === true && (!r || r.error !== undefined);

const byPod = (a: Lagging, b: Lagging) =>
  a.namespace === b.namespace ? (a.pod < b.pod ? -1 : 1) : a.namespace < b.namespace ? -1 : 1;

function lagging(pod: PodObj, r: ProxyReport | undefined, want: number): Lagging {
  const l: Lagging = {
    namespace: pod.metadata.namespace ?? '',
    pod: pod.metadata.name,
    wantGeneration: want,
  };
  if (r?.version) l.version = r.version;
  if (r?.generation !== undefined) l.generation = r.generation;
  if (!r) l.reason = 'has not reported yet';
  else if (r.error) l.reason = r.error;
  return l;
}
