// Demo workload: calls a URL in a loop and prints one line per answer.
//   node hack/demo-apps/client.ts [url]
//   TARGET_URL (when no argument) — default http://$REVIEWS_SERVICE_HOST:$REVIEWS_SERVICE_PORT/
//   INTERVAL_MS [1000]  COUNT [0 = forever]  TIMEOUT_MS [2000]
// Output: "<n> <status> <service> <version> <pod> <ms>ms", or "<n> error <message>".
const env = process.env;
const fallback = env.REVIEWS_SERVICE_HOST
  ? `http://${env.REVIEWS_SERVICE_HOST}:${env.REVIEWS_SERVICE_PORT ?? 80}/`
  : '';
const url = process.argv[2] ?? env.TARGET_URL ?? fallback;
if (!url) {
  process.stderr.write('usage: client.ts <url>  (or TARGET_URL, or a reviews Service in the namespace)\n');
  process.exit(2);
}
const interval = Number(env.INTERVAL_MS ?? 1000);
const count = Number(env.COUNT ?? 0);
const timeout = Number(env.TIMEOUT_MS ?? 2000);

let stopped = false;
process.on('SIGTERM', () => {
  stopped = true;
});
for (let n = 1; !stopped && (count === 0 || n <= count); n++) {
  const t0 = performance.now();
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeout) });
    const text = await res.text();
    let summary = text.trim().slice(0, 200);
    try {
      const j = JSON.parse(text) as { service?: string; version?: string; pod?: string };
      summary = `${j.service} ${j.version} ${j.pod}`;
    } catch {}
    process.stdout.write(`${n} ${res.status} ${summary} ${Math.round(performance.now() - t0)}ms\n`);
  } catch (err) {
    process.stdout.write(`${n} error ${(err as Error).cause ?? (err as Error).message}\n`);
  }
  if (!stopped && (count === 0 || n < count)) await new Promise((r) => setTimeout(r, interval));
}
