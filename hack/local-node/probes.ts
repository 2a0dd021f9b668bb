// Probes run from the host side against the pod IP (httpGet, tcpSocket) or inside the
// container (exec), with the kubelet's thresholds and periods.
import http from 'node:http';
import https from 'node:https';
import { connect } from 'node:net';
import type { V1Container, V1Probe } from '@kubernetes/client-node';

export interface ProbeResult {
  ok: boolean;
  message: string;
}

export interface ProbeContext {
  podIP: string;
  container: V1Container;
  exec: (argv: string[], timeoutMs: number) => Promise<number>;
}

function resolvePort(port: number | string | undefined, c: V1Container): number | undefined {
  if (typeof port === 'number') return port;
  if (port === undefined) return undefined;
  if (/^\d+$/.test(port)) return Number(port);
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

/** One probe attempt. */
export async function probeOnce(p: V1Probe, ctx: ProbeContext): Promise<ProbeResult> {
  const timeoutMs = (p.timeoutSeconds ?? 1) * 1000;
  if (p.httpGet) {
    const g = p.httpGet;
    const port = resolvePort(g.port as number | string, ctx.container);
    if (!port) return { ok: false, message: `unknown port ${String(g.port)}` };
    const secure = (g.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
    const headers: Record<string, string> = { 'user-agent': 'kube-probe/1.34 (weft-local-node)' };
    for (const h of g.httpHeaders ?? []) headers[h.name] = h.value;
    return new Promise((resolve) => {
      const req = (secure ? https : http).request(
        {
          host: g.host || ctx.podIP,
          port,
          path: g.path ?? '/',
          method: 'GET',
          headers,
          timeout: timeoutMs,
          rejectUnauthorized: false,
          agent: false,
        },
        (res) => {
          res.resume();
          const code = res.statusCode ?? 0;
          resolve({ ok: code >= 200 && code < 400, message: `HTTP ${code}` });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
      req.on('error', (err) => resolve({ ok: false, message: err.message }));
      req.end();
    });
  }
  if (p.tcpSocket) {
    const port = resolvePort(p.tcpSocket.port as number | string, ctx.container);
    if (!port) return { ok: false, message: `unknown port ${String(p.tcpSocket.port)}` };
    return new Promise((resolve) => {
      const s = connect({ host: p.tcpSocket!.host || ctx.podIP, port, timeout: timeoutMs });
      s.on('connect', () => {
        s.destroy();
        resolve({ ok: true, message: 'connected' });
      });
      s.on('timeout', () => s.destroy(new Error(`timed out after ${timeoutMs} ms`)));
      s.on('error', (err) => resolve({ ok: false, message: err.message }));
    });
  }
  if (p.exec) {
    const code = await ctx.exec(p.exec.command ?? [], timeoutMs);
    return { ok: code === 0, message: `exit code ${code}` };
  }
  return { ok: false, message: 'probe kind not supported by the local node (grpc)' };
}

/**
 * Runs a probe periodically; calls onChange when the (thresholded) result flips. The first
 * result is reported after the first attempt(s) that reach a threshold.
 */
export class ProbeLoop {
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #successes = 0;
  #failures = 0;
  #state: boolean | undefined;
  readonly #probe: V1Probe;
  readonly #ctx: ProbeContext;
  readonly #onChange: (ok: boolean, message: string) => void;
  constructor(probe: V1Probe, ctx: ProbeContext, onChange: (ok: boolean, message: string) => void) {
    this.#probe = probe;
    this.#ctx = ctx;
    this.#onChange = onChange;
  }
  start(): void {
    this.#schedule((this.#probe.initialDelaySeconds ?? 0) * 1000);
  }
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }
  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), ms);
  }
  async #tick(): Promise<void> {
    const r = await probeOnce(this.#probe, this.#ctx);
    if (this.#stopped) return;
    if (r.ok) {
      this.#successes++;
      this.#failures = 0;
      if (this.#state !== true && this.#successes >= (this.#probe.successThreshold ?? 1)) {
        this.#state = true;
        this.#onChange(true, r.message);
      }
    } else {
      this.#failures++;
      this.#successes = 0;
      if (this.#state !== false && this.#failures >= (this.#probe.failureThreshold ?? 3)) {
        this.#state = false;
        this.#onChange(false, r.message);
      }
    }
    this.#schedule((this.#probe.periodSeconds ?? 10) * 1000);
  }
}
