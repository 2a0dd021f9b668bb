// Reading one proxy's /stats/inbound (proxy/admin.ts) over HTTP.
import type { InboundStats } from './sampler.ts';

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
