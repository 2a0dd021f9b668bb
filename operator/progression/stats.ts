// Reading one proxy's /stats/inbound (proxy/admin.ts) over HTTP.

/** A proxy's inbound figures since it started (proxy/admin.ts /stats/inbound). */
export interface InboundStats {
  requests: number;
  errors: number;
  bucketsMs: number[];
  /** Per bucket of bucketsMs, plus one past the last. */
  counts: number[];
}

export type ReadStats = (address: string) => Promise<InboundStats>;

export const readInboundStats =
  (timeoutMs = 2000): ReadStats =>
  async (address) => {
    const res = await fetch(`${address}/stats/inbound`, { signal: AbortSignal.timeout(timeoutMs) });
    if (res.status !== 200) throw new Error(`${address}/stats/inbound answered ${res.status}`);
    const j = (await res.json()) as InboundStats;
    if (!Number.isFinite(j.requests) || !Number.isFinite(j.errors) || !Array.isArray(j.counts))
      throw new Error(`${address}/stats/inbound: not inbound stats`);
    return j;
  };
