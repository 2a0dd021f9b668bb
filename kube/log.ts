// One pino root logger; components take children ({component}), reconciles take children of
// those ({controller, namespace, name, reconcileID}).
import { type Logger, pino } from 'pino';

export type { Logger };

export function rootLogger(level = process.env.WEFT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { app: 'weft' } });
}

/** A logger that drops everything (library default, tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
