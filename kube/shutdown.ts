// Graceful shutdown: the first SIGTERM/SIGINT runs stop() (controllers drain, the Lease is
// released, servers close); a second signal, or stop() exceeding the grace period, exits hard.
import type { Logger } from 'pino';

export function onShutdown(stop: () => Promise<void>, log: Logger, graceMs = 30_000): () => void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    const hard = setTimeout(() => {
      log.error({ graceMs }, 'shutdown exceeded the grace period: exiting');
      process.exit(1);
    }, graceMs);
    hard.unref();
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
